"""Bearer authentication for every protected operation (contract 3.5, 3.7, 10)."""
import dataclasses

import anyio
from connexion.context import scope as current_scope

from handlers.audit import audit
from handlers.client_ip import client_address, is_allowed
from handlers.errors import ip_not_authorized, unauthorized
from handlers.middleware import RUNTIME_KEY
from handlers.ratelimit import enforce
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


def request_scope(request=None):
    # Straight from the scope: each attribute read through connexion's request proxy builds a
    # new request object, which costs more than the lookups themselves.
    return request.scope if request is not None else current_scope._get_current_object()


def runtime(request=None):
    return request_scope(request)[RUNTIME_KEY]


def caller_address(request=None):
    scope = request_scope(request)
    peer = scope["client"][0] if scope.get("client") else None
    forwarded = [value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"]
    return client_address(peer, forwarded, scope[RUNTIME_KEY].settings.trusted_proxies)


def require_allowed(address, networks, client_id):
    """The allowlist check, run once the client is identified."""
    if not is_allowed(address, networks):
        audit("ip.denied", address, client_id)
        raise ip_not_authorized()


def bearer_token(request):
    """The token of a single `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    values = request.headers.getlist("authorization")
    if not values or not values[0].strip():
        raise unauthorized("Authorization header required")
    scheme, _, token = values[0].partition(" ")
    if len(values) > 1 or scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        raise unauthorized("Invalid token")
    return token


def authorize(settings, verified, address):
    """Token record, client status, allowlist and rate limit: one connection, in a worker thread."""
    with db.connection_context():
        state = Token.state(verified.jti)
        if state is None or not state.live or not state.issued_as(verified):
            raise unauthorized("Invalid token")
        require_allowed(address, state.networks, state.client_id)
        enforce(settings, "default", f"client:{state.client_id}", address, state.client_id)
    return state


async def check_bearer(token, required_scopes=None, request=None):
    """connexion's bearerInfoFunc. The JWT is checked on the loop; the database in a thread."""
    token = bearer_token(request)
    rt = runtime(request)
    try:
        verified = rt.codec.verify(token, ACCESS)
    except TokenRejected as rejected:
        raise unauthorized("Token expired" if rejected.expired else "Invalid token") from None
    state = await anyio.to_thread.run_sync(authorize, rt.settings, verified, caller_address(request))
    return {"sub": str(state.client_id), "client_id": state.client_id, "jti": verified.jti, "features": state.features}
