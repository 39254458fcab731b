"""Housekeeping that keeps the hot tables small; safe to run from any number of processes."""

from octopus_cards.models import webhooks
from octopus_cards.models.base import db
from octopus_cards.models.ratelimit import RateLimitHit
from octopus_cards.models.tokens import Token


def prune():
    """Expired token records (a day past expiry), stale rate-limit hits, and events and delivery
    attempts past their retention; a sentence with the counts."""
    with db.connection_context():
        tokens, hits = Token.prune(), RateLimitHit.prune()
        events, attempts = webhooks.prune()
    return (
        f"pruned {tokens} expired token records, {hits} rate-limit hits, {events} events "
        f"and {attempts} webhook delivery attempts"
    )
