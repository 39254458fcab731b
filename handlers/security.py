"""Bearer authentication for every protected operation (contract 3.5, 3.7)."""
import dataclasses

import anyio
from connexion import request as current_request

from handlers.client_ip import client_address, is_allowed
from handlers.errors import ip_not_authorized, unauthorized
from handlers.middleware import RUNTIME_KEY
from handlers.tokens import ACCESS, TokenCodec, TokenRejected
from models import Token, db
from octopus_cards.settings import Settings


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What the handlers need from the app that serves them."""

    settings: Settings
    codec: TokenCodec

    @classmethod
    def from_settings(cls, settings):
        codec = TokenCodec(
            settings.jwt_keys,
            settings.jwt_active_kid,
            settings.access_token_ttl,
            settings.refresh_token_ttl,
            settings.jwt_leeway,
        )
        return cls(settings, codec)


def runtime(request=None):
    return (request or current_request).scope[RUNTIME_KEY]


def bearer_token(request):
    """The token of a single `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    values = request.headers.getlist("authorization")
    if not values or not values[0].strip():
        raise unauthorized("Authorization header required")
    scheme, _, token = values[0].partition(" ")
    if len(values) > 1 or scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        raise unauthorized("Invalid token")
    return token


def require_allowed_ip(request, networks):
    """The allowlist check, run once the client is identified."""
    settings = runtime(request).settings
    peer = request.client.host if request.client else None
    address = client_address(peer, request.headers.getlist("x-forwarded-for"), settings.trusted_proxies)
    if not is_allowed(address, networks):
        raise ip_not_authorized()


def token_state(jti):
    with db.connection_context():
        return Token.state(jti)


async def check_bearer(token, required_scopes=None, request=None):
    """connexion's bearerInfoFunc. The JWT is checked on the loop; the record in a thread."""
    token = bearer_token(request)
    try:
        verified = runtime(request).codec.verify(token, ACCESS)
    except TokenRejected as rejected:
        raise unauthorized("Token expired" if rejected.expired else "Invalid token") from None
    state = await anyio.to_thread.run_sync(token_state, verified.jti)
    if state is None or not state.live or state.token_use != ACCESS or state.client_id != verified.client_id:
        raise unauthorized("Invalid token")
    require_allowed_ip(request, state.networks)
    return {"sub": str(state.client_id), "client_id": state.client_id, "jti": verified.jti}
