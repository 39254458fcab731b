"""Prometheus metrics. With several worker processes, `serve` points PROMETHEUS_MULTIPROC_DIR at
a shared directory before the workers start, and a scrape adds up every worker's values."""
import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

REQUESTS = Counter("octopus_requests_total", "Requests answered, by operation and status.", ["operation", "status"])
LATENCY = Histogram(
    "octopus_request_duration_seconds",
    "Time to answer a request, by operation.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
AUTH_EVENTS = Counter("octopus_auth_events_total", "Authentication events, by kind.", ["event"])
RATE_LIMITED = Counter("octopus_rate_limited_total", "Requests refused by a rate limit, by class.", ["limit_class"])


def exposition():
    """The text format and its content type, for every process of this server."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry).decode(), CONTENT_TYPE_PLAIN_0_0_4
