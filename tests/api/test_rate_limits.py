"""Rate limits (contract 10): per class and key, rolling minute, 429 with Retry-After."""

import random

import pytest

from octopus_cards import models
from octopus_cards.app import create_app
from octopus_cards.http.errors import ApiError
from octopus_cards.http.runtime import Policy, PolicyError, Runtime
from octopus_cards.http.throttling import enforce
from octopus_cards.models import RateLimitHit
from octopus_cards.settings import Settings

from support.inprocess import bearer, make_settings


@pytest.fixture(scope="module")
def limited_app(migrated):
    settings = make_settings(
        migrated, OCTOPUS_RATE_LIMIT_PROFILE="sandbox", OCTOPUS_RATE_LIMITS="login=3,refresh=2,default=4"
    )
    return create_app(settings)


def fresh_ip():
    return f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"


def caller(app, ip=None):
    return app.test_client(client=(ip or fresh_ip(), 40000))


def assert_429(response):
    assert response.status_code == 429, response.text[:300]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert response.json() == {
        "error": {
            "name": "TooManyRequestsError",
            "code": "TOO_MANY_REQUESTS",
            "message": f"Rate limit exceeded. Retry after {retry_after} seconds.",
        }
    }
    assert response.headers["x-request-id"]


def test_profiles():
    assert Settings.from_env({"OCTOPUS_JWT_KEYS": "k:" + "x" * 32, "OCTOPUS_SECRET_PEPPER": "p" * 32}).rate_limits == {
        "login": 30,
        "refresh": 30,
        "orders": 120,
        "charges": 300,
        "topup_orders": 120,
        "topup_charges": 300,
        "esim_orders": 120,
        "esim_charges": 300,
        "default": 600,
    }
    production = Settings.from_env(
        {
            "OCTOPUS_JWT_KEYS": "k:" + "x" * 32,
            "OCTOPUS_SECRET_PEPPER": "p" * 32,
            "OCTOPUS_RATE_LIMIT_PROFILE": "production",
        }
    )
    assert production.rate_limits == {
        "login": 10,
        "refresh": 20,
        "orders": 60,
        "charges": 120,
        "topup_orders": 60,
        "topup_charges": 120,
        "esim_orders": 60,
        "esim_charges": 120,
        "default": 300,
    }


def test_failed_logins_count_and_the_limit_comes_before_the_secret(limited_app, new_client):
    _, key, secret = new_client()
    with caller(limited_app) as api:
        for _ in range(3):
            assert api.post("/auth/login", json={"username": key, "password": "wrong"}).status_code == 401
        assert_429(api.post("/auth/login", json={"username": key, "password": secret}))
        # Schema violations are refused before the limiter (contract 1.10).
        assert api.post("/auth/login", json={"username": key}).status_code == 400


def test_login_is_limited_per_submitted_key_across_addresses(limited_app, new_client):
    _, key, secret = new_client()
    for _ in range(3):
        with caller(limited_app) as api:
            assert api.post("/auth/login", json={"username": key, "password": "wrong"}).status_code == 401
    with caller(limited_app) as api:
        assert_429(api.post("/auth/login", json={"username": key, "password": secret}))
        _, other_key, other_secret = new_client()
        assert api.post("/auth/login", json={"username": other_key, "password": other_secret}).status_code == 200


def test_login_is_limited_per_address_across_keys(limited_app):
    with caller(limited_app) as api:
        for n in range(3):
            assert api.post("/auth/login", json={"username": f"ock_guess{n}", "password": "x"}).status_code == 401
        assert_429(api.post("/auth/login", json={"username": "ock_guess9", "password": "x"}))


def test_refresh_is_limited_per_address(limited_app, new_client):
    _, key, secret = new_client()
    with caller(limited_app) as api:
        tokens = api.post("/auth/login", json={"username": key, "password": secret}).json()["data"]
        assert api.post("/auth/refresh", json={"refresh_token": "garbage"}).status_code == 401
        assert api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 200
        assert_429(api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}))


def test_bearer_endpoints_share_one_bucket_per_client(limited_app, new_client):
    _, key, secret = new_client()
    _, other_key, other_secret = new_client()
    with caller(limited_app) as api:
        token = api.post("/auth/login", json={"username": key, "password": secret}).json()["data"]["access_token"]
        other = api.post("/auth/login", json={"username": other_key, "password": other_secret}).json()["data"]
        for path in ("/api/v1/countries", "/api/v1/currencies/1", "/api/v1/categories", "/api/v1/countries/abc"):
            api.get(path, headers=bearer(token))
        for path in ("/api/v1/countries", "/api/v1/currencies"):
            assert_429(api.get(path, headers=bearer(token)))
        assert_429(api.post("/auth/logout", headers=bearer(token)))
        # 401 comes before 429; other clients have their own bucket.
        assert api.get("/api/v1/countries", headers=bearer(token + "x")).status_code == 401
        assert api.get("/api/v1/countries", headers=bearer(other["access_token"])).status_code == 200


def test_ip_denial_comes_before_the_limit(limited_app, new_client):
    client, key, secret = new_client()
    with caller(limited_app) as api:
        token = api.post("/auth/login", json={"username": key, "password": secret}).json()["data"]["access_token"]
        for _ in range(4):
            api.get("/api/v1/countries", headers=bearer(token))
        with models.db.connection_context():
            client.allow_network("192.0.2.0/24")
        assert api.get("/api/v1/countries", headers=bearer(token)).status_code == 403


def test_rolling_window_and_retry_after(migrated):
    bucket = f"test:{random.random()}"
    with models.db.connection_context():
        for at in (1000.0, 1010.0, 1020.0):
            assert RateLimitHit.admit(bucket, 3, now=at) is None
        assert RateLimitHit.admit(bucket, 3, now=1030.0) == 30  # when the hit at 1000 leaves
        assert RateLimitHit.admit(bucket, 3, now=1059.5) == 1
        assert RateLimitHit.admit(bucket, 3, now=1060.0) is None  # 1000 has left the window
        assert RateLimitHit.admit(bucket, 3, now=1060.5) == 10
        assert RateLimitHit.select().where(RateLimitHit.bucket == bucket).count() == 3


def runtime_with(spec_paths, limits):
    spec = {"security": [{"bearerAuth": []}], "paths": spec_paths}
    settings = Settings.from_env(
        {"OCTOPUS_JWT_KEYS": "k:" + "x" * 32, "OCTOPUS_SECRET_PEPPER": "p" * 32, "OCTOPUS_RATE_LIMITS": limits}
    )
    return Runtime.build(settings, spec)


def test_each_order_and_charges_operation_has_its_own_bucket(migrated):
    """Contract 10.1: the class comes from the operation's x-octopus-rate-limit; `default` is one
    bucket for all its operations, every other class one bucket per operation."""
    operations = {
        "vouchers.create_order": "orders",
        "topups.create_order": "orders",
        "vouchers.list_orders": "default",
        "wallets.list_wallets": "default",
    }
    rt = runtime_with(
        {f"/{op}": {"get": {"operationId": op, "x-octopus-rate-limit": cls}} for op, cls in operations.items()},
        "orders=2,default=2",
    )
    key = f"client:test-{random.random()}"
    with models.db.connection_context():
        for op in ("vouchers.create_order", "vouchers.create_order", "topups.create_order", "topups.create_order"):
            enforce(rt, op, key, None)
        with pytest.raises(ApiError) as refused:
            enforce(rt, "topups.create_order", key, None)
        assert refused.value.status_code == 429
        enforce(rt, "vouchers.list_orders", key, None)
        enforce(rt, "wallets.list_wallets", key, None)
        with pytest.raises(ApiError):
            enforce(rt, "vouchers.list_orders", key, None)


@pytest.mark.parametrize(
    "operation, message",
    [
        ({"operationId": "a.b"}, "GET /x: a Bearer operation must declare x-octopus-rate-limit"),
        (
            {"operationId": "a.b", "x-octopus-rate-limit": "burst"},
            "GET /x: x-octopus-rate-limit must be one of login, refresh, orders, charges, topup_orders,"
            " topup_charges, esim_orders, esim_charges, default",
        ),
        (
            {"operationId": "a.b", "x-octopus-rate-limit": "default", "x-octopus-feature": "crypto"},
            "GET /x: x-octopus-feature must be one of vouchers, topups, esim",
        ),
    ],
)
def test_a_policy_the_server_cannot_enforce_stops_it_at_start(operation, message):
    with pytest.raises(PolicyError) as refused:
        runtime_with({"/x": {"get": operation}}, "")
    assert str(refused.value) == message


def test_public_operations_need_no_class():
    rt = runtime_with({"/health": {"get": {"operationId": "operations.health", "security": []}}}, "")
    assert rt.policies == {"operations.health": Policy(feature=None, rate_limit=None)}
