"""API: reference data (contract 4), feature gating, ids and cache headers."""

import pytest

from octopus_cards import models
from octopus_cards.app import create_app
from octopus_cards.handlers import reference
from octopus_cards.models import Category, Country, Currency, Subcategory

from support.inprocess import TEST_PEER, bearer, make_settings

REFERENCE_CACHE = "private, max-age=86400, stale-while-revalidate=600"
COUNTRY_FIELDS = {"id", "name", "official_name", "alpha_2", "alpha_3", "numeric_code", "dialing_prefix"}

RESOURCES = [
    ("/api/v1/countries", "country", "Country", Country),
    ("/api/v1/currencies", "currency", "Currency", Currency),
    ("/api/v1/categories", "category", "Category", Category),
    ("/api/v1/subcategories", "subcategory", "Subcategory", Subcategory),
]


@pytest.fixture
def auth(new_client, login):
    _, key, secret = new_client(features=("vouchers",))
    return bearer(login(key, secret)["access_token"])


@pytest.fixture
def auth_without_vouchers(new_client, login):
    _, key, secret = new_client(features=("topups", "esim"))
    return bearer(login(key, secret)["access_token"])


def test_countries_come_from_iso_data(api, auth):
    response = api.get("/api/v1/countries", headers=auth)
    assert response.status_code == 200
    assert response.headers["cache-control"] == REFERENCE_CACHE
    countries = response.json()
    assert len(countries) >= 249
    assert all(set(country) == COUNTRY_FIELDS for country in countries)
    assert [c["id"] for c in countries] == sorted(c["id"] for c in countries)
    by_code = {c["alpha_2"]: c for c in countries}
    us = by_code["US"]
    assert (us["name"], us["official_name"], us["alpha_3"], us["numeric_code"], us["dialing_prefix"]) == (
        "United States",
        "United States of America",
        "USA",
        "840",
        "+1",
    )
    assert by_code["GB"]["dialing_prefix"] == "+44"
    assert by_code["JP"]["alpha_3"] == "JPN"
    detail = api.get(f"/api/v1/countries/{us['id']}", headers=auth)
    assert detail.json() == us
    assert detail.headers["cache-control"] == REFERENCE_CACHE


def test_currencies_carry_their_precision(api, auth):
    currencies = api.get("/api/v1/currencies", headers=auth).json()
    by_code = {c["currency"]: c for c in currencies}
    assert by_code["USD"] == {"id": 1, "name": "US Dollar", "currency": "USD", "precision": 2}
    assert by_code["EUR"] == {"id": 2, "name": "Euro", "currency": "EUR", "precision": 2}
    assert by_code["JPY"]["precision"] == 0 and by_code["KWD"]["precision"] == 3
    assert "XAU" not in by_code  # gold is not money a client pays with
    assert api.get("/api/v1/currencies/1", headers=auth).json() == by_code["USD"]


def test_categories_and_subcategories(api, auth):
    categories = api.get("/api/v1/categories", headers=auth).json()
    assert categories[:2] == [{"id": 1, "name": "Gaming"}, {"id": 2, "name": "Mobile Top-Ups"}]
    subcategories = api.get("/api/v1/subcategories", headers=auth).json()
    assert subcategories[:2] == [{"id": 1, "name": "Steam"}, {"id": 2, "name": "PlayStation"}]
    assert api.get("/api/v1/subcategories/2", headers=auth).json() == {"id": 2, "name": "PlayStation"}


@pytest.mark.parametrize(
    "path", ["/api/v1/categories", "/api/v1/categories/1", "/api/v1/subcategories", "/api/v1/subcategories/1"]
)
def test_vouchers_feature_gates_categories(api, auth_without_vouchers, path):
    response = api.get(path, headers=auth_without_vouchers)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "name": "BadRequestError",
            "code": "INVALID_FEATURE",
            "message": "The requested feature is not enabled for this client",
        }
    }


def test_countries_and_currencies_need_no_feature(api, auth_without_vouchers):
    assert api.get("/api/v1/countries", headers=auth_without_vouchers).status_code == 200
    assert api.get("/api/v1/currencies/1", headers=auth_without_vouchers).status_code == 200


def test_id_syntax_comes_before_the_feature_check(api, auth_without_vouchers):
    """Contract 1.10: path ids are check 6, the feature check 10."""
    assert api.get("/api/v1/categories/abc", headers=auth_without_vouchers).json()["error"]["message"] == (
        "Invalid category ID"
    )


def test_feature_check_comes_before_not_found(api, auth_without_vouchers):
    assert api.get("/api/v1/categories/2147483647", headers=auth_without_vouchers).json()["error"]["code"] == (
        "INVALID_FEATURE"
    )


@pytest.mark.parametrize("path, thing, _, __", RESOURCES)
@pytest.mark.parametrize(
    "bad_id", ["abc", "0", "-1", "+1", "1.5", "1e3", "2147483648", "99999999999999999999", "%20", "0x10", "１"]
)
def test_invalid_ids(api, auth, path, thing, _, __, bad_id):
    response = api.get(f"{path}/{bad_id}", headers=auth)
    assert response.status_code == 400
    assert response.json() == {
        "error": {"name": "BadRequestError", "code": "BAD_REQUEST", "message": f"Invalid {thing} ID"}
    }


@pytest.mark.parametrize("path, _, thing, __", RESOURCES)
def test_missing_ids(api, auth, path, _, thing, __):
    response = api.get(f"{path}/2147483647", headers=auth)
    assert response.status_code == 404
    assert response.json() == {"error": {"name": "NotFoundError", "code": "NOT_FOUND", "message": f"{thing} not found"}}


@pytest.mark.parametrize("path, _, thing, model", RESOURCES)
def test_inactive_rows_are_invisible(api, auth, path, _, thing, model):
    with models.db.connection_context():
        row = model.create(**inactive_row(model))
    try:
        assert row.id not in [item["id"] for item in api.get(path, headers=auth).json()]
        response = api.get(f"{path}/{row.id}", headers=auth)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == f"{thing} not found"
    finally:
        with models.db.connection_context():
            row.delete_instance()


def inactive_row(model):
    fields = {
        Country: dict(
            name="Atlantis",
            official_name="Republic of Atlantis",
            alpha_2="ZZ",
            alpha_3="ZZZ",
            numeric_code="999",
            dialing_prefix="+999",
        ),
        Currency: dict(name="Atlantean Drachma", currency="ZZD", precision=2),
        Category: dict(name="Retired"),
        Subcategory: dict(name="Retired"),
    }[model]
    return {**fields, "is_active": False}


def test_leading_zeros_are_the_same_id(api, auth):
    assert api.get("/api/v1/currencies/001", headers=auth).json()["currency"] == "USD"


def test_countries_and_currencies_are_cached_for_the_configured_time(migrated, new_client):
    cached_app = create_app(make_settings(migrated, OCTOPUS_REFERENCE_CACHE_TTL=60))
    _, key, secret = new_client()
    with cached_app.test_client(client=TEST_PEER) as api:
        token = api.post("/auth/login", json={"username": key, "password": secret}).json()["data"]["access_token"]
        reference.CACHE.clear()
        before = api.get("/api/v1/currencies", headers=bearer(token)).json()
        with models.db.connection_context():
            row = Currency.create(name="Fresh", currency="ZZQ", precision=2)
        try:
            assert api.get("/api/v1/currencies", headers=bearer(token)).json() == before
            assert api.get(f"/api/v1/currencies/{row.id}", headers=bearer(token)).status_code == 404
            reference.CACHE.clear()  # what the TTL's expiry does
            fresh = {"id": row.id, "name": "Fresh", "currency": "ZZQ", "precision": 2}
            assert fresh in api.get("/api/v1/currencies", headers=bearer(token)).json()
        finally:
            with models.db.connection_context():
                row.delete_instance()
            reference.CACHE.clear()


def test_categories_and_subcategories_are_never_cached(migrated, new_client):
    """A catalogue import may add them, and every later request must see it (contract 15.1, item 39)."""
    cached_app = create_app(make_settings(migrated, OCTOPUS_REFERENCE_CACHE_TTL=60))
    _, key, secret = new_client()
    with cached_app.test_client(client=TEST_PEER) as api:
        token = api.post("/auth/login", json={"username": key, "password": secret}).json()["data"]["access_token"]
        api.get("/api/v1/subcategories", headers=bearer(token))
        with models.db.connection_context():
            row = Subcategory.create(name="Fresh")
        try:
            assert {"id": row.id, "name": "Fresh"} in api.get("/api/v1/subcategories", headers=bearer(token)).json()
            assert api.get(f"/api/v1/subcategories/{row.id}", headers=bearer(token)).status_code == 200
        finally:
            with models.db.connection_context():
                row.delete_instance()
