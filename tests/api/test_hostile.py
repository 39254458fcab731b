"""A corpus of hostile requests: every one is refused with a 4xx in the envelope, none is a 5xx.

Built from the attacks mature auth servers have met: algorithm confusion, key-id games, embedded
keys, forged and malformed tokens, header tricks, hostile JSON, hostile ids and forged forwarding.
"""

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.inprocess import TEST_PEER, bearer

KID = "test-kid"
KEY = ("k" * 40).encode()  # the session's signing key (tests/conftest.py)


def b64(data):
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(header, claims, key=KEY):
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(client_id=1, **overrides):
    now = 1_900_000_000 - 10**8  # well inside any sane clock
    base = {
        "iss": "octopus-cards",
        "sub": str(client_id),
        "client_id": client_id,
        "jti": "forged-jti",
        "iat": now,
        "nbf": now,
        "exp": now + 10**9,
        "token_use": "access",
    }
    return {**base, **overrides}


HEADER = {"alg": "HS256", "kid": KID, "typ": "JWT"}

FORGED_TOKENS = {
    "alg none": b64({"alg": "none", "kid": KID}) + "." + b64(claims()) + ".",
    "alg None": b64({"alg": "None", "kid": KID}) + "." + b64(claims()) + ".",
    "alg HS512 same key": b64({"alg": "HS512", "kid": KID})
    + "."
    + b64(claims())
    + "."
    + b64(hmac.new(KEY, (b64({"alg": "HS512", "kid": KID}) + "." + b64(claims())).encode(), hashlib.sha512).digest()),
    "alg RS256 key confusion": b64({"alg": "RS256", "kid": KID}) + "." + b64(claims()) + ".c2ln",
    "alg ES256": b64({"alg": "ES256", "kid": KID}) + "." + b64(claims()) + ".c2ln",
    "kid missing": sign({"alg": "HS256"}, claims()),
    "kid unknown": sign({**HEADER, "kid": "other"}, claims()),
    "kid path traversal": sign({**HEADER, "kid": "../../etc/passwd"}, claims()),
    "kid sql": sign({**HEADER, "kid": "' OR '1'='1"}, claims()),
    "kid empty": sign({**HEADER, "kid": ""}, claims()),
    "kid null": sign({**HEADER, "kid": None}, claims()),
    "kid list": sign({**HEADER, "kid": [KID]}, claims()),
    "jku header": sign({**HEADER, "jku": "https://attacker.invalid/jwks.json"}, claims()),
    "x5u header": sign({**HEADER, "x5u": "https://attacker.invalid/cert.pem"}, claims()),
    "jwk header": sign({**HEADER, "jwk": {"kty": "oct", "k": b64(b"attacker")}}, claims()),
    "x5c header": sign({**HEADER, "x5c": ["MIIB"]}, claims()),
    "crit header": sign({**HEADER, "crit": ["b64"], "b64": False}, claims()),
    "other key": sign(HEADER, claims(), key=b"x" * 40),
    "empty key": sign(HEADER, claims(), key=b""),
    "valid signature, unknown jti": sign(HEADER, claims()),
    "refresh token type": sign(HEADER, claims(token_use="refresh")),
    "no token_use": sign(HEADER, {k: v for k, v in claims().items() if k != "token_use"}),
    "wrong issuer": sign(HEADER, claims(iss="evil")),
    "no issuer": sign(HEADER, {k: v for k, v in claims().items() if k != "iss"}),
    "sub/client_id mismatch": sign(HEADER, claims(sub="2")),
    "client_id as string": sign(HEADER, claims(client_id="1")),
    "client_id negative": sign(HEADER, claims(client_id=-1, sub="-1")),
    "client_id huge": sign(HEADER, claims(client_id=10**30, sub=str(10**30))),
    "exp as string": sign(HEADER, claims(exp="never")),
    "exp float": sign(HEADER, claims(exp=1e30)),
    "iat in the future": sign(HEADER, claims(iat=4_000_000_000, nbf=4_000_000_000)),
    "jti object": sign(HEADER, claims(jti={"$ne": None})),
    "payload is a list": b64(HEADER) + "." + b64([1, 2]) + ".c2ln",
    "header not json": b64(b"{not json") + "." + b64(claims()) + ".c2ln",
    "truncated": sign(HEADER, claims())[:-10],
    "two segments": ".".join(sign(HEADER, claims()).split(".")[:2]),
    "four segments": sign(HEADER, claims()) + ".extra",
    "bad base64": "eyJ!!!.eyJ!!!.!!!",
    "only dots": "..",
    "oversized": sign(HEADER, claims(pad="A" * 20_000)),
    "whitespace inside": sign(HEADER, claims()).replace(".", ". ", 1),
    "percent encoded": sign(HEADER, claims()).replace(".", "%2E"),
}


@pytest.fixture(scope="module")
def session(app, settings):
    """A real client and tokens, for attacks that start from something valid."""
    from octopus_cards import models
    from octopus_cards.models import Client, catalogue

    with models.db.connection_context():
        client, secret = Client.provision(settings.secret_pepper, "hostile-target", (), ("vouchers", "topups", "esim"))
        models.Wallet.open_funded(client.id, "USD", 1000, "hostile")  # so orders reach the database
        catalogue.import_catalogue(catalogue.demo_text())
    with app.test_client(client=TEST_PEER) as api:
        tokens = api.post("/auth/login", json={"username": client.api_key, "password": secret}).json()["data"]
    return {"client": client, "secret": secret, **tokens}


def assert_refused(response, status=None):
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    if status:
        assert response.status_code == status, response.text[:200]
    if response.request.method != "HEAD":
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"name", "code", "message"}
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text


@pytest.mark.parametrize("name", sorted(FORGED_TOKENS))
@pytest.mark.parametrize("path", ["/api/v1/countries", "/api/v1/categories/1", "/auth/logout"])
def test_forged_bearer_tokens(api, name, path):
    method = "POST" if path == "/auth/logout" else "GET"
    response = api.request(method, path, headers={"Authorization": f"Bearer {FORGED_TOKENS[name]}".encode()})
    assert_refused(response, 401)


@pytest.mark.parametrize("name", sorted(FORGED_TOKENS))
def test_forged_refresh_tokens(api, name):
    token = FORGED_TOKENS[name].replace('"access"', '"refresh"')
    assert_refused(api.post("/auth/refresh", json={"refresh_token": token}), 401)


AUTHORIZATION_TRICKS = [
    b"Bearer",
    b"Bearer ",
    b"Bearer  ",
    b"Bearer\t{token}",
    b"Bearer  {token}",
    b"Bearer {token} ",
    b"Basic {token}",
    b"Digest {token}",
    b"Token {token}",
    b"JWT {token}",
    b"{token}",
    b"Bearer={token}",
    b"Bearer:{token}",
    b"Bearer {token},Bearer {token}",
    b"Bearer \xff\xfe",
    b"Bearer \xc3\xa9",
    b"Bearer " + b"A" * 8000,
    b"Bearer null",
    b"Bearer undefined",
    b"Bearer {token}.",
    b"Bearer .{token}",
    b"bearer{token}",
]


@pytest.mark.parametrize("template", AUTHORIZATION_TRICKS)
def test_authorization_header_tricks(api, session, template):
    value = template.replace(b"{token}", session["access_token"].encode())
    assert_refused(api.get("/api/v1/countries", headers={"Authorization": value}), 401)


def test_duplicated_authorization_headers(api, session):
    token = session["access_token"]
    for pair in (
        (f"Bearer {token}", "Bearer garbage"),
        ("Bearer garbage", f"Bearer {token}"),
        (f"Bearer {token}", f"Bearer {token}"),
    ):
        response = api.get("/api/v1/countries", headers=[("Authorization", value) for value in pair])
        assert_refused(response, 401)


def nested(depth):
    return b"[" * depth + b"]" * depth


HOSTILE_BODIES = {
    "deeply nested array": nested(100_000),
    "deeply nested object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "nested inside a field": b'{"username": ' + nested(10_000) + b', "password": "x"}',
    "huge number": b'{"username": ' + b"9" * 5000 + b', "password": "x"}',
    "NaN": b'{"username": NaN, "password": "x"}',
    "Infinity": b'{"username": "a", "password": Infinity}',
    "utf-16": '{"username": "a", "password": "b"}'.encode("utf-16"),
    "latin-1": '{"username": "é", "password": "b"}'.encode("latin-1"),
    "lone surrogate escape": b'{"username": "\\ud800", "password": "b"}',
    "nul bytes": b'{"username": "a\x00", "password": "b"}',
    "bom": b'\xef\xbb\xbf{"username": "a", "password": "b"}',
    "trailing garbage": b'{"username": "a", "password": "b"} trailing',
    "two documents": b'{"username": "a"}{"password": "b"}',
    "single quotes": b"{'username': 'a', 'password': 'b'}",
    "comment": b'{"username": "a", /* x */ "password": "b"}',
    "duplicate keys": b'{"username": "a", "username": 5, "password": "b"}',
    "wide object": b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(50_000)) + b"}",
    "long string": b'{"username": "' + b"a" * 500_000 + b'", "password": "b"}',
    "over the size limit": b'{"username": "' + b"a" * 1_100_000 + b'", "password": "b"}',
    "empty": b"",
    "whitespace": b" \n\t ",
    "null": b"null",
    "true": b"true",
    "array of credentials": b'[{"username": "a", "password": "b"}]',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
@pytest.mark.parametrize("path", ["/auth/login", "/auth/refresh"])
def test_hostile_json_bodies(api, name, path):
    response = api.post(path, content=HOSTILE_BODIES[name], headers={"Content-Type": "application/json"})
    assert_refused(response)


WRONG_TYPES = [None, True, 0, -1, 1.5, 10**40, "", [], {}, ["a"], {"a": "b"}]


@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
@pytest.mark.parametrize("field", ["username", "password"])
def test_wrong_types_in_every_login_field(api, field, value):
    body = {"username": "ock_x", "password": "secret", field: value}
    response = api.post("/auth/login", json=body)
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == "Username and password are required"


@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
def test_wrong_types_in_the_refresh_field(api, value):
    response = api.post("/auth/refresh", json={"refresh_token": value})
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == "Refresh token is required"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/json",
        "application/jsonx",
        "application/problem+json; x",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "*/*",
        "application/*",
        "",
        "application/json\x00",
    ],
)
def test_hostile_content_types(api, content_type):
    response = api.post(
        "/auth/login", content=b'{"username": "a", "password": "b"}', headers={"Content-Type": content_type.encode()}
    )
    assert_refused(response)


BAD_IDS = [
    "-1",
    "0",
    "-0",
    "2147483648",
    "9" * 40,
    "1e9",
    "0x1F",
    "1.0",
    "+5",
    "abc",
    "null",
    "%00",
    "%2e%2e",
    "1;DROP TABLE country",
    "1%20OR%201=1",
    "１２",
    "NaN",
    "Infinity",
    "%F0%9F%92%A9",
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize("resource", ["countries", "currencies", "categories", "subcategories", "transactions"])
def test_hostile_ids(api, session, resource, bad_id):
    response = api.get(f"/api/v1/{resource}/{bad_id}", headers=bearer(session["access_token"]))
    assert_refused(response, 400)
    assert response.json()["error"]["message"].startswith("Invalid ")


# Query values that must be refused with the parameter's name, never parsed into something else.
HOSTILE_QUERY_VALUES = BAD_IDS + ["", " 1", "1 ", "00000000000000000000001e0", "1_000", "٣", "true", "[1]", "{}"]
PAGED_LISTS = {
    "/api/v1/wallets": ("page", "limit", "currency"),
    "/api/v1/transactions": ("page", "limit", "wallet_id"),
}


@pytest.mark.parametrize("value", HOSTILE_QUERY_VALUES)
@pytest.mark.parametrize("path, parameter", [(p, q) for p, qs in PAGED_LISTS.items() for q in qs])
def test_hostile_list_parameters(api, session, path, parameter, value):
    if parameter == "currency" and value.isascii() and value.isalpha() and len(value) == 3:
        return  # `abc` and `NaN` are well-formed codes: an empty page, not an error (contract 15.1, item 51)
    response = api.get(path, params={parameter: value}, headers=bearer(session["access_token"]))
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == f"{parameter} is invalid"


@pytest.mark.parametrize(
    "query", ["currency=usd%00", "currency=%C3%9CSD", "currency=us%0a", "currency=USD&currency=EUR", "limit=1&limit=x"]
)
def test_hostile_list_queries_never_fail_loudly(api, session, query):
    response = api.get(f"/api/v1/wallets?{query}", headers=bearer(session["access_token"]))
    assert response.status_code in (200, 400), response.text[:200]
    if response.status_code == 400:
        assert_refused(response, 400)


FORWARDING_TRICKS = [
    {"X-Forwarded-For": "203.0.113.5"},
    {"X-Forwarded-For": "203.0.113.5, 198.51.100.1"},
    {"X-Forwarded-For": "::ffff:203.0.113.5"},
    {"X-Real-IP": "203.0.113.5"},
    {"Forwarded": "for=203.0.113.5"},
    {"X-Client-IP": "203.0.113.5"},
    {"True-Client-IP": "203.0.113.5"},
    {"CF-Connecting-IP": "203.0.113.5"},
]


@pytest.mark.parametrize("headers", FORWARDING_TRICKS, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
def test_spoofed_forwarding_headers_do_not_pass_the_allowlist(app, new_client, headers):
    _, key, secret = new_client(networks=["203.0.113.0/24"])
    with app.test_client(client=("198.51.100.200", 1234)) as outsider:
        assert_refused(outsider.post("/auth/login", json={"username": key, "password": secret}, headers=headers), 403)


@pytest.mark.parametrize(
    "peer",
    [
        "::ffff:198.51.100.7",
        "::ffff:c633:6407",
        "0:0:0:0:0:ffff:198.51.100.7",
        "64:ff9b::198.51.100.7",
        "2002:c633:6407::1",
        "::198.51.100.7",
    ],
)
def test_ipv6_encodings_of_an_outside_ipv4_do_not_pass(app, new_client, peer):
    _, key, secret = new_client(networks=["203.0.113.0/24"])
    with app.test_client(client=(peer, 1234)) as outsider:
        assert_refused(outsider.post("/auth/login", json={"username": key, "password": secret}), 403)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_bytes_as_a_token_are_refused(api, raw):
    response = api.get(
        "/api/v1/countries",
        headers={"Authorization": b"Bearer " + raw.replace(b"\n", b"").replace(b"\r", b"").replace(b"\x00", b"")},
    )
    assert 400 <= response.status_code < 500


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_any_text_as_a_refresh_token_is_refused(api, text):
    response = api.post("/auth/refresh", json={"refresh_token": text})
    assert response.status_code in (400, 401)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_bytes_as_a_login_body_are_refused(api, raw):
    response = api.post("/auth/login", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/json"


# -- the voucher endpoints: sort JSON, huge quantities, precision abuse, unicode -------------------

HOSTILE_ORDER_BODIES = [
    '{"product_id": 1001, "denomination": 1e400, "quantity": 1}',
    '{"product_id": 1001, "denomination": -1e400, "quantity": 1}',
    '{"product_id": 1001, "denomination": 1e-400, "quantity": 1}',
    '{"product_id": 1001, "denomination": 10.1234567890123456789012345678901234567890, "quantity": 1}',
    '{"product_id": 1001, "denomination": 0.00000000000000000000000001, "quantity": 1}',
    '{"product_id": 1001, "denomination": -0.0, "quantity": 1}',
    '{"product_id": 1001, "denomination": 1000000000.0000000000000001, "quantity": 1}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1e2}',
    '{"product_id": 1001, "denomination": 50, "quantity": 99999999999999999999999999}',
    '{"product_id": 1001, "denomination": 50, "quantity": -0}',
    '{"product_id": 1001, "denomination": 50, "quantity": true}',
    '{"product_id": "1001", "denomination": 50, "quantity": 1}',
    '{"product_id": {"$gt": 0}, "denomination": 50, "quantity": 1}',
    '{"product_id": [1001], "denomination": 50, "quantity": 1}',
    '{"product_id": 1001, "denomination": "50", "quantity": 1}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "wallet_id": -1}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "wallet_id": 1e30}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "client_reference": "caf\\u00e9"}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "client_reference": "a\\u0000b"}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "client_reference": "\\ud83d\\udca9"}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "client_reference": "' + "x" * 256 + '"}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "client_reference": null}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "email": "\\u00fc@\\u00fc.de\\u0000"}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "email": "' + "a" * 250 + '@b.cd"}',
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "extra": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"product_id": 1001, "denomination": 50, "quantity": 1, "product_id": "again"}',
    "[]",
    '"order"',
]


@pytest.mark.parametrize("raw", HOSTILE_ORDER_BODIES)
@pytest.mark.parametrize(
    "path", ["/api/v1/orders", "/api/v1/products/1001/charges", "/api/v1/products/1001/availability"]
)
def test_hostile_voucher_bodies(api, session, path, raw):
    """Never a 5xx: refused in the envelope, or (a field the operation does not read) answered."""
    headers = {**bearer(session["access_token"]), "Content-Type": "application/json"}
    response = api.post(path, content=raw.encode(), headers=headers)
    assert response.status_code < 500, response.text[:200]
    if response.status_code >= 400:
        assert_refused(response)


HOSTILE_SORTS = [
    '{"Field": "name", "Direction": {"$ne": 1}}', "[" * 3000, '{"Field": "name", "Field": "__class__"}', "null",
    '{"Field": "name\\u0000"}', '{"Field": "ｎａｍｅ"}', "{" + '"a":1,' * 2000 + '"Field":"id"}', "1e400",
]  # fmt: skip


@pytest.mark.parametrize("sort", HOSTILE_SORTS)
def test_hostile_sorts(api, session, sort):
    response = api.get("/api/v1/products", params={"sort": sort}, headers=bearer(session["access_token"]))
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == "sort is invalid"


@pytest.mark.parametrize("query", ["sort=%ED%A0%80", "sort=%FF%FE", "sort=%7B%22Field%22%3A%22name%22%7D%00"])
def test_sorts_that_are_not_text(api, session, query):
    response = api.get(f"/api/v1/products?{query}", headers=bearer(session["access_token"]))
    assert_refused(response, 400)


# -- the top-up endpoints: input_data abuse, amounts, mobile numbers, ids -------------------------

TOPUP_BODY_PATHS = ["/api/v1/topups/lookup", "/api/v1/topups/charges", "/api/v1/topups/orders"]
# Valid but for the part under attack: AT&T (USD, a range of 5-100) takes 10 and this phone number.
PHONE = '"+12015550123"'


def members(*pairs):
    """A JSON object written out, members as given (duplicates, escapes and all)."""
    return "{" + ", ".join(pairs) + "}"


def phone(value, *more):
    return members(f'"phone_number": {value}', *more)


def order(input_data=None, amount="10"):
    input_data = phone(PHONE) if input_data is None else input_data
    return members('"product_id": 4301', f'"amount": {amount}', f'"input_data": {input_data}')


def nested_objects(depth, leaf='"x"'):
    return '{"a":' * depth + leaf + "}" * depth


def many_keys(count):
    return [f'"k{i}": "v"' for i in range(count)]


LONG_KEY = "k" * 100_000
# input_data (the order's only free-form object) -> (status, message): every one refused.
HOSTILE_INPUT_DATA = {
    "nested 10000 deep": (nested_objects(10_000), 400, "Invalid request body"),
    "nested 10000 deep in the value": (phone(nested_objects(10_000)), 400, "Invalid request body"),
    "nested arrays 100000 deep": (phone(nested(100_000).decode()), 400, "Invalid request body"),
    "nested 500 deep": (nested_objects(500), 400, "input_data.a is not allowed"),
    "nested 500 deep in the value": (phone(nested_objects(500)), 400, "input_data.phone_number is invalid"),
    "value of 1 MB": (phone(f'"{"9" * 1_048_576}"'), 413, "Request body exceeds 1048576 bytes"),
    "value of 1,000,000 characters": (phone(f'"{"9" * 1_000_000}"'), 400, "input_data.phone_number is invalid"),
    "value of 129 characters": (phone(f'"{"9" * 129}"'), 400, "input_data.phone_number is invalid"),
    "5000 unknown keys": (members(*many_keys(5000)), 400, "input_data.k0 is not allowed"),
    "5000 unknown keys after the field": (phone(PHONE, *many_keys(5000)), 400, "input_data.k0 is not allowed"),
    "key of 100,000 characters": (phone(PHONE, f'"{LONG_KEY}": "x"'), 400, f"input_data.{LONG_KEY} is not allowed"),
    "integer": (phone("12015550123"), 400, "input_data.phone_number is invalid"),
    "float": (phone("1.5"), 400, "input_data.phone_number is invalid"),
    "huge exponent": (phone("1e400"), 400, "input_data.phone_number is invalid"),
    "true": (phone("true"), 400, "input_data.phone_number is invalid"),
    "false": (phone("false"), 400, "input_data.phone_number is invalid"),
    "empty array": (phone("[]"), 400, "input_data.phone_number is invalid"),
    "array of the number": (phone(f"[{PHONE}]"), 400, "input_data.phone_number is invalid"),
    "empty object": (phone("{}"), 400, "input_data.phone_number is invalid"),
    "operator object": (phone('{"$ne": null}'), 400, "input_data.phone_number is invalid"),
    "null": (phone("null"), 400, "input_data.phone_number is required"),
    "empty string": (phone('""'), 400, "input_data.phone_number is invalid"),
    "lone surrogate": (phone('"\\ud800"'), 400, "Invalid request body"),
    "duplicate key, last not a string": (phone(PHONE, '"phone_number": 5'), 400, "input_data.phone_number is invalid"),
    "missing field": ("{}", 400, "input_data.phone_number is required"),
    "empty key": (phone(PHONE, '"": "x"'), 400, "input_data. is not allowed"),
    "NUL key": (phone(PHONE, '"\\u0000": "x"'), 400, "input_data.\x00 is not allowed"),
    "newline key": (phone(PHONE, '"\\n": "x"'), 400, "input_data.\n is not allowed"),
    "fullwidth key": (
        members(f'"ｐｈｏｎｅ_ｎｕｍｂｅｒ": {PHONE}'),
        400,
        "input_data.ｐｈｏｎｅ_ｎｕｍｂｅｒ is not allowed",
    ),
    "key with a NUL": (members(f'"phone_number\\u0000": {PHONE}'), 400, "input_data.phone_number\x00 is not allowed"),
    "key with a space": (members(f'" phone_number": {PHONE}'), 400, "input_data. phone_number is not allowed"),
    "upper-case key": (members(f'"PHONE_NUMBER": {PHONE}'), 400, "input_data.PHONE_NUMBER is not allowed"),
    "emoji key": (phone(PHONE, '"\\ud83d\\udca9": "x"'), 400, "input_data.\U0001f4a9 is not allowed"),
    "lone surrogate key": (phone(PHONE, '"\\udc00": "x"'), 400, "Invalid request body"),
    "__proto__": (phone(PHONE, '"__proto__": {"admin": true}'), 400, "input_data.__proto__ is not allowed"),
    "__proto__ around the field": (members(f'"__proto__": {phone(PHONE)}'), 400, "input_data.__proto__ is not allowed"),
    "constructor": (phone(PHONE, '"constructor": "x"'), 400, "input_data.constructor is not allowed"),
    "array": (f"[{PHONE}]", 400, "input_data is invalid"),
    "string": (PHONE, 400, "input_data is invalid"),
    "number": ("1", 400, "input_data is invalid"),
    "JSON null": ("null", 400, "input_data is invalid"),
}


def topup_state(api, session):
    """What a refused order must not change: the client's top-up orders and its wallets."""
    headers = bearer(session["access_token"])
    orders = api.get("/api/v1/topups/orders", headers=headers)
    wallets = api.get("/api/v1/wallets", headers=headers)
    assert orders.status_code == wallets.status_code == 200, (orders.text, wallets.text)
    return orders.headers["X-Total-Count"], wallets.json()


def post_json(api, session, path, raw):
    headers = {**bearer(session["access_token"]), "Content-Type": "application/json"}
    return api.post(path, content=raw.encode(), headers=headers)


@pytest.mark.parametrize("name", list(HOSTILE_INPUT_DATA))
def test_hostile_input_data(api, session, name):
    """A top-up order's input_data is checked by the server, once the product is found (7.7): any
    abuse is a 4xx naming the key, never a 5xx, and nothing is ordered or debited."""
    input_data, status, message = HOSTILE_INPUT_DATA[name]
    before = topup_state(api, session)
    response = post_json(api, session, "/api/v1/topups/orders", order(input_data))
    assert_refused(response, status)
    assert response.json()["error"]["message"] == message
    assert topup_state(api, session) == before


def test_the_hostile_input_data_corpus_is_refused_for_its_content_only(api, session):
    """The control: the same order with a well-formed input_data is placed (201 PENDING)."""
    response = post_json(api, session, "/api/v1/topups/orders", order())
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "PENDING"


HOSTILE_AMOUNTS = [
    "1e-30",
    "0.000000001",
    "0.001",
    "10.001",
    "10.000000000000000000001",
    "1e400",
    "-1e400",
    "1e-400",
    "1E+999999999",
    "1e-999999999",
    "9" * 5000,
    "1000000000.0000000001",
    "1e9",
    "0",
    "-0",
    "-0.0",
    "-10",
    '"10"',
    '"1e1"',
    "true",
    "null",
    "[10]",
    '{"$gt": 0}',
    "NaN",
    "Infinity",
    "0x0A",
    ".5",
    "1_0",
    "１０",
]


@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS)
@pytest.mark.parametrize("path", ["/api/v1/topups/charges", "/api/v1/topups/orders"])
def test_hostile_topup_amounts(api, session, path, amount):
    """The amount selects the variant (7.5): out of the schema's bounds, of the currency's precision,
    not a JSON number or not JSON at all, it is refused; nothing is ordered or debited."""
    before = topup_state(api, session)
    response = post_json(api, session, path, order(amount=amount))
    assert_refused(response, 400)
    refusals = ("amount is invalid", "amount is required", "Invalid amount", "Invalid request body")
    assert response.json()["error"]["message"] in refusals
    assert topup_state(api, session) == before


HOSTILE_MOBILE_NUMBERS = [
    "+１２３４５６７８",  # fullwidth digits
    "＋12015550123",  # fullwidth plus
    "+1201555012٣",  # an Arabic-Indic digit
    "+12015550123\n",
    "\n+12015550123",
    "+12015550123 ",
    " +12015550123",
    "+12015550123\u200b",
    "+1\u00a02015550123",
    "+12015550123\x00",
    "+1-201-555-0123",
    "+1 (201) 555-0123",
    "12015550123",
    "+012015550123",
    "+1234",
    "+1" + "2" * 20,
    "+" + "9" * 100_000,
    "",
    "+",
    12015550123,
    1.2015550123e10,
    True,
    None,
    ["+12015550123"],
    {"$regex": ".*"},
]


@pytest.mark.parametrize("number", HOSTILE_MOBILE_NUMBERS, ids=repr)
def test_hostile_mobile_numbers(api, session, number):
    """The lookup takes an E.164 number only (7.4): anything else is `mobile_number is invalid`
    (`required` when null), never parsed into a country by a lenient reading."""
    response = api.post(
        "/api/v1/topups/lookup", json={"mobile_number": number}, headers=bearer(session["access_token"])
    )
    assert_refused(response, 400)
    expected = "mobile_number is required" if number is None else "mobile_number is invalid"
    assert response.json()["error"]["message"] == expected


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
@pytest.mark.parametrize(
    "path", [*TOPUP_BODY_PATHS, "/api/v1/topups/orders/1/notification-email"], ids=lambda path: path.split("/")[4]
)
def test_hostile_json_bodies_on_topups(api, session, path, name):
    """The corpus of hostile JSON against every top-up operation with a body (the id of the PATCH
    is no order of this client: the body is refused first or the order is not found)."""
    before = topup_state(api, session)
    method = "PATCH" if path.endswith("notification-email") else "POST"
    headers = {**bearer(session["access_token"]), "Content-Type": "application/json"}
    response = api.request(method, path, content=HOSTILE_BODIES[name], headers=headers)
    assert_refused(response)
    assert topup_state(api, session) == before


TOPUP_ID_PATHS = [
    ("GET", "/api/v1/topups/products/{}", "product"),
    ("GET", "/api/v1/topups/products/{}/variants", "product"),
    ("GET", "/api/v1/topups/variants/{}", "variant"),
    ("GET", "/api/v1/topups/orders/{}", "order"),
    ("PATCH", "/api/v1/topups/orders/{}/notification-email", "order"),
]


@pytest.mark.parametrize("bad_id", [*BAD_IDS, "1e3", "4301%00", "4301.0", "0004301x"])
@pytest.mark.parametrize(("method", "template", "thing"), TOPUP_ID_PATHS, ids=[p[1] for p in TOPUP_ID_PATHS])
def test_hostile_topup_ids(api, session, method, template, thing, bad_id):
    response = api.request(
        method, template.format(bad_id), json={"email": "ops@example.com"}, headers=bearer(session["access_token"])
    )
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == f"Invalid {thing} ID"


HOSTILE_EMAILS = ["ops@example.com\n", "ops@example.com\ufeff", "\ufeffops@example.com", "ops@exa\x00mple.com"]


@pytest.mark.parametrize("email", HOSTILE_EMAILS)
def test_hostile_notification_emails(api, session, email):
    """The Email pattern is ECMA-262 (OpenAPI 3.0): `$` ends the text and `\\s` includes U+FEFF."""
    placed = post_json(api, session, "/api/v1/topups/orders", order())
    assert placed.status_code == 201, placed.text
    path = f"/api/v1/topups/orders/{placed.json()['id']}/notification-email"
    response = api.patch(path, json={"email": email}, headers=bearer(session["access_token"]))
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == "email is invalid"


# -- the eSIM endpoints: amounts, quantities, country codes, hostile JSON, ids ---------------------

ESIM_CHARGES, ESIM_ORDERS = "/api/v1/esim/charges", "/api/v1/esim/orders"
# Valid but for the part under attack: the Japan eSIM (USD) has a variant at 4.50 (Japan 1GB 7
# days), 4.275 after its 5 % discount, and the session's client a USD wallet.
ESIM_PRICE = "4.50"
ESIM_DEBIT = 4.275


def esim_body(*more, amount=ESIM_PRICE):
    return members('"product_id": 712', f'"amount": {amount}', *more)


def esim_state(api, session):
    """What a refused eSIM order must not change: the client's eSIM orders and its wallets."""
    headers = bearer(session["access_token"])
    orders = api.get(ESIM_ORDERS, headers=headers)
    wallets = api.get("/api/v1/wallets", headers=headers)
    assert orders.status_code == wallets.status_code == 200, (orders.text, wallets.text)
    return int(orders.headers["X-Total-Count"]), wallets.json()


def usd_balance(state):
    (wallet,) = state[1]  # the session's client has its USD wallet only
    return wallet["amount"]


def test_the_esim_corpus_is_refused_for_its_content_only(api, session):
    """The control: the quote and the order the corpus below spoils, well-formed, are answered
    (200, the order DELIVERED) and the order debits what was quoted."""
    before = esim_state(api, session)
    quoted = post_json(api, session, ESIM_CHARGES, esim_body())
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["total_payable"] == ESIM_DEBIT
    placed = post_json(api, session, ESIM_ORDERS, esim_body())
    assert placed.status_code == 200, placed.text
    assert (placed.json()["status"], placed.json()["amount"]) == ("DELIVERED", 4.5)
    after = esim_state(api, session)
    assert after[0] == before[0] + 1
    assert usd_balance(after) == round(usd_balance(before) - ESIM_DEBIT, 4)


# Amounts a hair off the variant's price: no variant has them (or the currency cannot say them).
ESIM_PRECISION_AMOUNTS = [
    "4.5000000000000000001",
    "4.49999999999999999999",
    "4.50001",
    "4.505",
    "4.5" + "0" * 5000 + "1",
    "450e-2000",
    "4.5e-1",
    "45",
]


@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS + ESIM_PRECISION_AMOUNTS)
@pytest.mark.parametrize("path", [ESIM_CHARGES, ESIM_ORDERS])
def test_hostile_esim_amounts(api, session, path, amount):
    """The amount selects the variant by its price (8.3): out of the schema's bounds, off the price
    by any fraction, not a JSON number or not JSON at all, it is refused; nothing is ordered or
    debited."""
    before = esim_state(api, session)
    response = post_json(api, session, path, esim_body(amount=amount))
    assert_refused(response, 400)
    refusals = ("amount is invalid", "amount is required", "Invalid amount", "Invalid request body")
    assert response.json()["error"]["message"] in refusals
    assert esim_state(api, session) == before


@pytest.mark.parametrize("amount", ["4.5", "4.500000", "45e-1", "0.45E1", "450E-2"])
def test_esim_amounts_spelt_otherwise_are_the_price(api, session, amount):
    """The same number however it is written: the 4.50 variant's quote."""
    response = post_json(api, session, ESIM_CHARGES, esim_body(amount=amount))
    assert response.status_code == 200, response.text
    assert (response.json()["non_discounted_total"], response.json()["total_payable"]) == (4.5, ESIM_DEBIT)


# One eSIM per order (8.4): any JSON integer is accepted and becomes 1; anything else is invalid.
INTEGER_QUANTITIES = ["1", "0", "-0", "-1", "2", str(2**31), str(2**63), str(10**30), str(-(10**30)), "9" * 400]
NOT_INTEGER_QUANTITIES = [
    "1.5",
    "0.5",
    "-1.5",
    '"1"',
    '""',
    "true",
    "false",
    "null",
    "1e400",
    "-1e400",
    "1e-400",
    "[1]",
    "{}",
    '{"$gt": 0}',
]


@pytest.mark.parametrize("quantity", INTEGER_QUANTITIES)
def test_any_integer_quantity_is_one_esim(api, session, quantity):
    before = esim_state(api, session)
    response = post_json(api, session, ESIM_ORDERS, esim_body(f'"quantity": {quantity}'))
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["amount"]) == ("DELIVERED", 4.5)
    assert "quantity" not in response.json()
    after = esim_state(api, session)
    assert after[0] == before[0] + 1
    assert usd_balance(after) == round(usd_balance(before) - ESIM_DEBIT, 4)  # one eSIM's price


@pytest.mark.parametrize("quantity", NOT_INTEGER_QUANTITIES)
def test_a_quantity_that_is_no_integer_orders_nothing(api, session, quantity):
    before = esim_state(api, session)
    response = post_json(api, session, ESIM_ORDERS, esim_body(f'"quantity": {quantity}'))
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == "quantity is invalid"
    assert esim_state(api, session) == before


HOSTILE_ESIM_BODIES = {
    "product_id as a string": members('"product_id": "712"', f'"amount": {ESIM_PRICE}'),
    "product_id as an operator": members('"product_id": {"$gt": 0}', f'"amount": {ESIM_PRICE}'),
    "product_id as an array": members('"product_id": [712]', f'"amount": {ESIM_PRICE}'),
    "product_id huge": members(f'"product_id": {10**30}', f'"amount": {ESIM_PRICE}'),
    "product_id with a fraction": members('"product_id": 712.5', f'"amount": {ESIM_PRICE}'),
    "product_id null": members('"product_id": null', f'"amount": {ESIM_PRICE}'),
    "no product_id": members(f'"amount": {ESIM_PRICE}'),
    "no amount": members('"product_id": 712'),
    "product_id again": esim_body('"product_id": "again"'),
    "wallet_id -1": esim_body('"wallet_id": -1'),
    "wallet_id 1e30": esim_body('"wallet_id": 1e30'),
    "wallet_id as a string": esim_body('"wallet_id": "1"'),
    "client_reference non-ASCII": esim_body('"client_reference": "caf\\u00e9"'),
    "client_reference with a NUL": esim_body('"client_reference": "a\\u0000b"'),
    "client_reference emoji": esim_body('"client_reference": "\\ud83d\\udca9"'),
    "client_reference lone surrogate": esim_body('"client_reference": "\\ud800"'),
    "client_reference of 256": esim_body(f'"client_reference": "{"x" * 256}"'),
    "client_reference empty": esim_body('"client_reference": ""'),
    "client_reference as a number": esim_body('"client_reference": 5'),
    "client_reference as an object": esim_body('"client_reference": {"$ne": null}'),
    "nested 5000 deep": esim_body('"extra": ' + "[" * 5000 + "]" * 5000),
    "nested 100000 deep": esim_body('"extra": ' + "[" * 100_000 + "]" * 100_000),
    "array": f"[{esim_body()}]",
    "string": '"order"',
    "number": "712",
}


@pytest.mark.parametrize("name", list(HOSTILE_ESIM_BODIES))
@pytest.mark.parametrize("path", [ESIM_CHARGES, ESIM_ORDERS], ids=["charges", "orders"])
def test_hostile_esim_bodies(api, session, path, name):
    """Never a 5xx: refused in the envelope with nothing ordered or debited, or (a field the
    operation does not read) answered."""
    before = esim_state(api, session)
    response = post_json(api, session, path, HOSTILE_ESIM_BODIES[name])
    assert response.status_code < 500, response.text[:200]
    if response.status_code >= 400:
        assert_refused(response)
        assert esim_state(api, session) == before


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
@pytest.mark.parametrize(
    "path",
    [ESIM_CHARGES, ESIM_ORDERS, f"{ESIM_ORDERS}/1/notification-email"],
    ids=["charges", "orders", "notification-email"],
)
def test_hostile_json_bodies_on_esims(api, session, path, name):
    """The corpus of hostile JSON against every eSIM operation with a body (the PATCH's body is
    refused before its order is looked for)."""
    before = esim_state(api, session)
    method = "PATCH" if path.endswith("notification-email") else "POST"
    headers = {**bearer(session["access_token"]), "Content-Type": "application/json"}
    response = api.request(method, path, content=HOSTILE_BODIES[name], headers=headers)
    assert_refused(response)
    assert esim_state(api, session) == before


# Country codes the list must refuse (`^[A-Z]{3}$`, ECMA-262: `$` ends the text), never read
# leniently (case-folded, trimmed, NFKC-normalized) into a real country.
HOSTILE_COUNTRY_CODES = [
    "jpn",
    "Jpn",
    "JP",
    "JPNX",
    "J",
    "JPN ",
    " JPN",
    "JPN\n",
    "\nJPN",
    "JPN\x00",
    "J\x00N",
    "ＪＰＮ",
    "JP\u0130",
    "JPN\u200b",
    "JP1",
    "123",
    "J.N",
    "%4A%50%4E",
    "' OR '1'='1",
    "JPN' --",
    "[JPN]",
    "{}",
    "*",
    "%",
    "_PN",
    "J" * 10_000,
]


@pytest.mark.parametrize("code", HOSTILE_COUNTRY_CODES, ids=repr)
def test_hostile_esim_country_codes(api, session, code):
    response = api.get("/api/v1/esim/products", params={"country_code": code}, headers=bearer(session["access_token"]))
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == "country_code is invalid"


@pytest.mark.parametrize("code", ["ZZZ", "AAA", "NUL", "XXX", "JPM"])
def test_well_formed_unknown_country_codes_are_an_empty_page(api, session, code):
    response = api.get("/api/v1/esim/products", params={"country_code": code}, headers=bearer(session["access_token"]))
    assert response.status_code == 200, response.text
    assert (response.json(), response.headers["X-Total-Count"]) == ([], "0")


@pytest.mark.parametrize(
    "query",
    [
        "country_code=JPN&country_code=USA",
        "country_code=JPN&country_code=jpn",
        "country_code=%ED%A0%80%ED%A0%80%ED%A0%80",
        "country_code=%FF%FE%FD",
        "country_code=JP%00",
        "country_code=",
        "country_code",
        "country_code[]=JPN",
        "country_code[$ne]=JPN",
    ],
)
def test_hostile_esim_country_queries_never_fail_loudly(api, session, query):
    """Repeated, undecodable, empty or bracketed: a page (one of the values, or no filter: an
    unknown parameter) or `country_code is invalid`, never a 5xx."""
    response = api.get(f"/api/v1/esim/products?{query}", headers=bearer(session["access_token"]))
    assert response.status_code in (200, 400), response.text[:200]
    if response.status_code == 400:
        assert_refused(response, 400)
        assert response.json()["error"]["message"] == "country_code is invalid"
    else:
        assert isinstance(response.json(), list)


ESIM_ID_PATHS = [
    ("GET", "/api/v1/esim/products/{}", "product"),
    ("GET", "/api/v1/esim/products/{}/variants", "product"),
    ("GET", "/api/v1/esim/variants/{}", "variant"),
    ("GET", "/api/v1/esim/orders/{}", "order"),
    ("PATCH", "/api/v1/esim/orders/{}/notification-email", "order"),
]


@pytest.mark.parametrize("bad_id", [*BAD_IDS, "1e3", "712%00", "712.0", "0000712x", "712 ", "%20712"])
@pytest.mark.parametrize(("method", "template", "thing"), ESIM_ID_PATHS, ids=[p[1] for p in ESIM_ID_PATHS])
def test_hostile_esim_ids(api, session, method, template, thing, bad_id):
    response = api.request(
        method, template.format(bad_id), json={"email": "ops@example.com"}, headers=bearer(session["access_token"])
    )
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == f"Invalid {thing} ID"


@pytest.mark.parametrize("email", HOSTILE_EMAILS)
def test_hostile_esim_notification_emails(api, session, email):
    placed = post_json(api, session, ESIM_ORDERS, esim_body())
    assert placed.status_code == 200, placed.text
    path = f"{ESIM_ORDERS}/{placed.json()['id']}/notification-email"
    response = api.patch(path, json={"email": email}, headers=bearer(session["access_token"]))
    assert_refused(response, 400)
    assert response.json()["error"]["message"] == "email is invalid"
