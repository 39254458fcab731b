"""API: top-up orders (contract 7.5, 7.7-7.9, 11, 12.1, 15.1 items 30, 32, 41, 16.5): created PENDING
with their debit, fulfilled in the background through the mock supplier's scenarios, refunded once,
idempotent per vertical, listed and filtered, refreshed on detail, with their receipt address, and
the operator's `order` commands for top-ups."""

import datetime
import json
import secrets
import threading
import time
from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.app import create_app
from octopus_cards.models import Transaction, Wallet, catalogue
from octopus_cards.models.jobs import Job

from support.envelopes import UNSUPPORTED, error, invalid, not_found
from support.inprocess import TEST_PEER, background_work, log_in, make_settings
from support.orders import balance, events, ledger, order_count, parsed, receipts, sent_receipt, settled

# Offsets of the shop's products from its random id base.
GAME, AIRTIME, PLAIN, FAIL_CUSTOM, FAIL_DEFAULT, CANCELS, FLAKY, DOWN, SEK, INACTIVE = range(1, 11)
VOUCHER = 30  # a voucher product: not a top-up product
MISSING = object()  # a body field left out
PHONE = {"phone_number": "+12015550123"}
PLAYER = {"player_id": "player-4711"}
GAME_PRICE = Decimal("4.9151")  # 4.99 less 1.5 %: 4.99 - 0.0749 (contract 15.1, item 25)
RANGE_PRICE = Decimal("9.80")  # 10 less 2 %


@pytest.fixture(scope="module")
def shop(migrated):
    """Top-up products of every scenario under a random id base, a voucher product, and three apps
    on the session database, and the background work with `app`'s settings (short retries)
    meanwhile: `slow` has background work start 1.5 s after a create, `parked` 10 minutes after
    (its orders stay PENDING)."""
    base = 5_000_000 + secrets.randbelow(1_000_000) * 40
    player_fields = [{"name": "player_id", "label": "Player ID", "required": True},
                     {"name": "server", "label": "Server", "required": False}]  # fmt: skip

    def topup(offset, name, **fields):
        return {"id": base + offset, "name": f"{name} {base}", "type": "GAMING", "country": "GLO",
                "currency": "USD", "input_fields": player_fields,
                "variants": [{"name": "Any amount", "min_amount": "1", "max_amount": "100", "discount": 2}],
                **fields}  # fmt: skip

    document = {
        "topups": [
            topup(GAME, "Game", variants=[
                {"name": "Small packs", "category": "In-Game Currency", "fixed_amounts": ["0.99", "4.99"],
                 "discount": 1.5},
                {"name": "Any amount", "min_amount": "5", "max_amount": "100", "discount": 2},
                {"name": "Retired", "fixed_amounts": ["2.5"], "active": False}]),
            topup(AIRTIME, "Airtime", type="MOBILE", country="USA",
                  input_fields=[{"name": "phone_number", "label": "Phone number", "required": True}],
                  variants=[{"name": "Airtime", "category": "Airtime", "min_amount": "1", "max_amount": "50"},
                            {"name": "Data 1 GB", "category": "Data", "fixed_amounts": ["10"]}]),
            topup(PLAIN, "Plain", type="UTILITY", input_fields=[]),
            topup(FAIL_CUSTOM, "Fails", mock={"outcome": "fail", "failure_code": "INVALID_PLAYER_ID",
                                              "failure_reason": "Player ID not found"}),
            topup(FAIL_DEFAULT, "Fails by default", mock={"outcome": "fail"}),
            topup(CANCELS, "Cancels", mock={"outcome": "cancel"}),
            topup(FLAKY, "Flaky", mock={"transient_failures": 2}),
            topup(DOWN, "Down", mock={"transient_failures": 99}),
            topup(SEK, "Kronor", currency="SEK", country="SWE"),
            topup(INACTIVE, "Retired product", active=False),
        ],
        "vouchers": [{"id": base + VOUCHER, "name": f"Top-up shop voucher {base}", "category": f"Top-up shop {base}",
                      "country": "USA", "currency": "USD", "denominations": [{"min": 1, "max": 500}]}],
    }  # fmt: skip
    with models.db.connection_context():
        catalogue.import_catalogue(catalogue.demo_text())  # its exchange rates: USD -> EUR 0.92
        catalogue.import_catalogue(json.dumps(document))
    common = {"OCTOPUS_FULFILMENT_RETRY_SCHEDULE": "0,0,0"}
    settings = make_settings(migrated, **common)
    with background_work(settings):
        yield {
            "base": base,
            "app": create_app(settings),
            "slow": create_app(make_settings(migrated, OCTOPUS_FULFILMENT_DELAY="1.5", **common)),
            "parked": create_app(make_settings(migrated, OCTOPUS_FULFILMENT_DELAY="600", **common)),
        }


@pytest.fixture
def buyer(shop, new_client):
    """A funded client (USD 1,000 and EUR 1,000) with the top-up and voucher features, logged in to
    the shop's app: (client, http, headers)."""
    client, key, secret = new_client(features=("topups", "vouchers"))
    with models.db.connection_context():
        for code in ("USD", "EUR"):
            Wallet.open_funded(client.id, code, 1000, "test")
    with shop["app"].test_client(client=TEST_PEER) as http:
        yield client, http, log_in(http, key, secret)


@pytest.fixture
def other(shop, new_client):
    """Another funded client (USD 1,000), on the same app: (client, headers)."""
    client, key, secret = new_client(features=("topups", "vouchers"))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", 1000, "test")
    return client, log_in(shop["app"].test_client(client=TEST_PEER), key, secret)


def body_of(shop, offset, amount, input_data=MISSING, **fields):
    body = {"product_id": shop["base"] + offset, "amount": amount, **fields}
    if input_data is MISSING:
        input_data = PHONE if offset == AIRTIME else None if offset == PLAIN else PLAYER
    if input_data is not None:
        body["input_data"] = input_data
    return body


def create(buyer, shop, offset=GAME, amount=4.99, input_data=MISSING, via=None, **fields):
    """POST /api/v1/topups/orders; `via` another app's (unentered) test client."""
    _, http, headers = buyer
    client = http if via is None else shop[via].test_client(client=TEST_PEER)
    return client.post("/api/v1/topups/orders", json=body_of(shop, offset, amount, input_data, **fields),
                       headers=headers)  # fmt: skip


def voucher_order(http, headers, shop, **fields):
    body = {"product_id": shop["base"] + VOUCHER, "denomination": 10, "quantity": 1, **fields}
    return http.post("/api/v1/orders", json=body, headers=headers)


# -- create -----------------------------------------------------------------------------------------


def test_a_create_is_pending_with_its_debit_as_quoted(buyer, shop):
    client, http, headers = buyer
    quote = http.post("/api/v1/topups/charges", json={"product_id": shop["base"] + GAME, "amount": 4.99},
                      headers=headers)  # fmt: skip
    assert quote.status_code == 200 and quote.json()["total_payable"] == 4.9151
    response = create(buyer, shop, client_reference="first-topup")
    assert response.status_code == 201
    created = response.json()
    assert created == {
        "id": created["id"], "client_reference": "first-topup", "product_id": shop["base"] + GAME,
        "product_name": f"Game {shop['base']}", "variant_name": "Small packs", "country_code": "GLO",
        "amount": 4.99, "currency": "USD", "status": "PENDING", "status_text": "Order submitted for fulfilment",
        "transaction_id": created["transaction_id"], "failure_code": None, "failure_reason": None,
        "is_user_fixable": None, "notification_email": None, "created_at": created["created_at"],
        "completed_at": None,
    }  # fmt: skip
    assert isinstance(created["id"], int) and isinstance(created["transaction_id"], int)
    assert (
        abs(parsed(created["created_at"]) - datetime.datetime.now(datetime.UTC).replace(tzinfo=None)).total_seconds()
        < 10
    )
    (debit,) = ledger("topups", created["id"])
    assert (debit.id, debit.transaction_type, debit.amount) == (created["transaction_id"], "DEBIT", GAME_PRICE)
    assert balance(client) == 1000 - GAME_PRICE


def test_the_debit_transaction_is_the_contracts(buyer, shop):
    """6.2: `{CUR} Wallet debited by amount {AMOUNT} - Topup Order #{order_id}`, and the API agrees."""
    client, http, headers = buyer
    created = create(buyer, shop).json()
    shown = http.get(f"/api/v1/transactions/{created['transaction_id']}", headers=headers).json()
    with models.db.connection_context():
        usd = Wallet.select().join(models.Currency).where(
            (Wallet.client == client.id) & (models.Currency.currency == "USD")).get()  # fmt: skip
    assert shown == {
        "id": created["transaction_id"], "wallet_id": usd.id, "currency_id": usd.currency_id, "amount": 4.9151,
        "transaction_type": "DEBIT", "status": "COMPLETED", "source_currency": None, "destination_currency": None,
        "forex_rate": None, "conversion_charges": None,
        "remarks": f"USD Wallet debited by amount 4.9151 - Topup Order #{created['id']}",
        "created_at": shown["created_at"],
    }  # fmt: skip
    debited = [e for e in events(client) if e["type"] == "wallet.debited"]
    assert [e["data"] for e in debited] == [shown]


def test_an_fx_order_debits_the_wallet_currency(buyer, shop):
    client, http, headers = buyer
    with models.db.connection_context():
        eur = Wallet.select().join(models.Currency).where(
            (Wallet.client == client.id) & (models.Currency.currency == "EUR")).get().id  # fmt: skip
    quote = http.post("/api/v1/topups/charges", json={"product_id": shop["base"] + GAME, "amount": 4.99,
                                                      "wallet_id": eur}, headers=headers).json()  # fmt: skip
    assert quote["total_payable"] == 4.5219  # 4.9151 x 0.92, rounded half-up
    created = create(buyer, shop, wallet_id=eur).json()
    assert (created["amount"], created["currency"]) == (4.99, "USD")  # the order stays in the product's currency
    shown = http.get(f"/api/v1/transactions/{created['transaction_id']}", headers=headers).json()
    assert (shown["wallet_id"], shown["amount"], shown["transaction_type"]) == (eur, 4.5219, "DEBIT")
    assert (shown["source_currency"], shown["destination_currency"], shown["forex_rate"]) == ("USD", "EUR", 0.92)
    assert shown["conversion_charges"] == 0
    assert balance(client, "EUR") == 1000 - Decimal("4.5219")
    assert balance(client, "USD") == 1000
    assert settled(buyer, "topups", created["id"])["status"] == "DELIVERED"
    assert balance(client, "EUR") == 1000 - Decimal("4.5219")


@pytest.mark.parametrize(
    "offset, amount, category, variant",
    [(GAME, 4.99, None, "Small packs"), (GAME, 0.99, None, "Small packs"), (GAME, 5, None, "Any amount"),
     (GAME, 100, None, "Any amount"), (AIRTIME, 10, None, "Data 1 GB"), (AIRTIME, 10.0, "Data", "Data 1 GB"),
     (AIRTIME, 10, "Airtime", "Airtime"), (AIRTIME, 50, None, "Airtime")],
)  # fmt: skip
def test_the_amount_and_category_select_the_variant(buyer, shop, offset, amount, category, variant):
    fields = {} if category is None else {"category": category}
    response = create(buyer, shop, offset, amount, **fields)
    assert response.status_code == 201, response.text
    assert response.json()["variant_name"] == variant
    assert response.json()["country_code"] == ("USA" if offset == AIRTIME else "GLO")


# -- background outcomes ----------------------------------------------------------------------------


def test_a_delivered_order(buyer, shop):
    client = buyer[0]
    created = create(buyer, shop).json()
    done = settled(buyer, "topups", created["id"])
    assert done == {**created, "status": "DELIVERED", "status_text": "Top-up delivered",
                    "completed_at": done["completed_at"]}  # fmt: skip
    assert parsed(done["completed_at"]) >= parsed(done["created_at"])
    assert [t.transaction_type for t in ledger("topups", created["id"])] == ["DEBIT"]
    assert balance(client) == 1000 - GAME_PRICE
    # Two fundings and the debit; no order.* or topup.* event (9.2).
    assert sorted(e["type"] for e in events(client)) == ["wallet.credited", "wallet.credited", "wallet.debited"]


@pytest.mark.parametrize(
    "offset, status, status_text, failure",
    [pytest.param(FAIL_CUSTOM, "FAILED", "Top-up failed", ("INVALID_PLAYER_ID", "Player ID not found", True),
                  id="fail"),
     pytest.param(FAIL_DEFAULT, "FAILED", "Top-up failed",
                  ("INVALID_ACCOUNT", "The account identifier was rejected by the operator", True), id="fail-default"),
     pytest.param(CANCELS, "CANCELLED", "Order cancelled", (None, None, None), id="cancel"),
     pytest.param(DOWN, "FAILED", "Top-up failed", ("SUPPLIER_UNAVAILABLE", "The supplier did not respond", False),
                  id="budget-spent")],
)  # fmt: skip
def test_an_order_that_does_not_deliver_is_refunded_once(buyer, shop, offset, status, status_text, failure):
    client = buyer[0]
    created = create(buyer, shop, offset, 10).json()
    assert created["status"] == "PENDING"
    assert balance(client) == 1000 - RANGE_PRICE
    done = settled(buyer, "topups", created["id"])
    assert done == {
        **created, "status": status, "status_text": status_text, "failure_code": failure[0],
        "failure_reason": failure[1], "is_user_fixable": failure[2], "completed_at": done["completed_at"],
    }  # fmt: skip
    parsed(done["completed_at"])
    debit, refund = ledger("topups", created["id"])
    assert (debit.transaction_type, debit.amount, debit.id) == ("DEBIT", RANGE_PRICE, created["transaction_id"])
    assert (refund.transaction_type, refund.amount, refund.wallet_id) == ("CREDIT", RANGE_PRICE, debit.wallet_id)
    assert balance(client) == 1000
    time.sleep(0.3)  # another round of the worker changes nothing
    assert settled(buyer, "topups", created["id"]) == done
    assert len(ledger("topups", created["id"], "CREDIT")) == 1 and balance(client) == 1000
    seen = events(client)
    assert sorted(e["type"] for e in seen) == ["wallet.credited"] * 3 + ["wallet.debited"]
    assert [e["data"]["id"] for e in seen if e["type"] == "wallet.debited"] == [debit.id]
    assert refund.id in [e["data"]["id"] for e in seen if e["type"] == "wallet.credited"]


def test_the_refund_transaction_is_the_contracts(buyer, shop):
    """6.2: `{CUR} Wallet credited by amount {AMOUNT} - Refund for Topup Order #{order_id}`."""
    client, http, headers = buyer
    created = create(buyer, shop, FAIL_CUSTOM, 10).json()
    settled(buyer, "topups", created["id"])
    (refund,) = ledger("topups", created["id"], "CREDIT")
    shown = http.get(f"/api/v1/transactions/{refund.id}", headers=headers).json()
    assert (shown["amount"], shown["transaction_type"], shown["status"]) == (9.8, "CREDIT", "COMPLETED")
    assert shown["remarks"] == f"USD Wallet credited by amount 9.80 - Refund for Topup Order #{created['id']}"
    credited = [e["data"] for e in events(client) if e["type"] == "wallet.credited" and e["data"]["id"] == refund.id]
    assert credited == [shown]


def test_transient_failures_are_retried_then_delivered(buyer, shop):
    client = buyer[0]
    created = create(buyer, shop, FLAKY, 10).json()
    assert created["status"] == "PENDING"
    done = settled(buyer, "topups", created["id"])
    assert (done["status"], done["failure_code"], done["is_user_fixable"]) == ("DELIVERED", None, None)
    with models.db.connection_context():
        job = Job.get((Job.kind == "topup_order") & (Job.subject_id == created["id"]))
    assert job.attempts == 3 and job.finished_at is not None  # two transient failures, then the delivery
    assert balance(client) == 1000 - RANGE_PRICE and len(ledger("topups", created["id"])) == 1


def test_the_fulfilment_delay_keeps_a_new_order_pending(buyer, shop):
    """OCTOPUS_FULFILMENT_DELAY (14): background work on a new order starts after it."""
    _, http, headers = buyer
    # Created late in a wall-clock second: a delay that is not kept to the fraction shows here.
    time.sleep((0.85 - time.time() % 1) % 1)
    started = time.monotonic()
    created = create(buyer, shop, via="slow").json()
    assert created["status"] == "PENDING"
    time.sleep(0.5)
    assert http.get(f"/api/v1/topups/orders/{created['id']}", headers=headers).json() == created
    done = settled(buyer, "topups", created["id"])
    assert done["status"] == "DELIVERED" and time.monotonic() - started >= 1.5


# -- input_data ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offset, input_data, message",
    [(GAME, None, "input_data is required"),
     (AIRTIME, None, "input_data is required"),
     (GAME, {}, "input_data.player_id is required"),
     (GAME, {"server": "eu-1"}, "input_data.player_id is required"),
     (GAME, {"player_id": None}, "input_data.player_id is required"),
     (AIRTIME, {"phone_number": None}, "input_data.phone_number is required"),
     (GAME, {"player_id": "p", "foo": "x"}, "input_data.foo is not allowed"),
     (PLAIN, {"foo": "x"}, "input_data.foo is not allowed"),
     (AIRTIME, {"phone_number": "+12015550123", "player_id": "p"}, "input_data.player_id is not allowed"),
     (GAME, {"player_id": "p", "server": None}, "input_data.server is invalid"),
     (GAME, {"player_id": "p", "server": 1}, "input_data.server is invalid"),
     (GAME, {"player_id": "p", "server": True}, "input_data.server is invalid"),
     (GAME, {"player_id": "p", "server": {}}, "input_data.server is invalid"),
     (GAME, {"player_id": "p", "server": []}, "input_data.server is invalid"),
     (GAME, {"player_id": "p", "server": ""}, "input_data.server is invalid"),
     (GAME, {"player_id": "p", "server": "s" * 129}, "input_data.server is invalid"),
     (GAME, {"player_id": 4711}, "input_data.player_id is invalid"),
     (GAME, {"player_id": ""}, "input_data.player_id is invalid"),
     (GAME, {"player_id": "p" * 129}, "input_data.player_id is invalid"),
     (GAME, {"player_id": ["p"]}, "input_data.player_id is invalid")],
)  # fmt: skip
def test_input_data_rules(buyer, shop, offset, input_data, message):
    client = buyer[0]
    body = body_of(shop, offset, 10)
    body.pop("input_data", None)
    if input_data is not None:
        body["input_data"] = input_data
    response = buyer[1].post("/api/v1/topups/orders", json=body, headers=buyer[2])
    assert (response.status_code, response.json()) == (400, invalid(message))
    assert balance(client) == 1000 and order_count("topups", client) == 0


@pytest.mark.parametrize("input_data", [None, "x", "", [], ["player_id"], 1, True])
def test_input_data_that_is_not_an_object_is_invalid(buyer, shop, input_data):
    body = {"product_id": shop["base"] + GAME, "amount": 10, "input_data": input_data}
    response = buyer[1].post("/api/v1/topups/orders", json=body, headers=buyer[2])
    assert (response.status_code, response.json()) == (400, invalid("input_data is invalid"))


@pytest.mark.parametrize(
    "offset, input_data",
    [(GAME, {"player_id": "p" * 128, "server": "s" * 128}), (GAME, {"player_id": "\u00fc" * 128}),
     (GAME, {"player_id": "p"}), (AIRTIME, PHONE), (PLAIN, {}), (PLAIN, None)],
)  # fmt: skip
def test_accepted_input_data(buyer, shop, offset, input_data):
    body = body_of(shop, offset, 10)
    body.pop("input_data", None)
    if input_data is not None:
        body["input_data"] = input_data
    response = buyer[1].post("/api/v1/topups/orders", json=body, headers=buyer[2])
    assert response.status_code == 201, response.text
    assert settled(buyer, "topups", response.json()["id"])["status"] == "DELIVERED"


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offset, amount, fields, status, expected",
    [pytest.param(999, 10, {}, 404, not_found("Product"), id="no-such-product"),
     pytest.param(INACTIVE, 10, {}, 404, not_found("Product"), id="inactive-product"),
     pytest.param(VOUCHER, 10, {}, 404, not_found("Product"), id="voucher-product"),
     pytest.param(GAME, 4.99, {"wallet_id": 2147483647}, 404, not_found("Wallet"), id="no-such-wallet"),
     pytest.param(GAME, 3, {}, 400, error("Invalid amount"), id="between-variants"),
     pytest.param(GAME, 2.5, {}, 400, error("Invalid amount"), id="inactive-variant"),
     pytest.param(GAME, 4.991, {}, 400, error("Invalid amount"), id="beyond-precision"),
     pytest.param(GAME, 100.01, {}, 400, error("Invalid amount"), id="above-range"),
     pytest.param(GAME, 4.99, {"category": "Airtime"}, 400, error("Invalid amount"), id="other-category"),
     pytest.param(AIRTIME, 10, {"category": "Bundle"}, 400, error("Invalid amount"), id="no-bundle"),
     pytest.param(SEK, 10, {}, 400, error("No wallet available for this currency"), id="no-wallet"),
     pytest.param(GAME, 100, {"input_data": {"player_id": "p"}, "client_reference": "x" * 255,
                              "category": "Data"}, 400, error("Invalid amount"), id="category-data")],
)  # fmt: skip
def test_refused_creates_debit_nothing_and_create_nothing(buyer, shop, offset, amount, fields, status, expected):
    client, http, headers = buyer
    response = create(buyer, shop, offset, amount, **fields)
    assert (response.status_code, response.json()) == (status, expected)
    assert balance(client) == 1000 and balance(client, "EUR") == 1000 and order_count("topups", client) == 0
    assert http.get("/api/v1/topups/orders", headers=headers).headers["x-total-count"] == "0"


def test_another_clients_wallet_is_not_found(buyer, shop, other):
    with models.db.connection_context():
        theirs = Wallet.get(Wallet.client == other[0].id).id
    assert create(buyer, shop, wallet_id=theirs).json() == not_found("Wallet")
    assert balance(other[0]) == 1000 and order_count("topups", buyer[0]) == 0


def test_no_exchange_rate_is_refused(buyer, shop):
    client = buyer[0]
    with models.db.connection_context():
        usd = Wallet.select().join(models.Currency).where(
            (Wallet.client == client.id) & (models.Currency.currency == "USD")).get().id  # fmt: skip
    assert create(buyer, shop, SEK, 10, wallet_id=usd).json() == error("Currency conversion not available")
    assert balance(client) == 1000 and order_count("topups", client) == 0


def test_an_insufficient_balance_writes_nothing(shop, new_client):
    client, key, secret = new_client(features=("topups",))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", Decimal("9.79"), "test")
    with shop["app"].test_client(client=TEST_PEER) as http:
        headers = log_in(http, key, secret)
        response = http.post("/api/v1/topups/orders", json=body_of(shop, GAME, 10, client_reference="poor"),
                             headers=headers)  # fmt: skip
        assert (response.status_code, response.json()) == (400, error("Insufficient wallet balance"))
        assert balance(client) == Decimal("9.79") and order_count("topups", client) == 0
        assert http.get("/api/v1/topups/orders", headers=headers).json() == []
        # 9.79 pays for a 9.99 top-up at 2 %: 9.7902 -> no; 9.98 -> 9.7804 -> yes.
        assert http.post("/api/v1/topups/orders", json=body_of(shop, GAME, 9.99), headers=headers).json() == error(
            "Insufficient wallet balance")  # fmt: skip
        accepted = http.post("/api/v1/topups/orders", json=body_of(shop, GAME, 9.98, client_reference="poor"),
                             headers=headers)  # fmt: skip
        assert accepted.status_code == 201, accepted.text
        assert balance(client) == Decimal("0.0096")


@pytest.mark.parametrize(
    "change, message",
    [({"product_id": MISSING}, "product_id is required"), ({"product_id": None}, "product_id is required"),
     ({"product_id": 0}, "product_id is invalid"), ({"product_id": -1}, "product_id is invalid"),
     ({"product_id": "1"}, "product_id is invalid"), ({"product_id": 1.5}, "product_id is invalid"),
     ({"product_id": 2147483648}, "product_id is invalid"),
     ({"amount": MISSING}, "amount is required"), ({"amount": None}, "amount is required"),
     ({"amount": 0}, "amount is invalid"), ({"amount": 0.001}, "amount is invalid"),
     ({"amount": -5}, "amount is invalid"), ({"amount": "10"}, "amount is invalid"),
     ({"amount": 1000000000.01}, "amount is invalid"),
     ({"client_reference": ""}, "client_reference is invalid"),
     ({"client_reference": "r" * 256}, "client_reference is invalid"),
     ({"client_reference": "tab\there"}, "client_reference is invalid"),
     ({"client_reference": "bell\x07"}, "client_reference is invalid"),
     ({"client_reference": "del\x7f"}, "client_reference is invalid"),
     ({"client_reference": "caf\u00e9"}, "client_reference is invalid"),
     ({"client_reference": 12}, "client_reference is invalid"),
     ({"client_reference": None}, "client_reference is invalid"),
     ({"wallet_id": 0}, "wallet_id is invalid"), ({"wallet_id": "1"}, "wallet_id is invalid"),
     ({"wallet_id": None}, "wallet_id is invalid"), ({"wallet_id": 2147483648}, "wallet_id is invalid"),
     ({"category": "airtime"}, "category is invalid"), ({"category": "In-Game Currency"}, "category is invalid"),
     ({"category": ""}, "category is invalid"), ({"category": None}, "category is invalid")],
)  # fmt: skip
def test_schema_violations(buyer, shop, change, message):
    client, http, headers = buyer
    body = body_of(shop, GAME, 10)
    for key, value in change.items():
        if value is MISSING:
            body.pop(key)
        else:
            body[key] = value
    response = http.post("/api/v1/topups/orders", json=body, headers=headers)
    assert (response.status_code, response.json()) == (400, invalid(message))
    assert balance(client) == 1000 and order_count("topups", client) == 0


def test_bodies_that_are_not_an_order(buyer, shop):
    _, http, headers = buyer
    body = json.dumps(body_of(shop, GAME, 10))
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        sent = dict(headers) if content_type is None else {**headers, "Content-Type": content_type}
        response = http.post("/api/v1/topups/orders", content=body, headers=sent)
        assert (response.status_code, response.json()) == (415, UNSUPPORTED)
    as_json = {**headers, "Content-Type": "application/json; charset=utf-8"}
    assert http.post("/api/v1/topups/orders", content=body, headers=as_json).status_code == 201
    assert http.post("/api/v1/topups/orders", content=b"{", headers=as_json).json() == error(
        "Invalid request body", "SYNTAX_ERROR", "SyntaxError")  # fmt: skip
    assert http.post("/api/v1/topups/orders", content=b"[]", headers=as_json).json() == invalid(
        "Request body must be a JSON object")  # fmt: skip
    assert http.post("/api/v1/topups/orders", content=b"", headers=as_json).json() == invalid(
        "Request body is required")  # fmt: skip


def test_the_topups_feature_is_needed(shop, new_client):
    client, key, secret = new_client(features=("vouchers", "esim"))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", 1000, "test")
    http = shop["app"].test_client(client=TEST_PEER)
    headers = log_in(http, key, secret)
    feature = error("The requested feature is not enabled for this client", "INVALID_FEATURE")
    assert http.post("/api/v1/topups/orders", json=body_of(shop, GAME, 10), headers=headers).json() == feature
    assert http.get("/api/v1/topups/orders", headers=headers).json() == feature
    assert http.get("/api/v1/topups/orders/1", headers=headers).json() == feature
    assert http.patch("/api/v1/topups/orders/1/notification-email", json={"email": "a@b.example"},
                      headers=headers).json() == feature  # fmt: skip
    assert balance(client) == 1000 and order_count("topups", client) == 0


# -- the order of checks (1.10, 11, 15.1 item 41) -----------------------------------------------------


def test_the_order_of_checks(buyer, shop):
    client = buyer[0]
    # The schema (check 9) before the product (check 11); the product before input_data's keys.
    assert create(buyer, shop, 999, input_data="x").json() == invalid("input_data is invalid")
    assert create(buyer, shop, 999, input_data={"foo": "x"}).json() == not_found("Product")
    assert create(buyer, shop, INACTIVE, input_data={}).json() == not_found("Product")
    assert create(buyer, shop, GAME, input_data=None, wallet_id=2147483647).json() == not_found("Wallet")
    # The reference is used by a top-up order that failed and was refunded.
    used = create(buyer, shop, FAIL_CUSTOM, 10, client_reference="used").json()
    assert settled(buyer, "topups", used["id"])["status"] == "FAILED"
    # input_data before the duplicate reference; the duplicate before every other business rule.
    assert create(buyer, shop, input_data={}, client_reference="used").json() == invalid(
        "input_data.player_id is required")  # fmt: skip
    assert create(buyer, shop, input_data={"foo": "x"}, client_reference="used").json() == invalid(
        "input_data.foo is not allowed")  # fmt: skip
    duplicate = error("Duplicate client_reference")
    assert create(buyer, shop, amount=3, client_reference="used").json() == duplicate
    assert create(buyer, shop, SEK, 10, client_reference="used").json() == duplicate
    assert create(buyer, shop, amount=100, category="Bundle", client_reference="used").json() == duplicate
    with models.db.connection_context():
        usd = Wallet.select().join(models.Currency).where(
            (Wallet.client == client.id) & (models.Currency.currency == "USD")).get().id  # fmt: skip
    assert create(buyer, shop, SEK, 10, wallet_id=usd, client_reference="used").json() == duplicate
    assert order_count("topups", client) == 1 and balance(client) == 1000


def test_the_variant_is_selected_before_the_wallet(shop, new_client):
    """7.7: validate -> select variant -> select wallet -> price -> balance."""
    client, key, secret = new_client(features=("topups",))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "EUR", 1, "test")  # no USD wallet, no default currency
    http = shop["app"].test_client(client=TEST_PEER)
    headers = log_in(http, key, secret)
    assert http.post("/api/v1/topups/orders", json=body_of(shop, GAME, 3), headers=headers).json() == error(
        "Invalid amount")  # fmt: skip
    assert http.post("/api/v1/topups/orders", json=body_of(shop, GAME, 4.99), headers=headers).json() == error(
        "No wallet available for this currency")  # fmt: skip


def test_refused_creates_do_not_consume_the_reference(buyer, shop):
    client = buyer[0]
    refusals = [
        (dict(amount=3), error("Invalid amount")),
        (dict(input_data={}), invalid("input_data.player_id is required")),
        (dict(offset=999), not_found("Product")),
        (dict(wallet_id=2147483647), not_found("Wallet")),
        (dict(offset=SEK, amount=10), error("No wallet available for this currency")),
        (dict(amount=100, category="Airtime"), error("Invalid amount")),
        (dict(amount=-1), invalid("amount is invalid")),
    ]
    for fields, expected in refusals:
        assert create(buyer, shop, client_reference="kept", **fields).json() == expected, fields
    response = create(buyer, shop, client_reference="kept")
    assert response.status_code == 201 and response.json()["client_reference"] == "kept"
    assert balance(client) == 1000 - GAME_PRICE


# -- idempotency --------------------------------------------------------------------------------------


def test_a_used_reference_is_refused_whatever_the_first_orders_status(buyer, shop):
    client = buyer[0]
    failed = create(buyer, shop, FAIL_CUSTOM, 10, client_reference="ref-failed").json()
    cancelled = create(buyer, shop, CANCELS, 10, client_reference="ref-cancelled").json()
    delivered = create(buyer, shop, client_reference="ref-delivered").json()
    pending = create(buyer, shop, via="parked", client_reference="ref-pending").json()
    assert settled(buyer, "topups", failed["id"])["status"] == "FAILED"
    assert settled(buyer, "topups", cancelled["id"])["status"] == "CANCELLED"
    assert settled(buyer, "topups", delivered["id"])["status"] == "DELIVERED"
    paid = 1000 - 2 * GAME_PRICE
    assert balance(client) == paid
    for reference in ("ref-failed", "ref-cancelled", "ref-delivered", "ref-pending"):
        response = create(buyer, shop, client_reference=reference)
        assert (response.status_code, response.json()) == (400, error("Duplicate client_reference")), reference
    assert balance(client) == paid and order_count("topups", client) == 4
    assert settled(buyer, "topups", failed["id"])["client_reference"] == "ref-failed"  # not replayed, not changed
    assert buyer[1].get(f"/api/v1/topups/orders/{pending['id']}", headers=buyer[2]).json() == pending


def test_references_are_unique_per_client_and_vertical(buyer, shop, other):
    client, http, headers = buyer
    reference = f"shared-{secrets.token_hex(4)}"
    assert create(buyer, shop, client_reference=reference).status_code == 201
    voucher = voucher_order(http, headers, shop, client_reference=reference)
    assert voucher.status_code == 201 and voucher.json()["client_reference"] == reference
    theirs = http.post("/api/v1/topups/orders", json=body_of(shop, GAME, 4.99, client_reference=reference),
                       headers=other[1])  # fmt: skip
    assert theirs.status_code == 201 and theirs.json()["client_reference"] == reference
    assert create(buyer, shop, client_reference=reference.upper()).status_code == 201  # compared exactly
    assert create(buyer, shop, client_reference=reference).json() == error("Duplicate client_reference")


def test_concurrent_creates_with_one_new_reference(buyer, shop):
    client, _, headers = buyer
    barrier, answers = threading.Barrier(20), []

    def attempt():
        own = shop["app"].test_client(client=TEST_PEER)  # not entered: no background lanes of its own
        barrier.wait()
        answers.append(own.post("/api/v1/topups/orders", json=body_of(shop, GAME, 4.99, client_reference="race"),
                                headers=headers))  # fmt: skip

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in answers) == [201] + [400] * 19
    assert all(r.json() == error("Duplicate client_reference") for r in answers if r.status_code == 400)
    (winner,) = [r.json() for r in answers if r.status_code == 201]
    assert balance(client) == 1000 - GAME_PRICE and order_count("topups", client) == 1
    assert [t.transaction_type for t in ledger("topups", winner["id"])] == ["DEBIT"]
    with models.db.connection_context():
        debits = Transaction.select().join(Wallet).where(
            (Wallet.client == client.id) & (Transaction.transaction_type == "DEBIT")).count()  # fmt: skip
    assert debits == 1
    assert settled(buyer, "topups", winner["id"])["status"] == "DELIVERED"


def test_concurrent_orders_never_overdraw_the_wallet(shop, new_client):
    """20 orders at once against a PREPAID wallet funded for exactly 5 of them."""
    client, key, secret = new_client(features=("topups",))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", GAME_PRICE * 5, "test")
    barrier, answers = threading.Barrier(20), []
    with shop["app"].test_client(client=TEST_PEER) as http:
        headers = log_in(http, key, secret)

        def attempt():
            barrier.wait()
            answers.append(http.post("/api/v1/topups/orders", json=body_of(shop, GAME, 4.99), headers=headers))

        threads = [threading.Thread(target=attempt) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(r.status_code for r in answers) == [201] * 5 + [400] * 15
    assert all(r.json() == error("Insufficient wallet balance") for r in answers if r.status_code == 400)
    assert balance(client) == 0 and order_count("topups", client) == 5


# -- lists and detail ---------------------------------------------------------------------------------


def test_lists_filters_and_pagination(buyer, shop, other):
    _, http, headers = buyer
    delivered = create(buyer, shop, client_reference="list-a").json()
    airtime = create(buyer, shop, AIRTIME, 10).json()
    failed = create(buyer, shop, FAIL_CUSTOM, 10).json()
    cancelled = create(buyer, shop, CANCELS, 10).json()
    for created in (delivered, airtime, failed, cancelled):
        settled(buyer, "topups", created["id"])
    pending = create(buyer, shop, via="parked").json()
    ids = {name: o["id"] for name, o in [("a", delivered), ("b", airtime), ("c", failed), ("d", cancelled),
                                         ("e", pending)]}  # fmt: skip

    def listed(query=""):
        response = http.get(f"/api/v1/topups/orders{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()]

    def named(*names):
        return [ids[name] for name in names]

    everything = http.get("/api/v1/topups/orders", headers=headers)
    assert [o["id"] for o in everything.json()] == named("e", "d", "c", "b", "a")
    for item in everything.json():  # list items are the detail objects
        assert item == http.get(f"/api/v1/topups/orders/{item['id']}", headers=headers).json()
    assert everything.json()[1]["status"] == "CANCELLED" and everything.json()[2]["failure_code"] == "INVALID_PLAYER_ID"
    assert {k: everything.headers[k] for k in ("x-page", "x-per-page", "x-total-count", "x-total-pages",
                                               "x-page-size", "x-has-more")} == {
        "x-page": "1", "x-per-page": "50", "x-total-count": "5", "x-total-pages": "1", "x-page-size": "5",
        "x-has-more": "false"}  # fmt: skip
    assert listed("?status=PENDING") == named("e")
    assert listed("?status=DELIVERED") == named("b", "a")
    assert listed("?status=FAILED") == named("c")
    assert listed("?status=CANCELLED") == named("d")
    recharged = http.get("/api/v1/topups/orders?status=RECHARGED", headers=headers)
    assert recharged.json() == [] and recharged.headers["x-total-count"] == "0"
    assert recharged.headers["x-total-pages"] == "0" and recharged.headers["x-has-more"] == "false"
    assert listed(f"?product_id={shop['base'] + GAME}") == named("e", "a")
    assert listed(f"?product_id={shop['base'] + AIRTIME}&status=DELIVERED") == named("b")
    assert listed(f"?product_id={shop['base'] + 999}") == []
    assert listed("?country=GLO") == named("e", "d", "c", "a")
    assert listed("?country=USA") == named("b")
    assert listed("?country=ZZZ") == []
    assert listed("?client_reference=list-a") == named("a")
    assert listed("?client_reference=LIST-A") == [] and listed("?client_reference=list") == []
    page = http.get("/api/v1/topups/orders?per_page=2&page=2", headers=headers)
    assert [o["id"] for o in page.json()] == named("c", "b")
    assert {k: page.headers[k] for k in ("x-page", "x-per-page", "x-total-count", "x-total-pages", "x-page-size",
                                         "x-has-more")} == {
        "x-page": "2", "x-per-page": "2", "x-total-count": "5", "x-total-pages": "3", "x-page-size": "2",
        "x-has-more": "true"}  # fmt: skip
    last = http.get("/api/v1/topups/orders?per_page=2&page=3", headers=headers)
    assert [o["id"] for o in last.json()] == named("a") and last.headers["x-has-more"] == "false"
    past = http.get("/api/v1/topups/orders?per_page=2&page=4", headers=headers)
    assert past.json() == [] and past.headers["x-page-size"] == "0"
    assert listed("?per_page=500") == named("e", "d", "c", "b", "a")
    assert listed("?per_page=1") == named("e")
    assert http.get("/api/v1/topups/orders", headers=other[1]).json() == []  # only the caller's orders
    for query, message in [
        ("?status=delivered", "status is invalid"),
        ("?status=RECHARGE", "status is invalid"),
        ("?country=usa", "country is invalid"),
        ("?country=US", "country is invalid"),
        ("?country=USAA", "country is invalid"),
        ("?product_id=0", "product_id is invalid"),
        ("?product_id=abc", "product_id is invalid"),
        ("?per_page=0", "per_page is invalid"),
        ("?per_page=501", "per_page is invalid"),
        ("?per_page=x", "per_page is invalid"),
        ("?page=0", "page is invalid"),
        ("?page=2147483648", "page is invalid"),
        (f"?client_reference={'r' * 256}", "client_reference is invalid"),
    ]:
        response = http.get(f"/api/v1/topups/orders{query}", headers=headers)
        assert (response.status_code, response.json()) == (400, invalid(message)), query


def test_the_detail_of_an_order_that_is_not_the_callers(buyer, shop, other, new_client):
    client, http, headers = buyer
    mine = create(buyer, shop).json()
    assert http.get(f"/api/v1/topups/orders/{mine['id']}", headers=other[1]).json() == not_found("Order")
    # A voucher order of a client without top-up orders is no top-up order of theirs.
    voucher = voucher_order(http, other[1], shop).json()
    assert http.get(f"/api/v1/topups/orders/{voucher['id']}", headers=other[1]).json() == not_found("Order")
    assert http.get("/api/v1/topups/orders/2147483647", headers=headers).json() == not_found("Order")
    for bad in ("abc", "0", "-1", "2147483648", "1.5", "%20"):
        response = http.get(f"/api/v1/topups/orders/{bad}", headers=headers)
        assert (response.status_code, response.json()) == (400, error("Invalid order ID")), bad
    assert http.get(f"/api/v1/topups/orders/{mine['id']}", headers=headers).json()["id"] == mine["id"]


# -- the receipt address (7.9) ------------------------------------------------------------------------


def test_a_pending_orders_receipt_is_sent_when_it_settles(buyer, shop):
    _, http, headers = buyer
    created = create(buyer, shop, via="slow", client_reference="with-receipt").json()
    response = http.patch(f"/api/v1/topups/orders/{created['id']}/notification-email",
                          json={"email": "buyer@example.com"}, headers=headers)  # fmt: skip
    assert response.status_code == 200
    assert response.json() == {**created, "notification_email": "buyer@example.com"}
    assert http.get(f"/api/v1/topups/orders/{created['id']}", headers=headers).json() == response.json()
    assert receipts("topups", created["id"]) == []  # not final yet
    done = settled(buyer, "topups", created["id"])
    assert (done["status"], done["notification_email"]) == ("DELIVERED", "buyer@example.com")
    receipt = sent_receipt("topups", created["id"])
    assert (receipt.status, receipt.recipient, receipt.client_id) == ("skipped", "buyer@example.com", buyer[0].id)
    assert f"#{created['id']}" in receipt.subject and f"#{created['id']}" in receipt.text
    assert "refund" not in receipt.text.lower()


def test_a_final_order_gets_its_receipt_at_once_and_only_one(buyer, shop):
    _, http, headers = buyer
    created = create(buyer, shop, FAIL_CUSTOM, 10).json()
    assert settled(buyer, "topups", created["id"])["status"] == "FAILED"
    assert receipts("topups", created["id"]) == []  # no address, no receipt
    url = f"/api/v1/topups/orders/{created['id']}/notification-email"
    first = http.patch(url, json={"email": "first@example.com"}, headers=headers)
    assert first.status_code == 200 and first.json()["notification_email"] == "first@example.com"
    assert first.json()["status"] == "FAILED"
    queued = receipts("topups", created["id"])  # queued by the PATCH itself
    assert [r.recipient for r in queued] == ["first@example.com"]
    second = http.patch(url, json={"email": "second@example.com"}, headers=headers)
    assert second.status_code == 200 and second.json()["notification_email"] == "second@example.com"
    receipt = sent_receipt("topups", created["id"])
    assert (receipt.status, receipt.recipient) == ("skipped", "first@example.com")
    assert f"#{created['id']}" in receipt.text and "refund" in receipt.text.lower()
    assert len(ledger("topups", created["id"], "CREDIT")) == 1


def test_notification_email_errors(buyer, shop, other):
    _, http, headers = buyer
    order_id = create(buyer, shop).json()["id"]
    url = f"/api/v1/topups/orders/{order_id}/notification-email"
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
    missing = "/api/v1/topups/orders/2147483647/notification-email"
    assert http.patch(missing, json={"email": "a@b.example"}, headers=headers).json() == not_found("Order")
    assert http.patch(missing, json={}, headers=headers).json() == invalid("email is required")  # 9 before 11
    bad_id = "/api/v1/topups/orders/abc/notification-email"
    assert http.patch(bad_id, content=b"x", headers=headers).json() == error("Invalid order ID")  # 6 before 7
    not_allowed = http.get(url, headers=headers)
    assert not_allowed.status_code == 405 and not_allowed.headers["allow"] == "PATCH"
    assert http.get(f"/api/v1/topups/orders/{order_id}", headers=headers).json()["notification_email"] is None
    accepted = http.patch(url, json={"email": "a" * 242 + "@example.com"}, headers=headers)  # 254 characters
    assert accepted.status_code == 200, accepted.text


# -- the operator's commands (16.5) -------------------------------------------------------------------


def test_the_operators_list_and_show(buyer, shop, cli):
    client, http, headers = buyer
    delivered = create(buyer, shop, client_reference="op-1").json()
    failed = create(buyer, shop, FAIL_CUSTOM, 10).json()
    for created in (delivered, failed):
        settled(buyer, "topups", created["id"])
    voucher = voucher_order(http, headers, shop).json()

    def row(order, status, reference=None):
        return {"vertical": "topups", "id": order["id"], "client_id": client.id, "status": status,
                "client_reference": reference, "created_at": order["created_at"]}  # fmt: skip

    code, out, err = cli("order", "list", "--client", str(client.id), "--vertical", "topups", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == [row(failed, "FAILED"), row(delivered, "DELIVERED", "op-1")]
    code, out, _ = cli("order", "list", "--client", str(client.id), "--vertical", "topups", "--status", "FAILED",
                       "--json")  # fmt: skip
    assert code == 0 and json.loads(out) == [row(failed, "FAILED")]
    code, out, _ = cli("order", "list", "--client", str(client.id), "--json")
    rows = json.loads(out)
    assert code == 0 and sorted((r["vertical"], r["id"]) for r in rows) == sorted(
        [("topups", failed["id"]), ("topups", delivered["id"]), ("vouchers", voucher["id"])])  # fmt: skip
    assert [r["id"] for r in rows if r["vertical"] == "topups"] == [failed["id"], delivered["id"]]
    code, out, _ = cli("order", "list", "--vertical", "topups", "--json")
    everyone = [r["id"] for r in json.loads(out)]
    assert code == 0 and {failed["id"], delivered["id"]} <= set(everyone)
    assert everyone == sorted(everyone, reverse=True)  # newest first (15.1, item 37)
    for order in (delivered, failed):
        code, out, err = cli("order", "show", "topups", str(order["id"]), "--json")
        assert (code, err) == (0, "")
        assert json.loads(out) == http.get(f"/api/v1/topups/orders/{order['id']}", headers=headers).json()
    assert cli("order", "show", "topups", str(delivered["id"]))[0] == 0
    code, out, err = cli("order", "show", "topups", "2147483647", "--json")
    assert (code, out, err.count("\n")) == (2, "", 1)


def test_the_operator_cancels_a_pending_order(buyer, shop, cli):
    client, http, headers = buyer
    created = create(buyer, shop, via="parked").json()
    url = f"/api/v1/topups/orders/{created['id']}"
    assert (
        http.patch(f"{url}/notification-email", json={"email": "ops@example.com"}, headers=headers).status_code == 200
    )
    assert balance(client) == 1000 - GAME_PRICE
    assert cli("order", "cancel", "topups", str(created["id"])) == (
        0, f"topups order {created['id']}: CANCELLED, refunded\n", "")  # fmt: skip
    done = http.get(url, headers=headers).json()
    assert done == {**created, "status": "CANCELLED", "status_text": "Order cancelled",
                    "notification_email": "ops@example.com", "completed_at": done["completed_at"]}  # fmt: skip
    parsed(done["completed_at"])
    assert [(t.transaction_type, t.amount) for t in ledger("topups", created["id"])] == [("DEBIT", GAME_PRICE),
                                                                               ("CREDIT", GAME_PRICE)]  # fmt: skip
    assert balance(client) == 1000
    (refund,) = ledger("topups", created["id"], "CREDIT")
    assert refund.id in [e["data"]["id"] for e in events(client) if e["type"] == "wallet.credited"]
    receipt = sent_receipt("topups", created["id"])
    assert receipt.recipient == "ops@example.com" and "refund" in receipt.text.lower()
    # A second cancel is refused and changes nothing.
    code, out, err = cli("order", "cancel", "topups", str(created["id"]))
    assert (code, out, err.count("\n")) == (2, "", 1) and str(created["id"]) in err
    assert http.get(url, headers=headers).json() == done
    assert len(ledger("topups", created["id"], "CREDIT")) == 1 and balance(client) == 1000
    assert len(receipts("topups", created["id"])) == 1


def test_the_operator_cannot_cancel_a_final_or_unknown_order(buyer, shop, cli):
    client, http, headers = buyer
    created = create(buyer, shop).json()
    done = settled(buyer, "topups", created["id"])
    assert done["status"] == "DELIVERED"
    code, out, err = cli("order", "cancel", "topups", str(created["id"]))
    assert (code, out, err.count("\n")) == (2, "", 1) and str(created["id"]) in err
    assert http.get(f"/api/v1/topups/orders/{created['id']}", headers=headers).json() == done
    assert [t.transaction_type for t in ledger("topups", created["id"])] == ["DEBIT"]
    assert balance(client) == 1000 - GAME_PRICE
    code, out, err = cli("order", "cancel", "topups", "2147483647")
    assert (code, out, err.count("\n")) == (2, "", 1)
