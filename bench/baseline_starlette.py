"""The floor: a minimal raw Starlette app doing octopus-cards' hot-path work (see baseline_common).

Run by bench/run.py as `python bench/baseline_starlette.py --host 127.0.0.1 --port P [--workers N]`
with the same OCTOPUS_* environment as the server under test. Each request makes a single hop
to a worker thread and opens a single database connection there.
"""

import json
import sys

import baseline_common as common
from anyio import to_thread
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Route

from octopus_cards.models import db


class Json(Response):
    media_type = "application/json"

    def render(self, content):
        return content if isinstance(content, bytes) else json.dumps(content).encode()  # bytes: encoded already


def error(status, message):
    headers = common.www_authenticate(message) if status == 401 else None
    return Json(common.error_body(status, message), status_code=status, headers=headers)


async def json_body(request):
    """(the parsed JSON body, None), or (None, the error answer)."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        return None, error(415, "Content-Type must be application/json")
    try:
        return json.loads(await request.body()), None
    except ValueError:
        return None, Json(
            {"error": {"name": "SyntaxError", "code": "SYNTAX_ERROR", "message": "Invalid request body"}},
            status_code=400,
        )


async def login_request(request):
    """(username and password, None), or (None, the error answer)."""
    body, failed = await json_body(request)
    fields = None if failed else common.login_fields(body)
    if not failed and fields is None:
        failed = error(400, "Username and password are required")
    return fields, failed


async def refresh_request(request):
    """(the refresh token, None), or (None, the error answer)."""
    body, failed = await json_body(request)
    token = body.get("refresh_token") if isinstance(body, dict) else None
    if not failed and (not isinstance(token, str) or not token):
        failed = error(400, "Refresh token is required")
    return (None if failed else token), failed


def address_of(request, settings):
    peer = request.client.host if request.client else None
    return common.caller_address(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)


def app_of(currencies, currency, login, refresh, logout, more=(), lifespan=None):
    """The app of these endpoints (and the `more` routes), with the contract's response headers."""
    routes = [
        Route("/api/v1/currencies", currencies, methods=["GET"]),
        Route("/api/v1/currencies/{currency_id:int}", currency, methods=["GET"]),
        Route("/auth/login", login, methods=["POST"]),
        Route("/auth/refresh", refresh, methods=["POST"]),
        Route("/auth/logout", logout, methods=["POST"]),
        *more,
    ]
    return Starlette(routes=routes, middleware=[Middleware(common.RequestId)], lifespan=lifespan)


CURRENCY_NOT_FOUND = {"error": {"name": "NotFoundError", "code": "NOT_FOUND", "message": "Currency not found"}}


def create_app():
    settings = common.setup()
    codec = common.Jwt(settings)

    def verified_bearer(request):
        return common.bearer_claims(codec, request.headers.get("authorization", ""))

    async def currencies(request):
        try:
            client_id, jti = verified_bearer(request)
            address = address_of(request, settings)

            def work():
                with db.connection_context():
                    common.authorize(jti, client_id, address)
                    return common.active_currencies()

            rows = await to_thread.run_sync(work)
        except common.Unauthorized as exc:
            return error(401, exc.message)
        except common.Forbidden:
            return error(403, "IP address not authorized")
        return Json(rows, headers=common.CACHE_HEADERS)

    async def currency(request):
        try:
            client_id, jti = verified_bearer(request)
            address = address_of(request, settings)
            currency_id = request.path_params["currency_id"]

            def work():
                with db.connection_context():
                    common.authorize(jti, client_id, address)
                    return common.active_currency(currency_id)

            row = await to_thread.run_sync(work)
        except common.Unauthorized as exc:
            return error(401, exc.message)
        except common.Forbidden:
            return error(403, "IP address not authorized")
        if row is None:
            return Json(CURRENCY_NOT_FOUND, status_code=404)
        return Json(row, headers=common.CACHE_HEADERS)

    async def login(request):
        fields, failed = await login_request(request)
        if failed:
            return failed
        address = address_of(request, settings)

        def work():
            with db.connection_context():
                return common.login(codec, settings.secret_pepper, *fields, address)

        try:
            return Json(await to_thread.run_sync(work))
        except common.Unauthorized as exc:
            return error(401, exc.message)
        except common.Forbidden:
            return error(403, "IP address not authorized")

    async def refresh(request):
        token, failed = await refresh_request(request)
        if failed:
            return failed
        address = address_of(request, settings)

        def work():
            with db.connection_context():
                return common.refresh(codec, token, address)

        try:
            return Json(await to_thread.run_sync(work))
        except common.Unauthorized as exc:
            return error(401, exc.message)
        except common.Forbidden:
            return error(403, "IP address not authorized")

    async def logout(request):
        try:
            client_id, jti = verified_bearer(request)
            address = address_of(request, settings)

            def work():
                with db.connection_context():
                    return common.logout(common.authorize(jti, client_id, address))

            return Json(await to_thread.run_sync(work), background=BackgroundTask(common.mark_logged_out, client_id))
        except common.Unauthorized as exc:
            return error(401, exc.message)
        except common.Forbidden:
            return error(403, "IP address not authorized")

    return app_of(currencies, currency, login, refresh, logout)


if __name__ == "__main__":
    sys.exit(common.serve("baseline_starlette:create_app"))
