"""Rate limits (contract 10): each operation's class comes from its `x-octopus-rate-limit`, and
the counters live in the database, so every worker and every instance sharing it enforces one
limit, not one each."""

import hashlib

from octopus_cards.http.errors import too_many_requests
from octopus_cards.http.observability import RATE_LIMITED, audit
from octopus_cards.models import RateLimitHit

# Every operation of this class counts in one bucket per key; any other class gives each of
# its operations a bucket of its own (contract 10.1: "each order and charges endpoint").
SHARED_CLASS = "default"


def counted(runtime, operation_id):
    """Whether requests of `operation_id` are counted (a write each)."""
    return runtime.settings.rate_limits.get(runtime.policies[operation_id].rate_limit) is not None


def enforce(runtime, operation_id, key, address, client_id=None):
    """Count this request of `operation_id` for `key`; 429 once its bucket's minute is full.

    Call within a database connection. Requests refused here are not counted, so
    `Retry-After` is exactly when the next one will be admitted.
    """
    if not counted(runtime, operation_id):
        return
    limit_class = runtime.policies[operation_id].rate_limit
    limit = runtime.settings.rate_limits[limit_class]
    bucket = limit_class if limit_class == SHARED_CLASS else f"{limit_class}/{operation_id}"
    retry_after = RateLimitHit.admit(f"{bucket}:{key}", limit)
    if retry_after is not None:
        RATE_LIMITED.labels(limit_class).inc()
        audit("rate_limited", address, client_id, limit_class=limit_class)
        raise too_many_requests(retry_after)


def digest(text):
    """A bounded bucket key for caller-chosen text (a submitted username can be any length)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
