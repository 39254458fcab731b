"""API: the voucher catalogue as a client sees it (contract 5.1-5.4, 5.7): visibility, effective
discounts, filters, both sort styles, pagination, availability and exact quotes, with every error;
and every change to the catalogue in the very next list, though each process keeps its lists encoded."""

import json
import secrets
from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.models import Wallet, catalogue, products, vouchers
from octopus_cards.models.wallets import active_currency

from support.inprocess import bearer

D = Decimal


def error(name, code, message):
    return {"error": {"name": name, "code": code, "message": message}}


def bad_request(message):
    return error("BadRequestError", "BAD_REQUEST", message)


def invalid(field):
    return error("ValidationException", "VALIDATION_FAILURE", f"{field} is invalid")


@pytest.fixture(scope="module")
def shelf(migrated):
    """Products of a category of their own (so lists are this module's), ids from a random base."""
    base = 2_000_000 + secrets.randbelow(1_000_000) * 10
    category = f"Shelf {secrets.token_hex(3)}"

    def product(offset, name, **fields):
        return {"id": base + offset, "name": name, "category": category, "country": "USA", "currency": "USD",
                "denominations": [{"min": 10, "max": 500, "discount": 2.5}], **fields}  # fmt: skip

    document = {
        "vouchers": [
            product(1, "bravo gift", subcategory="Sub B"),
            product(2, "Alpha Gift",
                    denominations=[{"value": 25, "discount": 3}, {"min": 20, "max": 30, "discount": 9}]),
            product(3, "charlie Gift", country="JPN", currency="JPY",
                    denominations=[{"min": 500, "max": 50000, "discount": 1}]),
            product(4, "Delta gift", stock=0),
            product(5, "Echo Gift", active=False),
            product(6, "Foxtrot Gift", stock=3),
            product(7, "Golf Gift", mock={"in_stock": False}),
            product(8, "alpha gift", currency="CAD"),
        ]
    }  # fmt: skip
    with models.db.connection_context():
        catalogue.import_catalogue(catalogue.demo_text())  # the exchange rates
        catalogue.import_catalogue(json.dumps(document))
    return {"base": base, "category": category}


@pytest.fixture
def buyer(shelf, new_client, login):
    """A client with every feature, USD and EUR wallets, default currency EUR; (client, headers)."""
    client, key, secret = new_client()
    with models.db.connection_context():
        client.configure(active_currency("EUR"), 100)
        for code in ("USD", "EUR"):
            Wallet.open_funded(client.id, code, 1000, "test")
    return client, bearer(login(key, secret)["access_token"])


def listed(api, headers, shelf, query=""):
    response = api.get(f"/api/v1/products?category={shelf['category']}&{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] - shelf["base"] for item in response.json()], response


def test_visible_products_newest_first_with_their_fields(api, buyer, shelf):
    ids, response = listed(api, buyer[1], shelf)
    assert ids == [8, 7, 6, 3, 2, 1]  # not the inactive one (5) nor the one out of stock (4)
    assert response.headers["x-total-count"] == "6" and response.headers["x-page-size"] == "6"
    first = next(item for item in response.json() if item["id"] == shelf["base"] + 1)
    assert first == {
        "id": shelf["base"] + 1, "name": "bravo gift", "category": shelf["category"], "sub_category": "Sub B",
        "country_code": "USA", "currency_code": "USD", "image_url": None, "delivery_mode": None,
        "delivery_time": None, "validity": None,
        "available_denominations": [{"min_value": 10, "max_value": 500, "discount": 2.5}],
    }  # fmt: skip
    assert '"min_value":10.00,"max_value":500.00' in response.text  # at least the currency's precision
    jpy = api.get(f"/api/v1/products/{shelf['base'] + 3}", headers=buyer[1])
    assert '"min_value":500,"max_value":50000' in jpy.text


def test_pages(api, buyer, shelf):
    ids, response = listed(api, buyer[1], shelf, "limit=4&page=2")
    assert ids == [2, 1]
    assert (response.headers["x-page"], response.headers["x-per-page"], response.headers["x-total-pages"],
            response.headers["x-has-more"]) == ("2", "4", "2", "false")  # fmt: skip


@pytest.mark.parametrize(
    "query, expected",
    [("search=ALPHA", [8, 2]), ("search=", [8, 7, 6, 3, 2, 1]), ("currency_id=1", [7, 6, 2, 1]),
     ("sort_by=name", [2, 8, 1, 3, 6, 7]), ("sort_by=NAME&sort_dir=DESC", [7, 6, 3, 1, 2, 8]),
     ("sort_dir=asc", [1, 2, 3, 6, 7, 8]), ("sort_by=category", [1, 2, 3, 6, 7, 8]),
     ("sort_by=category&sort_dir=desc", [1, 2, 3, 6, 7, 8]),
     ('sort={"Field":"name","Direction":"DESC"}', [7, 6, 3, 1, 2, 8]),
     ('sort={"field":"NAME"}', [2, 8, 1, 3, 6, 7]), ('sort={"FIELD":"id","direction":"desc"}', [8, 7, 6, 3, 2, 1]),
     ('sort={"Field":"id"}&sort_by=nonsense&sort_dir=sideways', [1, 2, 3, 6, 7, 8])],
)  # fmt: skip
def test_filters_and_both_sort_styles(api, buyer, shelf, query, expected):
    """Names sort case-insensitively with ties by id ascending; `sort` wins even over invalid
    `sort_by`/`sort_dir`; `sort_dir` alone sorts by id (contract 5.1, 15.1 item 28)."""
    assert listed(api, buyer[1], shelf, query)[0] == expected


def test_country_filter_and_unmatched_filters(api, buyer, shelf):
    japan = next(c["id"] for c in api.get("/api/v1/countries", headers=buyer[1]).json() if c["alpha_3"] == "JPN")
    assert listed(api, buyer[1], shelf, f"country_id={japan}")[0] == [3]
    assert listed(api, buyer[1], shelf, "country_id=2147483647")[0] == []
    unknown = api.get("/api/v1/products?category=no such category", headers=buyer[1])
    assert unknown.json() == [] and unknown.headers["x-total-pages"] == "0"


@pytest.mark.parametrize(
    "query, field",
    [("sort=x", "sort"), ("sort=[]", "sort"), ('sort={"Direction":"ASC"}', "sort"), ('sort={"Field":"price"}', "sort"),
     ('sort={"Field":"id","Direction":"up"}', "sort"), ('sort={"Field":"id","extra":1}', "sort"),
     ('sort={"Field":"id","field":"name"}', "sort"), ('sort={"Field":1}', "sort"), ("sort_by=price", "sort_by"),
     ("sort_dir=sideways", "sort_dir"), ("limit=0", "limit"), ("page=0", "page"), ("country_id=0", "country_id"),
     ("currency_id=abc", "currency_id"), (f"search={'x' * 101}", "search"), (f"category={'x' * 101}", "category")],
)  # fmt: skip
def test_list_query_errors(api, buyer, query, field):
    response = api.get(f"/api/v1/products?{query}", headers=buyer[1])
    assert response.status_code == 400 and response.json() == invalid(field)


def test_hidden_products_are_not_found_everywhere(api, buyer, shelf):
    client, headers = buyer
    with models.db.connection_context():
        products.blacklist(client.id, shelf["base"] + 1)
    assert listed(api, headers, shelf)[0] == [8, 7, 6, 3, 2]
    missing = error("NotFoundError", "NOT_FOUND", "Product not found")
    body = {"denomination": 25, "quantity": 1}
    for offset in (1, 4, 5, 999):  # blacklisted, out of stock, inactive, missing
        product = shelf["base"] + offset
        assert api.get(f"/api/v1/products/{product}", headers=headers).json() == missing
        assert api.post(f"/api/v1/products/{product}/availability", json=body, headers=headers).json() == missing
        assert api.post(f"/api/v1/products/{product}/charges", json=body, headers=headers).json() == missing


def test_effective_discount_is_the_higher_one(api, buyer, shelf):
    client, headers = buyer
    with models.db.connection_context():
        products.set_discount(client.id, "vouchers", shelf["base"] + 2, D("5"))
    item = api.get(f"/api/v1/products/{shelf['base'] + 2}", headers=headers).json()
    assert [d["discount"] for d in item["available_denominations"]] == [5, 9]  # max(3, 5) and max(9, 5)
    quote = api.post(f"/api/v1/products/{shelf['base'] + 2}/charges", json={"denomination": 25, "quantity": 2},
                     headers=headers).json()  # fmt: skip
    assert (quote["discount"], quote["discount_amount"]) == (5, 2.5)  # the first range containing 25 applies


@pytest.mark.parametrize(
    "offset, denomination, quantity, available",
    [(1, 50, 5, True), (1, 9.99, 1, False), (1, 500.01, 1, False), (1, 50.001, 1, False), (1, "50.10", 1, True),
     (3, 500, 1, True), (3, 500.5, 1, False), (6, 20, 3, True), (6, 20, 4, False), (7, 20, 1, False)],
)  # fmt: skip
def test_availability(api, buyer, shelf, offset, denomination, quantity, available):
    """Fit (range and precision), tracked stock, then the supplier's own check (contract 5.3)."""
    raw = f'{{"denomination": {denomination}, "quantity": {quantity}}}'
    response = api.post(f"/api/v1/products/{shelf['base'] + offset}/availability", content=raw,
                        headers={**buyer[1], "Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 200 and response.json() == {"is_available": available}


def quote(api, headers, product, **body):
    return api.post(f"/api/v1/products/{product}/charges", json=body, headers=headers)


def test_the_contracts_quote(api, buyer, shelf):
    response = quote(api, buyer[1], shelf["base"] + 1, denomination=50, quantity=5)
    assert response.status_code == 200
    assert response.json() == {
        "non_discounted_total": 250, "discount_amount": 6.25, "total_amount": 243.75, "discount": 2.5,
        "gst_amount": 0, "total_payable": 243.75, "max_quantity": 100, "net_amount": 243.75,
        "handling_fee_amount": 0,
        "charges_details": {"source_currency": "USD", "destination_currency": "USD", "forex_rate": None,
                            "conversion_fee": None},
    }  # fmt: skip
    assert '"non_discounted_total":250.00' in response.text


def test_quotes_with_exchange_rates(api, buyer, shelf):
    client, headers = buyer
    with models.db.connection_context():
        eur = Wallet.select().where(Wallet.client == client.id).order_by(Wallet.id.desc()).first().id
    fx = quote(api, headers, shelf["base"] + 1, denomination=50.5, quantity=2, wallet_id=eur).json()
    assert (fx["total_amount"], fx["net_amount"], fx["total_payable"]) == (98.475, 90.597, 90.597)
    assert fx["charges_details"] == {"source_currency": "USD", "destination_currency": "EUR", "forex_rate": 0.92,
                                     "conversion_fee": 0}  # fmt: skip
    # No JPY wallet: the default currency's (EUR) pays, at the JPY -> EUR rate.
    jpy = quote(api, headers, shelf["base"] + 3, denomination=5000, quantity=1).json()
    assert (jpy["total_amount"], jpy["net_amount"]) == (4950, 30.69)  # 4950 x 0.0062
    assert jpy["charges_details"]["forex_rate"] == 0.0062 and jpy["discount"] == 1


@pytest.mark.parametrize(
    "offset, body, status, expected",
    [(1, {"denomination": 9, "quantity": 1}, 400, bad_request("Invalid denomination")),
     (1, {"denomination": 50.123, "quantity": 1}, 400, bad_request("Invalid denomination")),
     (1, {"denomination": 50, "quantity": 101}, 400, bad_request("Quantity exceeds the allowed maximum")),
     (1, {"denomination": 50, "quantity": 1, "wallet_id": 2147483647}, 404,
      error("NotFoundError", "NOT_FOUND", "Wallet not found")),
     (8, {"denomination": 50, "quantity": 1}, 400, bad_request("Currency conversion not available")),
     (1, {"denomination": 0, "quantity": 1}, 400, invalid("denomination")),
     (1, {"denomination": 1000000000.01, "quantity": 1}, 400, invalid("denomination")),
     (1, {"denomination": "50", "quantity": 1}, 400, invalid("denomination")),
     (1, {"quantity": 1}, 400, error("ValidationException", "VALIDATION_FAILURE", "denomination is required")),
     (1, {"denomination": 50, "quantity": 5001}, 400, invalid("quantity")),
     (1, {"denomination": 50, "quantity": 1.5}, 400, invalid("quantity")),
     (1, {"denomination": 50, "quantity": 1, "wallet_id": 0}, 400, invalid("wallet_id"))],
)  # fmt: skip
def test_quote_errors(api, buyer, shelf, offset, body, status, expected):
    response = quote(api, buyer[1], shelf["base"] + offset, **body)
    assert response.status_code == status and response.json() == expected


def test_no_wallet_available(api, shelf, new_client, login):
    _, key, secret = new_client(features=("vouchers",))
    headers = bearer(login(key, secret)["access_token"])
    response = quote(api, headers, shelf["base"] + 1, denomination=50, quantity=1)
    assert response.json() == bad_request("No wallet available for this currency")


def test_the_bulk_limit_is_the_quotes_max_quantity(api, buyer, shelf):
    client, headers = buyer
    with models.db.connection_context():
        client.configure(bulk_limit=3)
    assert quote(api, headers, shelf["base"] + 1, denomination=50, quantity=3).json()["max_quantity"] == 3
    assert quote(api, headers, shelf["base"] + 1, denomination=50, quantity=4).json() == bad_request(
        "Quantity exceeds the allowed maximum"
    )


@pytest.mark.parametrize(
    "method, suffix",
    [("GET", ""), ("GET", "/{id}"), ("POST", "/{id}/availability"), ("POST", "/{id}/charges")],
)
def test_the_vouchers_feature_gates_every_operation(api, shelf, new_client, login, method, suffix):
    _, key, secret = new_client(features=("topups", "esim"))
    headers = bearer(login(key, secret)["access_token"])
    path = "/api/v1/products" + suffix.format(id=shelf["base"] + 1)
    response = api.request(method, path, json={"denomination": 50, "quantity": 1} if method == "POST" else None,
                           headers=headers)  # fmt: skip
    assert response.json() == error("BadRequestError", "INVALID_FEATURE",
                                    "The requested feature is not enabled for this client")  # fmt: skip


# -- the encoded lists each process keeps, and the catalogue version that ends them (15.1, item 39) --


@pytest.fixture
def stall(migrated):
    """Three products of a category of their own, for one test that changes them: their ids' base,
    the category, `entry(offset, name, **fields)` and `load(*entries)` to import changes."""
    base = 100_000_000 + secrets.randbelow(1_000_000) * 10
    category = f"Stall {secrets.token_hex(3)}"

    def entry(offset, name, **fields):
        return {"id": base + offset, "name": name, "category": category, "country": "USA", "currency": "USD",
                "denominations": [{"min": 10, "max": 500, "discount": 2.5}], **fields}  # fmt: skip

    def load(*entries):
        with models.db.connection_context():
            return catalogue.import_catalogue(json.dumps({"vouchers": list(entries)}))

    load(entry(1, "One"), entry(2, "Two", stock=1), entry(3, "Three"))
    return {"base": base, "category": category, "entry": entry, "load": load}


def stall_view(api, headers, stall):
    """{offset: (name, discounts)} of the list, and of each product's own GET (the same, or absent)."""
    response = api.get(f"/api/v1/products?category={stall['category']}&sort_dir=asc", headers=headers)
    assert response.status_code == 200
    shown = {item["id"] - stall["base"]: (item["name"], [d["discount"] for d in item["available_denominations"]])
             for item in response.json()}  # fmt: skip
    assert response.headers["x-total-count"] == str(len(shown))
    for offset in (1, 2, 3):
        one = api.get(f"/api/v1/products/{stall['base'] + offset}", headers=headers)
        if offset in shown:
            assert one.json() == next(item for item in response.json() if item["id"] == stall["base"] + offset)
        else:
            assert one.status_code == 404
    return shown


def change_by_import(stall, client, api, headers):
    stall["load"](stall["entry"](1, "One renamed", denominations=[{"value": 20, "discount": 4}]),
                  stall["entry"](2, "Two", stock=1), stall["entry"](3, "Three", active=False))  # fmt: skip
    return {1: ("One renamed", [4]), 2: ("Two", [2.5])}


def change_discounts(stall, client, api, headers):
    with models.db.connection_context():
        products.set_discount(client.id, "vouchers", stall["base"] + 1, D("7.5"))
        products.set_discount(client.id, "vouchers", stall["base"] + 2, D("1"))  # below the range's own
    return {1: ("One", [7.5]), 2: ("Two", [2.5]), 3: ("Three", [2.5])}


def change_blacklist(stall, client, api, headers):
    with models.db.connection_context():
        products.blacklist(client.id, stall["base"] + 3)
    return {1: ("One", [2.5]), 2: ("Two", [2.5])}


def change_stock_by_an_order(stall, client, api, headers):
    body = {"product_id": stall["base"] + 2, "denomination": 10, "quantity": 1}
    response = api.post("/api/v1/orders", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return {1: ("One", [2.5]), 3: ("Three", [2.5])}  # its last code: out of stock


@pytest.mark.parametrize(
    "change", [change_by_import, change_discounts, change_blacklist, change_stock_by_an_order],
    ids=["import", "discount", "blacklist", "stock-run-out-by-an-order"],
)  # fmt: skip
def test_every_change_shows_in_the_very_next_request(api, buyer, stall, change):
    client, headers = buyer
    before = {1: ("One", [2.5]), 2: ("Two", [2.5]), 3: ("Three", [2.5])}
    assert stall_view(api, headers, stall) == before
    assert stall_view(api, headers, stall) == before  # now served from what the process keeps
    expected = change(stall, client, api, headers)
    assert stall_view(api, headers, stall) == expected


def test_undoing_a_change_shows_at_once_too(api, buyer, stall):
    client, headers = buyer
    with models.db.connection_context():
        products.set_discount(client.id, "vouchers", stall["base"] + 1, D("9"))
        products.blacklist(client.id, stall["base"] + 3)
    assert stall_view(api, headers, stall) == {1: ("One", [9]), 2: ("Two", [2.5])}
    with models.db.connection_context():
        products.clear_discount(client.id, "vouchers", stall["base"] + 1)
    assert stall_view(api, headers, stall) == {1: ("One", [2.5]), 2: ("Two", [2.5])}
    with models.db.connection_context():
        products.unblacklist(client.id, stall["base"] + 3)
    assert stall_view(api, headers, stall) == {1: ("One", [2.5]), 2: ("Two", [2.5]), 3: ("Three", [2.5])}
    stall["load"](stall["entry"](1, "One"), stall["entry"](2, "Two", stock=0), stall["entry"](3, "Three"))
    assert stall_view(api, headers, stall) == {1: ("One", [2.5]), 3: ("Three", [2.5])}
    stall["load"](stall["entry"](1, "One"), stall["entry"](2, "Two", stock=5), stall["entry"](3, "Three"))
    assert stall_view(api, headers, stall) == {1: ("One", [2.5]), 2: ("Two", [2.5]), 3: ("Three", [2.5])}


def test_a_kept_list_is_served_without_building_it_again(api, buyer, stall, new_client, login, monkeypatch):
    """One page per (client, filters, sort, page, limit), built once while the catalogue stands."""
    client, headers = buyer
    built = []
    real = vouchers.shelf_page
    monkeypatch.setattr(vouchers, "shelf_page", lambda *args: built.append(args) or real(*args))
    path = f"/api/v1/products?category={stall['category']}&limit=2"
    first = api.get(path, headers=headers)
    again = api.get(path, headers=headers)
    assert again.content == first.content
    assert {**again.headers, "x-request-id": ""} == {**first.headers, "x-request-id": ""}
    assert (again.headers["x-total-count"], again.headers["x-page-size"], again.headers["x-has-more"]) == (
        "3", "2", "true")  # fmt: skip
    assert len(built) == 1
    api.get(path + "&page=2", headers=headers)
    _, key, secret = new_client(features=("vouchers",))
    assert api.get(path, headers=bearer(login(key, secret)["access_token"])).json() == first.json()
    assert len(built) == 3  # another page, another client: built for them
    with models.db.connection_context():
        products.blacklist(client.id, stall["base"] + 3)
    assert [item["id"] - stall["base"] for item in api.get(path, headers=headers).json()] == [2, 1]
    assert len(built) == 4
