"""Who is calling and may they: Bearer authentication for every protected operation, the
caller's address and the IP allowlist, and the rate limit of the operation (contract 3.5, 3.7, 10)."""

import anyio
from connexion.context import scope as current_scope

from octopus_cards.http.client_address import client_address, is_allowed
from octopus_cards.http.errors import ip_not_authorized, unauthorized
from octopus_cards.http.jwt_codec import ACCESS, TokenRejected
from octopus_cards.http.observability import CURRENT, audit
from octopus_cards.http.reads import connected, read
from octopus_cards.http.runtime import EXACT_BODY, SCOPE_KEY
from octopus_cards.http.throttling import counted, enforce
from octopus_cards.models import Token


def request_scope(request=None):
    # Straight from the scope: each attribute read through connexion's request proxy builds a
    # new request object, which costs more than the lookups themselves.
    return request.scope if request is not None else current_scope._get_current_object()


def runtime(request=None):
    """The app's Runtime: settings, token codec, operation policies."""
    return request_scope(request)[SCOPE_KEY]


def exact_body():
    """The request body as validated, its numbers as Decimals (connexion's copy has floats)."""
    return request_scope()[EXACT_BODY]


def caller_address(request=None):
    scope = request_scope(request)
    peer = scope["client"][0] if scope.get("client") else None
    forwarded = [value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"]
    return client_address(peer, forwarded, scope[SCOPE_KEY].settings.trusted_proxies)


def rate_limit(key, address, client_id=None):
    """The current operation's rate limit (its class from the OpenAPI document), for `key`."""
    enforce(runtime(), CURRENT.get().operation, key, address, client_id)


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
    if len(values) > 1 or scheme.lower() != "bearer" or token.split() != [token]:
        raise unauthorized("Invalid token")
    return token


def authorize(rt, operation_id, verified, address):
    """Token record, client status, allowlist and rate limit. Call within a database connection."""
    state = Token.state(verified.jti)
    if state is None or not state.live or not state.issued_as(verified):
        raise unauthorized("Invalid token")
    require_allowed(address, state.networks, state.client_id)
    enforce(rt, operation_id, f"client:{state.client_id}", address, state.client_id)
    return state


async def check_bearer(request):
    """The `x-bearerInfoFunc` (called as connexion_hooks.BearerFromRequest calls it). The JWT is
    checked on the loop; the token state is read where reads run, unless the operation's rate limit
    counts the request, which writes its hit (in a thread)."""
    token = bearer_token(request)
    rt = runtime(request)
    try:
        verified = rt.codec.verify(token, ACCESS)
    except TokenRejected as rejected:
        raise unauthorized("Token expired" if rejected.expired else "Invalid token") from None
    operation, address = CURRENT.get().operation, caller_address(request)
    if counted(rt, operation):
        state = await anyio.to_thread.run_sync(connected, authorize, rt, operation, verified, address)
    else:
        state = await read(authorize, rt, operation, verified, address)
    return {"sub": str(state.client_id), "client_id": state.client_id, "jti": verified.jti, "features": state.features}
