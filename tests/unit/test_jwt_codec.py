"""Unit: JWT issue and verification (contract 3.2, 3.5; RFC 8725)."""

import base64
import hashlib
import hmac
import json

import jwt
import pytest

from octopus_cards.http import jwt_codec
from octopus_cards.http.jwt_codec import ACCESS, REFRESH, TokenCodec, TokenRejected

KEY = b"s" * 32
OTHER_KEY = b"o" * 32
NOW = 1_750_000_000


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def codec(clock):
    return TokenCodec({"k1": KEY, "k2": OTHER_KEY}, "k1", 3600, 604800, leeway=0, clock=clock)


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forge(header, claims, key=KEY):
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def valid_claims(**overrides):
    claims = {
        "iss": "octopus-cards",
        "sub": "42",
        "client_id": 42,
        "jti": "abc",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 60,
        "token_use": ACCESS,
    }
    claims.update(overrides)
    return claims


def test_pair_has_every_claim_and_header(codec):
    access, refresh = codec.issue_pair(42)
    assert access.token.startswith("eyJhbGciOiJIUzI1NiIs")
    assert jwt.get_unverified_header(access.token) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    claims = claims_of(access.token)
    assert claims == {
        "iss": "octopus-cards",
        "sub": "42",
        "client_id": 42,
        "jti": access.jti,
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
        "token_use": "access",
    }
    assert claims_of(refresh.token)["exp"] == NOW + 604800
    assert claims_of(refresh.token)["token_use"] == "refresh"
    assert access.jti != refresh.jti and len(access.jti) >= 22  # 128 random bits
    assert access.expires_at_text == "2025-06-15T16:06:40Z"


def test_verify_round_trip(codec):
    access, refresh = codec.issue_pair(7)
    assert codec.verify(access.token, ACCESS).client_id == 7
    assert codec.verify(refresh.token, REFRESH).jti == refresh.jti


def test_wrong_use_is_rejected_even_when_expired(codec, clock):
    access, refresh = codec.issue_pair(7)
    with pytest.raises(TokenRejected) as rejected:
        codec.verify(refresh.token, ACCESS)
    assert not rejected.value.expired
    clock.now += 10**7
    with pytest.raises(TokenRejected) as rejected:
        codec.verify(refresh.token, ACCESS)
    assert not rejected.value.expired
    with pytest.raises(TokenRejected):
        codec.verify(access.token, REFRESH)


class CheckedInFull(BaseException):
    pass


def checked_in_full(*args, **kwargs):
    raise CheckedInFull()


def test_a_token_verified_once_is_checked_again_for_its_use_and_expiry_only(codec, clock, monkeypatch):
    access, refresh = codec.issue_pair(7)
    assert codec.verify(access.token, ACCESS).client_id == 7
    assert codec.verify(refresh.token, REFRESH).client_id == 7
    monkeypatch.setattr(jwt, "decode", checked_in_full)
    assert codec.verify(access.token, ACCESS).jti == access.jti
    with pytest.raises(TokenRejected) as rejected:
        codec.verify(access.token, REFRESH)
    assert not rejected.value.expired
    clock.now = NOW + 3600
    with pytest.raises(TokenRejected) as rejected:
        codec.verify(access.token, ACCESS)
    assert rejected.value.expired and rejected.value.expired_token.jti == access.jti


def test_the_verified_tokens_remembered_are_bounded_oldest_first(codec, monkeypatch):
    monkeypatch.setattr(jwt_codec, "VERIFIED_CACHE_SIZE", 3)
    first, *later = [codec.issue_pair(client_id)[0].token for client_id in range(1, 6)]
    for token in [first, *later]:
        codec.verify(token, ACCESS)
    assert list(codec._verified) == later[-3:]
    monkeypatch.setattr(jwt, "decode", checked_in_full)
    with pytest.raises(CheckedInFull):
        codec.verify(first, ACCESS)


@pytest.mark.parametrize("leeway", [0, 5])
def test_expiry_boundary(clock, leeway):
    codec = TokenCodec({"k1": KEY}, "k1", 60, 600, leeway=leeway, clock=clock)
    access, _ = codec.issue_pair(1)
    clock.now = NOW + 60 + leeway - 1
    assert codec.verify(access.token, ACCESS).client_id == 1
    clock.now = NOW + 60 + leeway
    with pytest.raises(TokenRejected) as rejected:
        codec.verify(access.token, ACCESS)
    assert rejected.value.expired and rejected.value.expired_token.client_id == 1


@pytest.mark.parametrize("leeway", [0, 5])
def test_not_yet_valid_boundary(clock, leeway):
    codec = TokenCodec({"k1": KEY}, "k1", 60, 600, leeway=leeway, clock=clock)
    token = forge({"alg": "HS256", "kid": "k1", "typ": "JWT"}, valid_claims(iat=NOW + leeway, nbf=NOW + leeway))
    assert codec.verify(token, ACCESS)
    token = forge({"alg": "HS256", "kid": "k1", "typ": "JWT"}, valid_claims(iat=NOW + leeway + 1, nbf=NOW + leeway + 1))
    with pytest.raises(TokenRejected) as rejected:
        codec.verify(token, ACCESS)
    assert not rejected.value.expired


def test_verifies_with_an_older_kid_but_signs_with_the_active_one(clock):
    old = TokenCodec({"k2": OTHER_KEY}, "k2", 60, 600, clock=clock)
    token = old.issue_pair(3)[0].token
    rotated = TokenCodec({"k1": KEY, "k2": OTHER_KEY}, "k1", 60, 600, clock=clock)
    assert rotated.verify(token, ACCESS).client_id == 3
    assert jwt.get_unverified_header(rotated.issue_pair(3)[0].token)["kid"] == "k1"
    removed = TokenCodec({"k1": KEY}, "k1", 60, 600, clock=clock)
    with pytest.raises(TokenRejected):
        removed.verify(token, ACCESS)


HEADER = {"alg": "HS256", "kid": "k1", "typ": "JWT"}

HOSTILE = {
    "alg none": lambda: b64({"alg": "none", "kid": "k1"}) + "." + b64(valid_claims()) + ".",
    "HS512": lambda: jwt.encode(valid_claims(), KEY * 2, algorithm="HS512", headers={"kid": "k1"}),
    "no kid": lambda: forge({"alg": "HS256", "typ": "JWT"}, valid_claims()),
    "unknown kid": lambda: forge({**HEADER, "kid": "nope"}, valid_claims()),
    "numeric kid": lambda: forge({**HEADER, "kid": 1}, valid_claims()),
    "kid of another key": lambda: forge({**HEADER, "kid": "k2"}, valid_claims()),
    "jku": lambda: forge({**HEADER, "jku": "https://evil.invalid/jwks"}, valid_claims()),
    "x5u": lambda: forge({**HEADER, "x5u": "https://evil.invalid/cert"}, valid_claims()),
    "jwk": lambda: forge({**HEADER, "jwk": {"kty": "oct", "k": "AAAA"}}, valid_claims()),
    "x5c": lambda: forge({**HEADER, "x5c": ["AAAA"]}, valid_claims()),
    "crit": lambda: forge({**HEADER, "crit": ["exp"]}, valid_claims()),
    "wrong key": lambda: forge(HEADER, valid_claims(), key=b"x" * 32),
    "wrong issuer": lambda: forge(HEADER, valid_claims(iss="someone-else")),
    "sub mismatch": lambda: forge(HEADER, valid_claims(sub="43")),
    "client_id string": lambda: forge(HEADER, valid_claims(client_id="42")),
    "client_id bool": lambda: forge(HEADER, valid_claims(client_id=True, sub="True")),
    "float iat": lambda: forge(HEADER, valid_claims(iat=NOW + 0.5)),
    "unknown use": lambda: forge(HEADER, valid_claims(token_use="id")),
    "missing jti": lambda: forge(HEADER, {k: v for k, v in valid_claims().items() if k != "jti"}),
    "missing nbf": lambda: forge(HEADER, {k: v for k, v in valid_claims().items() if k != "nbf"}),
    "missing token_use": lambda: forge(HEADER, {k: v for k, v in valid_claims().items() if k != "token_use"}),
    "truncated": lambda: forge(HEADER, valid_claims())[:-5],
    "two parts": lambda: ".".join(forge(HEADER, valid_claims()).split(".")[:2]),
    "garbage": lambda: "not-a-jwt",
    "empty": lambda: "",
    "non-ascii": lambda: "eyJ€.eyJ€.sig",
    "header not json": lambda: "bm90IGpzb24." + b64(valid_claims()) + ".c2ln",
    "header is a list": lambda: b64([1, 2]) + "." + b64(valid_claims()) + ".c2ln",
    "oversized": lambda: forge(HEADER, valid_claims(pad="x" * 100_000)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_tokens_are_rejected_as_invalid(codec, name):
    with pytest.raises(TokenRejected) as rejected:
        codec.verify(HOSTILE[name](), ACCESS)
    assert not rejected.value.expired


def test_oversized_but_valid_token_still_verifies(codec):
    # The hostile case above is refused for its size, not for its extra claim.
    assert codec.verify(forge(HEADER, valid_claims(pad="x" * 1000)), ACCESS).client_id == 42
