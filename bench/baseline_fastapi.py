"""What a team would otherwise pick: a straightforward FastAPI app doing octopus-cards' hot-path
work (see baseline_common).

Idiomatic FastAPI: pydantic models for bodies and responses, the Bearer check as a sync
dependency, sync endpoints (FastAPI runs each in its threadpool), one peewee connection per
dependency or endpoint, exception handlers turning errors into the contract's envelope.

Run by bench/run.py as `python bench/baseline_fastapi.py --host 127.0.0.1 --port P [--workers N]`
with the same OCTOPUS_* environment as the server under test.
"""

import sys

import baseline_common as common
from fastapi import BackgroundTasks, Depends, FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from octopus_cards.models import db


class NotFound(Exception):
    pass


class LoginIn(BaseModel):
    username: str = Field(min_length=1)
    password: str = Field(min_length=1)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1)


class TokenData(BaseModel):
    access_token: str
    refresh_token: str
    access_expires_at: str
    refresh_expires_at: str
    client_id: int


class TokenOut(BaseModel):
    success: bool
    data: TokenData


class MessageData(BaseModel):
    message: str


class MessageOut(BaseModel):
    success: bool
    data: MessageData


class CurrencyOut(BaseModel):
    id: int
    name: str
    currency: str
    precision: int


def create_app():
    settings = common.setup()
    codec = common.Jwt(settings)
    app = FastAPI(title="Octopus Cards (FastAPI baseline)")
    app.add_middleware(common.RequestId)
    bearer = HTTPBearer(auto_error=False)

    @app.exception_handler(common.Unauthorized)
    async def on_unauthorized(request, exc):
        return JSONResponse(common.error_body(401, exc.message), 401, headers=common.www_authenticate(exc.message))

    @app.exception_handler(common.Forbidden)
    async def on_forbidden(request, exc):
        return JSONResponse(common.error_body(403, "IP address not authorized"), 403)

    @app.exception_handler(NotFound)
    async def on_not_found(request, exc):
        return JSONResponse(
            {"error": {"name": "NotFoundError", "code": "NOT_FOUND", "message": "Currency not found"}}, 404
        )

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request, exc):
        message = {
            "/auth/login": "Username and password are required",
            "/auth/refresh": "Refresh token is required",
        }.get(request.url.path, "Request body is invalid")
        return JSONResponse(common.error_body(400, message), 400)

    def address_of(request: Request):
        peer = request.client.host if request.client else None
        return common.caller_address(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)

    def current_client(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> int:
        if credentials is None:
            header = request.headers.get("authorization", "").strip()
            raise common.Unauthorized("Invalid token" if header else "Authorization header required")
        client_id, jti = common.access_claims(codec, credentials.credentials)
        with db.connection_context():
            return common.authorize(jti, client_id, address_of(request))

    @app.get("/api/v1/currencies", response_model=list[CurrencyOut])
    def list_currencies(response: Response, client_id: int = Depends(current_client)):
        response.headers.update(common.CACHE_HEADERS)
        with db.connection_context():
            return common.active_currencies()

    @app.get("/api/v1/currencies/{currency_id}", response_model=CurrencyOut)
    def get_currency(
        response: Response, currency_id: int = Path(ge=1, le=2**31 - 1), client_id: int = Depends(current_client)
    ):
        with db.connection_context():
            row = common.active_currency(currency_id)
        if row is None:
            raise NotFound()
        response.headers.update(common.CACHE_HEADERS)
        return row

    @app.post("/auth/login", response_model=TokenOut)
    def login(body: LoginIn, request: Request):
        with db.connection_context():
            return common.login(codec, settings.secret_pepper, body.username, body.password, address_of(request))

    @app.post("/auth/refresh", response_model=TokenOut)
    def refresh(body: RefreshIn, request: Request):
        with db.connection_context():
            return common.refresh(codec, body.refresh_token, address_of(request))

    @app.post("/auth/logout", response_model=MessageOut)
    def logout(background: BackgroundTasks, client_id: int = Depends(current_client)):
        background.add_task(common.mark_logged_out, client_id)
        with db.connection_context():
            return common.logout(client_id)

    return app


if __name__ == "__main__":
    sys.exit(common.serve("baseline_fastapi:create_app"))
