"""GET /health, /ready and /metrics for operators and their probes; GET /openapi.json."""

import functools
import json

from starlette.responses import Response

from octopus_cards.http.observability import exposition
from octopus_cards.http.responses import json_body
from octopus_cards.models import db
from octopus_cards.openapi import load_spec


def health():
    return {"status": "ok"}, 200


@db.connection_context()
def ready():
    # An unreachable database raises here and is answered 503 ServiceUnavailableError.
    db.execute_sql("SELECT 1")
    return {"status": "ready"}, 200


def metrics():
    body, content_type = exposition()
    # A ready-made response: connexion would insist on a bare `text/plain`, without the
    # format version Prometheus reads from the parameters.
    return Response(body, media_type=content_type)


@functools.cache
def published_document():
    """The document as written, less the Python path of the bearer check, which is no business
    of the API's users (nor a name they should come to rely on)."""
    document = load_spec()
    for scheme in document["components"]["securitySchemes"].values():
        scheme.pop("x-bearerInfoFunc", None)
    return json.dumps(document, ensure_ascii=False).encode()


def openapi_document():
    return json_body(published_document())
