"""GET /health, /ready and /metrics: for operators and their probes."""
from starlette.responses import Response

from handlers.metrics import exposition
from models import db


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
