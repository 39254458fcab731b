"""One JSON line per authentication event, with the request id, client id and source IP.

Tokens, secrets and passwords are never passed here.
"""
import logging

from handlers.metrics import AUTH_EVENTS
from handlers.middleware import log_json

logger = logging.getLogger("octopus_cards.audit")


def audit(event, address=None, client_id=None, **fields):
    AUTH_EVENTS.labels(event).inc()
    log_json(logger, event=event, client_id=client_id, ip=str(address) if address is not None else None, **fields)
