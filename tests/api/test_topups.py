"""API: the top-up catalogue as a client sees it (contract 7.1-7.6): products with their filters and
pages, input fields, variants, the operator lookup of a mobile number, variant selection and exact
quotes, with every error; the `topups` feature on every operation, and the own rate-limit bucket of
top-up charges."""

import json
import secrets
from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.app import create_app
from octopus_cards.models import Wallet, catalogue, products
from octopus_cards.models.products import TopupProduct
from octopus_cards.models.wallets import ExchangeRate, active_currency

from support.inprocess import TEST_PEER, bearer, make_settings

D = Decimal


def error(name, code, message):
    return {"error": {"name": name, "code": code, "message": message}}


def bad_request(message):
    return error("BadRequestError", "BAD_REQUEST", message)


def not_found(thing):
    return error("NotFoundError", "NOT_FOUND", f"{thing} not found")


def invalid(field):
    return error("ValidationException", "VALIDATION_FAILURE", f"{field} is invalid")


def required(field):
    return error("ValidationException", "VALIDATION_FAILURE", f"{field} is required")


NO_FEATURE = error("BadRequestError", "INVALID_FEATURE", "The requested feature is not enabled for this client")
UNSUPPORTED = error("UnsupportedMediaTypeError", "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")

# Offsets of the products (ids: base + offset) and of the variants (ids: base + offset too).
JAM_DIGICEL, JAM_FLOW, JAM_CLOSED, JAM_GAMES, ECLAIR, TOKYO, ICELAND, ROUNDING = 1, 2, 3, 4, 5, 6, 7, 8
US, CANADA, RUSSIA, KAZAKHSTAN, UK, GUERNSEY, TUVALU_GAMES, TUVALU_CLOSED = 10, 11, 12, 13, 14, 15, 16, 17
ANY_AIRTIME, AIRTIME_PACKS, DATA_PACK, BUNDLE_RANGE, OLD_PACK, OLD_RANGE, LATE_PACK = 101, 102, 103, 104, 105, 106, 107
CLOSED_PRODUCTS_VARIANT, TOKYO_RANGE, TOKYO_FIXED = 131, 161, 162
INACTIVE = {JAM_CLOSED, TUVALU_CLOSED}


@pytest.fixture(scope="module")
def stand(migrated):
    """Top-up products of this module: names carrying a tag of their own (so a search lists only
    them), ids and variant ids from a random base."""
    base = 300_000_000 + secrets.randbelow(1_000_000) * 1000
    tag = f"tq{secrets.token_hex(3)}"

    def product(offset, name, kind, country, currency="USD", variants=None, **fields):
        variants = variants or [{"name": "Any amount", "category": "Airtime", "min_amount": 1, "max_amount": 100}]
        return {"id": base + offset, "name": f"{tag} {name}", "type": kind, "country": country,
                "currency": currency, "variants": variants, **fields}  # fmt: skip

    def variant(offset, name, **fields):
        return {"id": base + offset, "name": name, **fields}

    phone = [{"name": "phone_number", "label": "Phone number", "required": True}]
    document = {
        "topups": [
            product(JAM_DIGICEL, "Digicel Jamaica", "MOBILE", "JAM", image_url="https://cdn.example.com/digicel.png",
                    input_fields=phone, variants=[
                        variant(ANY_AIRTIME, "Any airtime", category="Airtime", min_amount=1, max_amount=100,
                                available_in=["JAM"], fields={"delivery_time": "Instant"}, discount=1),
                        variant(AIRTIME_PACKS, "Airtime packs", category="Airtime", fixed_amounts=["5", "10.5"],
                                available_in=["JAM", "USA"], fields={"par_value": "5 or 10.50", "validity_days": "0"},
                                discount=2.5),
                        variant(DATA_PACK, "Data pack", category="Data", fixed_amounts=["5"], discount=4),
                        variant(BUNDLE_RANGE, "Bundle", category="Bundle", min_amount="1.00", max_amount=100,
                                discount=6),
                        variant(OLD_PACK, "Old pack", category="Airtime", fixed_amounts=["20"], discount=9,
                                active=False),
                        variant(OLD_RANGE, "Old range", category="Airtime", min_amount=200, max_amount=300, discount=7,
                                active=False),
                        variant(LATE_PACK, "Late pack", category="Airtime", fixed_amounts=["5"], discount=8),
                    ]),
            product(JAM_FLOW, "Flow Jamaica", "MOBILE", "JAM"),
            product(JAM_CLOSED, "Closed Jamaica", "MOBILE", "JAM", active=False, variants=[
                variant(CLOSED_PRODUCTS_VARIANT, "Still active", category="Airtime", min_amount=1, max_amount=9)]),
            product(JAM_GAMES, "Island Games", "GAMING", "JAM"),
            product(ECLAIR, "éclair Arena", "GAMING", "GLO", input_fields=[
                {"name": "player_id", "label": "Player ID", "required": True},
                {"name": "server", "label": "Zone ID", "required": False},
                {"name": "nickname", "label": "Nickname"},
            ]),
            product(TOKYO, "Tokyo Power", "UTILITY", "JPN", currency="JPY", variants=[
                variant(TOKYO_RANGE, "Any amount", category="", min_amount=500, max_amount=50000),
                variant(TOKYO_FIXED, "1000 yen", category="", fixed_amounts=["1000"],
                        fields={"par_value": "1000 JPY", "validity_days": "0"}, discount=1),
            ]),
            product(ICELAND, "Iceland Mobile", "MOBILE", "ISL", currency="ISK", variants=[
                {"name": "Any amount", "category": "Airtime", "min_amount": 100, "max_amount": 10000}]),
            product(ROUNDING, "Rounding", "GAMING", "GLO", variants=[
                {"name": "Ten", "category": "Airtime", "fixed_amounts": ["10"], "discount": 2.5},
                {"name": "Cheap", "category": "Airtime", "fixed_amounts": ["0.99"], "discount": 1.5},
                {"name": "Fifty", "category": "Airtime", "fixed_amounts": ["50"]},
                {"name": "Free", "category": "Airtime", "fixed_amounts": ["77.77"], "discount": 100},
                {"name": "Range", "category": "Airtime", "min_amount": "0.01", "max_amount": 1000,
                 "discount": "3.3333"},
            ]),
            product(US, "US Mobile", "MOBILE", "USA"),
            product(CANADA, "Canada Mobile", "MOBILE", "CAN", currency="CAD"),
            product(RUSSIA, "Russia Mobile", "MOBILE", "RUS"),
            product(KAZAKHSTAN, "Kazakhstan Mobile", "MOBILE", "KAZ"),
            product(UK, "UK Mobile", "MOBILE", "GBR", currency="GBP", variants=[
                {"name": "Airtime", "category": "Airtime", "fixed_amounts": ["10", "20"], "discount": 2}]),
            product(GUERNSEY, "Guernsey Mobile", "MOBILE", "GGY", currency="GBP"),
            product(TUVALU_GAMES, "Tuvalu Games", "GAMING", "TUV", currency="AUD"),
            product(TUVALU_CLOSED, "Tuvalu Closed", "MOBILE", "TUV", currency="AUD", active=False),
        ]
    }  # fmt: skip
    with models.db.connection_context():
        catalogue.import_catalogue(json.dumps(document))
    kinds = {entry["id"] - base: entry["type"] for entry in document["topups"]}
    return {"base": base, "tag": tag, "kinds": kinds}


@pytest.fixture
def buyer(stand, new_client, login):
    """A client with every feature, USD and EUR wallets, default currency EUR; (client, headers)."""
    client, key, secret = new_client()
    with models.db.connection_context():
        client.configure(active_currency("EUR"), 100)
        for code in ("USD", "EUR"):
            Wallet.open_funded(client.id, code, 1000, "test")
    return client, bearer(login(key, secret)["access_token"])


@pytest.fixture
def rates(migrated):
    """rates(FROM, TO, RATE) sets an exchange rate for the test; each is put back as it was after it."""
    before = {}

    def put(source, destination, rate):
        with models.db.connection_context():
            before.setdefault((source, destination), ExchangeRate.between(source, destination))
            ExchangeRate.put(source, destination, rate)

    yield put
    with models.db.connection_context():
        for (source, destination), rate in before.items():
            if rate is None:
                ExchangeRate.remove(source, destination)
            else:
                ExchangeRate.put(source, destination, str(rate))


def wallet_of(client, code):
    with models.db.connection_context():
        return Wallet.get((Wallet.client == client.id) & (Wallet.currency == active_currency(code))).id


def mine(stand, offsets):
    return [stand["base"] + offset for offset in offsets]


# -- 7.1 the product list ---------------------------------------------------------------------------


def listed(api, headers, query):
    response = api.get(f"/api/v1/topups/products?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_active_products_newest_first_with_exactly_their_fields(api, buyer, stand):
    response = listed(api, buyer[1], f"search={stand['tag']}")
    active = sorted((offset for offset in stand["kinds"] if offset not in INACTIVE), reverse=True)
    assert [item["id"] for item in response.json()] == mine(stand, active)
    digicel = next(item for item in response.json() if item["id"] == stand["base"] + JAM_DIGICEL)
    assert digicel == {
        "id": stand["base"] + JAM_DIGICEL, "name": f"{stand['tag']} Digicel Jamaica", "topup_type": "MOBILE",
        "country_code": "JAM", "currency_code": "USD", "image_url": "https://cdn.example.com/digicel.png",
    }  # fmt: skip
    eclair = next(item for item in response.json() if item["id"] == stand["base"] + ECLAIR)
    assert eclair == {"id": stand["base"] + ECLAIR, "name": f"{stand['tag']} éclair Arena", "topup_type": "GAMING",
                      "country_code": "GLO", "currency_code": "USD", "image_url": None}  # fmt: skip
    assert response.headers["x-total-count"] == str(len(active))


@pytest.mark.parametrize(
    "query, expected",
    [("search={tag}&type=MOBILE", [GUERNSEY, UK, KAZAKHSTAN, RUSSIA, CANADA, US, ICELAND, JAM_FLOW, JAM_DIGICEL]),
     ("search={tag}&type=GAMING", [TUVALU_GAMES, ROUNDING, ECLAIR, JAM_GAMES]),
     ("search={tag}&type=UTILITY", [TOKYO]),
     ("search={tag}%20ÉCLAIR", [ECLAIR]), ("search={TAG}%20%C3%89clair", [ECLAIR]),
     ("search={tag}%20%C3%A9CLAIR%20ARENA", [ECLAIR]), ("search={TAG}%20FLOW%20jamaica", [JAM_FLOW]),
     ("search={tag}%20digicel%20JAMAICA&type=MOBILE", [JAM_DIGICEL]), ("search={tag}%20Digicel&type=GAMING", []),
     ("search={TAG}&type=UTILITY", [TOKYO]), ("search={tag}%20island&type=GAMING", [JAM_GAMES]),
     ("search={tag}%20Closed", []), ("search={tag}%25", []), ("search={tag}_", []),
     ("search={tag}%20Tokyo%20Power%20", []), ("search={tag}%20Tokyo%20Power", [TOKYO])],
)  # fmt: skip
def test_type_and_search_filters(api, buyer, stand, query, expected):
    """`type` is exact upper case; `search` a case-insensitive substring of the name (Unicode case
    folding, no wildcards); inactive products are never listed."""
    query = query.format(tag=stand["tag"], TAG=stand["tag"].upper())
    response = listed(api, buyer[1], query)
    assert [item["id"] for item in response.json()] == mine(stand, expected)
    assert response.headers["x-total-count"] == str(len(expected))


def test_an_empty_search_is_no_filter(api, buyer, stand):
    everything = listed(api, buyer[1], "per_page=1")
    assert listed(api, buyer[1], "per_page=1&search=").headers["x-total-count"] == everything.headers["x-total-count"]
    with models.db.connection_context():
        active = TopupProduct.select().where(TopupProduct.is_active).count()
    assert everything.headers["x-total-count"] == str(active)
    assert everything.json() == [listed(api, buyer[1], "search=").json()[0]]  # id descending


def pages(response):
    names = ("x-page", "x-per-page", "x-total-count", "x-total-pages", "x-page-size", "x-has-more")
    return tuple(response.headers[name] for name in names)


@pytest.mark.parametrize(
    "page, per_page, offsets, headers",
    [(1, 4, [GUERNSEY, UK, KAZAKHSTAN, RUSSIA], ("1", "4", "9", "3", "4", "true")),
     (2, 4, [CANADA, US, ICELAND, JAM_FLOW], ("2", "4", "9", "3", "4", "true")),
     (3, 4, [JAM_DIGICEL], ("3", "4", "9", "3", "1", "false")),
     (4, 4, [], ("4", "4", "9", "3", "0", "false")),
     (2147483647, 500, [], ("2147483647", "500", "9", "1", "0", "false")),
     (1, 9, [GUERNSEY, UK, KAZAKHSTAN, RUSSIA, CANADA, US, ICELAND, JAM_FLOW, JAM_DIGICEL],
      ("1", "9", "9", "1", "9", "false")),
     (1, 1, [GUERNSEY], ("1", "1", "9", "9", "1", "true")),
     (None, None, [GUERNSEY, UK, KAZAKHSTAN, RUSSIA, CANADA, US, ICELAND, JAM_FLOW, JAM_DIGICEL],
      ("1", "50", "9", "1", "9", "false"))],
)  # fmt: skip
def test_pages_and_their_six_headers(api, buyer, stand, page, per_page, offsets, headers):
    query = f"type=MOBILE&search={stand['tag']}"
    query += f"&page={page}" if page is not None else ""
    query += f"&per_page={per_page}" if per_page is not None else ""
    response = listed(api, buyer[1], query)
    assert [item["id"] for item in response.json()] == mine(stand, offsets)
    assert pages(response) == headers


def test_no_match_is_an_empty_first_page(api, buyer, stand):
    response = listed(api, buyer[1], f"search={stand['tag']}nothing")
    assert response.json() == [] and response.text == "[]"
    assert pages(response) == ("1", "50", "0", "0", "0", "false")


@pytest.mark.parametrize(
    "query, field",
    [("type=gaming", "type"), ("type=Mobile", "type"), ("type=VOUCHER", "type"), ("type=", "type"),
     (f"search={'x' * 101}", "search"), ("per_page=0", "per_page"), ("per_page=501", "per_page"),
     ("per_page=x", "per_page"), ("per_page=-1", "per_page"), ("per_page=1.5", "per_page"), ("page=0", "page"),
     ("page=-1", "page"), ("page=x", "page"), ("page=2147483648", "page")],
)  # fmt: skip
def test_list_query_errors(api, buyer, query, field):
    response = api.get(f"/api/v1/topups/products?{query}", headers=buyer[1])
    assert response.status_code == 400 and response.json() == invalid(field)


def test_limits_of_the_list_parameters_are_accepted(api, buyer):
    for query in (f"search={'x' * 100}", "per_page=500", "per_page=1", "page=2147483647", "unknown=1"):
        assert api.get(f"/api/v1/topups/products?{query}", headers=buyer[1]).status_code == 200, query


# -- 7.2 one product --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offset, input_fields",
    [(JAM_DIGICEL, [{"name": "phone_number", "label": "Phone number", "required": True}]),
     (JAM_FLOW, []),
     (ECLAIR, [{"name": "player_id", "label": "Player ID", "required": True},
               {"name": "server", "label": "Zone ID", "required": False},
               {"name": "nickname", "label": "Nickname", "required": False}])],
)  # fmt: skip
def test_a_product_with_its_input_fields(api, buyer, stand, offset, input_fields):
    response = api.get(f"/api/v1/topups/products/{stand['base'] + offset}", headers=buyer[1])
    assert response.status_code == 200
    item = listed(api, buyer[1], f"search={stand['tag']}").json()
    assert response.json() == {**next(i for i in item if i["id"] == stand["base"] + offset),
                               "input_fields": input_fields}  # fmt: skip


@pytest.mark.parametrize("suffix", ["", "/variants"])
def test_inactive_and_missing_products_are_not_found(api, buyer, stand, suffix):
    for product in (stand["base"] + JAM_CLOSED, stand["base"] + TUVALU_CLOSED, stand["base"] + 999, 2147483647):
        response = api.get(f"/api/v1/topups/products/{product}{suffix}", headers=buyer[1])
        assert response.status_code == 404 and response.json() == not_found("Product")


@pytest.mark.parametrize("path", ["/api/v1/topups/products/{}", "/api/v1/topups/products/{}/variants",
                                  "/api/v1/topups/variants/{}"])  # fmt: skip
@pytest.mark.parametrize(
    "value", ["abc", "0", "00", "-1", "+1", "1.5", "1e3", "2147483648", "99999999999", "%EF%BC%91"]
)
def test_invalid_path_ids(api, buyer, path, value):
    response = api.get(path.format(value), headers=buyer[1])
    thing = "variant" if "/variants/" in path else "product"
    assert response.status_code == 400 and response.json() == bad_request(f"Invalid {thing} ID")


# -- 7.3 variants ------------------------------------------------------------------------------------


def test_active_variants_by_id_ascending_with_exactly_their_fields(api, buyer, stand):
    base = stand["base"]
    response = api.get(f"/api/v1/topups/products/{base + JAM_DIGICEL}/variants", headers=buyer[1])
    assert response.status_code == 200 and "x-total-count" not in response.headers
    assert response.json() == [
        {"id": base + ANY_AIRTIME, "name": "Any airtime", "category": "Airtime", "currency_code": "USD",
         "min_amount": 1, "max_amount": 100, "fixed_amounts": [], "available_in": [{"code": "JAM", "name": "Jamaica"}],
         "fields": {"delivery_time": "Instant"}},
        {"id": base + AIRTIME_PACKS, "name": "Airtime packs", "category": "Airtime", "currency_code": "USD",
         "fixed_amounts": ["5", "10.5"],
         "available_in": [{"code": "JAM", "name": "Jamaica"}, {"code": "USA", "name": "United States"}],
         "fields": {"par_value": "5 or 10.50", "validity_days": "0"}},
        {"id": base + DATA_PACK, "name": "Data pack", "category": "Data", "currency_code": "USD",
         "fixed_amounts": ["5"], "available_in": [], "fields": {}},
        {"id": base + BUNDLE_RANGE, "name": "Bundle", "category": "Bundle", "currency_code": "USD",
         "min_amount": 1, "max_amount": 100, "fixed_amounts": [], "available_in": [], "fields": {}},
        {"id": base + LATE_PACK, "name": "Late pack", "category": "Airtime", "currency_code": "USD",
         "fixed_amounts": ["5"], "available_in": [], "fields": {}},
    ]  # fmt: skip
    # Range amounts with the currency's precision; fixed variants have no min/max key at all.
    assert '"min_amount":1.00,"max_amount":100.00,"fixed_amounts":[]' in response.text
    assert all("min_amount" not in v and "max_amount" not in v for v in response.json() if v["fixed_amounts"])


def test_a_currency_without_decimals(api, buyer, stand):
    base = stand["base"]
    response = api.get(f"/api/v1/topups/products/{base + TOKYO}/variants", headers=buyer[1])
    assert response.json() == [
        {"id": base + TOKYO_RANGE, "name": "Any amount", "category": "", "currency_code": "JPY", "min_amount": 500,
         "max_amount": 50000, "fixed_amounts": [], "available_in": [], "fields": {}},
        {"id": base + TOKYO_FIXED, "name": "1000 yen", "category": "", "currency_code": "JPY",
         "fixed_amounts": ["1000"], "available_in": [], "fields": {"par_value": "1000 JPY", "validity_days": "0"}},
    ]  # fmt: skip
    assert '"min_amount":500,"max_amount":50000,' in response.text


def test_available_in_names_are_the_reference_data_names(api, buyer, stand):
    countries = {c["alpha_3"]: c["name"] for c in api.get("/api/v1/countries", headers=buyer[1]).json()}
    variant = api.get(f"/api/v1/topups/variants/{stand['base'] + AIRTIME_PACKS}", headers=buyer[1]).json()
    assert variant["available_in"] == [{"code": code, "name": countries[code]} for code in ("JAM", "USA")]


def test_one_variant_is_the_listed_object(api, buyer, stand):
    listing = api.get(f"/api/v1/topups/products/{stand['base'] + JAM_DIGICEL}/variants", headers=buyer[1]).json()
    for item in listing:
        response = api.get(f"/api/v1/topups/variants/{item['id']}", headers=buyer[1])
        assert response.status_code == 200 and response.json() == item


@pytest.mark.parametrize("offset", [OLD_PACK, OLD_RANGE, CLOSED_PRODUCTS_VARIANT, 999])
def test_inactive_variants_and_variants_of_inactive_products_are_not_found(api, buyer, stand, offset):
    response = api.get(f"/api/v1/topups/variants/{stand['base'] + offset}", headers=buyer[1])
    assert response.status_code == 404 and response.json() == not_found("Variant")


def test_variants_are_not_paginated_and_ignore_paging_parameters(api, buyer, stand):
    path = f"/api/v1/topups/products/{stand['base'] + JAM_DIGICEL}/variants"
    response = api.get(path + "?page=0&per_page=1", headers=buyer[1])
    assert response.status_code == 200 and len(response.json()) == 5
    assert not any(name.startswith("x-page") or name == "x-has-more" for name in response.headers)


# -- 7.4 lookup --------------------------------------------------------------------------------------


def lookup(api, headers, number):
    return api.post("/api/v1/topups/lookup", json={"mobile_number": number}, headers=headers)


def candidates(alpha_3):
    """Every active MOBILE product of the country, id ascending, as the lookup lists them: other
    files of the session may add top-up products too."""
    with models.db.connection_context():
        rows = (
            TopupProduct.select(TopupProduct.id, TopupProduct.name)
            .where(
                TopupProduct.is_active & (TopupProduct.topup_type == "MOBILE") & (TopupProduct.country_code == alpha_3)
            )
            .order_by(TopupProduct.id)
            .tuples()
        )
        return [{"product_id": id_, "name": name, "country_code": alpha_3, "identified": index == 0}
                for index, (id_, name) in enumerate(rows)]  # fmt: skip


def test_a_jamaican_number_lists_the_jamaican_mobile_operators(api, buyer, stand):
    response = lookup(api, buyer[1], "+18762101234")
    assert response.status_code == 200
    tag, base = stand["tag"], stand["base"]
    assert response.json() == candidates("JAM")
    ours = [item for item in response.json() if item["name"].startswith(tag)]
    assert ours == [
        {"product_id": base + JAM_DIGICEL, "name": f"{tag} Digicel Jamaica", "country_code": "JAM",
         "identified": ours[0] == response.json()[0]},
        {"product_id": base + JAM_FLOW, "name": f"{tag} Flow Jamaica", "country_code": "JAM", "identified": False},
    ]  # fmt: skip  # not the inactive one, nor the gaming one
    assert response.text.startswith("[{")  # a bare array, never wrapped
    assert [item["identified"] for item in response.json()] == [True] + [False] * (len(response.json()) - 1)


@pytest.mark.parametrize(
    "number, alpha_3, offset",
    [("+12015550123", "USA", US), ("+14165550123", "CAN", CANADA), ("+15062345678", "CAN", CANADA),
     ("+74951234567", "RUS", RUSSIA), ("+79123456789", "RUS", RUSSIA), ("+77011234567", "KAZ", KAZAKHSTAN),
     ("+447400123456", "GBR", UK), ("+447911123456", "GGY", GUERNSEY),
     # Valid in no region: the longest dialing prefix, ties to the calling code's main country.
     ("+15555555555", "USA", US), ("+1234567", "USA", US), ("+70000000000", "RUS", RUSSIA),
     ("+777777777777", "RUS", RUSSIA), ("+440000000000", "GBR", UK)],
)  # fmt: skip
def test_the_number_decides_the_country_of_a_shared_calling_code(api, buyer, stand, number, alpha_3, offset):
    response = lookup(api, buyer[1], number)
    assert response.status_code == 200
    assert response.json() == candidates(alpha_3)
    assert stand["base"] + offset in [item["product_id"] for item in response.json()]


@pytest.mark.parametrize(
    "number",
    ["+688901234",  # Tuvalu: a gaming product and an inactive mobile one only
     "+999123456",  # no country has this calling code
     "+38343201234"],  # Kosovo: a region of libphonenumber, not an ISO 3166-1 country
)  # fmt: skip
def test_nothing_to_offer_is_an_empty_list(api, buyer, stand, number):
    response = lookup(api, buyer[1], number)
    assert response.status_code == 200 and response.json() == [] and response.text == "[]"


@pytest.mark.parametrize(
    "body, expected",
    [({}, required("mobile_number")), ({"mobile_number": None}, required("mobile_number")),
     ({"mobile_number": "12345"}, invalid("mobile_number")),
     ({"mobile_number": "+0123456789"}, invalid("mobile_number")),
     ({"mobile_number": "+1234"}, invalid("mobile_number")), ({"mobile_number": "+123456"}, invalid("mobile_number")),
     ({"mobile_number": "+1234567890123456"}, invalid("mobile_number")),
     ({"mobile_number": 12015550123}, invalid("mobile_number")), ({"mobile_number": ""}, invalid("mobile_number")),
     ({"mobile_number": "+1 201 555 0123"}, invalid("mobile_number")),
     ({"mobile_number": "+1201555012a"}, invalid("mobile_number")),
     ({"mobile_number": " +12015550123"}, invalid("mobile_number")),
     ({"mobile_number": "+12015550123\n"}, invalid("mobile_number")),
     ({"mobile_number": ["+12015550123"]}, invalid("mobile_number")),
     ([], error("ValidationException", "VALIDATION_FAILURE", "Request body must be a JSON object")),
     ("+12015550123", error("ValidationException", "VALIDATION_FAILURE", "Request body must be a JSON object"))],
)  # fmt: skip
def test_lookup_body_errors(api, buyer, body, expected):
    response = api.post("/api/v1/topups/lookup", json=body, headers=buyer[1])
    assert response.status_code == 400 and response.json() == expected


def test_lookup_accepts_seven_to_fifteen_digits(api, buyer):
    for number in ("+1234567", "+123456789012345"):
        assert lookup(api, buyer[1], number).status_code == 200, number


@pytest.mark.parametrize(
    "content, content_type, status, expected",
    [('{"mobile_number": "+12015550123"}', None, 415, UNSUPPORTED),
     ('{"mobile_number": "+12015550123"}', "text/plain", 415, UNSUPPORTED),
     ('{"mobile_number": "+12015550123"}', "application/x-www-form-urlencoded", 415, UNSUPPORTED),
     ('{"mobile_number": ', "application/json", 400, error("SyntaxError", "SYNTAX_ERROR", "Invalid request body")),
     ("", "application/json", 400, error("ValidationException", "VALIDATION_FAILURE", "Request body is required"))],
)  # fmt: skip
def test_lookup_content_type_and_syntax(api, buyer, content, content_type, status, expected):
    headers = {**buyer[1], **({"Content-Type": content_type} if content_type else {})}
    response = api.post("/api/v1/topups/lookup", content=content.encode(), headers=headers)
    assert response.status_code == status and response.json() == expected


def test_lookup_takes_json_with_parameters(api, buyer, stand):
    headers = {**buyer[1], "Content-Type": "application/json; charset=utf-8"}
    response = api.post("/api/v1/topups/lookup", content=b'{"mobile_number": "+18762101234"}', headers=headers)
    assert response.status_code == 200 and response.json() == candidates("JAM")


# -- 7.5, 7.6 charges --------------------------------------------------------------------------------


def charges(api, headers, raw=None, **body):
    """POST /api/v1/topups/charges with `body`, or with the exact JSON text `raw`."""
    if raw is not None:
        return api.post("/api/v1/topups/charges", content=raw.encode(),
                        headers={**headers, "Content-Type": "application/json"})  # fmt: skip
    return api.post("/api/v1/topups/charges", json=body, headers=headers)


def same_currency(non_discounted, discount, discount_amount, total, currency="USD"):
    return {
        "non_discounted_total": non_discounted, "discount_amount": discount_amount, "total_amount": total,
        "discount": discount, "gst_amount": 0, "total_payable": total, "net_amount": total, "handling_fee_amount": 0,
        "charges_details": {"source_currency": currency, "destination_currency": currency, "forex_rate": None,
                            "conversion_fee": None},
    }  # fmt: skip


def test_the_charges_object(api, buyer, stand):
    response = charges(api, buyer[1], product_id=stand["base"] + ROUNDING, amount=10)
    assert response.status_code == 200
    assert response.json() == same_currency(10, 2.5, 0.25, 9.75)
    assert "max_quantity" not in response.json()
    assert '"non_discounted_total":10.00,' in response.text and '"total_amount":9.75,' in response.text
    assert '"gst_amount":0.00' in response.text and '"handling_fee_amount":0.00' in response.text


@pytest.mark.parametrize(
    "amount, discount, discount_amount, total",
    [("10", 2.5, 0.25, 9.75), ("0.99", 1.5, 0.0149, 0.9751),  # 0.01485 rounds half-up
     ("50", 0, 0, 50), ("77.77", 100, 77.77, 0), ("33.33", 3.3333, 1.111, 32.219),  # 1.11098889
     ("0.01", 3.3333, 0.0003, 0.0097), ("12.34", 3.3333, 0.4113, 11.9287), ("1000", 3.3333, 33.333, 966.667),
     ("10.00", 2.5, 0.25, 9.75), ("0.990", 1.5, 0.0149, 0.9751), ("10.01", 3.3333, 0.3337, 9.6763)],
)  # fmt: skip
def test_discounts_rounded_half_up_to_four_places(api, buyer, stand, amount, discount, discount_amount, total):
    raw = f'{{"product_id": {stand["base"] + ROUNDING}, "amount": {amount}}}'
    response = charges(api, buyer[1], raw=raw)
    assert response.status_code == 200, response.text
    assert response.json() == same_currency(float(amount), discount, discount_amount, total)


@pytest.mark.parametrize(
    "amount, discount, discount_amount, total",
    [("10", 3, 0.3, 9.7), ("0.99", 3, 0.0297, 0.9603), ("50", 3, 1.5, 48.5), ("77.77", 100, 77.77, 0),
     ("33.33", 3.3333, 1.111, 32.219)],
)  # fmt: skip
def test_the_clients_discount_when_it_is_higher(api, buyer, stand, new_client, login, amount, discount,
                                                discount_amount, total):  # fmt: skip
    """The effective discount is the higher of the variant's and the client's discount on the
    product (contract 7.6, 15.1 item 40); another client's discount does not count."""
    client, headers = buyer
    other, _, _ = new_client()
    with models.db.connection_context():
        products.set_discount(client.id, "topups", stand["base"] + ROUNDING, D("3"))
        products.set_discount(other.id, "topups", stand["base"] + ROUNDING, D("50"))
    raw = f'{{"product_id": {stand["base"] + ROUNDING}, "amount": {amount}}}'
    assert charges(api, headers, raw=raw).json() == same_currency(float(amount), discount, discount_amount, total)


def test_a_discount_on_another_product_does_not_count(api, buyer, stand):
    client, headers = buyer
    with models.db.connection_context():
        products.set_discount(client.id, "topups", stand["base"] + JAM_DIGICEL, D("40"))
    assert charges(api, headers, product_id=stand["base"] + ROUNDING, amount=10).json()["discount"] == 2.5
    assert charges(api, headers, product_id=stand["base"] + JAM_DIGICEL, amount=10).json()["discount"] == 40


@pytest.mark.parametrize(
    "amount, category, discount",
    [("5", None, 2.5),  # a fixed variant before the range holding it, the lowest id among the fixed ones
     ("5.00", None, 2.5), ("5.0000", None, 2.5), ("10.5", None, 2.5), ("10.50", None, 2.5),  # numeric equality
     ("7", None, 1),  # a range: the lowest id of the two ranges holding it
     ("1", None, 1), ("100", None, 1), ("100.00", None, 1),  # both bounds belong to the range
     ("20", None, 1),  # the inactive fixed variant listing 20 does not count
     ("5", "Airtime", 2.5), ("5", "Data", 4), ("5", "Bundle", 6), ("7", "Bundle", 6), ("10.5", "Bundle", 6)],
)  # fmt: skip
def test_variant_selection(api, buyer, stand, amount, category, discount):
    raw = f'{{"product_id": {stand["base"] + JAM_DIGICEL}, "amount": {amount}'
    raw += f', "category": "{category}"}}' if category else "}"
    response = charges(api, buyer[1], raw=raw)
    assert response.status_code == 200, response.text
    assert response.json()["discount"] == discount
    assert response.json()["non_discounted_total"] == float(amount)


@pytest.mark.parametrize(
    "offset, amount, category",
    [(JAM_DIGICEL, "7", "Data"),  # no Data variant holds 7
     (JAM_DIGICEL, "250", None),  # only an inactive range holds it
     (JAM_DIGICEL, "0.99", None), (JAM_DIGICEL, "100.01", None), (JAM_DIGICEL, "1000000000", None),
     (JAM_DIGICEL, "5.001", None), (JAM_DIGICEL, "10.501", None),  # more decimals than USD has
     (JAM_DIGICEL, "7.12345", None),
     (TOKYO, "1000.5", None), (TOKYO, "499", None), (TOKYO, "600.01", None),  # JPY has none
     (ROUNDING, "0.01", "Data")],
)  # fmt: skip
def test_invalid_amounts(api, buyer, stand, offset, amount, category):
    raw = f'{{"product_id": {stand["base"] + offset}, "amount": {amount}'
    raw += f', "category": "{category}"}}' if category else "}"
    response = charges(api, buyer[1], raw=raw)
    assert response.status_code == 400 and response.json() == bad_request("Invalid amount")


def test_a_currency_without_decimals_quoted(api, buyer, stand, rates):
    """No JPY wallet: the default currency's (EUR) pays, at the JPY -> EUR rate."""
    rates("JPY", "EUR", "0.0062")
    response = charges(api, buyer[1], raw=f'{{"product_id": {stand["base"] + TOKYO}, "amount": 1000.0}}')
    assert response.json() == {
        "non_discounted_total": 1000, "discount_amount": 10, "total_amount": 990, "discount": 1, "gst_amount": 0,
        "total_payable": 6.138, "net_amount": 6.138, "handling_fee_amount": 0,
        "charges_details": {"source_currency": "JPY", "destination_currency": "EUR", "forex_rate": 0.0062,
                            "conversion_fee": 0},
    }  # fmt: skip
    text = response.text
    assert '"non_discounted_total":1000,' in text and '"total_amount":990,' in text and '"net_amount":6.138,' in text
    assert '"gst_amount":0,' in text and '"handling_fee_amount":0.00' in text and '"conversion_fee":0.00' in text
    range_quote = charges(api, buyer[1], product_id=stand["base"] + TOKYO, amount=777).json()
    assert (range_quote["discount"], range_quote["total_amount"], range_quote["net_amount"]) == (0, 777, 4.8174)


def test_quotes_with_exchange_rates(api, buyer, stand, rates):
    client, headers = buyer
    rates("USD", "EUR", "0.92")
    rates("GBP", "EUR", "1.164")
    eur = wallet_of(client, "EUR")
    fx = charges(api, headers, product_id=stand["base"] + ROUNDING, amount=10, wallet_id=eur).json()
    assert fx == {
        "non_discounted_total": 10, "discount_amount": 0.25, "total_amount": 9.75, "discount": 2.5, "gst_amount": 0,
        "total_payable": 8.97, "net_amount": 8.97, "handling_fee_amount": 0,
        "charges_details": {"source_currency": "USD", "destination_currency": "EUR", "forex_rate": 0.92,
                            "conversion_fee": 0},
    }  # fmt: skip
    # Without wallet_id: the USD wallet pays USD; no GBP wallet, so the default currency's pays GBP.
    assert charges(api, headers, product_id=stand["base"] + ROUNDING, amount=10).json() == same_currency(
        10, 2.5, 0.25, 9.75
    )
    gbp = charges(api, headers, product_id=stand["base"] + UK, amount=10).json()
    assert (gbp["total_amount"], gbp["net_amount"], gbp["total_payable"]) == (9.8, 11.4072, 11.4072)
    assert gbp["charges_details"] == {"source_currency": "GBP", "destination_currency": "EUR", "forex_rate": 1.164,
                                      "conversion_fee": 0}  # fmt: skip
    usd = wallet_of(client, "USD")
    same = charges(api, headers, product_id=stand["base"] + ROUNDING, amount=10, wallet_id=usd).json()
    assert same == same_currency(10, 2.5, 0.25, 9.75)


@pytest.mark.parametrize(
    "rate, net",
    [("0.123445", 6.1723),  # 6.17225: half-up, not half-even
     ("0.123455", 6.1728), ("1.00001", 50.0005), ("0.0000049", 0.0002), ("0.000005", 0.0003), ("0.0000009", 0)],
)  # fmt: skip
def test_the_converted_amount_is_rounded_half_up(api, stand, new_client, login, rates, rate, net):
    """net_amount = round(total_amount x forex_rate), 4 places half-up (contract 15.1, item 25)."""
    client, key, secret = new_client(features=("topups",))
    with models.db.connection_context():
        client.configure(active_currency("PLN"), 100)
        Wallet.open_funded(client.id, "PLN", 1000, "test")
    rates("USD", "PLN", rate)
    quote = charges(api, bearer(login(key, secret)["access_token"]), product_id=stand["base"] + ROUNDING, amount=50)
    assert quote.json()["total_amount"] == 50
    assert quote.json()["net_amount"] == net and quote.json()["total_payable"] == net
    assert quote.json()["charges_details"]["forex_rate"] == float(rate)


@pytest.mark.parametrize(
    "body, expected",
    [({"amount": 10}, required("product_id")), ({"product_id": None, "amount": 10}, required("product_id")),
     ({"product_id": 1}, required("amount")), ({"product_id": 1, "amount": None}, required("amount")),
     ({"product_id": 0, "amount": 10}, invalid("product_id")),
     ({"product_id": -1, "amount": 10}, invalid("product_id")),
     ({"product_id": "1", "amount": 10}, invalid("product_id")),
     ({"product_id": 1.5, "amount": 10}, invalid("product_id")),
     ({"product_id": 2147483648, "amount": 10}, invalid("product_id")),
     ({"product_id": 1, "amount": 0}, invalid("amount")), ({"product_id": 1, "amount": 0.001}, invalid("amount")),
     ({"product_id": 1, "amount": 0.009}, invalid("amount")), ({"product_id": 1, "amount": -5}, invalid("amount")),
     ({"product_id": 1, "amount": 1000000001}, invalid("amount")),
     ({"product_id": 1, "amount": 1000000000.01}, invalid("amount")),
     ({"product_id": 1, "amount": "10"}, invalid("amount")), ({"product_id": 1, "amount": True}, invalid("amount")),
     ({"product_id": 1, "amount": 10, "wallet_id": 0}, invalid("wallet_id")),
     ({"product_id": 1, "amount": 10, "wallet_id": "7"}, invalid("wallet_id")),
     ({"product_id": 1, "amount": 10, "wallet_id": None}, invalid("wallet_id")),
     ({"product_id": 1, "amount": 10, "category": "Gaming"}, invalid("category")),
     ({"product_id": 1, "amount": 10, "category": "airtime"}, invalid("category")),
     ({"product_id": 1, "amount": 10, "category": "In-Game Currency"}, invalid("category")),
     ({"product_id": 1, "amount": 10, "category": ""}, invalid("category")),
     ({"product_id": 1, "amount": 10, "category": None}, invalid("category")),
     ([], error("ValidationException", "VALIDATION_FAILURE", "Request body must be a JSON object"))],
)  # fmt: skip
def test_charges_body_errors(api, buyer, body, expected):
    response = api.post("/api/v1/topups/charges", json=body, headers=buyer[1])
    assert response.status_code == 400 and response.json() == expected


@pytest.mark.parametrize(
    "content, content_type, status, expected",
    [('{"product_id": 1, "amount": 10}', None, 415, UNSUPPORTED),
     ('{"product_id": 1, "amount": 10}', "text/json", 415, UNSUPPORTED),
     ('{"product_id": 1, "amount": 10', "application/json", 400,
      error("SyntaxError", "SYNTAX_ERROR", "Invalid request body")),
     ("", "application/json", 400, error("ValidationException", "VALIDATION_FAILURE", "Request body is required"))],
)  # fmt: skip
def test_charges_content_type_and_syntax(api, buyer, content, content_type, status, expected):
    headers = {**buyer[1], **({"Content-Type": content_type} if content_type else {})}
    response = api.post("/api/v1/topups/charges", content=content.encode(), headers=headers)
    assert response.status_code == status and response.json() == expected


def test_unknown_body_fields_are_ignored(api, buyer, stand):
    body = {"product_id": stand["base"] + ROUNDING, "amount": 10, "quantity": 7, "input_data": {"x": 1}}
    assert charges(api, buyer[1], **body).json() == same_currency(10, 2.5, 0.25, 9.75)


def test_products_that_are_not_found(api, buyer, stand):
    for product in (stand["base"] + JAM_CLOSED, stand["base"] + 999, 2147483647):
        response = charges(api, buyer[1], product_id=product, amount=5)
        assert response.status_code == 404 and response.json() == not_found("Product")


def test_wallets_that_are_not_found(api, buyer, stand, new_client):
    """Someone else's wallet, or none at all; a 404 comes before the business rules (1.10)."""
    other, _, _ = new_client()
    with models.db.connection_context():
        foreign = Wallet.open_funded(other.id, "USD", 10, "test").id
    for wallet_id, amount in ((foreign, 10), (2147483647, 10), (foreign, 250)):  # 250: no variant either
        response = charges(api, buyer[1], product_id=stand["base"] + ROUNDING, amount=amount, wallet_id=wallet_id)
        assert response.status_code == 404 and response.json() == not_found("Wallet")
    # The product is looked up first.
    response = charges(api, buyer[1], product_id=stand["base"] + JAM_CLOSED, amount=5, wallet_id=foreign)
    assert response.json() == not_found("Product")


def test_no_wallet_available_for_the_currency(api, stand, new_client, login):
    _, key, secret = new_client(features=("topups",))
    headers = bearer(login(key, secret)["access_token"])
    response = charges(api, headers, product_id=stand["base"] + ROUNDING, amount=10)
    assert response.status_code == 400 and response.json() == bad_request("No wallet available for this currency")
    # An amount no variant takes is refused before the wallet is chosen.
    assert charges(api, headers, product_id=stand["base"] + ROUNDING, amount=2000).json() == bad_request(
        "Invalid amount"
    )


def test_a_wallet_in_another_currency_without_a_default_currency(api, stand, new_client, login):
    client, key, secret = new_client(features=("topups",))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "EUR", 100, "test")
    headers = bearer(login(key, secret)["access_token"])
    response = charges(api, headers, product_id=stand["base"] + ROUNDING, amount=10)
    assert response.json() == bad_request("No wallet available for this currency")


def test_currency_conversion_not_available(api, buyer, stand):
    client, headers = buyer
    for wallet_id in (None, wallet_of(client, "USD")):  # the default currency's wallet (EUR), or USD
        body = {"product_id": stand["base"] + ICELAND, "amount": 500}
        response = charges(api, headers, **body, **({"wallet_id": wallet_id} if wallet_id else {}))
        assert response.status_code == 400 and response.json() == bad_request("Currency conversion not available")


def test_a_quote_does_not_check_the_balance(api, stand, new_client, login):
    client, key, secret = new_client(features=("topups",))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", 0, "test")
    response = charges(api, bearer(login(key, secret)["access_token"]), product_id=stand["base"] + ROUNDING, amount=50)
    assert response.status_code == 200 and response.json()["total_payable"] == 50


# -- the feature, authentication first, the rate-limit bucket --------------------------------------

OPERATIONS = [
    ("GET", "/api/v1/topups/products", None),
    ("GET", "/api/v1/topups/products/{product}", None),
    ("GET", "/api/v1/topups/products/{product}/variants", None),
    ("GET", "/api/v1/topups/variants/{variant}", None),
    ("POST", "/api/v1/topups/lookup", {"mobile_number": "+18762101234"}),
    ("POST", "/api/v1/topups/charges", {"product_id": "{product}", "amount": 10}),
    ("POST", "/api/v1/topups/orders", {"product_id": "{product}", "amount": 10, "input_data": {"phone_number": "1"}}),
    ("GET", "/api/v1/topups/orders", None),
    ("GET", "/api/v1/topups/orders/1", None),
    ("PATCH", "/api/v1/topups/orders/1/notification-email", {"email": "someone@example.com"}),
]
OPERATION_IDS = ["list", "product", "variants", "variant", "lookup", "charges", "order", "orders", "order-get",
                 "notification-email"]  # fmt: skip


def request(api, stand, method, path, body, headers):
    ids = {"product": stand["base"] + JAM_DIGICEL, "variant": stand["base"] + AIRTIME_PACKS}
    if body is not None:
        body = {key: ids["product"] if value == "{product}" else value for key, value in body.items()}
    return api.request(method, path.format(**ids), json=body, headers=headers)


@pytest.mark.parametrize("method, path, body", OPERATIONS, ids=OPERATION_IDS)
def test_the_topups_feature_gates_every_operation(api, stand, new_client, login, method, path, body):
    client, key, secret = new_client(features=("vouchers", "esim"))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", 1000, "test")
    response = request(api, stand, method, path, body, bearer(login(key, secret)["access_token"]))
    assert response.status_code == 400 and response.json() == NO_FEATURE


@pytest.mark.parametrize("method, path, body", OPERATIONS, ids=OPERATION_IDS)
def test_authentication_comes_before_the_feature(api, stand, method, path, body):
    response = request(api, stand, method, path, body, {})
    assert response.status_code == 401
    assert response.json() == error("UnauthorizedError", "UNAUTHORIZED", "Authorization header required")
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_feature_check_comes_after_the_id_and_body_checks(api, stand, new_client, login):
    _, key, secret = new_client(features=("vouchers",))
    headers = bearer(login(key, secret)["access_token"])
    assert api.get("/api/v1/topups/products/abc", headers=headers).json() == bad_request("Invalid product ID")
    assert api.post("/api/v1/topups/lookup", json={}, headers=headers).json() == required("mobile_number")
    assert api.get("/api/v1/topups/products?per_page=0", headers=headers).json() == invalid("per_page")
    # ... and before the resources: a missing product is still the feature's error.
    assert api.get("/api/v1/topups/products/2147483647", headers=headers).json() == NO_FEATURE


def test_top_up_charges_have_a_bucket_of_their_own(migrated, stand, new_client):
    app = create_app(make_settings(migrated, OCTOPUS_RATE_LIMIT_PROFILE="off",
                                   OCTOPUS_RATE_LIMITS="topup_charges=2,charges=2"))  # fmt: skip
    client, key, secret = new_client()
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", 1000, "test")
    body = {"product_id": stand["base"] + ROUNDING, "amount": 10}
    with app.test_client(client=TEST_PEER) as http:
        token = http.post("/auth/login", json={"username": key, "password": secret}).json()["data"]["access_token"]
        headers = bearer(token)
        assert [http.post("/api/v1/topups/charges", json=body, headers=headers).status_code for _ in (1, 2)] == [
            200, 200]  # fmt: skip
        limited = http.post("/api/v1/topups/charges", json=body, headers=headers)
        assert limited.status_code == 429
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert limited.json() == error("TooManyRequestsError", "TOO_MANY_REQUESTS",
                                       f"Rate limit exceeded. Retry after {retry_after} seconds.")  # fmt: skip
        # Voucher charges count in their own bucket (the missing product is answered after the limiter).
        voucher = {"denomination": 10, "quantity": 1}
        statuses = [http.post("/api/v1/products/2147483647/charges", json=voucher, headers=headers).status_code
                    for _ in (1, 2, 3)]  # fmt: skip
        assert statuses == [404, 404, 429]
        # Every other top-up operation shares the default bucket, unlimited here.
        assert (
            http.post("/api/v1/topups/lookup", json={"mobile_number": "+18762101234"}, headers=headers).status_code
            == 200
        )
        order = {"product_id": stand["base"] + 999, "amount": 10}
        assert http.post("/api/v1/topups/orders", json=order, headers=headers).status_code == 404
        assert http.post("/api/v1/topups/charges", json=body, headers=headers).status_code == 429
