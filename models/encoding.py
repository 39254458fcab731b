"""How the domain's values are written as JSON: money as exact JSON numbers (never through a
float), timestamps as RFC 3339 UTC with whole seconds (contract 1.8)."""

import simplejson


def dumps(value):
    """Compact JSON text; Decimal values are written as the numbers they are."""
    return simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":"))


def timestamp(moment):
    """A naive UTC datetime as `2025-01-15T13:00:00Z`."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
