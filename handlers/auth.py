"""POST /auth/login, /auth/refresh and /auth/logout (contract 3.3, 3.4, 3.6)."""
from connexion import request

from handlers.errors import unauthorized
from handlers.security import require_allowed_ip, runtime
from handlers.tokens import REFRESH, TokenRejected
from models import Client, Token, db


def token_response(client_id, pair):
    access_token, refresh_token = pair
    data = {
        "access_token": access_token.token,
        "refresh_token": refresh_token.token,
        "access_expires_at": access_token.expires_at_text,
        "refresh_expires_at": refresh_token.expires_at_text,
        "client_id": client_id,
    }
    return {"success": True, "data": data}, 200


@db.connection_context()
def login(body):
    rt = runtime()
    client = Client.authenticate(rt.settings.secret_pepper, body["username"], body["password"])
    if client is None:
        raise unauthorized("Invalid credentials")
    require_allowed_ip(request, client.networks())
    pair = rt.codec.issue_pair(client.id)
    Token.record_login(client.id, pair)
    return token_response(client.id, pair)


@db.connection_context()
def refresh(body):
    rt = runtime()
    invalid = unauthorized("Invalid refresh token")
    try:
        presented = rt.codec.verify(body["refresh_token"], REFRESH)
    except TokenRejected as rejected:
        presented, expired = rejected.expired_token, True
    else:
        expired = False
    state = Token.state(presented.jti) if presented else None
    if state is None or state.token_use != REFRESH or state.client_id != presented.client_id:
        raise invalid
    if state.used and not state.revoked:
        Token.revoke_family(state.family_id)  # reuse: the revocation stands although we answer 401
    if expired or not state.live:
        raise invalid
    require_allowed_ip(request, state.networks)
    pair = rt.codec.issue_pair(state.client_id)
    if not Token.rotate(presented.jti, state.client_id, state.family_id, pair):
        raise invalid
    return token_response(state.client_id, pair)


@db.connection_context()
def logout(token_info):
    Token.revoke_client(token_info["client_id"])
    return {"success": True, "data": {"message": "Successfully logged out"}}, 200
