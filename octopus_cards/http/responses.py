"""Response bodies the handlers hand back ready-made, where connexion's serialiser would cost
more than the work or change the bytes."""

import json

from starlette.responses import JSONResponse, Response

from octopus_cards.models.encoding import dumps


def wrapped(data, background=None):
    """The auth endpoints' envelope (contract 1.5)."""
    return JSONResponse({"success": True, "data": data}, background=background)


def compact_json(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_body(body, headers=None, status=200):
    """Already-encoded JSON."""
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def json_answer(value, status=200):
    """`value` as exact JSON (money as the decimals it is)."""
    return json_body(dumps(value).encode(), status=status)


def paginated(items, page_number, per_page, total):
    """A paginated list (contract 1.6): the bare array and its six headers."""
    return paginated_body(dumps(items).encode(), len(items), page_number, per_page, total)


def paginated_body(body, page_size, page_number, per_page, total):
    """paginated() of an already-encoded array of `page_size` items."""
    pages = -(-total // per_page)
    headers = {
        "X-Page": str(page_number),
        "X-Per-Page": str(per_page),
        "X-Total-Count": str(total),
        "X-Total-Pages": str(pages),
        "X-Page-Size": str(page_size),
        "X-Has-More": "true" if page_number < pages else "false",
    }
    return json_body(body, headers)
