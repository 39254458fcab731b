"""API: routing errors, the envelope on every failure, X-Request-Id, HEAD, the served document."""

import logging
import re
import time

import pytest
from connexion.decorators import parameter
from jsonschema import Draft4Validator

from octopus_cards.app import create_app
from octopus_cards.http import connexion_hooks
from octopus_cards.models import Country

from support.inprocess import TEST_PEER, bearer, make_settings

KSUID = re.compile(r"[0-9A-Za-z]{27}")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ROUTE_NOT_FOUND = {"error": {"name": "NotFoundError", "code": "NOT_FOUND", "message": "Route not found"}}
NOT_ALLOWED = {
    "error": {"name": "MethodNotAllowedError", "code": "METHOD_NOT_ALLOWED", "message": "Method not allowed"}
}


@pytest.fixture
def auth(new_client, login):
    _, key, secret = new_client()
    return bearer(login(key, secret)["access_token"])


def ksuid_seconds(value):
    number = 0
    for char in value:
        number = number * 62 + BASE62.index(char)
    return (number >> 128) + 1_400_000_000


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nope",
        "/api/v1/countries/",
        "/api/v1/countries/1/",
        "/api/v1/countries/1/extra",
        "/auth/login/",
        "/api/v2/countries",
        "/API/V1/COUNTRIES",
        "/auth",
    ],
)
def test_unknown_routes(api, auth, path):
    for method in ("GET", "POST"):
        response = api.request(method, path, headers=auth)
        assert response.status_code == 404
        assert response.json() == ROUTE_NOT_FOUND
        assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("OPTIONS", "/api/v1/countries", "GET, HEAD"),
        ("POST", "/api/v1/countries", "GET, HEAD"),
        ("DELETE", "/api/v1/currencies/1", "GET, HEAD"),
        ("PUT", "/api/v1/categories/abc", "GET, HEAD"),
        ("PATCH", "/api/v1/subcategories", "GET, HEAD"),
        ("GET", "/auth/login", "POST"),
        ("HEAD", "/auth/refresh", "POST"),
        ("OPTIONS", "/auth/logout", "POST"),
    ],
)
def test_wrong_method_lists_every_method(api, method, path, allow):
    # Before authentication: no Authorization header at all (contract 1.10: 405 comes second).
    response = api.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method != "HEAD":
        assert response.json() == NOT_ALLOWED


def test_head_is_get_without_a_body(api, auth):
    get = api.get("/api/v1/currencies/1", headers=auth)
    head = api.head("/api/v1/currencies/1", headers=auth)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["cache-control"] == get.headers["cache-control"]


def test_head_without_auth_is_401(api):
    response = api.head("/api/v1/countries")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("value", ["abc", "A" * 63, "trace_id-42", "0"])
def test_valid_request_id_is_echoed(api, auth, value):
    for path in ("/api/v1/countries/1", "/nope", "/api/v1/countries/x"):
        assert api.get(path, headers={**auth, "X-Request-Id": value}).headers["x-request-id"] == value


@pytest.mark.parametrize("value", ["", "A" * 64, "has space", "semi;colon", "ünï", "a.b", "a/b"])
def test_unusable_request_id_is_replaced_by_a_ksuid(api, auth, value):
    response = api.get("/api/v1/countries/1", headers={**auth, "X-Request-Id": value.encode()})
    assert response.status_code == 200
    generated = response.headers["x-request-id"]
    assert KSUID.fullmatch(generated) and generated != value
    assert abs(ksuid_seconds(generated) - time.time()) < 60


def test_generated_request_ids_differ_and_appear_on_errors(api):
    ids = {api.get("/nope").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5 and all(KSUID.fullmatch(value) for value in ids)


def test_unexpected_failure_is_a_logged_500_envelope(api, auth, monkeypatch, caplog):
    def explode(*args):
        raise RuntimeError("database exploded at /secret/path")

    monkeypatch.setattr(Country, "active", classmethod(explode))
    with caplog.at_level(logging.ERROR, logger="octopus_cards.errors"):
        response = api.get("/api/v1/countries", headers={**auth, "X-Request-Id": "trace-500"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"name": "InternalServerError", "code": "INTERNAL_SERVER_ERROR", "message": "Internal server error"}
    }
    assert response.headers["x-request-id"] == "trace-500"
    assert "exploded" not in response.text
    assert any(record.exc_info and "exploded" in str(record.exc_info[1]) for record in caplog.records)


def test_openapi_document_is_served_publicly(api):
    response = api.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.0.3"
    assert {"/auth/login", "/auth/refresh", "/auth/logout", "/api/v1/countries"} <= set(document["paths"])
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    # Short, stable operationIds, and no Python path of ours in what SDK generators read.
    assert document["paths"]["/auth/login"]["post"]["operationId"] == "auth.login"
    assert "x-bearerInfoFunc" not in response.text and "octopus_cards" not in response.text


def test_swagger_ui_is_served(api):
    response = api.get("/docs/")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_without_swagger_ui_docs_is_an_unknown_route(migrated, new_client, login):
    _, key, secret = new_client()
    with create_app(make_settings(migrated, OCTOPUS_SWAGGER_UI="false")).test_client(client=TEST_PEER) as api:
        response = api.get("/docs/")
        assert response.status_code == 404 and response.json() == ROUTE_NOT_FOUND
        assert api.get("/openapi.json").status_code == 200
        tokens = api.post("/auth/login", json={"username": key, "password": secret}).json()["data"]
        assert api.get("/api/v1/countries/1", headers=bearer(tokens["access_token"])).status_code == 200


def test_handlers_are_decorated_once_not_per_request(migrated, new_client, login, monkeypatch):
    inspected = []
    original = parameter.inspect_function_arguments
    monkeypatch.setattr(parameter, "inspect_function_arguments", lambda fn: inspected.append(fn) or original(fn))
    _, key, secret = new_client()
    with create_app(make_settings(migrated)).test_client(client=TEST_PEER) as api:
        tokens = [api.post("/auth/login", json={"username": key, "password": secret}) for _ in range(3)]
        assert [response.status_code for response in tokens] == [200] * 3
        headers = bearer(tokens[0].json()["data"]["access_token"])
        for country_id in (1, 2, 3):
            assert api.get(f"/api/v1/countries/{country_id}", headers=headers).status_code == 200
    assert sorted(fn.__name__ for fn in inspected) == ["get_country", "login"]


def test_parameter_checks_and_argument_names_are_worked_out_once(migrated, new_client, monkeypatch):
    built, cleaned = [], []

    def counted_validator(schema, **kwargs):
        built.append(schema)
        return Draft4Validator(schema, **kwargs)

    counted_validator.FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER
    monkeypatch.setattr(connexion_hooks, "Draft4Validator", counted_validator)
    monkeypatch.setattr(connexion_hooks, "PARAMETER_VALIDATORS", {})
    original = parameter.sanitized
    monkeypatch.setattr(parameter, "sanitized", lambda name: cleaned.append(name) or original(name))
    _, key, secret = new_client()
    with create_app(make_settings(migrated)).test_client(client=TEST_PEER) as api:
        login = api.post("/auth/login", json={"username": key, "password": secret})
        headers = bearer(login.json()["data"]["access_token"])
        for page in (1, 2, 3):
            assert api.get(f"/api/v1/wallets?page={page}&limit=5", headers=headers).status_code == 200
        assert api.get("/api/v1/wallets?page=-1", headers=headers).status_code == 400
    assert sorted(schema["type"] for schema in built) == ["integer", "integer"]  # page and limit
    assert cleaned.count("page") == cleaned.count("limit") == 1  # over four requests


def test_oversized_body_is_413_by_content_length(api):
    response = api.post(
        "/auth/login", content=b"{" + b" " * (1024 * 1024) + b"}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {
        "error": {
            "name": "PayloadTooLargeError",
            "code": "PAYLOAD_TOO_LARGE",
            "message": "Request body exceeds 1048576 bytes",
        }
    }


def test_oversized_streamed_body_is_413(api):
    def chunks():
        yield b'{"username": "'
        for _ in range(300):
            yield b"x" * 4096
        yield b'", "password": "y"}'

    response = api.post("/auth/refresh", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
