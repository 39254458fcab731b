"""API: /auth/login, /auth/refresh, /auth/logout and bearer validation, every contract string."""

import datetime

import jwt
import peewee
import pytest

from octopus_cards import models
from octopus_cards.app import create_app
from octopus_cards.http.jwt_codec import TokenCodec
from octopus_cards.models import Token

from support.inprocess import TEST_PEER, bearer, make_settings

CREDENTIALS_REQUIRED = {
    "name": "ValidationException",
    "code": "VALIDATION_FAILURE",
    "message": "Username and password are required",
}
REFRESH_REQUIRED = {"name": "ValidationException", "code": "VALIDATION_FAILURE", "message": "Refresh token is required"}
SYNTAX = {"name": "SyntaxError", "code": "SYNTAX_ERROR", "message": "Invalid request body"}
MEDIA_TYPE = {
    "name": "UnsupportedMediaTypeError",
    "code": "UNSUPPORTED_MEDIA_TYPE",
    "message": "Content-Type must be application/json",
}
FORBIDDEN = {"name": "ForbiddenError", "code": "FORBIDDEN", "message": "IP address not authorized"}


def unauthorized(message):
    return {"name": "UnauthorizedError", "code": "UNAUTHORIZED", "message": message}


def assert_error(response, status, error, challenge=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": error}
    assert response.headers["x-request-id"]
    if status == 401:
        assert response.headers["www-authenticate"] == challenge


def tokens_of(client):
    with models.db.connection_context():
        return list(Token.select().where(Token.client == client.id))


def post_json(api, path, raw, content_type="application/json"):
    return api.post(path, content=raw, headers={"Content-Type": content_type})


# ---- login -----------------------------------------------------------------------------


def test_login_success_shape(api, new_client):
    client, key, secret = new_client()
    response = api.post("/auth/login", json={"username": key, "password": secret})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"access_token", "refresh_token", "access_expires_at", "refresh_expires_at", "client_id"}
    assert data["client_id"] == client.id
    for kind in ("access", "refresh"):
        token = data[f"{kind}_token"]
        assert token.startswith("eyJhbGciOiJIUzI1NiIs")
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["token_use"] == kind and claims["sub"] == str(client.id)
        expires = datetime.datetime.fromtimestamp(claims["exp"], datetime.UTC)
        assert data[f"{kind}_expires_at"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    access = jwt.decode(data["access_token"], options={"verify_signature": False})
    refresh = jwt.decode(data["refresh_token"], options={"verify_signature": False})
    assert access["exp"] - access["iat"] == 3600 and refresh["exp"] - refresh["iat"] == 604800


def test_login_accepts_json_with_charset(api, new_client):
    _, key, secret = new_client()
    response = post_json(
        api, "/auth/login", f'{{"username":"{key}","password":"{secret}"}}', "application/json; charset=utf-8"
    )
    assert response.status_code == 200


def test_earlier_families_stay_valid_after_another_login(api, new_client, login):
    _, key, secret = new_client()
    first, second = login(key, secret), login(key, secret)
    for tokens in (first, second):
        assert api.get("/api/v1/currencies", headers=bearer(tokens["access_token"])).status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_login_wrong_content_type(api, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post("/auth/login", content=b'{"username":"a","password":"b"}', headers=headers)
    assert_error(response, 415, MEDIA_TYPE)
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "raw", [b"{", b'{"username": "a",}', b"\xff\xfe\x00", b'{"username": "\xe9"}', b"NaN", b"[1, 2"]
)
def test_login_malformed_body(api, raw):
    assert_error(post_json(api, "/auth/login", raw), 400, SYNTAX)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{}",
        b"[]",
        b'"text"',
        b"null",
        b"42",
        b'{"username": "a"}',
        b'{"password": "b"}',
        b'{"username": null, "password": "b"}',
        b'{"username": "a", "password": null}',
        b'{"username": "", "password": "b"}',
        b'{"username": "a", "password": ""}',
        b'{"username": 1, "password": "b"}',
        b'{"username": "a", "password": ["b"]}',
    ],
)
def test_login_schema_violations(api, raw):
    assert_error(post_json(api, "/auth/login", raw), 400, CREDENTIALS_REQUIRED)


def test_login_unknown_fields_are_ignored(api, new_client):
    _, key, secret = new_client()
    assert api.post("/auth/login", json={"username": key, "password": secret, "extra": 1}).status_code == 200


def test_login_invalid_credentials_are_indistinguishable(api, new_client):
    client, key, secret = new_client()
    _, inactive_key, inactive_secret = new_client(active=False)
    with models.db.connection_context():
        stored_hash = models.Client.get_by_id(client.id).secret_hash
    attempts = [
        {"username": "ock_unknown", "password": secret},
        {"username": key + "\x00", "password": secret},
        {"username": "\x00", "password": "\x00"},
        {"username": key, "password": secret + "x"},
        {"username": key, "password": stored_hash},  # the stored hash is not the secret
        {"username": inactive_key, "password": inactive_secret},
    ]
    for body in attempts:
        assert_error(api.post("/auth/login", json=body), 401, unauthorized("Invalid credentials"), "Bearer")


def test_login_from_outside_the_allowlist_issues_nothing(api, new_client):
    client, key, secret = new_client(networks=["198.51.100.0/24"])
    response = api.post("/auth/login", json={"username": key, "password": secret})
    assert_error(response, 403, FORBIDDEN)
    assert tokens_of(client) == []


def test_login_with_wrong_secret_from_outside_the_allowlist_is_401(api, new_client):
    _, key, _ = new_client(networks=["198.51.100.0/24"])
    response = api.post("/auth/login", json={"username": key, "password": "wrong"})
    assert_error(response, 401, unauthorized("Invalid credentials"), "Bearer")


def test_login_inside_an_ipv4_allowlist_from_a_mapped_ipv6_peer(app, new_client):
    _, key, secret = new_client(networks=["203.0.113.0/24"])
    with app.test_client(client=("::ffff:203.0.113.5", 4000)) as mapped:
        assert mapped.post("/auth/login", json={"username": key, "password": secret}).status_code == 200


def test_spoofed_forwarded_for_does_not_pass_the_allowlist(app, new_client):
    _, key, secret = new_client(networks=["203.0.113.0/24"])
    with app.test_client(client=("198.51.100.9", 4000)) as outsider:
        response = outsider.post(
            "/auth/login", json={"username": key, "password": secret}, headers={"X-Forwarded-For": "203.0.113.5"}
        )
    assert_error(response, 403, FORBIDDEN)


def test_forwarded_for_from_a_trusted_proxy_is_honoured(migrated, new_client):
    trusting = create_app(make_settings(migrated, OCTOPUS_TRUSTED_PROXIES="198.51.100.0/24"))
    _, key, secret = new_client(networks=["203.0.113.0/24"])
    body = {"username": key, "password": secret}
    with trusting.test_client(client=("198.51.100.9", 4000)) as proxy:
        hops = {"X-Forwarded-For": "192.0.2.1, 203.0.113.5, 198.51.100.10"}
        assert proxy.post("/auth/login", json=body, headers=hops).status_code == 200
        spoofed = {"X-Forwarded-For": "203.0.113.5, 192.0.2.1"}
        assert_error(proxy.post("/auth/login", json=body, headers=spoofed), 403, FORBIDDEN)
        garbage = {"X-Forwarded-For": "203.0.113.5, not-an-ip"}
        assert_error(proxy.post("/auth/login", json=body, headers=garbage), 403, FORBIDDEN)


# ---- refresh ---------------------------------------------------------------------------


def refresh(api, token):
    return api.post("/auth/refresh", json={"refresh_token": token})


def test_refresh_rotates(api, new_client, login):
    client, key, secret = new_client()
    first = login(key, secret)
    response = refresh(api, first["refresh_token"])
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    second = response.json()["data"]
    assert response.json()["success"] is True
    assert second["client_id"] == client.id
    assert {second["access_token"], second["refresh_token"]}.isdisjoint({first["access_token"], first["refresh_token"]})
    # The access token issued with the rotated refresh token stays valid until it expires.
    assert api.get("/api/v1/currencies", headers=bearer(first["access_token"])).status_code == 200
    assert api.get("/api/v1/currencies", headers=bearer(second["access_token"])).status_code == 200
    assert refresh(api, second["refresh_token"]).status_code == 200
    with models.db.connection_context():
        rotated = Token.get_by_id(jwt.decode(second["refresh_token"], options={"verify_signature": False})["jti"])
        assert rotated.used_at is not None
        assert rotated.parent_jti == jwt.decode(first["refresh_token"], options={"verify_signature": False})["jti"]


def test_reuse_revokes_the_whole_family_and_nothing_else(api, new_client, login):
    _, key, secret = new_client()
    first, other_family = login(key, secret), login(key, secret)
    second = refresh(api, first["refresh_token"]).json()["data"]
    assert_error(refresh(api, first["refresh_token"]), 401, unauthorized("Invalid refresh token"), "Bearer")
    for token in (first["access_token"], second["access_token"]):
        assert_error(
            api.get("/api/v1/currencies", headers=bearer(token)),
            401,
            unauthorized("Invalid token"),
            'Bearer error="invalid_token"',
        )
    assert_error(refresh(api, second["refresh_token"]), 401, unauthorized("Invalid refresh token"), "Bearer")
    assert api.get("/api/v1/currencies", headers=bearer(other_family["access_token"])).status_code == 200
    assert refresh(api, other_family["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{}",
        b"[]",
        b'"x"',
        b'{"refresh_token": null}',
        b'{"refresh_token": ""}',
        b'{"refresh_token": 5}',
        b'{"token": "abc"}',
    ],
)
def test_refresh_schema_violations(api, raw):
    assert_error(post_json(api, "/auth/refresh", raw), 400, REFRESH_REQUIRED)


def test_refresh_malformed_and_media_type(api):
    assert_error(post_json(api, "/auth/refresh", b'{"refresh_token": '), 400, SYNTAX)
    assert_error(post_json(api, "/auth/refresh", b'{"refresh_token": "x"}', "text/plain"), 415, MEDIA_TYPE)


def test_refresh_rejects_access_tokens_garbage_and_unknown_tokens(api, new_client, login, settings):
    _, key, secret = new_client()
    tokens = login(key, secret)
    unknown = TokenCodec(settings.jwt_keys, settings.jwt_active_kid, 60, 600).issue_pair(1)[1].token
    for token in (tokens["access_token"], "garbage", unknown, tokens["refresh_token"] + "x"):
        assert_error(refresh(api, token), 401, unauthorized("Invalid refresh token"), "Bearer")
    assert refresh(api, tokens["refresh_token"]).status_code == 200


def test_refresh_of_an_inactive_client(api, new_client, login):
    client, key, secret = new_client()
    tokens = login(key, secret)
    with models.db.connection_context():
        client.set_active(False)
    assert_error(refresh(api, tokens["refresh_token"]), 401, unauthorized("Invalid refresh token"), "Bearer")


def test_refresh_from_outside_the_allowlist_consumes_nothing(app, api, new_client, login):
    client, key, secret = new_client()
    tokens = login(key, secret)
    with models.db.connection_context():
        client.allow_network("198.51.100.0/24")
    assert_error(refresh(api, tokens["refresh_token"]), 403, FORBIDDEN)
    with models.db.connection_context():
        client.remove_network("198.51.100.0/24")
    assert refresh(api, tokens["refresh_token"]).status_code == 200


def record_tokens_issued_at(settings, client_id, issued_at):
    """Tokens the server issued at `issued_at` (so possibly expired now), with their records."""
    codec = TokenCodec(settings.jwt_keys, settings.jwt_active_kid, 60, 120, clock=lambda: issued_at)
    pair = codec.issue_pair(client_id)
    with models.db.connection_context():
        Token.record_login(client_id, pair)
    return pair


def test_expired_refresh_token(api, new_client, settings):
    client, _, _ = new_client()
    _, expired_refresh = record_tokens_issued_at(settings, client.id, 1_000_000_000)
    assert_error(refresh(api, expired_refresh.token), 401, unauthorized("Invalid refresh token"), "Bearer")


def test_reuse_of_a_rotated_token_that_has_since_expired_still_revokes_the_family(api, new_client, settings):
    client, _, _ = new_client()
    _, old_refresh = record_tokens_issued_at(settings, client.id, 1_000_000_000)
    with models.db.connection_context():
        # It was rotated long ago; its family went on to a fresh pair.
        Token.update(used_at=datetime.datetime(2001, 9, 9)).where(Token.jti == old_refresh.jti).execute()
        family_id = Token.get_by_id(old_refresh.jti).family_id
    fresh = TokenCodec(settings.jwt_keys, settings.jwt_active_kid, 60, 120).issue_pair(client.id)
    with models.db.connection_context():
        Token.record_pair(client.id, family_id, fresh, parent_jti=old_refresh.jti)
    assert api.get("/api/v1/currencies", headers=bearer(fresh[0].token)).status_code == 200
    assert_error(refresh(api, old_refresh.token), 401, unauthorized("Invalid refresh token"), "Bearer")
    assert api.get("/api/v1/currencies", headers=bearer(fresh[0].token)).status_code == 401


# ---- logout ----------------------------------------------------------------------------


def test_logout_revokes_every_token_of_the_client_only(api, new_client, login):
    _, key, secret = new_client()
    _, other_key, other_secret = new_client()
    first, second, other = login(key, secret), login(key, secret), login(other_key, other_secret)
    response = api.post("/auth/logout", headers=bearer(first["access_token"]))
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"message": "Successfully logged out"}}
    assert response.headers["cache-control"] == "no-store"
    for tokens in (first, second):
        assert_error(
            api.get("/api/v1/currencies", headers=bearer(tokens["access_token"])),
            401,
            unauthorized("Invalid token"),
            'Bearer error="invalid_token"',
        )
        assert_error(refresh(api, tokens["refresh_token"]), 401, unauthorized("Invalid refresh token"), "Bearer")
    assert api.get("/api/v1/currencies", headers=bearer(other["access_token"])).status_code == 200
    assert refresh(api, other["refresh_token"]).status_code == 200
    # A second logout with the same token.
    assert_error(
        api.post("/auth/logout", headers=bearer(first["access_token"])),
        401,
        unauthorized("Invalid token"),
        'Bearer error="invalid_token"',
    )


def test_logout_records_revoked_at_on_every_token_of_the_client(api, new_client, login):
    client, key, secret = new_client()
    other, other_key, other_secret = new_client()
    tokens = login(key, secret)
    login(key, secret), login(other_key, other_secret)
    assert api.post("/auth/logout", headers=bearer(tokens["access_token"])).status_code == 200
    with models.db.connection_context():  # the bookkeeping runs once the answer is sent (13.3)
        unmarked = Token.select(Token.client).where(
            Token.revoked_at.is_null() & Token.client.in_([client.id, other.id])
        )
        assert [row.client_id for row in unmarked] == [other.id, other.id]


def test_logout_holds_when_its_bookkeeping_cannot_reach_the_database(api, new_client, login, monkeypatch, caplog):
    _, key, secret = new_client()
    tokens = login(key, secret)

    def unreachable(client_id):
        raise peewee.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(Token, "record_logout", unreachable)
    response = api.post("/auth/logout", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert api.get("/api/v1/currencies", headers=bearer(tokens["access_token"])).status_code == 401
    assert "not recorded yet: the database is unreachable" in caplog.text
    assert not any(record.exc_info for record in caplog.records)


def test_login_right_after_logout_works(api, new_client, login):
    _, key, secret = new_client()
    before = login(key, secret)
    assert api.post("/auth/logout", headers=bearer(before["access_token"])).status_code == 200
    after = login(key, secret)  # within the same second
    assert api.get("/api/v1/currencies", headers=bearer(after["access_token"])).status_code == 200
    assert api.get("/api/v1/currencies", headers=bearer(before["access_token"])).status_code == 401


def test_logout_ignores_body_and_content_type(api, new_client, login):
    _, key, secret = new_client()
    tokens = login(key, secret)
    headers = {**bearer(tokens["access_token"]), "Content-Type": "text/plain"}
    assert api.post("/auth/logout", content=b"\xff not json", headers=headers).status_code == 200


def test_logout_needs_a_bearer(api):
    assert_error(api.post("/auth/logout"), 401, unauthorized("Authorization header required"), "Bearer")


# ---- bearer validation ------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_authorization(api, header):
    headers = {} if header is None else {"Authorization": header}
    response = api.get("/api/v1/countries", headers=headers)
    assert_error(response, 401, unauthorized("Authorization header required"), "Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Token abc",
        "Bearer a b",
        "Bearer  {token}",
        "Bearer {token} x",
        "{token}",
        "Bearer {token}x",
        "Bearer eyJ€",
    ],
)
def test_unusable_authorization(api, new_client, login, header):
    _, key, secret = new_client()
    token = login(key, secret)["access_token"]
    response = api.get("/api/v1/countries", headers={"Authorization": header.format(token=token).encode()})
    assert_error(response, 401, unauthorized("Invalid token"), 'Bearer error="invalid_token"')


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_scheme_is_case_insensitive(api, new_client, login, scheme):
    _, key, secret = new_client()
    token = login(key, secret)["access_token"]
    assert api.get("/api/v1/countries", headers={"Authorization": f"{scheme} {token}"}).status_code == 200


def test_duplicated_authorization_headers_are_refused(api, new_client, login):
    _, key, secret = new_client()
    token = login(key, secret)["access_token"]
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    response = api.get("/api/v1/countries", headers=headers)
    assert_error(response, 401, unauthorized("Invalid token"), 'Bearer error="invalid_token"')


def test_refresh_token_as_bearer(api, new_client, login):
    _, key, secret = new_client()
    tokens = login(key, secret)
    response = api.get("/api/v1/countries", headers=bearer(tokens["refresh_token"]))
    assert_error(response, 401, unauthorized("Invalid token"), 'Bearer error="invalid_token"')


def test_expired_access_token(api, new_client, settings):
    client, _, _ = new_client()
    access, _ = record_tokens_issued_at(settings, client.id, 1_000_000_000)
    response = api.get("/api/v1/countries", headers=bearer(access.token))
    assert_error(response, 401, unauthorized("Token expired"), 'Bearer error="invalid_token"')


def test_signed_token_unknown_to_the_server(api, new_client, settings):
    client, _, _ = new_client()
    access, _ = TokenCodec(settings.jwt_keys, settings.jwt_active_kid, 60, 600).issue_pair(client.id)
    response = api.get("/api/v1/countries", headers=bearer(access.token))
    assert_error(response, 401, unauthorized("Invalid token"), 'Bearer error="invalid_token"')


def test_token_signed_with_another_key(api, new_client):
    client, _, _ = new_client()
    pair = TokenCodec({"test-kid": b"z" * 40}, "test-kid", 60, 600).issue_pair(client.id)
    with models.db.connection_context():
        Token.record_login(client.id, pair)
    access = pair[0]
    response = api.get("/api/v1/countries", headers=bearer(access.token))
    assert_error(response, 401, unauthorized("Invalid token"), 'Bearer error="invalid_token"')


def test_deactivated_client_tokens_stop_and_resume(api, new_client, login):
    client, key, secret = new_client()
    token = login(key, secret)["access_token"]
    with models.db.connection_context():
        client.set_active(False)
    assert_error(
        api.get("/api/v1/countries", headers=bearer(token)),
        401,
        unauthorized("Invalid token"),
        'Bearer error="invalid_token"',
    )
    with models.db.connection_context():
        client.set_active(True)
    assert api.get("/api/v1/countries", headers=bearer(token)).status_code == 200


def test_bearer_from_outside_the_allowlist(app, api, new_client, login):
    client, key, secret = new_client(networks=[TEST_PEER[0]])
    token = login(key, secret)["access_token"]
    with app.test_client(client=("198.51.100.1", 4000)) as outsider:
        response = outsider.get("/api/v1/countries", headers={**bearer(token), "X-Forwarded-For": TEST_PEER[0]})
    assert_error(response, 403, FORBIDDEN)
    assert api.get("/api/v1/countries", headers=bearer(token)).status_code == 200


def test_unauthenticated_caller_gets_401_before_anything_else(api):
    for path in ("/api/v1/countries/abc", "/api/v1/categories/0", "/api/v1/currencies/99999999999"):
        assert_error(api.get(path), 401, unauthorized("Authorization header required"), "Bearer")
