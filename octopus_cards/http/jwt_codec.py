"""JWT issue and verification (contract 3.2, 3.5; RFC 8725 hygiene). Pure: no database."""

import collections
import dataclasses
import datetime
import secrets
import threading
import time

import jwt

ISSUER = "octopus-cards"
ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"
REQUIRED_CLAIMS = ("iss", "sub", "client_id", "jti", "iat", "nbf", "exp", "token_use")
# Headers that would let a token choose its own key (RFC 8725 3.10) or demand unknown processing.
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
# Ours are about 400 characters; anything far longer is refused before it is parsed.
MAX_TOKEN_LENGTH = 4096
# Tokens that passed every check but expiry, remembered per codec: a client sends its access token
# many times, and checking it again costs more than the rest of an authenticated GET's own work.
VERIFIED_CACHE_SIZE = 10_000


class TokenRejected(Exception):
    """The token is not an acceptable token of the expected use."""

    def __init__(self, expired_token=None):
        super().__init__("token expired" if expired_token else "token invalid")
        # An expired token is otherwise authentic: refresh still detects its reuse.
        self.expired_token = expired_token

    @property
    def expired(self):
        return self.expired_token is not None


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    token_use: str
    issued_at: datetime.datetime
    expires_at: datetime.datetime

    @property
    def expires_at_text(self):
        return self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class VerifiedToken:
    client_id: int
    jti: str
    token_use: str


def utc(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).replace(tzinfo=None)


class TokenCodec:
    def __init__(self, keys, active_kid, access_ttl, refresh_ttl, leeway=0, clock=time.time):
        self.keys = dict(keys)
        self.active_kid = active_kid
        self.lifetimes = {ACCESS: access_ttl, REFRESH: refresh_ttl}
        self.leeway = leeway
        self.clock = clock
        # token -> (VerifiedToken, exp), oldest first. An OrderedDict, as a dict's first key is found
        # by stepping over every key deleted before it.
        self._verified = collections.OrderedDict()
        self._verified_lock = threading.Lock()

    def issue_pair(self, client_id):
        """An access and a refresh token for the client, issued now."""
        now = int(self.clock())
        return self._issue(client_id, ACCESS, now), self._issue(client_id, REFRESH, now)

    def _issue(self, client_id, token_use, now):
        jti = secrets.token_urlsafe(16)
        exp = now + self.lifetimes[token_use]
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
        token = jwt.encode(claims, self.keys[self.active_kid], algorithm=ALGORITHM, headers={"kid": self.active_kid})
        return IssuedToken(token, jti, token_use, utc(now), utc(exp))

    def verify(self, token, token_use):
        """Check format, header, signature, claims and type, then expiry; TokenRejected if any fails.

        Only expiry changes with time (`iat` and `nbf` stay passed), so a token that passed the
        rest once is then checked for its use and expiry alone."""
        known = self._verified.get(token)
        if known is None:
            known = self._check(token)
        verified, exp = known
        if verified.token_use != token_use:
            raise TokenRejected()
        if exp <= int(self.clock()) - self.leeway:
            raise TokenRejected(expired_token=verified)
        return verified

    def _check(self, token):
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                leeway=self.leeway,
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenRejected() from None
        known = self._typed(claims), claims["exp"]
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
            self._verified[token] = known
        return known

    def _key_for(self, token):
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected()
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenRejected() from None
        kid = header.get("kid")
        if (
            header.get("alg") != ALGORITHM
            or not isinstance(kid, str)
            or kid not in self.keys
            or any(name in header for name in FORBIDDEN_HEADERS)
        ):
            raise TokenRejected()
        return self.keys[kid]

    def _typed(self, claims):
        client_id = claims["client_id"]
        now = int(self.clock())
        well_typed = (
            isinstance(client_id, int)
            and not isinstance(client_id, bool)
            and claims["sub"] == str(client_id)
            and isinstance(claims["jti"], str)
            and all(_is_seconds(claims[name]) for name in ("iat", "nbf", "exp"))
            and claims["token_use"] in (ACCESS, REFRESH)
            and claims["iat"] <= now + self.leeway
            and claims["nbf"] <= now + self.leeway
        )
        if not well_typed:
            raise TokenRejected()
        return VerifiedToken(client_id, claims["jti"], claims["token_use"])


def _is_seconds(value):
    return isinstance(value, int) and not isinstance(value, bool)
