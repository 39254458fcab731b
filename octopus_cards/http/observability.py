"""What operators see of each request: Prometheus metrics, the JSON access log and the audit log.

Every line and every sample is labelled with the operation's id from the OpenAPI document
(`auth.login`), which stays stable when code moves. With several worker processes, `serve` points
PROMETHEUS_MULTIPROC_DIR at a shared directory before the workers start, and a scrape adds up
every worker's values.
"""

import contextvars
import dataclasses
import functools
import json
import logging
import os
import time
import types

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from octopus_cards import models
from octopus_cards.models import Delivery
from octopus_cards.models.base import utcnow

REQUESTS = Counter("octopus_requests_total", "Requests answered, by operation and status.", ["operation", "status"])
LATENCY = Histogram(
    "octopus_request_duration_seconds",
    "Time to answer a request, by operation.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
AUTH_EVENTS = Counter("octopus_auth_events_total", "Authentication events, by kind.", ["event"])
RATE_LIMITED = Counter("octopus_rate_limited_total", "Requests refused by a rate limit, by class.", ["limit_class"])

WEBHOOK_ATTEMPTS = Counter(
    "octopus_webhook_attempts_total",
    "Webhook delivery attempts, by the delivery's state after them (delivered, pending: to be retried, failed).",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "octopus_webhook_attempt_duration_seconds",
    "Time of one webhook delivery attempt, from sending to the end of the answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

access_log = logging.getLogger("octopus_cards.access")
audit_log = logging.getLogger("octopus_cards.audit")

UNROUTED = "unrouted"


@dataclasses.dataclass(frozen=True)
class RequestLabels:
    """The request id, and the scope extensions in which routing notes the operation."""

    request_id: str
    extensions: dict

    @property
    def operation(self):
        return self.extensions.get("connexion_routing", {}).get("operation_id") or UNROUTED


# Outside a request (background work, start-up): no id, no operation.
OUTSIDE_REQUESTS = RequestLabels("-", types.MappingProxyType({}))
CURRENT = contextvars.ContextVar("request_labels", default=OUTSIDE_REQUESTS)


def log_json(logger, **fields):
    """One JSON log line: a UTC timestamp, the request id and operation, then `fields`."""
    if logger.isEnabledFor(logging.INFO):
        labels = CURRENT.get()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = {"ts": stamp, "request_id": labels.request_id, "operation": labels.operation, **fields}
        logger.info(json.dumps(line))


def audit(event, address=None, client_id=None, **fields):
    """One JSON line per authentication event. Tokens, secrets and passwords are never passed here."""
    AUTH_EVENTS.labels(event).inc()
    log_json(audit_log, event=event, client_id=client_id, ip=str(address) if address is not None else None, **fields)


@functools.cache
def request_series(operation, status):
    """The counter and histogram series of an operation's answers with `status`, looked up once:
    labels() takes a lock and builds its key on every call, and the pairs are few (the document's
    operations times the statuses they answer)."""
    return REQUESTS.labels(operation, str(status)), LATENCY.labels(operation)


def record_request(scope, status, elapsed):
    answered, timed = request_series(CURRENT.get().operation, status)
    answered.inc()
    timed.observe(elapsed)
    log_json(
        access_log,
        method=scope["method"],
        path=scope["path"],
        status=status,
        duration_ms=round(elapsed * 1000, 3),
        peer=scope["client"][0] if scope.get("client") else None,
    )


def record_webhook_attempt(outcome, seconds):
    WEBHOOK_ATTEMPTS.labels(outcome).inc()
    WEBHOOK_LATENCY.observe(seconds)


class DeliveryQueue:
    """The webhook queue as the database has it at scrape time, whichever process fills or drains it."""

    def collect(self):
        with models.db.connection_context():
            depth, oldest = Delivery.pending_count(), Delivery.oldest_pending()
        yield GaugeMetricFamily("octopus_webhook_queue_depth", "Webhook deliveries waiting to be delivered.", depth)
        age = (utcnow() - oldest).total_seconds() if oldest else 0
        yield GaugeMetricFamily(
            "octopus_webhook_oldest_pending_age_seconds", "Age of the oldest webhook delivery still pending.", age
        )


def exposition():
    """The text format and its content type, for every process of this server."""
    registry = CollectorRegistry()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(DeliveryQueue())
    return generate_latest(registry).decode(), CONTENT_TYPE_PLAIN_0_0_4
