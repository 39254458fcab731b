"""The two sort styles of GET /api/v1/products and their precedence (contract 5.1, 15.1 item 28)."""

import json

from octopus_cards.http.validation import query_error
from octopus_cards.models.vouchers import SORT_KEYS

DIRECTIONS = {"asc": False, "desc": True}


def shelf_order(sort, sort_by, sort_dir):
    """(field or None for the default newest first, descending) from the query."""
    if sort is not None:
        return parse_sort(sort)
    if sort_by is None and sort_dir is None:
        return None, False
    field = "id" if sort_by is None else sort_by.lower()
    if field not in SORT_KEYS:
        raise query_error("sort_by", True)
    direction = "asc" if sort_dir is None else sort_dir.lower()
    if direction not in DIRECTIONS:
        raise query_error("sort_dir", True)
    return field, DIRECTIONS[direction]


def parse_sort(text):
    """`{"Field": <field>, "Direction": <direction>}`, keys and values in any case."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise query_error("sort", True) from None
    if not isinstance(value, dict):
        raise query_error("sort", True)
    keys = {key.lower() if isinstance(key, str) else key: item for key, item in value.items()}
    if len(keys) != len(value) or not set(keys) <= {"field", "direction"} or "field" not in keys:
        raise query_error("sort", True)
    field, direction = keys["field"], keys.get("direction", "ASC")
    if not isinstance(field, str) or field.lower() not in SORT_KEYS:
        raise query_error("sort", True)
    if not isinstance(direction, str) or direction.lower() not in DIRECTIONS:
        raise query_error("sort", True)
    return field.lower(), DIRECTIONS[direction.lower()]
