"""Rate limits (contract 10): counters live in the database, so every worker and every
instance sharing it enforces one limit, not one each."""
import hashlib

from handlers.audit import audit
from handlers.errors import too_many_requests
from handlers.metrics import RATE_LIMITED
from models import RateLimitHit


def enforce(settings, limit_class, key, address, client_id=None):
    """Count this request in `limit_class`'s bucket for `key`; 429 once the minute is full.

    Call within a database connection. Requests refused here are not counted, so
    `Retry-After` is exactly when the next one will be admitted.
    """
    limit = settings.rate_limits.get(limit_class)
    if limit is None:
        return
    retry_after = RateLimitHit.admit(f"{limit_class}:{key}", limit)
    if retry_after is not None:
        RATE_LIMITED.labels(limit_class).inc()
        audit("rate_limited", address, client_id, limit_class=limit_class)
        raise too_many_requests(retry_after)


def digest(text):
    """A bounded bucket key for caller-chosen text (a submitted username can be any length)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
