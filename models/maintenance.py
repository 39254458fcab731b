"""Housekeeping that keeps the hot tables small; safe to run from any number of processes."""
from models.base import db
from models.ratelimit import RateLimitHit
from models.tokens import Token


def prune():
    """Expired token records (a day past expiry) and stale rate-limit hits; returns both counts."""
    with db.connection_context():
        return Token.prune(), RateLimitHit.prune()
