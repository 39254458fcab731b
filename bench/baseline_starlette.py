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
        return json.dumps(content).encode()


def error(status, message):
    headers = common.www_authenticate(message) if status == 401 else None
    return Json(common.error_body(status, message), status_code=status, headers=headers)


def create_app():
    settings = common.setup()
    codec = common.Jwt(settings)

    def peer(request):
        return request.client.host if request.client else None

    def address_of(request):
        return common.caller_address(peer(request), request.headers.get("x-forwarded-for"), settings.trusted_proxies)

    def verified_bearer(request):
        header = request.headers.get("authorization", "")
        if not header.strip():
            raise common.Unauthorized("Authorization header required")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or " " in token:
            raise common.Unauthorized("Invalid token")
        try:
            client_id, jti, expired = codec.verify(token, "access")
        except common.Unauthorized:
            raise common.Unauthorized("Invalid token") from None
        if expired:
            raise common.Unauthorized("Token expired")
        return client_id, jti

    async def json_body(request):
        if not request.headers.get("content-type", "").startswith("application/json"):
            return None, error(415, "Content-Type must be application/json")
        try:
            return json.loads(await request.body()), None
        except ValueError:
            return None, Json(
                {"error": {"name": "SyntaxError", "code": "SYNTAX_ERROR", "message": "Invalid request body"}},
                status_code=400,
            )

    async def currencies(request):
        try:
            client_id, jti = verified_bearer(request)
            address = address_of(request)

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
            address = address_of(request)
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
            return Json(
                {"error": {"name": "NotFoundError", "code": "NOT_FOUND", "message": "Currency not found"}},
                status_code=404,
            )
        return Json(row, headers=common.CACHE_HEADERS)

    async def login(request):
        body, failed = await json_body(request)
        if failed:
            return failed
        fields = common.login_fields(body)
        if fields is None:
            return error(400, "Username and password are required")
        address = address_of(request)

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
        body, failed = await json_body(request)
        if failed:
            return failed
        token = body.get("refresh_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return error(400, "Refresh token is required")
        address = address_of(request)

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
            address = address_of(request)

            def work():
                with db.connection_context():
                    return common.logout(common.authorize(jti, client_id, address))

            return Json(await to_thread.run_sync(work), background=BackgroundTask(common.mark_logged_out, client_id))
        except common.Unauthorized as exc:
            return error(401, exc.message)
        except common.Forbidden:
            return error(403, "IP address not authorized")

    routes = [
        Route("/api/v1/currencies", currencies, methods=["GET"]),
        Route("/api/v1/currencies/{currency_id:int}", currency, methods=["GET"]),
        Route("/auth/login", login, methods=["POST"]),
        Route("/auth/refresh", refresh, methods=["POST"]),
        Route("/auth/logout", logout, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(common.RequestId)])


if __name__ == "__main__":
    sys.exit(common.serve("baseline_starlette:create_app"))
