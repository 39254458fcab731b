"""Response bodies the handlers hand back ready-made, where connexion's serialiser would cost
more than the work or change the bytes."""

import json

from starlette.responses import JSONResponse, Response


def wrapped(data, background=None):
    """The auth endpoints' envelope (contract 1.5)."""
    return JSONResponse({"success": True, "data": data}, background=background)


def compact_json(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_body(body, headers=None):
    """Already-encoded JSON."""
    return Response(body, media_type="application/json", headers=headers)
