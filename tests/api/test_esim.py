"""API: the eSIM vertical (contract 8, 11, 12, 12.1, 15.1 items 13, 15, 30, 32, 40, 43, 45, 46, 51, 16.5):
products and variants with the client's discount, exact quotes, orders answered within the eSIM
deadline (delivered, failed, cancelled, retried, spent, or still pending), refunded once, idempotent,
listed without codes, the install state as the supplier reports it, the receipt address, the
operator's `order` commands for eSIM, and the feature gate on all nine operations."""

import datetime
import json
import re
import secrets
import threading
import time
import types
from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.app import create_app
from octopus_cards.models import Transaction, Wallet, catalogue, esim_orders, products
from octopus_cards.models.encoding import timestamp
from octopus_cards.models.esim_orders import EsimOrder
from octopus_cards.models.jobs import Job
from octopus_cards.models.wallets import POSTPAID, active_currency

from support.envelopes import UNSUPPORTED, error, invalid, not_found
from support.inprocess import TEST_PEER, background_work, log_in, make_settings
from support.orders import (
    balance,
    events,
    fulfilment_job,
    in_db,
    ledger,
    order_count,
    parsed,
    receipts,
    sent_receipt,
    settled,
    until,
    wallet_of,
)

D = Decimal
# Offsets of the shop's products from its random id base; variant ids are base + 100 + 10 * offset + n.
JAPAN, GLOBAL, INACTIVE, FAILS, FAILS_DEFAULT, CANCELS, FLAKY, DOWN, SLOW, LIFECYCLE, KRONA = range(1, 12)
SCENARIOS = (FAILS, FAILS_DEFAULT, CANCELS, FLAKY, DOWN, SLOW, LIFECYCLE)
MISSING = object()  # a body field left out
ACTIVATION_CODE = re.compile(r"LPA:1\$smdp\.invalid\$[0-9A-F]{32}")
ICCID = re.compile(r"89[0-9]{18}")
JAPAN_PRICE = D("4.275")  # 4.50 less 5 %
SCENARIO_PRICE = D("9.80")  # 10 less 2 %
PAGE_HEADERS = ("x-page", "x-per-page", "x-total-count", "x-total-pages", "x-page-size", "x-has-more")


def variant_id(base, offset, number):
    return base + 100 + 10 * offset + number


@pytest.fixture(scope="module")
def shop(migrated):
    """eSIM products of every scenario under a random id base, their names tagged so that a search
    finds this module's products only; two apps on the session database, `app` (eSIM deadline 5 s)
    and `slow` (deadline 0.5 s), and the background work with `app`'s settings meanwhile."""
    base = 11_000_000 + secrets.randbelow(1_000_000) * 200
    tag = f"Octo{base}"

    def variant(offset, number, name, amount, data, days, discount=0, **fields):
        return {"id": variant_id(base, offset, number), "name": name, "amount": amount, "data_amount_gb": data,
                "validity_days": days, "discount": discount, **fields}  # fmt: skip

    def product(offset, name, country="USA", currency="USD", variants=None, **fields):
        variants = variants or [variant(offset, 1, f"{name} 2GB", "10.00", 2, 14, 2, description="2 GB")]
        return {"id": base + offset, "name": f"{name} {tag}", "country": country, "currency": currency,
                "variants": variants, **fields}  # fmt: skip

    document = {
        "esim": [
            product(JAPAN, "Japan eSIM", "JPN", image_url="https://cdn.example.com/japan.png", variants=[
                variant(JAPAN, 1, "Japan 1GB 7 days", "4.50", 1, 7, 5, description="1 GB for 7 days"),
                variant(JAPAN, 2, "Japan 5GB 30 days", "16.00", 5, 30, 0, description="5 GB for 30 days"),
                variant(JAPAN, 3, "Japan Unlimited 15 days", "29.90", 0, 15, 4.5,
                        description="Unlimited data for 15 days"),
                variant(JAPAN, 4, "Japan retired", "9.00", 1, 7, active=False)]),
            # Two variants at one price, the higher id first in the file; a fractional allowance.
            product(GLOBAL, "World eSIM", "GLO", variants=[
                variant(GLOBAL, 2, "World 3GB", "5.00", 3, 10, 3, description="3 GB"),
                variant(GLOBAL, 1, "World 1GB", "5.00", 1, 5, 1, description="1 GB"),
                variant(GLOBAL, 3, "World mini", "1.00", "0.5", 1, description="500 MB"),
                variant(GLOBAL, 4, "World huge", "5000.00", 100, 365, description="100 GB")]),
            product(INACTIVE, "Retired eSIM", "JPN", active=False),
            product(FAILS, "Fails", mock={"outcome": "fail", "failure_code": "DEVICE_NOT_SUPPORTED",
                                          "failure_reason": "The device does not support eSIM"}),
            product(FAILS_DEFAULT, "Fails by default", mock={"outcome": "fail"}),
            product(CANCELS, "Cancels", mock={"outcome": "cancel"}),
            product(FLAKY, "Flaky", mock={"transient_failures": 2}),
            product(DOWN, "Down", mock={"transient_failures": 99}),
            product(SLOW, "Slow", mock={"delay": 1.5}),
            product(LIFECYCLE, "Lifecycle", mock={"install_after": 2, "expire_after": 1}),
            product(KRONA, "Sweden eSIM", "SWE", "SEK", variants=[variant(KRONA, 1, "Sweden 1GB", "100", 1, 7)]),
        ]
    }  # fmt: skip
    with models.db.connection_context():
        catalogue.import_catalogue(catalogue.demo_text())  # its exchange rates: USD -> EUR 0.92
        catalogue.import_catalogue(json.dumps(document))
    common = {"OCTOPUS_FULFILMENT_RETRY_SCHEDULE": "0,0,0"}
    settings = make_settings(migrated, OCTOPUS_ESIM_SYNC_DEADLINE="5", **common)
    with background_work(settings):
        yield {
            "base": base,
            "tag": tag,
            "app": create_app(settings),
            "slow": create_app(make_settings(migrated, OCTOPUS_ESIM_SYNC_DEADLINE="0.5", **common)),
        }


@pytest.fixture
def buyer(shop, new_client):
    """A funded client (USD 1,000 and EUR 1,000) with the eSIM feature, logged in to the shop's app,
    while the background work runs: (client, http, headers)."""
    client, key, secret = new_client(features=("esim",))
    with models.db.connection_context():
        for code in ("USD", "EUR"):
            Wallet.open_funded(client.id, code, 1000, "test")
    with shop["app"].test_client(client=TEST_PEER) as http:
        yield client, http, log_in(http, key, secret)


@pytest.fixture
def other(shop, new_client):
    """Another funded client (USD 1,000) with the eSIM feature: (client, headers)."""
    client, key, secret = new_client(features=("esim",))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", 1000, "test")
    return client, log_in(shop["app"].test_client(client=TEST_PEER), key, secret)


def body_of(shop, offset, amount, **fields):
    """A create or quote body; a field given as MISSING is left out."""
    body = {"product_id": shop["base"] + offset, "amount": amount, **fields}
    return {key: value for key, value in body.items() if value is not MISSING}


def create(buyer, shop, offset=JAPAN, amount=4.5, via=None, **fields):
    """POST /api/v1/esim/orders; `via` another app's (unentered) test client."""
    _, http, headers = buyer
    client = http if via is None else shop[via].test_client(client=TEST_PEER)
    return client.post("/api/v1/esim/orders", json=body_of(shop, offset, amount, **fields), headers=headers)


def charges(buyer, shop, offset=JAPAN, amount=4.5, **fields):
    _, http, headers = buyer
    return http.post("/api/v1/esim/charges", json=body_of(shop, offset, amount, **fields), headers=headers)


def detail(buyer, order_id):
    _, http, headers = buyer
    return http.get(f"/api/v1/esim/orders/{order_id}", headers=headers).json()


def parked(client, shop, offset=JAPAN, amount="4.5", reference=None):
    """An order placed through the models, its fulfilment due only in an hour: it stays PENDING."""
    supplier = types.SimpleNamespace(background_delay=3600)
    order = in_db(esim_orders.place, client.id, shop["base"] + offset, D(amount), supplier, reference=reference)
    return order.id


def japan_variants(base, discounts=(5, 0, 4.5)):
    return [
        {"id": variant_id(base, JAPAN, 1), "esim_product_id": base + JAPAN, "name": "Japan 1GB 7 days",
         "description": "1 GB for 7 days", "currency_code": "USD", "amount": 4.5, "data_amount_gb": 1,
         "validity_days": 7, "client_discount": discounts[0]},
        {"id": variant_id(base, JAPAN, 2), "esim_product_id": base + JAPAN, "name": "Japan 5GB 30 days",
         "description": "5 GB for 30 days", "currency_code": "USD", "amount": 16, "data_amount_gb": 5,
         "validity_days": 30, "client_discount": discounts[1]},
        {"id": variant_id(base, JAPAN, 3), "esim_product_id": base + JAPAN, "name": "Japan Unlimited 15 days",
         "description": "Unlimited data for 15 days", "currency_code": "USD", "amount": 29.9, "data_amount_gb": 0,
         "validity_days": 15, "client_discount": discounts[2]},
    ]  # fmt: skip


# -- products (8.1) ---------------------------------------------------------------------------------


def listed(buyer, shop, **params):
    """Offsets of the listed products (all of this module's when `search` is not given) and the response."""
    _, http, headers = buyer
    params.setdefault("search", shop["tag"])
    response = http.get("/api/v1/esim/products", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] - shop["base"] for item in response.json()], response


def test_products_are_the_active_ones_newest_first(buyer, shop):
    ids, response = listed(buyer, shop)
    assert ids == [KRONA, LIFECYCLE, SLOW, DOWN, FLAKY, CANCELS, FAILS_DEFAULT, FAILS, GLOBAL, JAPAN]
    assert {k: response.headers[k] for k in PAGE_HEADERS} == {
        "x-page": "1", "x-per-page": "50", "x-total-count": "10", "x-total-pages": "1", "x-page-size": "10",
        "x-has-more": "false"}  # fmt: skip
    items = {item["id"] - shop["base"]: item for item in response.json()}
    assert items[JAPAN] == {"id": shop["base"] + JAPAN, "name": f"Japan eSIM {shop['tag']}", "country_code": "JPN",
                            "currency_code": "USD", "image_url": "https://cdn.example.com/japan.png"}  # fmt: skip
    assert items[GLOBAL] == {"id": shop["base"] + GLOBAL, "name": f"World eSIM {shop['tag']}", "country_code": "GLO",
                             "currency_code": "USD", "image_url": None}  # fmt: skip
    assert items[KRONA]["currency_code"] == "SEK" and items[KRONA]["country_code"] == "SWE"


@pytest.mark.parametrize(
    "params, expected",
    [({"country_code": "JPN"}, [JAPAN]), ({"country_code": "GLO"}, [GLOBAL]), ({"country_code": "SWE"}, [KRONA]),
     ({"country_code": "USA"}, [LIFECYCLE, SLOW, DOWN, FLAKY, CANCELS, FAILS_DEFAULT, FAILS]),
     ({"country_code": "FRA"}, []),
     ({"search": "octo{base}"}, [KRONA, LIFECYCLE, SLOW, DOWN, FLAKY, CANCELS, FAILS_DEFAULT, FAILS, GLOBAL, JAPAN]),
     ({"search": "JAPAN ESIM OCTO{base}"}, [JAPAN]), ({"search": "fails by DEFAULT octo{base}"}, [FAILS_DEFAULT]),
     ({"search": "Retired eSIM Octo{base}"}, []),
     ({"search": "WoRlD eSiM oCtO{base}", "country_code": "GLO"}, [GLOBAL]),
     ({"search": "World eSIM Octo{base}", "country_code": "JPN"}, [])],
)  # fmt: skip
def test_product_filters(buyer, shop, params, expected):
    """`country_code` exact (GLO included), `search` a case-insensitive part of the name; the
    list is this module's products unless the search narrows it."""
    params = {key: value.format(base=shop["base"]) for key, value in params.items()}
    assert listed(buyer, shop, **params)[0] == expected


def test_unmatched_filters_give_an_empty_page(buyer, shop):
    _, http, headers = buyer
    for query in ("country_code=ZZZ", f"search={'x' * 100}", "page=2147483647"):
        response = http.get(f"/api/v1/esim/products?{query}", headers=headers)
        assert (response.status_code, response.json()) == (200, []), query
        assert response.headers["x-page-size"] == "0" and response.headers["x-has-more"] == "false"
    unknown = http.get("/api/v1/esim/products?country_code=ZZZ", headers=headers)
    assert {k: unknown.headers[k] for k in PAGE_HEADERS} == {
        "x-page": "1", "x-per-page": "50", "x-total-count": "0", "x-total-pages": "0", "x-page-size": "0",
        "x-has-more": "false"}  # fmt: skip


def test_product_pages(buyer, shop):
    ids, response = listed(buyer, shop, per_page=3, page=2)
    assert ids == [DOWN, FLAKY, CANCELS]
    assert {k: response.headers[k] for k in PAGE_HEADERS} == {
        "x-page": "2", "x-per-page": "3", "x-total-count": "10", "x-total-pages": "4", "x-page-size": "3",
        "x-has-more": "true"}  # fmt: skip
    ids, response = listed(buyer, shop, per_page=3, page=4)
    assert ids == [JAPAN] and (response.headers["x-page-size"], response.headers["x-has-more"]) == ("1", "false")
    ids, response = listed(buyer, shop, per_page=3, page=5)
    assert ids == [] and (response.headers["x-page-size"], response.headers["x-total-pages"]) == ("0", "4")
    assert listed(buyer, shop, per_page=1)[0] == [KRONA]
    assert len(listed(buyer, shop, per_page=500)[0]) == 10


@pytest.mark.parametrize(
    "query, field",
    [("country_code=jpn", "country_code"), ("country_code=JP", "country_code"), ("country_code=JAPN", "country_code"),
     ("country_code=J1N", "country_code"), ("country_code=", "country_code"), (f"search={'x' * 101}", "search"),
     ("per_page=0", "per_page"), ("per_page=501", "per_page"), ("per_page=x", "per_page"), ("per_page=1.5", "per_page"),
     ("page=0", "page"), ("page=-1", "page"), ("page=2147483648", "page"), ("page=abc", "page")],
)  # fmt: skip
def test_product_list_query_errors(buyer, query, field):
    _, http, headers = buyer
    response = http.get(f"/api/v1/esim/products?{query}", headers=headers)
    assert (response.status_code, response.json()) == (400, invalid(f"{field} is invalid"))


def test_a_product_with_its_active_variants(buyer, shop):
    _, http, headers = buyer
    base = shop["base"]
    response = http.get(f"/api/v1/esim/products/{base + JAPAN}", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"id": base + JAPAN, "name": f"Japan eSIM {shop['tag']}", "country_code": "JPN",
                               "currency_code": "USD", "image_url": "https://cdn.example.com/japan.png",
                               "variants": japan_variants(base)}  # fmt: skip
    assert '"amount":4.50,' in response.text and '"amount":16.00,' in response.text  # the currency's precision
    assert '"data_amount_gb":0,' in response.text  # unlimited
    variants = http.get(f"/api/v1/esim/products/{base + JAPAN}/variants", headers=headers)
    assert variants.status_code == 200 and variants.json() == japan_variants(base)
    assert "x-total-count" not in variants.headers  # not paginated
    for variant in variants.json():
        assert set(variant) == {"id", "esim_product_id", "name", "description", "currency_code", "amount",
                                "data_amount_gb", "validity_days", "client_discount"}  # fmt: skip
    # Ids ascending, whatever the order of the catalogue file; 0.5 GB as it is.
    world = http.get(f"/api/v1/esim/products/{base + GLOBAL}/variants", headers=headers).json()
    assert [v["id"] for v in world] == [variant_id(base, GLOBAL, n) for n in (1, 2, 3, 4)]
    assert [(v["amount"], v["data_amount_gb"], v["client_discount"]) for v in world] == [
        (5, 1, 1), (5, 3, 3), (1, 0.5, 0), (5000, 100, 0)]  # fmt: skip


def test_one_variant(buyer, shop):
    _, http, headers = buyer
    base = shop["base"]
    for number, expected in zip((1, 2, 3), japan_variants(base), strict=True):
        response = http.get(f"/api/v1/esim/variants/{variant_id(base, JAPAN, number)}", headers=headers)
        assert (response.status_code, response.json()) == (200, expected)


def test_products_and_variants_not_found(buyer, shop):
    _, http, headers = buyer
    base = shop["base"]
    for product in (base + INACTIVE, 2147483647):
        for path in (f"/api/v1/esim/products/{product}", f"/api/v1/esim/products/{product}/variants"):
            response = http.get(path, headers=headers)
            assert (response.status_code, response.json()) == (404, not_found("Product")), path
    # An inactive variant, an active variant of an inactive product, none at all.
    for variant in (variant_id(base, JAPAN, 4), variant_id(base, INACTIVE, 1), 2147483647):
        response = http.get(f"/api/v1/esim/variants/{variant}", headers=headers)
        assert (response.status_code, response.json()) == (404, not_found("Variant")), variant
    for bad in ("abc", "0", "-1", "2147483648", "1.5", "%20"):
        for path in (f"/api/v1/esim/products/{bad}", f"/api/v1/esim/products/{bad}/variants"):
            response = http.get(path, headers=headers)
            assert (response.status_code, response.json()) == (400, error("Invalid product ID")), path
        response = http.get(f"/api/v1/esim/variants/{bad}", headers=headers)
        assert (response.status_code, response.json()) == (400, error("Invalid variant ID")), bad


def test_the_clients_own_discount_applies_when_higher(buyer, shop, other):
    """15.1, item 40: the higher of the variant's discount and the client's on the product."""
    client, http, headers = buyer
    base = shop["base"]
    in_db(products.set_discount, client.id, "esim", base + JAPAN, D("4.6"))
    mine = japan_variants(base, (5, 4.6, 4.6))
    assert http.get(f"/api/v1/esim/products/{base + JAPAN}", headers=headers).json()["variants"] == mine
    assert http.get(f"/api/v1/esim/products/{base + JAPAN}/variants", headers=headers).json() == mine
    assert http.get(f"/api/v1/esim/variants/{variant_id(base, JAPAN, 2)}", headers=headers).json() == mine[1]
    quote = charges(buyer, shop, JAPAN, 16).json()
    assert (quote["discount"], quote["discount_amount"], quote["total_payable"]) == (4.6, 0.736, 15.264)
    assert charges(buyer, shop, JAPAN, 4.5).json()["discount"] == 5
    # Only this client's.
    theirs = http.get(f"/api/v1/esim/products/{base + JAPAN}/variants", headers=other[1]).json()
    assert theirs == japan_variants(base)


# -- charges (8.3) ----------------------------------------------------------------------------------


def charges_object(total, discount, discount_amount, payable, wallet="USD", rate=None, product="USD"):
    net = payable
    return {
        "non_discounted_total": total, "discount_amount": discount_amount, "total_amount": total - discount_amount,
        "discount": discount, "gst_amount": 0, "total_payable": payable, "net_amount": net,
        "handling_fee_amount": 0,
        "charges_details": {"source_currency": product, "destination_currency": wallet, "forex_rate": rate,
                            "conversion_fee": None if rate is None else 0},
    }  # fmt: skip


def test_the_contracts_charges_example(buyer, shop):
    response = charges(buyer, shop, JAPAN, 4.5)
    assert response.status_code == 200
    assert response.json() == {
        "non_discounted_total": 4.50, "discount_amount": 0.225, "total_amount": 4.275, "discount": 5.0,
        "gst_amount": 0, "total_payable": 4.275, "net_amount": 4.275, "handling_fee_amount": 0,
        "charges_details": {"source_currency": "USD", "destination_currency": "USD", "forex_rate": None,
                            "conversion_fee": None},
    }  # fmt: skip
    assert "max_quantity" not in response.json()
    assert charges(buyer, shop, JAPAN, 4.500).json() == response.json()
    assert balance(buyer[0]) == 1000  # a quote debits nothing


def test_charges_round_half_up_at_four_places(buyer, shop):
    client = buyer[0]
    base = shop["base"]
    # Without the client's discount: the lowest id of the two 5.00 variants (1 %), not the 3 % one.
    assert charges(buyer, shop, GLOBAL, 5).json() == {
        **charges_object(5, 1, 0.05, 4.95), "total_amount": 4.95}  # fmt: skip
    in_db(products.set_discount, client.id, "esim", base + GLOBAL, D("2.225"))
    # 1.00 x 2.225 % = 0.02225 -> 0.0223; 5.00 x 2.225 % = 0.11125 -> 0.1113 (half-up, not to even).
    mini = charges(buyer, shop, GLOBAL, 1).json()
    assert mini == {**charges_object(1, 2.225, 0.0223, 0.9777), "total_amount": 0.9777}
    five = charges(buyer, shop, GLOBAL, 5).json()
    assert five == {**charges_object(5, 2.225, 0.1113, 4.8887), "total_amount": 4.8887}
    # 29.90 at 4.5 % = 1.3455.
    unlimited = charges(buyer, shop, JAPAN, 29.9).json()
    assert unlimited == {**charges_object(29.9, 4.5, 1.3455, 28.5545), "total_amount": 28.5545}


def test_charges_through_an_exchange_rate(buyer, shop):
    eur = wallet_of(buyer[0], "EUR").id
    quote = charges(buyer, shop, JAPAN, 4.5, wallet_id=eur).json()
    assert quote == {
        "non_discounted_total": 4.5, "discount_amount": 0.225, "total_amount": 4.275, "discount": 5,
        "gst_amount": 0, "total_payable": 3.933, "net_amount": 3.933, "handling_fee_amount": 0,
        "charges_details": {"source_currency": "USD", "destination_currency": "EUR", "forex_rate": 0.92,
                            "conversion_fee": 0},
    }  # fmt: skip
    # 28.5545 x 0.92 = 26.27014 -> 26.2701.
    assert charges(buyer, shop, JAPAN, 29.9, wallet_id=eur).json()["total_payable"] == 26.2701


@pytest.mark.parametrize(
    "offset, amount, fields, status, expected",
    [pytest.param(JAPAN, 4.49, {}, 400, error("Invalid amount"), id="no-such-price"),
     pytest.param(JAPAN, 4.501, {}, 400, error("Invalid amount"), id="beyond-the-price"),
     pytest.param(JAPAN, 9, {}, 400, error("Invalid amount"), id="inactive-variant"),
     pytest.param(999, 4.5, {}, 404, not_found("Product"), id="no-such-product"),
     pytest.param(INACTIVE, 10, {}, 404, not_found("Product"), id="inactive-product"),
     pytest.param(999, 4.49, {}, 404, not_found("Product"), id="product-before-amount"),
     pytest.param(JAPAN, 4.5, {"wallet_id": 2147483647}, 404, not_found("Wallet"), id="no-such-wallet"),
     pytest.param(KRONA, 100, {}, 400, error("No wallet available for this currency"), id="no-wallet"),
     pytest.param(KRONA, 99, {}, 400, error("Invalid amount"), id="variant-before-wallet"),
     pytest.param(JAPAN, MISSING, {}, 400, invalid("amount is required"), id="amount-missing"),
     pytest.param(JAPAN, None, {}, 400, invalid("amount is required"), id="amount-null"),
     pytest.param(JAPAN, 0, {}, 400, invalid("amount is invalid"), id="amount-zero"),
     pytest.param(JAPAN, -4.5, {}, 400, invalid("amount is invalid"), id="amount-negative"),
     pytest.param(JAPAN, "4.50", {}, 400, invalid("amount is invalid"), id="amount-string"),
     pytest.param(JAPAN, 1000000000.01, {}, 400, invalid("amount is invalid"), id="amount-too-large"),
     pytest.param(JAPAN, 4.5, {"product_id": MISSING}, 400, invalid("product_id is required"), id="no-product"),
     pytest.param(JAPAN, 4.5, {"product_id": 0}, 400, invalid("product_id is invalid"), id="product-zero"),
     pytest.param(JAPAN, 4.5, {"product_id": "1"}, 400, invalid("product_id is invalid"), id="product-string"),
     pytest.param(JAPAN, 4.5, {"product_id": 1.5}, 400, invalid("product_id is invalid"), id="product-fraction"),
     pytest.param(JAPAN, 4.5, {"product_id": 2147483648}, 400, invalid("product_id is invalid"), id="product-big"),
     pytest.param(JAPAN, 4.5, {"wallet_id": 0}, 400, invalid("wallet_id is invalid"), id="wallet-zero"),
     pytest.param(JAPAN, 4.5, {"wallet_id": None}, 400, invalid("wallet_id is invalid"), id="wallet-null")],
)  # fmt: skip
def test_charges_errors(buyer, shop, offset, amount, fields, status, expected):
    response = charges(buyer, shop, offset, amount, **fields)
    assert (response.status_code, response.json()) == (status, expected)


def test_charges_without_a_rate_and_with_another_clients_wallet(buyer, shop, other):
    usd = wallet_of(buyer[0]).id
    response = charges(buyer, shop, KRONA, 100, wallet_id=usd)
    assert (response.status_code, response.json()) == (400, error("Currency conversion not available"))
    theirs = wallet_of(other[0]).id
    response = charges(buyer, shop, JAPAN, 4.5, wallet_id=theirs)
    assert (response.status_code, response.json()) == (404, not_found("Wallet"))


def test_charges_bodies_that_are_not_a_quote(buyer, shop):
    _, http, headers = buyer
    body = json.dumps(body_of(shop, JAPAN, 4.5))
    for content_type in (None, "text/plain"):
        sent = dict(headers) if content_type is None else {**headers, "Content-Type": content_type}
        response = http.post("/api/v1/esim/charges", content=body, headers=sent)
        assert (response.status_code, response.json()) == (415, UNSUPPORTED)
    as_json = {**headers, "Content-Type": "application/json; charset=utf-8"}
    assert http.post("/api/v1/esim/charges", content=body, headers=as_json).status_code == 200
    assert http.post("/api/v1/esim/charges", content=b"{", headers=as_json).json() == error(
        "Invalid request body", "SYNTAX_ERROR", "SyntaxError")  # fmt: skip
    assert http.post("/api/v1/esim/charges", content=b"[]", headers=as_json).json() == invalid(
        "Request body must be a JSON object")  # fmt: skip


# -- create (8.4) -----------------------------------------------------------------------------------


def test_a_create_is_delivered_before_the_answer(buyer, shop):
    client, http, headers = buyer
    response = create(buyer, shop, client_reference="first-esim")
    assert response.status_code == 200
    created = response.json()
    assert created == {
        "id": created["id"], "client_reference": "first-esim", "status": "DELIVERED", "status_text": "eSIM delivered",
        "product_name": f"Japan eSIM {shop['tag']}", "country_code": "JPN", "data_amount_gb": 1, "validity_days": 7,
        "amount": 4.5, "currency": "USD", "activation_status": "NOT_INSTALLED", "is_installed": False,
        "installed_at": None, "activated_at": None, "transaction_id": created["transaction_id"],
        "created_at": created["created_at"], "failure_code": None, "failure_reason": None, "is_user_fixable": None,
        "notification_email": None, "activation_code": created["activation_code"], "iccid": created["iccid"],
    }  # fmt: skip
    assert '"amount":4.50,' in response.text  # the variant's price, not the debit
    assert ACTIVATION_CODE.fullmatch(created["activation_code"]) and ICCID.fullmatch(created["iccid"])
    assert isinstance(created["id"], int) and isinstance(created["transaction_id"], int)
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((parsed(created["created_at"]) - now).total_seconds()) < 10
    assert detail(buyer, created["id"]) == created  # the codes, read back
    # The debit is the order's transaction (6.2).
    (debit,) = ledger("esim", created["id"])
    assert (debit.id, debit.transaction_type, debit.amount) == (created["transaction_id"], "DEBIT", JAPAN_PRICE)
    shown = http.get(f"/api/v1/transactions/{created['transaction_id']}", headers=headers).json()
    usd = wallet_of(client)
    assert shown == {
        "id": created["transaction_id"], "wallet_id": usd.id, "currency_id": usd.currency_id, "amount": 4.275,
        "transaction_type": "DEBIT", "status": "COMPLETED", "source_currency": None, "destination_currency": None,
        "forex_rate": None, "conversion_charges": None,
        "remarks": f"USD Wallet debited by amount 4.275 - eSIM Order #{created['id']}",
        "created_at": shown["created_at"],
    }  # fmt: skip
    assert balance(client) == 1000 - JAPAN_PRICE
    # The two fundings and the debit: no esim.* or order.* event (9.2).
    seen = events(client)
    assert sorted(e["type"] for e in seen) == ["wallet.credited", "wallet.credited", "wallet.debited"]
    assert [e["data"] for e in seen if e["type"] == "wallet.debited"] == [shown]
    assert created["activation_code"] not in json.dumps(seen) and created["iccid"] not in json.dumps(seen)


def test_every_order_gets_its_own_codes(buyer, shop):
    first, second = create(buyer, shop).json(), create(buyer, shop).json()
    assert first["activation_code"] != second["activation_code"] and first["iccid"] != second["iccid"]


@pytest.mark.parametrize("quantity", [1, 0, -5, 3, 99999999999, 10**20, -(2**63)])
def test_any_integer_quantity_is_one_esim(buyer, shop, quantity):
    client = buyer[0]
    response = create(buyer, shop, quantity=quantity)
    assert response.status_code == 200, response.text
    created = response.json()
    assert (created["status"], created["amount"], "quantity" in created) == ("DELIVERED", 4.5, False)
    assert [(t.transaction_type, t.amount) for t in ledger("esim", created["id"])] == [("DEBIT", JAPAN_PRICE)]
    assert balance(client) == 1000 - JAPAN_PRICE and order_count("esim", client) == 1


@pytest.mark.parametrize("quantity", [1.5, "2", None, True, [1]])
def test_a_quantity_that_is_not_an_integer_is_invalid(buyer, shop, quantity):
    response = create(buyer, shop, quantity=quantity)
    assert (response.status_code, response.json()) == (400, invalid("quantity is invalid"))
    assert order_count("esim", buyer[0]) == 0 and balance(buyer[0]) == 1000


def test_the_lowest_id_among_variants_of_one_price_is_ordered(buyer, shop):
    client = buyer[0]
    created = create(buyer, shop, GLOBAL, 5).json()
    assert (created["status"], created["product_name"], created["country_code"]) == (
        "DELIVERED", f"World eSIM {shop['tag']}", "GLO")  # fmt: skip
    assert (created["data_amount_gb"], created["validity_days"], created["amount"]) == (1, 5, 5)  # "World 1GB"
    assert [t.amount for t in ledger("esim", created["id"])] == [D("4.95")] and balance(client) == 1000 - D("4.95")
    mini = create(buyer, shop, GLOBAL, 1).json()
    assert (mini["data_amount_gb"], mini["validity_days"]) == (0.5, 1)


def test_an_fx_order_debits_the_wallet_currency(buyer, shop):
    client, http, headers = buyer
    eur = wallet_of(client, "EUR").id
    created = create(buyer, shop, wallet_id=eur).json()
    assert (created["status"], created["amount"], created["currency"]) == ("DELIVERED", 4.5, "USD")
    shown = http.get(f"/api/v1/transactions/{created['transaction_id']}", headers=headers).json()
    assert (shown["wallet_id"], shown["amount"], shown["transaction_type"]) == (eur, 3.933, "DEBIT")
    assert (shown["source_currency"], shown["destination_currency"], shown["forex_rate"]) == ("USD", "EUR", 0.92)
    assert shown["conversion_charges"] == 0
    assert shown["remarks"] == f"EUR Wallet debited by amount 3.933 - eSIM Order #{created['id']}"
    assert balance(client, "EUR") == 1000 - D("3.933") and balance(client) == 1000


@pytest.mark.parametrize(
    "offset, status, status_text, failure",
    [pytest.param(FAILS, "FAILED", "eSIM order failed",
                  ("DEVICE_NOT_SUPPORTED", "The device does not support eSIM", True), id="fail"),
     pytest.param(FAILS_DEFAULT, "FAILED", "eSIM order failed",
                  ("INVALID_ACCOUNT", "The account identifier was rejected by the operator", True), id="fail-default"),
     pytest.param(CANCELS, "CANCELLED", "Order cancelled", (None, None, None), id="cancel"),
     pytest.param(DOWN, "FAILED", "eSIM order failed",
                  ("SUPPLIER_UNAVAILABLE", "The supplier did not respond", False), id="budget-spent")],
)  # fmt: skip
def test_an_order_that_does_not_deliver_is_answered_so_and_refunded_once(
    buyer, shop, offset, status, status_text, failure
):
    client, http, headers = buyer
    response = create(buyer, shop, offset, 10, client_reference=f"r-{offset}")
    assert response.status_code == 200  # always 200 when accepted
    created = response.json()
    assert created == {
        "id": created["id"], "client_reference": f"r-{offset}", "status": status, "status_text": status_text,
        "product_name": created["product_name"], "country_code": "USA", "data_amount_gb": 2, "validity_days": 14,
        "amount": 10, "currency": "USD", "activation_status": None, "is_installed": False, "installed_at": None,
        "activated_at": None, "transaction_id": created["transaction_id"], "created_at": created["created_at"],
        "failure_code": failure[0], "failure_reason": failure[1], "is_user_fixable": failure[2],
        "notification_email": None, "activation_code": None, "iccid": None,
    }  # fmt: skip
    debit, refund = ledger("esim", created["id"])
    assert (debit.transaction_type, debit.amount, debit.id) == ("DEBIT", SCENARIO_PRICE, created["transaction_id"])
    assert (refund.transaction_type, refund.amount, refund.wallet_id) == ("CREDIT", SCENARIO_PRICE, debit.wallet_id)
    shown = http.get(f"/api/v1/transactions/{refund.id}", headers=headers).json()
    assert shown["remarks"] == f"USD Wallet credited by amount 9.80 - Refund for eSIM Order #{created['id']}"
    assert balance(client) == 1000
    if offset == DOWN:  # 1 + len(OCTOPUS_FULFILMENT_RETRY_SCHEDULE) supplier calls (15.1, items 30, 46)
        job = fulfilment_job("esim", created["id"])
        assert job.attempts == 4 and job.finished_at is not None
    time.sleep(0.3)  # another round of the worker changes nothing
    assert detail(buyer, created["id"]) == created
    assert len(ledger("esim", created["id"], "CREDIT")) == 1 and balance(client) == 1000
    seen = events(client)
    assert sorted(e["type"] for e in seen) == ["wallet.credited"] * 3 + ["wallet.debited"]
    assert refund.id in [e["data"]["id"] for e in seen if e["type"] == "wallet.credited"]
    assert receipts("esim", created["id"]) == []  # no address, no receipt


def test_transient_failures_are_retried_within_the_deadline(buyer, shop):
    client = buyer[0]
    created = create(buyer, shop, FLAKY, 10).json()
    assert (created["status"], created["failure_code"], created["is_user_fixable"]) == ("DELIVERED", None, None)
    assert ACTIVATION_CODE.fullmatch(created["activation_code"]) and ICCID.fullmatch(created["iccid"])
    job = fulfilment_job("esim", created["id"])
    assert job.attempts == 3 and job.finished_at is not None  # two transient failures, then the eSIM
    assert [t.transaction_type for t in ledger("esim", created["id"])] == ["DEBIT"]
    assert balance(client) == 1000 - SCENARIO_PRICE


def test_a_slow_supplier_is_answered_pending_then_delivered_with_its_receipt(buyer, shop):
    """A delay of 1.5 s past a 0.5 s deadline (15.1, item 45): PENDING in about the deadline; the
    receipt address set meanwhile gets the receipt once it is delivered, without the codes."""
    client, http, headers = buyer
    started = time.monotonic()
    response = create(buyer, shop, SLOW, 10, via="slow")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    created = response.json()
    assert 0.4 <= elapsed < 1.4, elapsed
    assert (created["status"], created["status_text"]) == ("PENDING", "Order submitted for fulfilment")
    assert (created["activation_code"], created["iccid"], created["activation_status"]) == (None, None, None)
    assert (created["failure_code"], created["is_installed"]) == (None, False)
    assert ledger("esim", created["id"])[0].id == created["transaction_id"] and balance(client) == 1000 - SCENARIO_PRICE
    patched = http.patch(f"/api/v1/esim/orders/{created['id']}/notification-email",
                         json={"email": "buyer@example.com"}, headers=headers)  # fmt: skip
    assert patched.status_code == 200 and patched.json() == {**created, "notification_email": "buyer@example.com"}
    assert receipts("esim", created["id"]) == []  # not final yet
    done = settled(buyer, "esim", created["id"])
    assert done == {**created, "status": "DELIVERED", "status_text": "eSIM delivered",
                    "activation_status": "NOT_INSTALLED", "notification_email": "buyer@example.com",
                    "activation_code": done["activation_code"], "iccid": done["iccid"]}  # fmt: skip
    assert ACTIVATION_CODE.fullmatch(done["activation_code"]) and ICCID.fullmatch(done["iccid"])
    receipt = sent_receipt("esim", created["id"])
    assert (receipt.status, receipt.recipient, receipt.client_id) == ("skipped", "buyer@example.com", client.id)
    assert f"#{created['id']}" in receipt.subject and f"#{created['id']}" in receipt.text
    for secret in (done["activation_code"], done["iccid"], done["activation_code"].rsplit("$", 1)[1]):
        assert secret not in receipt.text and secret not in receipt.subject
    assert balance(client) == 1000 - SCENARIO_PRICE


# -- refusals, idempotency, concurrency ------------------------------------------------------------


@pytest.mark.parametrize(
    "offset, amount, fields, status, expected",
    [pytest.param(999, 4.5, {}, 404, not_found("Product"), id="no-such-product"),
     pytest.param(INACTIVE, 10, {}, 404, not_found("Product"), id="inactive-product"),
     pytest.param(JAPAN, 4.5, {"wallet_id": 2147483647}, 404, not_found("Wallet"), id="no-such-wallet"),
     pytest.param(JAPAN, 4.49, {}, 400, error("Invalid amount"), id="no-such-price"),
     pytest.param(JAPAN, 9, {}, 400, error("Invalid amount"), id="inactive-variant"),
     pytest.param(KRONA, 100, {}, 400, error("No wallet available for this currency"), id="no-wallet"),
     pytest.param(GLOBAL, 5000, {}, 400, error("Insufficient wallet balance"), id="balance"),
     pytest.param(JAPAN, 4.5, {"product_id": MISSING}, 400, invalid("product_id is required"), id="no-product"),
     pytest.param(JAPAN, 4.5, {"product_id": None}, 400, invalid("product_id is required"), id="product-null"),
     pytest.param(JAPAN, 4.5, {"product_id": 0}, 400, invalid("product_id is invalid"), id="product-zero"),
     pytest.param(JAPAN, 4.5, {"product_id": "1"}, 400, invalid("product_id is invalid"), id="product-string"),
     pytest.param(JAPAN, MISSING, {}, 400, invalid("amount is required"), id="no-amount"),
     pytest.param(JAPAN, None, {}, 400, invalid("amount is required"), id="amount-null"),
     pytest.param(JAPAN, 0, {}, 400, invalid("amount is invalid"), id="amount-zero"),
     pytest.param(JAPAN, 0.001, {}, 400, invalid("amount is invalid"), id="amount-tiny"),
     pytest.param(JAPAN, "4.5", {}, 400, invalid("amount is invalid"), id="amount-string"),
     pytest.param(JAPAN, 4.5, {"wallet_id": 0}, 400, invalid("wallet_id is invalid"), id="wallet-zero"),
     pytest.param(JAPAN, 4.5, {"client_reference": ""}, 400, invalid("client_reference is invalid"), id="ref-empty"),
     pytest.param(JAPAN, 4.5, {"client_reference": "r" * 256}, 400, invalid("client_reference is invalid"),
                  id="ref-long"),
     pytest.param(JAPAN, 4.5, {"client_reference": "caf\u00e9"}, 400, invalid("client_reference is invalid"),
                  id="ref-non-ascii"),
     pytest.param(JAPAN, 4.5, {"client_reference": None}, 400, invalid("client_reference is invalid"),
                  id="ref-null")],
)  # fmt: skip
def test_refused_creates_debit_nothing_and_create_nothing(buyer, shop, offset, amount, fields, status, expected):
    client, http, headers = buyer
    response = create(buyer, shop, offset, amount, **fields)
    assert (response.status_code, response.json()) == (status, expected)
    assert balance(client) == 1000 and balance(client, "EUR") == 1000 and order_count("esim", client) == 0
    assert http.get("/api/v1/esim/orders", headers=headers).headers["x-total-count"] == "0"


def test_refusals_of_rate_and_wallet(buyer, shop, other):
    client = buyer[0]
    usd = wallet_of(client).id
    assert create(buyer, shop, KRONA, 100, wallet_id=usd).json() == error("Currency conversion not available")
    assert create(buyer, shop, wallet_id=wallet_of(other[0]).id).json() == not_found("Wallet")
    assert order_count("esim", client) == 0 and balance(client) == 1000 and balance(other[0]) == 1000


def test_bodies_that_are_not_an_order(buyer, shop):
    _, http, headers = buyer
    body = json.dumps(body_of(shop, JAPAN, 4.5))
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        sent = dict(headers) if content_type is None else {**headers, "Content-Type": content_type}
        response = http.post("/api/v1/esim/orders", content=body, headers=sent)
        assert (response.status_code, response.json()) == (415, UNSUPPORTED)
    as_json = {**headers, "Content-Type": "application/json; charset=utf-8"}
    assert http.post("/api/v1/esim/orders", content=b"{", headers=as_json).json() == error(
        "Invalid request body", "SYNTAX_ERROR", "SyntaxError")  # fmt: skip
    assert http.post("/api/v1/esim/orders", content=b"", headers=as_json).json() == invalid("Request body is required")
    assert order_count("esim", buyer[0]) == 0
    assert http.post("/api/v1/esim/orders", content=body, headers=as_json).status_code == 200


def test_an_insufficient_balance_writes_nothing(shop, new_client):
    client, key, secret = new_client(features=("esim",))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", JAPAN_PRICE, "test")
    with shop["app"].test_client(client=TEST_PEER) as http:
        headers = log_in(http, key, secret)
        response = http.post("/api/v1/esim/orders", json=body_of(shop, JAPAN, 16, client_reference="poor"),
                             headers=headers)  # fmt: skip
        assert (response.status_code, response.json()) == (400, error("Insufficient wallet balance"))
        assert balance(client) == JAPAN_PRICE and order_count("esim", client) == 0
        assert http.get("/api/v1/esim/orders", headers=headers).json() == []
        with models.db.connection_context():
            assert Transaction.select().join(Wallet).where(Wallet.client == client.id).count() == 1  # the funding
        accepted = http.post("/api/v1/esim/orders", json=body_of(shop, JAPAN, 4.5, client_reference="poor"),
                             headers=headers)  # fmt: skip
        assert accepted.status_code == 200 and accepted.json()["status"] == "DELIVERED"
        assert balance(client) == 0


def test_the_default_currency_wallet_pays_through_the_rate_and_postpaid_may_go_negative(shop, new_client):
    """5.7: no wallet in the product's currency, the default currency's pays (FX); a POSTPAID
    wallet is not balance-checked."""
    client, key, secret = new_client(features=("esim",))
    with models.db.connection_context():
        client.configure(active_currency("EUR"), None)
        Wallet.open(client.id, "EUR", POSTPAID)
    with shop["app"].test_client(client=TEST_PEER) as http:
        headers = log_in(http, key, secret)
        quote = http.post("/api/v1/esim/charges", json=body_of(shop, JAPAN, 4.5), headers=headers).json()
        assert (quote["total_payable"], quote["charges_details"]["destination_currency"]) == (3.933, "EUR")
        created = http.post("/api/v1/esim/orders", json=body_of(shop, JAPAN, 4.5), headers=headers).json()
        assert (created["status"], created["currency"]) == ("DELIVERED", "USD")
        shown = http.get(f"/api/v1/transactions/{created['transaction_id']}", headers=headers).json()
        assert (shown["amount"], shown["source_currency"], shown["destination_currency"]) == (3.933, "USD", "EUR")
    assert balance(client, "EUR") == D("-3.933")


def test_the_duplicate_reference_is_the_first_business_rule(buyer, shop):
    client = buyer[0]
    used = create(buyer, shop, FAILS, 10, client_reference="used").json()
    assert used["status"] == "FAILED"  # failed orders keep their reference
    duplicate = error("Duplicate client_reference")
    usd = wallet_of(client).id
    for offset, amount, fields in [
        (JAPAN, 4.5, {}),
        (JAPAN, 4.49, {}),
        (KRONA, 100, {}),
        (KRONA, 100, {"wallet_id": usd}),
        (GLOBAL, 5000, {}),
        (FAILS, 10, {}),
    ]:
        response = create(buyer, shop, offset, amount, client_reference="used", **fields)
        assert (response.status_code, response.json()) == (400, duplicate), (offset, amount, fields)
    # Validation and the 404s come first (1.10).
    assert create(buyer, shop, 999, 4.5, client_reference="used").json() == not_found("Product")
    assert create(buyer, shop, wallet_id=2147483647, client_reference="used").json() == not_found("Wallet")
    assert create(buyer, shop, amount=-1, client_reference="used").json() == invalid("amount is invalid")
    assert order_count("esim", client) == 1 and balance(client) == 1000
    assert detail(buyer, used["id"]) == used  # not replayed, not changed


def test_refused_creates_do_not_consume_the_reference(buyer, shop):
    client = buyer[0]
    refusals = [
        (dict(amount=4.49), error("Invalid amount")),
        (dict(offset=999), not_found("Product")),
        (dict(wallet_id=2147483647), not_found("Wallet")),
        (dict(offset=KRONA, amount=100), error("No wallet available for this currency")),
        (dict(offset=GLOBAL, amount=5000), error("Insufficient wallet balance")),
        (dict(amount=-1), invalid("amount is invalid")),
        (dict(quantity=1.5), invalid("quantity is invalid")),
    ]
    for fields, expected in refusals:
        assert create(buyer, shop, client_reference="kept", **fields).json() == expected, fields
    response = create(buyer, shop, client_reference="kept")
    assert response.status_code == 200 and response.json()["client_reference"] == "kept"
    assert balance(client) == 1000 - JAPAN_PRICE


def test_references_are_unique_per_client_and_compared_exactly(buyer, shop, other):
    reference = f"shared-{secrets.token_hex(4)}"
    assert create(buyer, shop, client_reference=reference).status_code == 200
    theirs = other[0], buyer[1], other[1]
    assert create(theirs, shop, client_reference=reference).json()["client_reference"] == reference
    assert create(buyer, shop, client_reference=reference.upper()).status_code == 200
    assert create(buyer, shop, client_reference=reference).json() == error("Duplicate client_reference")
    assert order_count("esim", buyer[0]) == 2


def test_concurrent_creates_with_one_new_reference(buyer, shop):
    client, _, headers = buyer
    barrier, answers = threading.Barrier(20), []

    def attempt():
        own = shop["app"].test_client(client=TEST_PEER)  # not entered: no background lanes of its own
        barrier.wait()
        answers.append(own.post("/api/v1/esim/orders", json=body_of(shop, JAPAN, 4.5, client_reference="race"),
                                headers=headers))  # fmt: skip

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in answers) == [200] + [400] * 19
    assert all(r.json() == error("Duplicate client_reference") for r in answers if r.status_code == 400)
    (winner,) = [r.json() for r in answers if r.status_code == 200]
    assert winner["status"] == "DELIVERED" and winner["client_reference"] == "race"
    assert balance(client) == 1000 - JAPAN_PRICE and order_count("esim", client) == 1
    with models.db.connection_context():
        debits = Transaction.select().join(Wallet).where(
            (Wallet.client == client.id) & (Transaction.transaction_type == "DEBIT")).count()  # fmt: skip
    assert debits == 1


def test_concurrent_orders_never_overdraw_the_wallet(shop, new_client):
    """20 orders at once against a PREPAID wallet funded for exactly 5 of them."""
    client, key, secret = new_client(features=("esim",))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", JAPAN_PRICE * 5, "test")
    barrier, answers = threading.Barrier(20), []
    with shop["app"].test_client(client=TEST_PEER) as http:
        headers = log_in(http, key, secret)

        def attempt():
            barrier.wait()
            answers.append(http.post("/api/v1/esim/orders", json=body_of(shop, JAPAN, 4.5), headers=headers))

        threads = [threading.Thread(target=attempt) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(r.status_code for r in answers) == [200] * 5 + [400] * 15
    assert all(r.json() == error("Insufficient wallet balance") for r in answers if r.status_code == 400)
    assert {r.json()["status"] for r in answers if r.status_code == 200} == {"DELIVERED"}
    assert balance(client) == 0 and order_count("esim", client) == 5


def test_a_free_order_debits_nothing(buyer, shop):
    """A 100 % discount (the client's own, 16.2) leaves nothing to pay: no zero-amount debit, no
    refund when it fails, and no transaction to point at."""
    client = buyer[0]
    in_db(products.set_discount, client.id, "esim", shop["base"] + FAILS, D(100))
    assert charges(buyer, shop, FAILS, 10).json()["total_payable"] == 0
    created = create(buyer, shop, FAILS, 10).json()
    assert (created["status"], created["amount"], created["transaction_id"]) == ("FAILED", 10, None)
    assert ledger("esim", created["id"]) == [] and balance(client) == 1000


# -- lists and detail (8.5) -------------------------------------------------------------------------


def test_lists_filters_and_pagination(buyer, shop, other):
    client, http, headers = buyer
    delivered = create(buyer, shop, client_reference="list-a").json()
    failed = create(buyer, shop, FAILS, 10).json()
    cancelled = create(buyer, shop, CANCELS, 10).json()
    pending = parked(client, shop, reference="list-e")
    ids = {"a": delivered["id"], "c": failed["id"], "d": cancelled["id"], "e": pending}

    def listed_ids(query=""):
        response = http.get(f"/api/v1/esim/orders{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()]

    def named(*names):
        return [ids[name] for name in names]

    everything = http.get("/api/v1/esim/orders", headers=headers)
    assert [o["id"] for o in everything.json()] == named("e", "d", "c", "a")
    for item in everything.json():  # list items are the detail objects without the codes
        assert "activation_code" not in item and "iccid" not in item
        full = detail(buyer, item["id"])
        assert item == {k: v for k, v in full.items() if k not in ("activation_code", "iccid")}
    assert everything.json()[0]["status"] == "PENDING" and everything.json()[0]["client_reference"] == "list-e"
    assert everything.json()[3]["activation_status"] == "NOT_INSTALLED"
    assert {k: everything.headers[k] for k in PAGE_HEADERS} == {
        "x-page": "1", "x-per-page": "50", "x-total-count": "4", "x-total-pages": "1", "x-page-size": "4",
        "x-has-more": "false"}  # fmt: skip
    assert listed_ids("?status=PENDING") == named("e")
    assert listed_ids("?status=DELIVERED") == named("a")
    assert listed_ids("?status=FAILED") == named("c")
    assert listed_ids("?status=CANCELLED") == named("d")
    assert listed_ids("?status=DELIVERED&client_reference=list-e") == []
    assert listed_ids("?client_reference=list-a") == named("a")
    assert listed_ids("?client_reference=LIST-A") == [] and listed_ids("?client_reference=list") == []
    page = http.get("/api/v1/esim/orders?per_page=3&page=2", headers=headers)
    assert [o["id"] for o in page.json()] == named("a")
    assert {k: page.headers[k] for k in PAGE_HEADERS} == {
        "x-page": "2", "x-per-page": "3", "x-total-count": "4", "x-total-pages": "2", "x-page-size": "1",
        "x-has-more": "false"}  # fmt: skip
    past = http.get("/api/v1/esim/orders?per_page=3&page=3", headers=headers)
    assert past.json() == [] and past.headers["x-page-size"] == "0"
    assert listed_ids("?per_page=1") == named("e") and listed_ids("?per_page=500") == named("e", "d", "c", "a")
    assert http.get("/api/v1/esim/orders", headers=other[1]).json() == []  # only the caller's orders
    for query, message in [
        ("?status=delivered", "status is invalid"),
        ("?status=RECHARGED", "status is invalid"),
        ("?status=", "status is invalid"),
        ("?per_page=0", "per_page is invalid"),
        ("?per_page=501", "per_page is invalid"),
        ("?page=0", "page is invalid"),
        ("?page=2147483648", "page is invalid"),
        (f"?client_reference={'r' * 256}", "client_reference is invalid"),
    ]:
        response = http.get(f"/api/v1/esim/orders{query}", headers=headers)
        assert (response.status_code, response.json()) == (400, invalid(message)), query


def test_the_detail_of_an_order_that_is_not_the_callers(buyer, shop, other):
    _, http, headers = buyer
    mine = create(buyer, shop).json()
    assert http.get(f"/api/v1/esim/orders/{mine['id']}", headers=other[1]).json() == not_found("Order")
    assert http.get("/api/v1/esim/orders/2147483647", headers=headers).json() == not_found("Order")
    for bad in ("abc", "0", "-1", "2147483648", "1.5", "%20"):
        response = http.get(f"/api/v1/esim/orders/{bad}", headers=headers)
        assert (response.status_code, response.json()) == (400, error("Invalid order ID")), bad
    assert detail(buyer, mine["id"]) == mine


def test_the_install_state_follows_the_supplier(buyer, shop):
    """12.1: installed `install_after` (2 s) after delivery, expired `expire_after` (1 s) after that;
    the detail read asks the supplier, the list does not; the code is gone once installed."""
    _, http, headers = buyer
    first = create(buyer, shop, LIFECYCLE, 10).json()
    second = create(buyer, shop, LIFECYCLE, 10).json()
    plain = create(buyer, shop).json()
    for created in (first, second):
        assert (created["status"], created["activation_status"], created["is_installed"]) == (
            "DELIVERED", "NOT_INSTALLED", False)  # fmt: skip
        assert ACTIVATION_CODE.fullmatch(created["activation_code"])
    assert detail(buyer, first["id"]) == first  # right after: not installed, the code there
    delivered_at = in_db(EsimOrder.get_by_id, first["id"]).delivered_at
    installed = timestamp(delivered_at + datetime.timedelta(seconds=2))
    active = until(buyer, "esim", first["id"], lambda order: order["is_installed"], timeout=6)
    assert active == {**first, "activation_status": "ACTIVE", "is_installed": True, "installed_at": installed,
                      "activated_at": installed, "activation_code": None}  # fmt: skip
    assert active["iccid"] == first["iccid"]
    items = {o["id"]: o for o in http.get("/api/v1/esim/orders", headers=headers).json()}
    assert (items[first["id"]]["activation_status"], items[first["id"]]["is_installed"]) == ("ACTIVE", True)
    # The list does not ask the supplier: the second is as last stored.
    assert (items[second["id"]]["activation_status"], items[second["id"]]["is_installed"]) == ("NOT_INSTALLED", False)
    second_installed = until(buyer, "esim", second["id"], lambda order: order["is_installed"], timeout=6)
    assert second_installed["activation_code"] is None and second_installed["iccid"] == second["iccid"]
    expired = until(buyer, "esim", first["id"], lambda order: order["activation_status"] == "EXPIRED", timeout=6)
    assert expired == {**active, "activation_status": "EXPIRED"}
    assert detail(buyer, plain["id"]) == plain  # without install_after: never installed
    assert plain["activation_status"] == "NOT_INSTALLED" and plain["activation_code"] is not None
    # The delivered order's watch job is due a while after the delivery.
    watch = in_db(Job.get, (Job.kind == esim_orders.WATCH_KIND) & (Job.subject_id == first["id"]))
    assert watch.finished_at is None and watch.run_after >= delivered_at + datetime.timedelta(seconds=10)


# -- the receipt address (8.6) ----------------------------------------------------------------------


def test_a_final_order_gets_its_receipt_at_once_and_only_one(buyer, shop):
    _, http, headers = buyer
    created = create(buyer, shop, FAILS, 10, client_reference="receipt-ref").json()
    assert created["status"] == "FAILED" and receipts("esim", created["id"]) == []
    url = f"/api/v1/esim/orders/{created['id']}/notification-email"
    first = http.patch(url, json={"email": "first@example.com"}, headers=headers)
    assert first.status_code == 200 and first.json() == {**created, "notification_email": "first@example.com"}
    assert [r.recipient for r in receipts("esim", created["id"])] == ["first@example.com"]  # queued by the PATCH
    second = http.patch(url, json={"email": "second@example.com"}, headers=headers)
    assert second.status_code == 200 and second.json()["notification_email"] == "second@example.com"
    assert detail(buyer, created["id"])["notification_email"] == "second@example.com"
    receipt = sent_receipt("esim", created["id"])
    assert (receipt.status, receipt.recipient) == ("skipped", "first@example.com")
    assert f"#{created['id']}" in receipt.text and "receipt-ref" in receipt.text
    assert "The device does not support eSIM" in receipt.text and "refund" in receipt.text.lower()
    assert len(ledger("esim", created["id"], "CREDIT")) == 1


def test_a_delivered_orders_receipt_never_carries_the_codes(buyer, shop):
    _, http, headers = buyer
    created = create(buyer, shop).json()
    response = http.patch(f"/api/v1/esim/orders/{created['id']}/notification-email",
                          json={"email": "codes@example.com"}, headers=headers)  # fmt: skip
    assert response.status_code == 200
    assert response.json() == {**created, "notification_email": "codes@example.com"}
    receipt = sent_receipt("esim", created["id"])
    assert receipt.recipient == "codes@example.com" and f"#{created['id']}" in receipt.subject
    for secret in (created["activation_code"], created["iccid"], created["activation_code"].rsplit("$", 1)[1]):
        assert secret not in receipt.text and secret not in receipt.subject
    assert "refund" not in receipt.text.lower()


def test_notification_email_errors(buyer, shop, other):
    _, http, headers = buyer
    order_id = create(buyer, shop).json()["id"]
    url = f"/api/v1/esim/orders/{order_id}/notification-email"
    for body, expected in [
        ({}, invalid("email is required")),
        ({"email": None}, invalid("email is required")),
        ({"email": "not-an-email"}, invalid("email is invalid")),
        ({"email": "a@b"}, invalid("email is invalid")),
        ({"email": "a b@c.example"}, invalid("email is invalid")),
        ({"email": ""}, invalid("email is invalid")),
        ({"email": 7}, invalid("email is invalid")),
        ({"email": "a" * 243 + "@example.com"}, invalid("email is invalid")),  # 255 characters
    ]:
        response = http.patch(url, json=body, headers=headers)
        assert (response.status_code, response.json()) == (400, expected), body
    response = http.patch(url, content=b'{"email": "a@b.example"}', headers=headers)
    assert (response.status_code, response.json()) == (415, UNSUPPORTED)
    assert http.patch(url, json={"email": "a@b.example"}, headers=other[1]).json() == not_found("Order")
    missing = "/api/v1/esim/orders/2147483647/notification-email"
    assert http.patch(missing, json={"email": "a@b.example"}, headers=headers).json() == not_found("Order")
    assert http.patch(missing, json={}, headers=headers).json() == invalid("email is required")  # 9 before 11
    bad_id = "/api/v1/esim/orders/abc/notification-email"
    assert http.patch(bad_id, content=b"x", headers=headers).json() == error("Invalid order ID")  # 6 before 7
    not_allowed = http.get(url, headers=headers)
    assert not_allowed.status_code == 405 and not_allowed.headers["allow"] == "PATCH"
    assert detail(buyer, order_id)["notification_email"] is None and receipts("esim", order_id) == []
    accepted = http.patch(url, json={"email": "a" * 242 + "@example.com"}, headers=headers)  # 254 characters
    assert accepted.status_code == 200, accepted.text


# -- the operator's commands (16.5) -----------------------------------------------------------------


def test_the_operators_list_and_show(buyer, shop, cli):
    client, http, headers = buyer
    delivered = create(buyer, shop, client_reference="op-1").json()
    failed = create(buyer, shop, FAILS, 10).json()

    def row(order, status, reference=None):
        return {"vertical": "esim", "id": order["id"], "client_id": client.id, "status": status,
                "client_reference": reference, "created_at": order["created_at"]}  # fmt: skip

    code, out, err = cli("order", "list", "--client", str(client.id), "--vertical", "esim", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == [row(failed, "FAILED"), row(delivered, "DELIVERED", "op-1")]
    code, out, _ = cli("order", "list", "--client", str(client.id), "--vertical", "esim", "--status", "FAILED",
                       "--json")  # fmt: skip
    assert code == 0 and json.loads(out) == [row(failed, "FAILED")]
    code, out, _ = cli("order", "list", "--vertical", "esim", "--json")
    everyone = [r["id"] for r in json.loads(out)]
    assert code == 0 and {failed["id"], delivered["id"]} <= set(everyone)
    assert everyone == sorted(everyone, reverse=True)  # newest first (15.1, item 37)
    for order in (delivered, failed):
        code, out, err = cli("order", "show", "esim", str(order["id"]), "--json")
        assert (code, err) == (0, "")
        assert json.loads(out) == {**detail(buyer, order["id"]), "activation_code": None}
    assert delivered["activation_code"] not in cli("order", "show", "esim", str(delivered["id"]), "--json")[1]
    code, out, err = cli("order", "show", "esim", str(delivered["id"]))
    assert code == 0 and delivered["activation_code"] not in out
    code, out, err = cli("order", "show", "esim", "2147483647", "--json")
    assert (code, out, err.count("\n")) == (2, "", 1)


def test_the_operator_cancels_a_pending_order_and_the_late_answer_is_discarded(buyer, shop, cli):
    """15.1, item 32: the cancel wins over the supplier call still in flight."""
    client, http, headers = buyer
    created = create(buyer, shop, SLOW, 10, via="slow").json()
    assert created["status"] == "PENDING"
    url = f"/api/v1/esim/orders/{created['id']}"
    assert (
        http.patch(f"{url}/notification-email", json={"email": "ops@example.com"}, headers=headers).status_code == 200
    )
    assert cli("order", "cancel", "esim", str(created["id"])) == (
        0, f"esim order {created['id']}: CANCELLED, refunded\n", "")  # fmt: skip
    cancelled = http.get(url, headers=headers).json()
    assert cancelled == {**created, "status": "CANCELLED", "status_text": "Order cancelled",
                         "notification_email": "ops@example.com"}  # fmt: skip
    assert [(t.transaction_type, t.amount) for t in ledger("esim", created["id"])] == [
        ("DEBIT", SCENARIO_PRICE), ("CREDIT", SCENARIO_PRICE)]  # fmt: skip
    assert balance(client) == 1000
    # The supplier's late answer comes and goes: the job ends, the order stays as it is.
    deadline = time.monotonic() + 10
    while fulfilment_job("esim", created["id"]).finished_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fulfilment_job("esim", created["id"]).finished_at is not None
    assert http.get(url, headers=headers).json() == cancelled
    assert in_db(EsimOrder.get_by_id, created["id"]).activation_code is None
    assert len(ledger("esim", created["id"], "CREDIT")) == 1 and balance(client) == 1000
    receipt = sent_receipt("esim", created["id"])
    assert receipt.recipient == "ops@example.com" and "refund" in receipt.text.lower()
    # A second cancel is refused and changes nothing.
    code, out, err = cli("order", "cancel", "esim", str(created["id"]))
    assert (code, out, err.count("\n")) == (2, "", 1) and str(created["id"]) in err
    assert http.get(url, headers=headers).json() == cancelled and len(receipts("esim", created["id"])) == 1


def test_the_operator_cannot_cancel_a_delivered_or_unknown_order(buyer, shop, cli):
    client = buyer[0]
    created = create(buyer, shop).json()
    code, out, err = cli("order", "cancel", "esim", str(created["id"]))
    assert (code, out, err.count("\n")) == (2, "", 1) and str(created["id"]) in err
    assert detail(buyer, created["id"]) == created
    assert [t.transaction_type for t in ledger("esim", created["id"])] == ["DEBIT"]
    assert balance(client) == 1000 - JAPAN_PRICE
    code, out, err = cli("order", "cancel", "esim", "2147483647")
    assert (code, out, err.count("\n")) == (2, "", 1)


# -- the feature (15, item 14) ----------------------------------------------------------------------


def test_the_esim_feature_is_needed_on_all_nine_operations(shop, new_client):
    client, key, secret = new_client(features=("vouchers", "topups"))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", 1000, "test")
    http = shop["app"].test_client(client=TEST_PEER)
    headers = log_in(http, key, secret)
    base = shop["base"]
    feature = error("The requested feature is not enabled for this client", "INVALID_FEATURE")
    calls = [
        ("GET", "/api/v1/esim/products", None), ("GET", f"/api/v1/esim/products/{base + JAPAN}", None),
        ("GET", f"/api/v1/esim/products/{base + JAPAN}/variants", None),
        ("GET", f"/api/v1/esim/variants/{variant_id(base, JAPAN, 1)}", None),
        ("POST", "/api/v1/esim/charges", body_of(shop, JAPAN, 4.5)),
        ("POST", "/api/v1/esim/orders", body_of(shop, JAPAN, 4.5)),
        ("GET", "/api/v1/esim/orders", None), ("GET", "/api/v1/esim/orders/1", None),
        ("PATCH", "/api/v1/esim/orders/1/notification-email", {"email": "a@b.example"}),
    ]  # fmt: skip
    for method, path, body in calls:
        response = http.request(method, path, json=body, headers=headers)
        assert (response.status_code, response.json()) == (400, feature), (method, path)
    # Path ids (check 6) and the schema (check 9) come before the feature (check 10).
    assert http.get("/api/v1/esim/orders/abc", headers=headers).json() == error("Invalid order ID")
    assert http.get("/api/v1/esim/variants/0", headers=headers).json() == error("Invalid variant ID")
    response = http.post("/api/v1/esim/charges", json={"product_id": base + JAPAN}, headers=headers)
    assert response.json() == invalid("amount is required")
    assert http.get("/api/v1/esim/products?per_page=0", headers=headers).json() == invalid("per_page is invalid")
    assert balance(client) == 1000 and order_count("esim", client) == 0
