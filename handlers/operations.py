"""GET /health, /ready and /metrics for operators and their probes; GET /openapi.json."""
import functools
import json

from starlette.responses import Response

from handlers.metrics import exposition
from models import db
from octopus_cards.spec import load_spec


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
def encoded_document():
    return json.dumps(load_spec(), ensure_ascii=False).encode()


def openapi_document():
    return Response(encoded_document(), media_type="application/json")
