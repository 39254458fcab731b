"""Top-up orders end to end (contract 7.7-7.9, 9.2, 12, 12.1, 15.1 items 30-32 and 49, 16.5): a
real `octopus-cards serve` with background work, over HTTP on 127.0.0.1, fulfils orders of a
catalogue imported with `catalog import` whose products carry every sandbox scenario of 12.1;
real receivers get the webhooks (`wallet.*` only: top-ups emit no order event) and the receipts.

One server serves the module, with a short fulfilment retry schedule (0.2 s x 3: four supplier
calls per order), short webhook retries and a 2 s job lease; the last test kills it with SIGKILL
and restarts it. Each test has its own client and wallet. Every wait is bounded."""

import os
import re
import secrets
import signal
import time

import pytest

from octopus_cards import models
from octopus_cards.models import Client, Event, Wallet
from octopus_cards.models.jobs import Job
from octopus_cards.models.topup_orders import TopupOrder
from octopus_cards.models.wallets import CREDIT

from support.live_server import LiveServer, cli_json, import_new_products, run_cli
from support.orders import ledger_of, supplier_calls
from support.polling import WAIT, eventually
from support.receivers import MailReceiver, WebhookReceiver, signed_event

pytestmark = pytest.mark.e2e

AMOUNT = 5
RETRY_SCHEDULE = "0.2,0.2,0.2"  # 1 + 3 supplier calls per order (15.1, item 30)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
ORDER_REF = re.compile(r"Order #(\d+)$")
EVENT_OF = {"DEBIT": "wallet.debited", "CREDIT": "wallet.credited"}
REFUNDED = "The full amount has been refunded to your wallet."

# name: (mock, status, status_text, failure_code, failure_reason, is_user_fixable, supplier calls)
SCENARIOS = {
    "deliver": (None, "DELIVERED", "Top-up delivered", None, None, None, 1),
    "fail": (
        {"outcome": "fail", "failure_code": "INVALID_PLAYER_ID", "failure_reason": "Player ID not found"},
        "FAILED", "Top-up failed", "INVALID_PLAYER_ID", "Player ID not found", True, 1,
    ),
    "fail_default": (
        {"outcome": "fail"},
        "FAILED", "Top-up failed", "INVALID_ACCOUNT", "The account identifier was rejected by the operator", True, 1,
    ),
    "cancel": ({"outcome": "cancel"}, "CANCELLED", "Order cancelled", None, None, None, 1),
    "transient": ({"transient_failures": 2}, "DELIVERED", "Top-up delivered", None, None, None, 3),
    "exhausted": (
        {"transient_failures": 10},
        "FAILED", "Top-up failed", "SUPPLIER_UNAVAILABLE", "The supplier did not respond", False, 4,
    ),
    "delay": ({"delay": 1}, "DELIVERED", "Top-up delivered", None, None, None, 1),
}  # fmt: skip
# Products of the other tests: receipts, crash safety, an operator cancel during a slow call.
OTHER_PRODUCTS = {
    "slow_fail": {"outcome": "fail", "delay": 1, "failure_code": "INVALID_PHONE",
                  "failure_reason": "Phone number not in service"},
    "in_flight": {"delay": 0.5},
    "in_flight_fail": {"delay": 0.5, "outcome": "fail"},
    "late": {"delay": 3},
}  # fmt: skip


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver():
    with WebhookReceiver() as live:
        yield live


@pytest.fixture(scope="module")
def mail():
    with MailReceiver() as live:
        yield live


@pytest.fixture(scope="module")
def topup_env(env, mail):
    """The settings of the server and of every CLI call of this module."""
    return dict(
        env,
        OCTOPUS_BACKGROUND="true",
        OCTOPUS_FULFILMENT_RETRY_SCHEDULE=RETRY_SCHEDULE,
        OCTOPUS_WEBHOOK_ALLOW_HTTP="true",
        OCTOPUS_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        OCTOPUS_WEBHOOK_RETRY_SCHEDULE="0.3,0.3",
        OCTOPUS_WEBHOOK_TIMEOUT="2",
        OCTOPUS_SMTP_URL=mail.url,
        # A killed server's claimed jobs are taken over after 2 s (the last test); leases of live
        # jobs are renewed (15.1, item 49), so a 3 s supplier call keeps its job.
        OCTOPUS_JOB_LEASE="2",
    )


@pytest.fixture(scope="module")
def products(topup_env, tmp_path_factory):
    """name -> product id: one GLO gaming product per scenario, each with a required `player_id`
    and one range variant (1-100 USD), imported with `octopus-cards catalog import`."""
    base = 7_000_000 + 100 * secrets.randbelow(10_000)
    ids, entries = {}, []
    for offset, (name, mock) in enumerate(
        [(name, spec[0]) for name, spec in SCENARIOS.items()] + list(OTHER_PRODUCTS.items())
    ):
        ids[name] = base + offset
        entry = {
            "id": base + offset, "name": f"Top-up {name} {base + offset}", "type": "GAMING", "country": "GLO",
            "currency": "USD", "input_fields": [{"name": "player_id", "label": "Player ID", "required": True}],
            "variants": [{"name": "Any amount", "category": "In-Game Currency", "min_amount": 1, "max_amount": 100}],
        }  # fmt: skip
        if mock is not None:
            entry["mock"] = mock
        entries.append(entry)
    import_new_products(topup_env, tmp_path_factory.mktemp("topup-catalogue"), "topups", entries)
    return ids


@pytest.fixture(scope="module")
def server(topup_env, products, tmp_path_factory):
    with LiveServer(topup_env, tmp_path_factory.mktemp("topup-logs"), name="topups") as live:
        yield live


@pytest.fixture
def buyer(server, topup_env):
    """buyer(funds) -> a new client with the topups feature, a USD wallet credited with `funds`,
    logged in over HTTP."""
    made = []

    def make(funds=100):
        made.append(Buyer(server, topup_env, funds))
        return made[-1]

    yield make
    for one in made:
        one.http.close()


# -- helpers ----------------------------------------------------------------------------------


class Buyer:
    """A client with the topups feature and a funded USD wallet (made in-process, as the operator
    CLI would), ordering over HTTP with its own connection and token."""

    def __init__(self, server, settings, funds):
        pepper = settings["OCTOPUS_SECRET_PEPPER"].encode()
        with models.db.connection_context():
            client, secret = Client.provision(pepper, f"topups-{secrets.token_hex(4)}", (), ("topups",))
            self.client_id, self.wallet_id = client.id, Wallet.open(client.id, "USD").id
            Wallet.post(self.wallet_id, CREDIT, funds, "Operator credit")
        self.http = server.client()
        answer = self.http.post("/auth/login", json={"username": client.api_key, "password": secret})
        assert answer.status_code == 200, answer.text
        self.http.headers["Authorization"] = f"Bearer {answer.json()['data']['access_token']}"

    def reconnect(self, server):
        """A new connection to the (restarted) server, with the same token."""
        old, self.http = self.http, server.client()
        self.http.headers["Authorization"] = old.headers["Authorization"]
        old.close()

    def get(self, path, **params):
        answer = self.http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def order(self, product_id, **extra):
        """POST /api/v1/topups/orders: the order, as placed (PENDING, debited)."""
        body = {"product_id": product_id, "amount": AMOUNT, "input_data": {"player_id": self.player_id}, **extra}
        answer = self.http.post("/api/v1/topups/orders", json=body)
        assert answer.status_code == 201, answer.text
        order = answer.json()
        assert (order["status"], order["status_text"]) == ("PENDING", "Order submitted for fulfilment"), order
        assert (order["failure_code"], order["failure_reason"], order["is_user_fixable"]) == (None, None, None)
        assert order["completed_at"] is None and isinstance(order["transaction_id"], int), order
        return order

    @property
    def player_id(self):
        return f"player-{self.client_id}-secret"

    def show(self, order_id):
        return self.get(f"/api/v1/topups/orders/{order_id}")

    def final(self, order_id, timeout=WAIT):
        """The order, polled with GET /api/v1/topups/orders/{id} until it is not PENDING."""
        return eventually(lambda: (o := self.show(order_id))["status"] != "PENDING" and o, f"order {order_id}", timeout)

    def balance(self):
        (wallet,) = self.get("/api/v1/wallets")
        assert wallet["id"] == self.wallet_id
        return wallet["amount"]

    def transactions_of(self, order_id):
        """The wallet's transactions whose remarks name the order (6.2), newest first."""
        listed = self.get("/api/v1/transactions", wallet_id=self.wallet_id, limit=100)
        return [t for t in listed if (m := ORDER_REF.search(t["remarks"])) and int(m.group(1)) == order_id]


def events_of(client_id):
    """{event id: type} of the events the database recorded for the client."""
    with models.db.connection_context():
        return {event.id: event.type for event in Event.select().where(Event.client == client_id)}


def address():
    return f"buyer-{secrets.token_hex(4)}@example.com"


# -- 1. every sandbox scenario, as the API shows it -----------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_scenario_ends_as_the_contract_says(server, products, buyer, scenario):
    """The order is answered PENDING and debited; it ends in the scenario's status with its
    failure fields, after the scenario's number of supplier calls, refunded in full unless delivered."""
    _, status, text, code, reason, fixable, calls = SCENARIOS[scenario]
    me = buyer()
    started = time.monotonic()
    placed = me.order(products[scenario])
    if scenario == "delay":  # the supplier takes 1 s: still PENDING a moment later
        time.sleep(0.4)
        assert me.show(placed["id"])["status"] == "PENDING"
    order = me.final(placed["id"])
    if scenario == "delay":
        assert time.monotonic() - started >= 1.0
    assert (order["status"], order["status_text"]) == (status, text), order
    assert (order["failure_code"], order["failure_reason"], order["is_user_fixable"]) == (code, reason, fixable)
    assert RFC3339.fullmatch(order["completed_at"]) and order["completed_at"] >= order["created_at"]
    assert order == placed | {
        "status": status, "status_text": text, "completed_at": order["completed_at"],
        "failure_code": code, "failure_reason": reason, "is_user_fixable": fixable,
    }  # fmt: skip
    assert supplier_calls("topups", order["id"]) == calls
    assert me.get("/api/v1/topups/orders", status=status) == [order]

    debit = me.get(f"/api/v1/transactions/{order['transaction_id']}")
    assert (debit["transaction_type"], debit["amount"], debit["status"]) == ("DEBIT", AMOUNT, "COMPLETED")
    refunded = status != "DELIVERED"
    transactions = me.transactions_of(order["id"])
    assert [t["transaction_type"] for t in transactions] == ["CREDIT"] * refunded + ["DEBIT"], transactions
    assert transactions[-1] == debit
    if refunded:
        assert (transactions[0]["amount"], transactions[0]["status"]) == (AMOUNT, "COMPLETED")
    assert me.balance() == 100 - AMOUNT + AMOUNT * refunded
    with models.db.connection_context():
        assert Wallet.balance_matches_ledger(me.wallet_id)


def test_transactions_name_the_topup_order(server, products, buyer):
    """6.2: a top-up debit's remarks end `Topup Order #{id}`, its refund's `Refund for Topup Order #{id}`."""
    me = buyer()
    delivered, failed = me.order(products["deliver"]), me.order(products["fail"])
    for order in (delivered, failed):
        me.final(order["id"])
    remarks = {t["id"]: t["remarks"] for t in me.get("/api/v1/transactions", wallet_id=me.wallet_id)}
    assert remarks[delivered["transaction_id"]] == f"USD Wallet debited by amount 5.00 - Topup Order #{delivered['id']}"
    assert remarks[failed["transaction_id"]] == f"USD Wallet debited by amount 5.00 - Topup Order #{failed['id']}"
    assert f"USD Wallet credited by amount 5.00 - Refund for Topup Order #{failed['id']}" in remarks.values()


# -- 2. webhooks: wallet.* only ---------------------------------------------------------------------


def test_webhooks_carry_the_debit_and_the_refund_and_no_order_event(server, topup_env, products, buyer, receiver):
    """A delivered and a failed order: wallet.debited twice, wallet.credited once (the refund),
    each body the transaction as GET /api/v1/transactions/{id} returns it, signed; no order.* or
    topup.* event is recorded or sent."""
    me, path = buyer(), f"/topups-{secrets.token_hex(4)}"
    endpoint = cli_json(topup_env, "webhook", "add", str(me.client_id), receiver.url(path), "--json")
    before = events_of(me.client_id)  # the wallet's opening credit, before the endpoint existed
    delivered, failed = me.order(products["deliver"]), me.order(products["fail"])
    assert me.final(delivered["id"])["status"] == "DELIVERED" and me.final(failed["id"])["status"] == "FAILED"
    # The orders are settled: every event they cause is recorded by now.
    recorded = {event_id: kind for event_id, kind in events_of(me.client_id).items() if event_id not in before}
    assert sorted(recorded.values()) == ["wallet.credited", "wallet.debited", "wallet.debited"], recorded
    received = receiver.wait_for(path, 3)
    events = {}
    for headers, body in received:
        event = signed_event(headers, body, endpoint)
        assert events.setdefault(event["id"], event) == event
    assert {event_id: event["type"] for event_id, event in events.items()} == recorded
    for event in events.values():
        assert event["data"] == me.get(f"/api/v1/transactions/{event['data']['id']}")
        assert event["type"] == EVENT_OF[event["data"]["transaction_type"]]
    debits = {e["data"]["id"] for e in events.values() if e["type"] == "wallet.debited"}
    assert debits == {delivered["transaction_id"], failed["transaction_id"]}
    (refund,) = [e["data"] for e in events.values() if e["type"] == "wallet.credited"]
    assert refund["amount"] == AMOUNT and ORDER_REF.search(refund["remarks"]).group(1) == str(failed["id"])
    assert refund == me.transactions_of(failed["id"])[0]


# -- 3. receipts ------------------------------------------------------------------------------------


def place_with_receipt(me, product_id):
    """An order whose notification_email is set while it is PENDING (7.9): the order, the address."""
    placed, to = me.order(product_id), address()
    answer = me.http.patch(f"/api/v1/topups/orders/{placed['id']}/notification-email", json={"email": to})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["notification_email"]) == ("PENDING", to), answer.json()
    return placed, to


def one_receipt(mail, to):
    eventually(lambda: mail.messages_to(to), f"a receipt to {to}")
    time.sleep(0.5)  # a second message would have arrived by now
    (message,) = mail.messages_to(to)
    assert message["To"] == to and message.get_content_type() == "text/plain"
    return message, message.get_content()


def test_a_delivered_order_gets_one_receipt(server, products, buyer, mail):
    me = buyer()
    placed, to = place_with_receipt(me, products["delay"])
    order = me.final(placed["id"])
    assert (order["status"], order["notification_email"]) == ("DELIVERED", to)
    message, text = one_receipt(mail, to)
    assert f"#{order['id']}" in message["Subject"] and "delivered" in message["Subject"].lower()
    assert f"Top-up order #{order['id']}" in text and "DELIVERED" in text, text
    assert REFUNDED not in text and me.player_id not in text


def test_a_failed_order_gets_one_receipt_with_its_reason_and_refund(server, products, buyer, mail):
    me = buyer()
    placed, to = place_with_receipt(me, products["slow_fail"])
    order = me.final(placed["id"])
    assert (order["status"], order["failure_reason"]) == ("FAILED", "Phone number not in service")
    message, text = one_receipt(mail, to)
    assert f"#{order['id']}" in message["Subject"] and "failed" in message["Subject"].lower()
    assert f"Top-up order #{order['id']}" in text and "FAILED" in text and REFUNDED in text, text
    assert me.player_id not in text
    assert "Reason: Phone number not in service." in text, text


# -- 4. an operator cancel during the supplier call -------------------------------------------------


def test_operator_cancel_wins_over_a_call_in_flight(server, topup_env, products, buyer, mail):
    """15.1, item 32: `order cancel topups ID` while the 3 s supplier call runs ends the order
    CANCELLED with one refund and one receipt; the late answer is discarded."""
    me = buyer()
    placed, to = place_with_receipt(me, products["late"])
    order_id = placed["id"]
    eventually(lambda: supplier_calls("topups", order_id) == 1, "the supplier call started")
    done = run_cli(topup_env, "order", "cancel", "topups", str(order_id))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"topups order {order_id}: CANCELLED, refunded"
    cancelled = me.show(order_id)
    assert (cancelled["status"], cancelled["status_text"]) == ("CANCELLED", "Order cancelled"), cancelled
    assert (cancelled["failure_code"], cancelled["failure_reason"], cancelled["is_user_fixable"]) == (None, None, None)
    assert RFC3339.fullmatch(cancelled["completed_at"])
    again = run_cli(topup_env, "order", "cancel", "topups", str(order_id))
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr

    # The late answer: the job's run ends, and says the order is CANCELLED.
    run = re.compile(rf"job \d+ \({TopupOrder.JOB_KIND} {order_id}\), attempt 1: (\S+)")
    assert eventually(lambda: run.findall(server.stderr), "the late supplier answer", timeout=10) == ["CANCELLED"]
    assert f"topups order {order_id} was settled meanwhile" in server.stderr  # discarded and logged
    assert me.show(order_id) == cancelled
    assert [t["transaction_type"] for t in me.transactions_of(order_id)] == ["CREDIT", "DEBIT"]
    assert ledger_of("topups", [order_id]) == {order_id: ["CREDIT", "DEBIT"]}
    assert me.balance() == 100
    with models.db.connection_context():
        assert Wallet.balance_matches_ledger(me.wallet_id)
    _, text = one_receipt(mail, to)
    assert f"Top-up order #{order_id}" in text and "CANCELLED" in text and REFUNDED in text, text


# -- 5. kill -9 with orders in flight ----------------------------------------------------------------


def test_kill_9_of_the_server_with_topups_in_flight(server, products, buyer):
    """20 orders whose supplier calls take 0.5 s (14 deliver, 6 fail), the server killed while
    some are mid-call; after a restart every order ends, debited once, the failed ones refunded
    once and the others not at all, and the balance equals the ledger."""
    me = buyer(funds=1000)
    kinds = ["in_flight"] * 14 + ["in_flight_fail"] * 6
    ids = {me.order(products[kind])["id"]: kind for kind in kinds}
    time.sleep(0.3)
    os.killpg(server.pid, signal.SIGKILL)  # the background worker with it
    assert server.stop() == -signal.SIGKILL
    with models.db.connection_context():
        pending = TopupOrder.select().where(TopupOrder.id.in_(list(ids)) & (TopupOrder.status == "PENDING")).count()
        mid_call = (
            Job.select()
            .where((Job.kind == TopupOrder.JOB_KIND) & Job.subject_id.in_(list(ids)) & Job.finished_at.is_null())
            .where(Job.locked_until.is_null(False))
            .count()
        )
    assert pending and mid_call, f"nothing in flight at the kill ({pending} pending, {mid_call} mid-call)"

    server.start()
    deadline = time.monotonic() + 60
    while True:
        with models.db.connection_context():
            statuses = {o.id: o.status for o in TopupOrder.select().where(TopupOrder.id.in_(list(ids)))}
        if "PENDING" not in statuses.values() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    expected = {"in_flight": ("DELIVERED", ["DEBIT"]), "in_flight_fail": ("FAILED", ["CREDIT", "DEBIT"])}
    assert statuses == {order_id: expected[kind][0] for order_id, kind in ids.items()}
    assert ledger_of("topups", list(ids)) == {order_id: expected[kind][1] for order_id, kind in ids.items()}
    with models.db.connection_context():
        assert Wallet.balance_matches_ledger(me.wallet_id)
    me.reconnect(server)
    assert me.balance() == 1000 - AMOUNT * 14
