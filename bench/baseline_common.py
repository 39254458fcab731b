"""What both baselines share: the work of octopus-cards' hot paths, written straightforwardly.

The baselines are yardsticks, so they do the same work as octopus-cards on the same tables
(the peewee models of `models/`), but with their own plain code, so that an optimisation
inside octopus-cards does not silently speed up its yardstick too:

* JWT: PyJWT, HS256 pinned, key chosen by `kid`, every claim required and type-checked,
  `token_use` checked, expiry compared by hand (as contract 3.5 asks);
* one token-state query per Bearer request (token + family + client + allowlist, one LEFT
  JOIN), then client-active, generation and IP-allowlist checks in Python;
* login: key lookup, HMAC-SHA256(pepper, secret) compared in constant time, the allowlist,
  a new family (under the client's current token generation) and two token rows in one write
  transaction;
* refresh: verify, state lookup, allowlist, the conditional `UPDATE ... WHERE used_at IS NULL
  AND revoked_at IS NULL AND <family of the current generation>` and the new pair in one write
  transaction;
* logout: the client's token generation raised (one row), then, after the response, revoked_at
  on the families and tokens of older generations (one UPDATE per table);
* the same JSON bodies and the contract's headers (X-Request-Id as a KSUID, Cache-Control).

Settings come from the same OCTOPUS_* environment as the server under test, and each worker is
pinned to a CPU just as `octopus-cards serve` pins its own (OCTOPUS_WORKER_CPUS).
"""

import datetime
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import sys
import time

import jwt
from cyksuid.v2 import ksuid
from peewee import JOIN, SqliteDatabase
from playhouse.db_url import connect as connect_url

from octopus_cards.cli import pin_worker
from octopus_cards.models import Client, ClientIpAllow, Currency, Token, TokenFamily, db
from octopus_cards.settings import Settings

ISSUER = "octopus-cards"
REQUIRED = ["iss", "sub", "client_id", "jti", "iat", "nbf", "exp", "token_use"]
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
CACHE_HEADERS = {"Cache-Control": "private, max-age=86400, stale-while-revalidate=600"}
LOGOUT_BODY = {"success": True, "data": {"message": "Successfully logged out"}}
DUMMY_HASH = "-" * 64


class Unauthorized(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


class Forbidden(Exception):
    pass


def error_body(status, message):
    names = {
        400: ("ValidationException", "VALIDATION_FAILURE"),
        401: ("UnauthorizedError", "UNAUTHORIZED"),
        403: ("ForbiddenError", "FORBIDDEN"),
        415: ("UnsupportedMediaTypeError", "UNSUPPORTED_MEDIA_TYPE"),
    }
    name, code = names[status]
    return {"error": {"name": name, "code": code, "message": message}}


def www_authenticate(message):
    return {
        "WWW-Authenticate": 'Bearer error="invalid_token"'
        if message in ("Invalid token", "Token expired")
        else "Bearer"
    }


def utc(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).replace(tzinfo=None)


def utcnow():
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)


class Jwt:
    def __init__(self, settings):
        self.keys = settings.jwt_keys
        self.kid = settings.jwt_active_kid
        self.ttl = {"access": settings.access_token_ttl, "refresh": settings.refresh_token_ttl}
        self.leeway = settings.jwt_leeway

    def issue(self, client_id, token_use, now):
        jti = secrets.token_urlsafe(16)
        exp = now + self.ttl[token_use]
        claims = {
            "iss": ISSUER,
            "sub": str(client_id),
            "client_id": client_id,
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "token_use": token_use,
        }
        token = jwt.encode(claims, self.keys[self.kid], algorithm="HS256", headers={"kid": self.kid})
        return {"token": token, "jti": jti, "token_use": token_use, "issued_at": utc(now), "expires_at": utc(exp)}

    def issue_pair(self, client_id):
        now = int(time.time())
        return self.issue(client_id, "access", now), self.issue(client_id, "refresh", now)

    def verify(self, token, token_use):
        """(client_id, jti, expired); Unauthorized('') if the token is not acceptable."""
        if len(token) > 4096:
            raise Unauthorized("")
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if header.get("alg") != "HS256" or kid not in self.keys or any(h in header for h in FORBIDDEN_HEADERS):
                raise Unauthorized("")
            claims = jwt.decode(
                token,
                self.keys[kid],
                algorithms=["HS256"],
                issuer=ISSUER,
                leeway=self.leeway,
                options={"require": REQUIRED, "verify_exp": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthorized("") from None
        now = int(time.time())
        client_id = claims["client_id"]
        ok = (
            type(client_id) is int
            and claims["sub"] == str(client_id)
            and isinstance(claims["jti"], str)
            and all(type(claims[name]) is int for name in ("iat", "nbf", "exp"))
            and claims["token_use"] == token_use
            and claims["iat"] <= now + self.leeway
            and claims["nbf"] <= now + self.leeway
        )
        if not ok:
            raise Unauthorized("")
        return client_id, claims["jti"], claims["exp"] <= now - self.leeway


def access_claims(codec, token):
    """(client_id, jti) of an acceptable, unexpired access token; Unauthorized with the contract's
    message otherwise."""
    try:
        client_id, jti, expired = codec.verify(token, "access")
    except Unauthorized:
        raise Unauthorized("Invalid token") from None
    if expired:
        raise Unauthorized("Token expired")
    return client_id, jti


def bearer_claims(codec, header):
    """access_claims of the token of an `Authorization: Bearer <token>` header."""
    if not header.strip():
        raise Unauthorized("Authorization header required")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("Invalid token")
    return access_claims(codec, token)


def token_payload(client_id, pair):
    access, refresh = pair
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "success": True,
        "data": {
            "access_token": access["token"],
            "refresh_token": refresh["token"],
            "access_expires_at": access["expires_at"].strftime(fmt),
            "refresh_expires_at": refresh["expires_at"].strftime(fmt),
            "client_id": client_id,
        },
    }


# -- the caller's address and the allowlist ------------------------------------------------------


def normalise(text):
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def caller_address(peer, forwarded_for, trusted):
    """The TCP peer, or behind a trusted proxy the right-most untrusted X-Forwarded-For hop."""
    address = normalise(peer) if peer else None
    if address is None or not forwarded_for or not in_any(address, trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        hop_address = normalise(hop)
        if hop_address is None or not in_any(hop_address, trusted):
            return hop_address
    return None


def in_any(address, networks):
    return any(address.version == n.version and address in n for n in networks)


def check_allowed(address, cidrs):
    if cidrs and (address is None or not in_any(address, [ipaddress.ip_network(c, strict=False) for c in cidrs])):
        raise Forbidden()


# -- database work (sync: call it in a worker thread) ----------------------------------------------


def write_txn():
    return db.atomic("IMMEDIATE") if isinstance(db.obj, SqliteDatabase) else db.atomic()


def token_state(jti):
    """One query: the token's record, its family's generation, its client's status and allowlist."""
    rows = list(
        Token.select(
            Token.client,
            Token.family,
            Token.token_use,
            Token.revoked_at,
            Token.used_at,
            TokenFamily.generation,
            Client.token_generation,
            Client.is_active,
            ClientIpAllow.cidr,
        )
        .join(Client)
        .join(ClientIpAllow, JOIN.LEFT_OUTER)
        .join_from(Token, TokenFamily)
        .where(Token.jti == jti)
        .tuples()
    )
    return state_of(rows)


def state_of(rows):
    """The token-state rows (token, family generation, client status, one allowlist entry each)
    as one record; None for no rows."""
    if not rows:
        return None
    client_id, family_id, token_use, revoked_at, used_at, generation, current, active, _ = rows[0]
    revoked = revoked_at is not None or generation != current
    return {
        "client_id": client_id,
        "family_id": family_id,
        "token_use": token_use,
        "live": bool(active) and not revoked and used_at is None,
        "used": used_at is not None,
        "revoked": revoked,
        "networks": [row[-1] for row in rows if row[-1] is not None],
    }


def authorize(jti, client_id, address):
    """The Bearer record check and the allowlist; the client id."""
    state = token_state(jti)
    if state is None or not state["live"] or state["token_use"] != "access" or state["client_id"] != client_id:
        raise Unauthorized("Invalid token")
    check_allowed(address, state["networks"])
    return state["client_id"]


def active_currencies():
    query = Currency.select(Currency.id, Currency.name, Currency.currency, Currency.precision)
    return list(query.where(Currency.is_active).order_by(Currency.id).dicts())


def active_currency(currency_id):
    query = Currency.select(Currency.id, Currency.name, Currency.currency, Currency.precision)
    return query.where((Currency.id == currency_id) & Currency.is_active).dicts().get_or_none()


def record_pair(client_id, family_id, pair, parent_jti):
    Token.insert_many(
        [
            {
                "jti": t["jti"],
                "client": client_id,
                "family": family_id,
                "token_use": t["token_use"],
                "parent_jti": parent_jti,
                "issued_at": t["issued_at"],
                "expires_at": t["expires_at"],
            }
            for t in pair
        ]
    ).execute()


def login(codec, pepper, username, password, address):
    client = Client.get_or_none(Client.api_key == username)
    digest = hmac.new(pepper, password.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(digest, client.secret_hash if client else DUMMY_HASH) or not client.is_active:
        raise Unauthorized("Invalid credentials")
    networks = [row.cidr for row in ClientIpAllow.select(ClientIpAllow.cidr).where(ClientIpAllow.client == client.id)]
    check_allowed(address, networks)
    pair = codec.issue_pair(client.id)
    with write_txn():
        generation = Client.select(Client.token_generation).where(Client.id == client.id)
        family_id = TokenFamily.insert(client=client.id, created_at=utcnow(), generation=generation).execute()
        record_pair(client.id, family_id, pair, None)
    return token_payload(client.id, pair)


def refresh(codec, token, address):
    invalid = Unauthorized("Invalid refresh token")
    try:
        client_id, jti, expired = codec.verify(token, "refresh")
    except Unauthorized:
        raise invalid from None
    state = token_state(jti)
    if state is None or state["token_use"] != "refresh" or state["client_id"] != client_id:
        raise invalid
    if state["used"] and not state["revoked"]:
        revoke_family(state["family_id"])
    if expired or not state["live"]:
        raise invalid
    check_allowed(address, state["networks"])
    pair = codec.issue_pair(client_id)
    now = utcnow()
    with write_txn():
        current_family = (
            TokenFamily.select(TokenFamily.id)
            .join(Client)
            .where((TokenFamily.id == state["family_id"]) & (TokenFamily.generation == Client.token_generation))
        )
        won = (
            Token.update(used_at=now)
            .where(
                (Token.jti == jti)
                & Token.used_at.is_null()
                & Token.revoked_at.is_null()
                & Token.family.in_(current_family)
            )
            .execute()
            == 1
        )
        if won:
            record_pair(client_id, state["family_id"], pair, jti)
        else:
            revoke_family(state["family_id"])
    if not won:
        raise invalid
    return token_payload(client_id, pair)


def revoke_family(family_id):
    now = utcnow()
    with write_txn():
        TokenFamily.update(revoked_at=now).where(
            (TokenFamily.id == family_id) & TokenFamily.revoked_at.is_null()
        ).execute()
        Token.update(revoked_at=now).where((Token.family == family_id) & Token.revoked_at.is_null()).execute()


def logout(client_id):
    """Every token of the client dead at once; `mark_logged_out` records it after the response."""
    with write_txn():
        Client.update(token_generation=Client.token_generation + 1).where(Client.id == client_id).execute()
    return LOGOUT_BODY


def mark_logged_out(client_id):
    now = utcnow()
    with db.connection_context(), write_txn():
        current = Client.select(Client.token_generation).where(Client.id == client_id)
        older = (TokenFamily.client == client_id) & (TokenFamily.generation < current)
        TokenFamily.update(revoked_at=now).where(older & TokenFamily.revoked_at.is_null()).execute()
        Token.update(revoked_at=now).where(
            (Token.client == client_id)
            & Token.family.in_(TokenFamily.select(TokenFamily.id).where(older))
            & Token.revoked_at.is_null()
        ).execute()


def login_fields(body):
    if not isinstance(body, dict):
        return None
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        return None
    return username, password


# -- the contract's response headers, as a pure-ASGI middleware (as octopus-cards does) ----------

VALID_REQUEST_ID = re.compile(r"[0-9A-Za-z_-]{1,63}")


class RequestId:
    """X-Request-Id on every response (echoed when valid, else a fresh KSUID); no-store on /auth/."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                request_id = text if VALID_REQUEST_ID.fullmatch(text) else None
                break
        request_id = (request_id or str(ksuid())).encode()
        no_store = scope["path"].startswith("/auth/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if not (no_store and k == b"cache-control")]
                headers.append((b"x-request-id", request_id))
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def bind_database(url):
    """Bind the models as peewee's documentation suggests for a web app, and as octopus-cards did
    when the benchmark was written: SQLite opened per request (WAL, 5 s busy timeout), PostgreSQL
    through a pool. Written out here, not `models.connect`, so that a change to how octopus-cards
    connects does not move its yardstick."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        database = connect_url(
            url,
            pragmas={"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal"},
            timeout=5,
            autoconnect=False,
        )
    elif scheme in ("postgres", "postgresql"):
        database = connect_url(f"postgres+pool://{rest}", max_connections=64, stale_timeout=300, autoconnect=False)
    else:
        raise ValueError(f"unsupported database URL {url!r}")
    db.initialize(database)


def setup():
    """Read the settings, pin the worker as `octopus-cards serve` does, and bind the models."""
    settings = Settings.from_env()
    pin_worker(settings.worker_cpus)
    bind_database(settings.database_url)
    return settings


def serve(app_path):
    """`python baseline_X.py --host H --port P --workers N`: uvicorn with the settings of
    `octopus-cards serve` (no proxy headers, no server header, INFO logging, access log on)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        app_path,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit("run baseline_starlette.py or baseline_fastapi.py")
