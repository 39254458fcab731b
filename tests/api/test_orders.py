"""API: voucher orders (contract 5.5, 5.6, 11, 12.1): synchronous and background fulfilment through
the mock supplier's scenarios, refunds, events, idempotency, and every error of the section."""

import json
import re
import secrets
import threading
import time
from decimal import Decimal

import pytest

from octopus_cards import models, worker
from octopus_cards.app import create_app
from octopus_cards.models import Transaction, Wallet, catalogue, orders, products
from octopus_cards.models.jobs import Job
from octopus_cards.models.orders import VoucherOrder
from octopus_cards.models.products import VoucherProduct
from octopus_cards.models.suppliers import MockSupplier

from support.envelopes import error
from support.inprocess import TEST_PEER, background_work, bearer, log_in, make_settings
from support.orders import balance, events, settled

CODE = re.compile(r"MOCK-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}")


@pytest.fixture(scope="module")
def shop(migrated):
    """Products of a category of their own, an app with short deadlines and retries, its worker."""
    base = 3_000_000 + secrets.randbelow(1_000_000) * 20

    def product(offset, name, **fields):
        return {"id": base + offset, "name": name, "category": f"Shop {base}", "country": "USA", "currency": "USD",
                "denominations": [{"min": 1, "max": 500, "discount": 2.5}], **fields}  # fmt: skip

    document = {"vouchers": [
        product(1, "Codes"), product(2, "Links", delivery_mode="URL"), product(3, "Tracked", stock=3),
        product(4, "Partial", mock={"outcome": "partial", "deliver_count": 2}),
        product(5, "Fails", mock={"outcome": "fail"}), product(6, "Cancels", mock={"outcome": "cancel"}),
        product(7, "Flaky", mock={"transient_failures": 2}), product(8, "Slow", mock={"delay": 1.5}),
        product(9, "Unavailable", mock={"in_stock": False}), product(10, "Down", mock={"transient_failures": 99}),
        product(11, "Euro", currency="EUR", country="FRA"),
    ]}  # fmt: skip
    with models.db.connection_context():
        catalogue.import_catalogue(catalogue.demo_text())
        catalogue.import_catalogue(json.dumps(document))
    settings = make_settings(migrated, OCTOPUS_VOUCHER_SYNC_DEADLINE="0.5", OCTOPUS_FULFILMENT_RETRY_SCHEDULE="0,0,0")
    with background_work(settings):
        yield {"base": base, "app": create_app(settings)}


@pytest.fixture
def buyer(shop, new_client):
    """A funded client (USD 1,000 and EUR 1,000), logged in to the shop's app: (client, http, headers)."""
    client, key, secret = new_client(features=("vouchers",))
    with models.db.connection_context():
        for code in ("USD", "EUR"):
            Wallet.open_funded(client.id, code, 1000, "test")
    with shop["app"].test_client(client=TEST_PEER) as http:
        yield client, http, log_in(http, key, secret)


def order(buyer, shop, offset, quantity=1, denomination=10, **fields):
    _, http, headers = buyer
    body = {"product_id": shop["base"] + offset, "denomination": denomination, "quantity": quantity, **fields}
    return http.post("/api/v1/orders", json=body, headers=headers)


def test_a_small_order_is_delivered_before_the_answer(buyer, shop):
    client, http, headers = buyer
    response = order(buyer, shop, 1, quantity=2, denomination=100, client_reference="first", email="a@b.example")
    assert response.status_code == 201
    created = response.json()
    assert {key: created[key] for key in ("status", "message", "quantity", "client_reference", "email")} == {
        "status": "DELIVERED", "message": "Order delivered", "quantity": 2, "client_reference": "first",
        "email": "a@b.example"}  # fmt: skip
    assert (created["denomination"], created["amount"], created["discount"]) == (100, 200, 5)
    assert (created["base_currency"], created["deduction_currency"]) == ("USD", "USD")
    assert len(created["vouchers"]) == 2
    for number, voucher in enumerate(created["vouchers"], start=1):
        assert CODE.fullmatch(voucher["card_number"]) and re.fullmatch(r"[0-9]{4}", voucher["pin_code"])
        assert voucher["claim_url"] is None and voucher["expires_at"].endswith("T00:00:00Z")
        assert voucher["voucher_reference_number"] == f"VRN-{created['id']}-{number}"
    assert balance(client) == 1000 - 195
    assert http.get(f"/api/v1/orders/{created['id']}", headers=headers).json() == created
    delivered = [e for e in events(client) if e["type"].startswith("order.")]
    assert [e["type"] for e in delivered] == ["order.delivered"]
    assert delivered[0]["data"]["reference_code"] == "first" and delivered[0]["data"]["delivered_quantity"] == 2
    assert "card_number" not in json.dumps(delivered[0]) and "MOCK-" not in json.dumps(events(client))


def test_url_delivery_has_claim_links(buyer, shop):
    voucher = order(buyer, shop, 2).json()["vouchers"][0]
    assert voucher["card_number"] is None and voucher["pin_code"] is None
    assert re.fullmatch(r"https://vouchers\.invalid/claim/[0-9a-f]{32}", voucher["claim_url"])


def test_a_large_order_is_fulfilled_in_the_background(buyer, shop):
    created = order(buyer, shop, 1, quantity=7).json()
    assert (created["status"], created["vouchers"], created["message"]) == ("PENDING", [], "Order is being processed")
    done = settled(buyer, "vouchers", created["id"])
    assert done["status"] == "DELIVERED" and len(done["vouchers"]) == 7
    assert len({v["card_number"] for v in done["vouchers"]}) == 7


@pytest.mark.parametrize(
    "offset, quantity, status, delivered, refunded",
    [(4, 5, "PARTIALLY_DELIVERED", 2, Decimal("29.25")),  # 3/5 of 48.75
     (5, 2, "FAILED", 0, Decimal("19.50")), (6, 2, "CANCELLED", 0, Decimal("19.50")),
     (4, 8, "PARTIALLY_DELIVERED", 2, Decimal("58.50"))],  # in the background: 6/8 of 78
)  # fmt: skip
def test_scenarios_end_with_their_refund_and_event(buyer, shop, offset, quantity, status, delivered, refunded):
    client = buyer[0]
    created = order(buyer, shop, offset, quantity=quantity).json()
    done = settled(buyer, "vouchers", created["id"])
    assert (done["status"], len(done["vouchers"])) == (status, delivered)
    with models.db.connection_context():
        refunds = list(Transaction.select().where(
            (Transaction.order_vertical == "vouchers") & (Transaction.order_id == created["id"])
            & (Transaction.transaction_type == "CREDIT")))  # fmt: skip
    assert [t.amount for t in refunds] == [refunded]
    assert refunds[0].remarks == f"USD Wallet credited by amount {refunded:.2f} - Refund for Order #{created['id']}"
    assert balance(client) == 1000 - Decimal(quantity * 10) * Decimal("0.975") + refunded
    # The funding, the debit, the refund and the settled order (events of one second are not ordered).
    assert sorted(e["type"] for e in events(client)) == sorted(
        ["wallet.credited", "wallet.credited", "wallet.debited", "wallet.credited", f"order.{status.lower()}"]
    )


def test_transient_failures_are_retried_then_delivered(buyer, shop):
    created = order(buyer, shop, 7).json()
    assert created["status"] == "PENDING"  # the first call failed for now: finished in the background
    assert settled(buyer, "vouchers", created["id"])["status"] == "DELIVERED"
    with models.db.connection_context():  # queued by the first call, the one the request made
        job = Job.get(Job.kind == orders.JOB_KIND, Job.subject_id == created["id"])
    assert (job.attempts, job.finished_at is not None) == (3, True)
    assert job.last_error == "the mock supplier's scenario: a transient failure"


def test_an_order_delivered_at_once_leaves_no_job(buyer, shop):
    created = order(buyer, shop, 1).json()
    assert created["status"] == "DELIVERED"
    with models.db.connection_context():
        assert not Job.select().where(Job.kind == orders.JOB_KIND, Job.subject_id == created["id"]).exists()


def test_a_spent_retry_budget_fails_the_order_with_a_refund(buyer, shop):
    client = buyer[0]
    created = order(buyer, shop, 10, quantity=2).json()
    assert settled(buyer, "vouchers", created["id"])["status"] == "FAILED"
    assert balance(client) == 1000


def test_a_slow_supplier_is_answered_pending_then_delivered(buyer, shop):
    started = time.monotonic()
    created = order(buyer, shop, 8).json()
    assert created["status"] == "PENDING" and time.monotonic() - started < 1.4  # the 0.5 s deadline
    assert settled(buyer, "vouchers", created["id"])["status"] == "DELIVERED"


def test_only_a_supplier_that_may_keep_the_order_waiting_is_asked_on_a_thread_of_its_own(buyer, shop, monkeypatch):
    """The deadline needs the first call on another thread; a supplier that answers at once is
    asked on the request's own, inside the placing transaction."""
    handed_over = []
    submit = worker.FIRST_CALLS.submit
    monkeypatch.setattr(worker.FIRST_CALLS, "submit", lambda *call: handed_over.append(call) or submit(*call))
    assert order(buyer, shop, 1).json()["status"] == "DELIVERED"
    assert handed_over == []
    assert order(buyer, shop, 8).json()["status"] == "PENDING"  # "Slow": a delay of 1.5 s
    assert len(handed_over) == 1


def test_an_order_asked_at_once_commits_settled_or_not_at_all(buyer, shop, monkeypatch):
    """Placed and settled in one transaction: a supplier call that breaks leaves no order, debit,
    event or job behind, and the reference unused."""
    client, http, headers = buyer
    before = len(events(client))
    with models.db.connection_context():
        jobs = Job.select().where(Job.kind == orders.JOB_KIND).count()

    def broken(*args):
        raise RuntimeError("the supplier's client broke")

    monkeypatch.setattr(MockSupplier, "issue_vouchers", broken)
    assert order(buyer, shop, 1, client_reference="atomic").status_code == 500
    with models.db.connection_context():
        assert not VoucherOrder.select().where(VoucherOrder.client == client.id).exists()
        assert Job.select().where(Job.kind == orders.JOB_KIND).count() == jobs
    assert balance(client) == 1000 and len(events(client)) == before
    monkeypatch.undo()
    assert order(buyer, shop, 1, client_reference="atomic").json()["status"] == "DELIVERED"


def test_fx_orders_debit_the_wallet_currency(buyer, shop):
    client, http, headers = buyer
    with models.db.connection_context():
        eur = Wallet.select().where(Wallet.client == client.id).order_by(Wallet.id.desc()).get().id
    created = order(buyer, shop, 1, denomination=100, wallet_id=eur).json()
    assert (created["base_currency"], created["deduction_currency"], created["wallet_id"]) == ("USD", "EUR", eur)
    assert balance(client, "EUR") == Decimal(1000) - Decimal("89.70")  # 97.50 x 0.92


def test_tracked_stock_is_taken_and_then_refused(buyer, shop):
    assert order(buyer, shop, 3, quantity=2).status_code == 201
    refused = order(buyer, shop, 3, quantity=2)
    assert refused.json()["error"]["message"] == "Insufficient stock"
    with models.db.connection_context():
        assert VoucherProduct.get_by_id(shop["base"] + 3).stock == 1


@pytest.mark.parametrize(
    "offset, fields, status, expected",
    [(9, {}, 400, error("Insufficient stock")),
     (1, {"quantity": 101}, 400, error("Quantity exceeds the allowed maximum")),
     (1, {"denomination": 501}, 400, error("Invalid denomination")),
     (1, {"denomination": 10, "quantity": 2, "wallet_id": 2147483647}, 404,
      error("Wallet not found", "NOT_FOUND", "NotFoundError")),
     (999, {}, 404, error("Product not found", "NOT_FOUND", "NotFoundError")),
     (1, {"denomination": 400, "quantity": 5}, 400, error("Insufficient wallet balance")),
     (1, {"client_reference": ""}, 400, error("client_reference is invalid", "VALIDATION_FAILURE",
                                              "ValidationException")),
     (1, {"client_reference": "caf\u00e9"}, 400, error("client_reference is invalid", "VALIDATION_FAILURE",
                                                    "ValidationException")),
     (1, {"client_reference": "ref\n"}, 400, error("client_reference is invalid", "VALIDATION_FAILURE",
                                                 "ValidationException")),  # JSON Schema's $ ends the text
     (1, {"email": "a@b.example\n"}, 400, error("email is invalid", "VALIDATION_FAILURE", "ValidationException")),
     (1, {"email": "not-an-email"}, 400, error("email is invalid", "VALIDATION_FAILURE", "ValidationException")),
     (1, {"quantity": 0}, 400, error("quantity is invalid", "VALIDATION_FAILURE", "ValidationException"))],
)  # fmt: skip
def test_refused_orders_debit_nothing_and_create_nothing(buyer, shop, offset, fields, status, expected):
    client, http, headers = buyer
    before = http.get("/api/v1/orders", headers=headers).headers["x-total-count"]
    response = order(buyer, shop, offset, **fields)
    assert response.status_code == status and response.json() == expected
    assert balance(client) == 1000
    assert http.get("/api/v1/orders", headers=headers).headers["x-total-count"] == before


def test_the_duplicate_reference_wins_over_later_rules_and_is_not_consumed_by_refusals(buyer, shop):
    assert order(buyer, shop, 1, quantity=101, client_reference="r1").json() == error(
        "Quantity exceeds the allowed maximum"
    )  # a refusal does not use the reference up
    assert order(buyer, shop, 1, client_reference="r1").status_code == 201
    assert order(buyer, shop, 1, quantity=101, client_reference="r1").json() == error("Duplicate client_reference")
    assert order(buyer, shop, 1, client_reference="R1").status_code == 201  # compared exactly


def test_concurrent_creates_with_one_new_reference(buyer, shop):
    client, http, headers = buyer
    barrier, answers = threading.Barrier(20), []
    app = shop["app"]

    def create():
        own = app.test_client(client=TEST_PEER)  # not entered: no lifespan of its own
        barrier.wait()
        body = {"product_id": shop["base"] + 1, "denomination": 10, "quantity": 1, "client_reference": "race"}
        answers.append(own.post("/api/v1/orders", json=body, headers=headers))

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in answers) == [201] + [400] * 19
    assert all(r.json() == error("Duplicate client_reference") for r in answers if r.status_code == 400)
    assert balance(client) == Decimal(1000) - Decimal("9.75")


def test_lists_filters_and_visibility(buyer, shop, new_client, login):
    client, http, headers = buyer
    first = order(buyer, shop, 1, client_reference="list-1").json()
    failed = settled(buyer, "vouchers", order(buyer, shop, 5).json()["id"])
    listed = http.get("/api/v1/orders", headers=headers)
    assert [o["id"] for o in listed.json()] == [failed["id"], first["id"]]
    assert "vouchers" not in listed.json()[0] and listed.headers["x-total-count"] == "2"
    assert [o["id"] for o in http.get("/api/v1/orders?status=FAILED", headers=headers).json()] == [failed["id"]]
    assert [o["id"] for o in http.get("/api/v1/orders?client_reference=list-1", headers=headers).json()] == [
        first["id"]]  # fmt: skip
    assert http.get(f"/api/v1/orders?product_id={shop['base'] + 5}", headers=headers).json()[0]["id"] == failed["id"]
    assert http.get("/api/v1/orders?status=failed", headers=headers).json() == error(
        "status is invalid", "VALIDATION_FAILURE", "ValidationException")  # fmt: skip
    _, key, secret = new_client()
    other = bearer(login(key, secret)["access_token"])
    assert http.get(f"/api/v1/orders/{first['id']}", headers=other).json() == error(
        "Order not found", "NOT_FOUND", "NotFoundError")  # fmt: skip
    assert http.get("/api/v1/orders/abc", headers=headers).json() == error("Invalid order ID")


def test_the_operators_list_show_and_cancel(buyer, shop, migrated, monkeypatch, capsys):
    from octopus_cards.cli import main

    client = buyer[0]
    for name, value in migrated.items():
        monkeypatch.setenv(name, value)
    delivered = order(buyer, shop, 1).json()
    pending = order(buyer, shop, 8).json()  # slow: still PENDING

    def cli(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = cli("order", "list", "--client", str(client.id), "--json")
    rows = json.loads(out)
    assert code == 0 and [row["id"] for row in rows] == [pending["id"], delivered["id"]]
    assert list(rows[0]) == ["vertical", "id", "client_id", "status", "client_reference", "created_at"]
    code, out, _ = cli("order", "show", "vouchers", str(delivered["id"]), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["vouchers"][0]["card_number"] is None and shown["vouchers"][0]["pin_code"] is None
    assert shown["vouchers"][0]["voucher_reference_number"] == f"VRN-{delivered['id']}-1"
    assert cli("order", "cancel", "vouchers", str(pending["id"]))[0] == 0
    assert settled(buyer, "vouchers", pending["id"])["status"] == "CANCELLED"
    assert balance(client) == 1000 - Decimal("9.75")  # the cancelled order's debit came back
    time.sleep(1.7)  # the slow supplier's late answer is discarded
    assert settled(buyer, "vouchers", pending["id"])["status"] == "CANCELLED"
    assert buyer[1].get(f"/api/v1/orders/{pending['id']}", headers=buyer[2]).json()["vouchers"] == []
    for argv, message in [
        (("order", "cancel", "vouchers", str(delivered["id"])), f"vouchers order {delivered['id']} is DELIVERED"),
        (("order", "cancel", "vouchers", "2147483647"), "no vouchers order with id 2147483647"),
        (("order", "show", "topups", "2147483647"), "no topups order with id 2147483647"),
        (("order", "cancel", "esim", "2147483647"), "no esim order with id 2147483647"),
    ]:
        code, out, err = cli(*argv)
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_concurrent_orders_never_overdraw_the_wallet(shop, new_client):
    """64 orders at once against a PREPAID wallet funded for exactly 16 of them."""
    client, key, secret = new_client(features=("vouchers",))
    with models.db.connection_context():
        Wallet.open_funded(client.id, "USD", Decimal("9.75") * 16, "test")
    barrier, answers = threading.Barrier(64), []
    with shop["app"].test_client(client=TEST_PEER) as http:
        token = http.post("/auth/login", json={"username": key, "password": secret}).json()["data"]["access_token"]

        def create():
            barrier.wait()
            body = {"product_id": shop["base"] + 1, "denomination": 10, "quantity": 1}
            answers.append(http.post("/api/v1/orders", json=body, headers=bearer(token)))

        threads = [threading.Thread(target=create) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(r.status_code for r in answers) == [201] * 16 + [400] * 48
    assert {r.json()["error"]["message"] for r in answers if r.status_code == 400} == {"Insufficient wallet balance"}
    assert balance(client) == 0
    with models.db.connection_context():
        assert models.orders.VoucherOrder.select().where(models.orders.VoucherOrder.client == client.id).count() == 16


def test_a_free_order_debits_nothing(buyer, shop):
    """A 100 % discount (the client's own, 16.2) leaves nothing to pay: no zero-amount transaction."""
    client = buyer[0]
    with models.db.connection_context():
        products.set_discount(client.id, "vouchers", shop["base"] + 5, Decimal(100))
    created = order(buyer, shop, 5, quantity=2).json()  # and it fails: nothing to refund either
    assert (created["discount"], settled(buyer, "vouchers", created["id"])["status"]) == (20, "FAILED")
    assert balance(client) == 1000
    with models.db.connection_context():
        assert (
            not Transaction.select()
            .where((Transaction.order_vertical == "vouchers") & (Transaction.order_id == created["id"]))
            .exists()
        )
