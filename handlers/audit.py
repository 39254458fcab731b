"""One JSON line per authentication event, with the request id, client id and source IP.

Tokens, secrets and passwords are never passed here.
"""
import json
import logging
import time

from handlers.metrics import AUTH_EVENTS
from handlers.middleware import REQUEST_ID

logger = logging.getLogger("octopus_cards.audit")


def audit(event, address=None, client_id=None, **fields):
    AUTH_EVENTS.labels(event).inc()
    if not logger.isEnabledFor(logging.INFO):
        return
    record = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "event": event,
        "request_id": REQUEST_ID.get(),
        "client_id": client_id,
        "ip": str(address) if address is not None else None,
        **fields,
    }
    logger.info(json.dumps(record))
