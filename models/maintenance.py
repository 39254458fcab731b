"""Housekeeping that keeps the hot tables small; safe to run from any number of processes."""

from octopus_cards.models.base import db
from octopus_cards.models.ratelimit import RateLimitHit
from octopus_cards.models.tokens import Token


def prune():
    """Expired token records (a day past expiry) and stale rate-limit hits; returns both counts."""
    with db.connection_context():
        return Token.prune(), RateLimitHit.prune()
