"""POST /auth/login, /auth/refresh and /auth/logout (contract 3.3, 3.4, 3.6)."""

import logging

from peewee import InterfaceError, OperationalError
from starlette.background import BackgroundTask

from octopus_cards.http.errors import unauthorized
from octopus_cards.http.jwt_codec import REFRESH, TokenRejected
from octopus_cards.http.observability import audit
from octopus_cards.http.responses import wrapped
from octopus_cards.http.security import caller_address, rate_limit, require_allowed, runtime
from octopus_cards.http.throttling import digest
from octopus_cards.models import Client, Token, db

logger = logging.getLogger("octopus_cards")


def token_response(client_id, pair):
    access_token, refresh_token = pair
    data = {
        "access_token": access_token.token,
        "refresh_token": refresh_token.token,
        "access_expires_at": access_token.expires_at_text,
        "refresh_expires_at": refresh_token.expires_at_text,
        "client_id": client_id,
    }
    return wrapped(data)


@db.connection_context()
def login(body):
    rt, address = runtime(), caller_address()
    rate_limit(f"ip:{address}", address)
    rate_limit(f"key:{digest(body['username'])}", address)
    authenticated = Client.authenticate(rt.settings.secret_pepper, body["username"], body["password"])
    if authenticated is None:
        audit("login.failure", address)
        raise unauthorized("Invalid credentials")
    client_id, networks = authenticated
    require_allowed(address, networks, client_id)
    pair = rt.codec.issue_pair(client_id)
    Token.record_login(client_id, pair)
    audit("login.success", address, client_id)
    return token_response(client_id, pair)


@db.connection_context()
def refresh(body):
    rt, address = runtime(), caller_address()
    rate_limit(f"ip:{address}", address)
    try:
        presented = rt.codec.verify(body["refresh_token"], REFRESH)
    except TokenRejected as rejected:
        presented, expired = rejected.expired_token, True
    else:
        expired = False
    state = Token.state(presented.jti) if presented else None
    if state is None or not state.issued_as(presented):
        raise refused(address, None)
    if state.used and not state.revoked:
        Token.revoke_family(state.family_id)  # the revocation stands although we answer 401
        audit("refresh.reuse_detected", address, state.client_id, family_id=state.family_id)
    if expired or not state.live:
        raise refused(address, state.client_id)
    require_allowed(address, state.networks, state.client_id)
    pair = rt.codec.issue_pair(state.client_id)
    if not rotate(presented.jti, state, pair):
        audit("refresh.reuse_detected", address, state.client_id, family_id=state.family_id)
        raise refused(address, state.client_id)
    audit("refresh.success", address, state.client_id)
    return token_response(state.client_id, pair)


def rotate(jti, state, pair):
    try:
        return Token.rotate(jti, state.client_id, state.family_id, pair)
    except (OperationalError, InterfaceError):
        # If the rotation committed before the connection died, the pair is the client's:
        # answering 503 would make its retry look like reuse and revoke the family.
        if Token.landed_despite_failure(pair[1].jti):
            return True
        raise


def refused(address, client_id):
    audit("refresh.failure", address, client_id)
    return unauthorized("Invalid refresh token")


@db.connection_context()
def logout(token_info):
    client_id = token_info["client_id"]
    Token.revoke_client(client_id)
    audit("logout", caller_address(), client_id)
    return wrapped({"message": "Successfully logged out"}, background=BackgroundTask(record_logout, client_id))


def record_logout(client_id):
    """After the answer: the tokens are dead already, this records when (contract 13.3)."""
    try:
        with db.connection_context():
            Token.record_logout(client_id)
    except (OperationalError, InterfaceError):
        logger.warning("revoked_at of client %d's tokens not recorded yet: the database is unreachable", client_id)
