"""Webhooks end to end (issue 12; contract 9, 16.6, 15.1 items 33-35, 47): a real `octopus-cards
serve` with background work delivers to real receivers on 127.0.0.1, endpoints are managed with the
operator CLI, and every event, attempt and delivery is checked against what the database recorded.

One server (and one receiver) serves the whole module, with a short retry schedule (0.3 s, 0.3 s:
three attempts) and a 2 s timeout per attempt, so that retries, timeouts and recovery take seconds.
Each test has its own client and its own receiver paths. Every wait is bounded."""

import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import threading
import time

import pytest
from standardwebhooks import Webhook

from octopus_cards import models
from octopus_cards.models import Client, Delivery, DeliveryAttempt, Event, Wallet
from octopus_cards.models import webhooks as webhook_models
from octopus_cards.models.jobs import Job
from octopus_cards.models.wallets import CREDIT

from support.live_server import LiveServer, cli_json, run_cli
from support.polling import WAIT, eventually
from support.receivers import Silent, WebhookReceiver, signed_event

pytestmark = pytest.mark.e2e

# OCTOPUS_WEBHOOK_TIMEOUT, seconds: short, yet long enough that a loaded machine does not turn a
# prompt answer into a timeout (and a retry the tests would count).
TIMEOUT = 2
USER_AGENT = "octopusrewards.com/webhook-agent"
EVERY_TYPE = set(webhook_models.EVENT_TYPES)
SIGNED_HEADERS = {
    "Content-Type", "User-Agent", "X-OCTOPUS-WEBHOOK-TOKEN", "X-Webhook-ID", "X-Event-ID", "X-Event-Type",
    "X-Timestamp", "X-Signature", "webhook-id", "webhook-timestamp", "webhook-signature",
}  # fmt: skip
# What an attempt carries besides: the framing httpcore adds.
TRANSPORT_HEADERS = {"Host", "Content-Length"}
ORDER_FIELDS = {
    "id", "reference_code", "status", "product_name", "denomination", "quantity", "amount",
    "delivered_quantity", "delivered_on", "created_at",
}  # fmt: skip
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
EVENT_ID = re.compile(r"evt_[0-9A-Za-z]{27}")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver():
    with WebhookReceiver() as live:
        yield live


@pytest.fixture(scope="module")
def hooks_env(env):
    """The settings of the server and of every CLI call of this module."""
    return dict(
        env,
        OCTOPUS_BACKGROUND="true",
        OCTOPUS_CATALOG="demo",
        OCTOPUS_WEBHOOK_ALLOW_HTTP="true",
        OCTOPUS_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        OCTOPUS_WEBHOOK_RETRY_SCHEDULE="0.3,0.3",
        OCTOPUS_WEBHOOK_TIMEOUT=str(TIMEOUT),
        # A killed server's claimed deliveries are taken over after 2 s (test_kill_9_...).
        OCTOPUS_JOB_LEASE="2",
    )


@pytest.fixture(scope="module")
def server(hooks_env, tmp_path_factory):
    with LiveServer(hooks_env, tmp_path_factory.mktemp("webhook-logs"), name="webhooks") as live:
        yield live


# -- helpers ----------------------------------------------------------------------------------


def fresh_path(name):
    return f"/{name}-{secrets.token_hex(4)}"


def new_client(settings, *features):
    args = ["client", "create", "--name", f"hooks-{secrets.token_hex(4)}", "--json"]
    for feature in features:
        args += ["--feature", feature]
    return cli_json(settings, *args)


def new_wallet(settings, client_id):
    return cli_json(settings, "wallet", "create", str(client_id), "USD", "--json")["id"]


def add_endpoint(settings, client_id, url, *events):
    args = ["webhook", "add", str(client_id), url, "--json"]
    for event_type in events:
        args += ["--event", event_type]
    added = cli_json(settings, *args)
    assert added["is_active"] is True and added["secret"].startswith("whsec_")
    return added


def credit(settings, wallet_id, amount="10"):
    """`wallet credit --json`: the transaction; one wallet.credited event."""
    return cli_json(settings, "wallet", "credit", str(wallet_id), amount, "--json")


def deliveries(settings, endpoint_id):
    """`webhook deliveries --endpoint ID --json`, newest first."""
    return cli_json(settings, "webhook", "deliveries", "--endpoint", str(endpoint_id), "--json")


def endpoint_listed(settings, client_id, endpoint_id):
    (listed,) = [e for e in cli_json(settings, "webhook", "list", "--client", str(client_id), "--json")
                 if e["id"] == endpoint_id]  # fmt: skip
    return listed


def recorded_events(client_id):
    """The ids of the events the database holds for the client (models.Event)."""
    with models.db.connection_context():
        return {event.id for event in Event.select(Event.id).where(Event.client == client_id)}


def stored_deliveries(endpoint_id):
    with models.db.connection_context():
        return list(Delivery.select().where(Delivery.endpoint == endpoint_id).order_by(Delivery.id))


def attempt_log(delivery_id):
    with models.db.connection_context():
        return list(
            DeliveryAttempt.select().where(DeliveryAttempt.delivery == delivery_id).order_by(DeliveryAttempt.number)
        )


def settled(endpoint_id, count):
    """The endpoint's deliveries once there are `count` and none is pending."""
    rows = stored_deliveries(endpoint_id)
    return rows if len(rows) == count and all(row.status != "pending" for row in rows) else None


def event_ids(requests):
    return [headers["X-Event-ID"] for headers, _ in requests]


def verified(headers, body, endpoint, secret=None):
    """Check one attempt as the contract has it (9.1, 9.2, 9.4): exact headers, exact envelope, a
    signature that verifies with the Standard Webhooks library and with a plain HMAC. The event."""
    assert set(headers) == SIGNED_HEADERS | TRANSPORT_HEADERS, sorted(headers)
    event = json.loads(body)
    assert set(event) == {"id", "type", "created_at", "data"}
    assert EVENT_ID.fullmatch(event["id"]) and RFC3339.fullmatch(event["created_at"]), event
    sent_at = int(headers["X-Timestamp"])
    assert abs(sent_at - time.time()) < 120
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["webhook-timestamp"] == str(sent_at)
    return signed_event(headers, body, endpoint, secret)


def received_body(requests, event_id):
    """The body of (every) attempt of the event."""
    (body,) = {body for headers, body in requests if headers["X-Event-ID"] == event_id}
    return body


def leaves(value):
    """Every scalar in a parsed JSON document."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    else:
        yield value


class Buyer:
    """A client with the vouchers feature, a funded USD wallet and a token, ordering over HTTP."""

    def __init__(self, server, settings):
        self.server, self.settings = server, settings
        created = new_client(settings, "vouchers")
        self.client_id, self.credentials = created["client_id"], created
        self.wallet_id = new_wallet(settings, self.client_id)

    @contextlib.contextmanager
    def http(self):
        """An HTTP client of the server, logged in as this client."""
        with self.server.client() as http:
            login = {"username": self.credentials["api_key"], "password": self.credentials["api_secret"]}
            answer = http.post("/auth/login", json=login)
            assert answer.status_code == 200, answer.text
            http.headers["Authorization"] = f"Bearer {answer.json()['data']['access_token']}"
            yield http

    def order(self, http, product_id, denomination, quantity, **extra):
        body = {"product_id": product_id, "denomination": denomination, "quantity": quantity, **extra}
        answer = http.post("/api/v1/orders", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()


class Operator:
    """A client without features and its USD wallet, made in-process (the CLI's calls, without a
    process each); `credit()` is what `wallet credit` does: a transaction and its wallet.credited
    event."""

    def __init__(self):
        with models.db.connection_context():
            client, _ = Client.provision(b"p" * 40, f"hooks-{secrets.token_hex(4)}")
            self.client_id, self.wallet_id = client.id, Wallet.open(client.id, "USD").id

    def credit(self, times=1):
        with models.db.connection_context():
            for _ in range(times):
                Wallet.post(self.wallet_id, CREDIT, 10, "Operator credit")


# -- 1. every event type, exactly as the contract has it -----------------------------------------


def test_every_event_type_arrives_signed_with_exact_headers_and_body(server, hooks_env, receiver):
    """Operator credit and debit; voucher orders that end delivered (sync and async), partially
    delivered (with its refund), failed and cancelled: each event reaches every subscribed endpoint,
    exactly shaped and signed, without a code, and nothing the database recorded is missing."""
    buyer = Buyer(server, hooks_env)
    every, failures = fresh_path("every"), fresh_path("failures")
    endpoint = add_endpoint(hooks_env, buyer.client_id, receiver.url(every))
    assert set(endpoint["events"]) == EVERY_TYPE
    failed_only = add_endpoint(hooks_env, buyer.client_id, receiver.url(failures), "order.failed")
    assert failed_only["events"] == ["order.failed"]
    credit(hooks_env, buyer.wallet_id, "1000")
    cli_json(hooks_env, "wallet", "debit", str(buyer.wallet_id), "1", "--note", "Fee", "--json")
    reference = f"ref-{secrets.token_hex(4)}"
    with buyer.http() as http:
        placed = [
            buyer.order(http, 1001, 10, 1, client_reference=reference),  # DELIVERED at once
            buyer.order(http, 1001, 10, 6),  # PENDING, delivered in the background
            buyer.order(http, 1901, 5, 3),  # PARTIALLY_DELIVERED: 2 codes, a third refunded
            buyer.order(http, 1902, 5, 1),  # FAILED, refunded
            buyer.order(http, 1903, 5, 1),  # CANCELLED, refunded
        ]
        assert [order["status"] for order in placed] == [
            "DELIVERED", "PENDING", "PARTIALLY_DELIVERED", "FAILED", "CANCELLED"
        ]  # fmt: skip

        def final(order_id):
            answer = http.get(f"/api/v1/orders/{order_id}")
            return answer.json() if answer.json()["status"] != "PENDING" else None

        orders = {order["id"]: eventually(lambda o=order: final(o["id"]), "the async order") for order in placed}
        assert orders[placed[1]["id"]]["status"] == "DELIVERED"
        # credit, debit, 5 order debits, 5 order events, 3 refunds
        recorded = eventually(lambda: len(ids := recorded_events(buyer.client_id)) == 15 and ids, "15 events")
        eventually(lambda: set(event_ids(receiver.at(every))) == recorded, "every recorded event received")
        received = receiver.at(every)
        events = {}  # by id: one body for every attempt of an event
        for headers, body in received:
            event = verified(headers, body, endpoint)
            assert events.setdefault(event["id"], event) == event
            received_body(received, event["id"])  # one body for every attempt of an event
        transactions = {}
        for event in events.values():
            if event["type"].startswith("wallet."):
                answer = http.get(f"/api/v1/transactions/{event['data']['id']}")
                assert answer.status_code == 200, answer.text
                transactions[event["data"]["id"]] = answer.json()
    assert set(events) == recorded
    codes = [
        (voucher["card_number"], voucher["pin_code"]) for order in orders.values() for voucher in order["vouchers"]
    ]
    assert len(codes) == 1 + 6 + 2 and all(card and pin for card, pin in codes)
    for _, body in received:
        for card_number, pin_code in codes:
            assert card_number.encode() not in body and pin_code not in set(leaves(json.loads(body))), "a code sent"

    by_type = {}
    for event in events.values():
        by_type.setdefault(event["type"], []).append(event)
        if event["type"].startswith("wallet."):
            # The transaction exactly as GET /api/v1/transactions/{id} returns it (15.1 item 33).
            assert event["data"] == transactions[event["data"]["id"]]
            kind = {"CREDIT": "wallet.credited", "DEBIT": "wallet.debited"}[event["data"]["transaction_type"]]
            assert event["type"] == kind
            continue
        data, order = event["data"], orders[event["data"]["id"]]
        assert set(data) == ORDER_FIELDS  # no other field, codes least of all
        assert event["type"] == "order." + order["status"].lower()
        assert (data["status"], data["product_name"], data["denomination"], data["quantity"], data["amount"]) == (
            order["status"], order["product_name"], order["denomination"], order["quantity"], order["amount"]
        )  # fmt: skip
        assert (data["reference_code"], data["created_at"]) == (order["client_reference"], order["created_at"])
        assert data["delivered_quantity"] == len(order["vouchers"])
        if data["delivered_quantity"]:
            assert RFC3339.fullmatch(data["delivered_on"])
        else:
            assert data["delivered_on"] is None
    assert set(by_type) == EVERY_TYPE
    assert {e["data"]["id"]: e["data"]["reference_code"] for e in by_type["order.delivered"]} == {
        placed[0]["id"]: reference, placed[1]["id"]: None
    }  # fmt: skip
    assert [e["data"]["id"] for e in by_type["order.partially_delivered"]] == [placed[2]["id"]]
    assert [e["data"]["id"] for e in by_type["order.failed"]] == [placed[3]["id"]]
    assert [e["data"]["id"] for e in by_type["order.cancelled"]] == [placed[4]["id"]]
    assert len(by_type["wallet.debited"]) == 1 + 5 and len(by_type["wallet.credited"]) == 1 + 3
    refunds = {e["data"]["remarks"].rpartition(" - ")[2]: e["data"]["amount"] for e in by_type["wallet.credited"]}
    # The partial order's undelivered third is refunded; the failed and cancelled orders in full.
    assert refunds == {
        "Operator credit": 1000, **{f"Refund for Order #{order['id']}": 5 for order in placed[2:]}
    }  # fmt: skip

    # The endpoint subscribed to order.failed gets that event only: the same id and body, its own
    # X-Webhook-ID (checked by verified) and signature.
    ((headers, body),) = receiver.wait_for(failures, 1)
    event = verified(headers, body, failed_only)
    assert event["type"] == "order.failed" and body == received_body(received, event["id"])
    (twin,) = {h["X-Signature"] for h, _ in received if h["X-Event-ID"] == event["id"]}
    assert headers["X-Signature"] != twin
    assert len(receiver.at(failures)) == 1


# -- 2. retries, 410, timeouts, a receiver that hangs ---------------------------------------------


def test_failed_attempts_are_retried_with_the_same_event_id_and_body(server, hooks_env, receiver):
    """500, 500, then 200: three attempts of one event, the same id and body each time, X-Timestamp
    never going back; the delivery log says 3 attempts, delivered."""
    operator, path = Operator(), fresh_path("flaky")
    receiver.script(path, 500, 500, 200)
    endpoint = add_endpoint(hooks_env, operator.client_id, receiver.url(path), "wallet.credited")
    operator.credit()
    attempts = receiver.wait_for(path, 3)
    events = [verified(headers, body, endpoint) for headers, body in attempts]
    assert len({event["id"] for event in events}) == 1 and len({body for _, body in attempts}) == 1
    stamps = [int(headers["X-Timestamp"]) for headers, _ in attempts]
    assert stamps == sorted(stamps)
    (delivery,) = eventually(lambda: settled(endpoint["id"], 1), "the delivery settled")
    (row,) = deliveries(hooks_env, endpoint["id"])
    assert (row["id"], row["event_id"], row["event_type"], row["endpoint_id"]) == (
        delivery.id, events[0]["id"], "wallet.credited", endpoint["id"]
    )  # fmt: skip
    assert (row["status"], row["attempts"], row["last_status"], row["last_error"]) == ("delivered", 3, 200, None)
    assert RFC3339.fullmatch(row["delivered_at"]) and row["next_attempt_at"] is None
    logged = attempt_log(delivery.id)
    assert [(a.number, a.http_status, a.error) for a in logged] == [
        (1, 500, "http 500"), (2, 500, "http 500"), (3, 200, None)
    ]  # fmt: skip
    assert [a.sent_at for a in logged] == stamps and all(a.response_start == "ok" for a in logged)
    assert len(receiver.at(path)) == 3


def test_gone_disables_the_endpoint_and_later_deliveries_are_recorded_failed(server, hooks_env, receiver):
    """A 410 fails the delivery after one attempt and disables the endpoint; the next event's
    delivery is recorded failed, `endpoint disabled`, and never attempted."""
    operator, path = Operator(), fresh_path("gone")
    receiver.script(path, 410)
    endpoint = add_endpoint(hooks_env, operator.client_id, receiver.url(path))
    operator.credit()
    receiver.wait_for(path, 1)
    eventually(lambda: settled(endpoint["id"], 1), "the delivery settled")
    assert endpoint_listed(hooks_env, operator.client_id, endpoint["id"])["is_active"] is False
    operator.credit()
    later, first = deliveries(hooks_env, endpoint["id"])
    assert (first["status"], first["attempts"], first["last_status"], first["last_error"]) == (
        "failed", 1, 410, "http 410"
    )  # fmt: skip
    assert (later["status"], later["attempts"], later["last_status"], later["last_error"]) == (
        "failed", 0, None, "endpoint disabled"
    )  # fmt: skip
    assert later["next_attempt_at"] is None and later["delivered_at"] is None
    assert [len(attempt_log(row["id"])) for row in (first, later)] == [1, 0]
    assert len(receiver.at(path)) == 1


def test_a_timeout_is_logged_as_such_and_retried(server, hooks_env, receiver):
    """A receiver that takes longer than OCTOPUS_WEBHOOK_TIMEOUT: the attempt is logged with error
    `timeout` and no status, after about the timeout; the retry that is answered in time delivers."""
    operator, path = Operator(), fresh_path("slow")
    receiver.script(path, ("sleep", TIMEOUT + 0.8), 200)
    endpoint = add_endpoint(hooks_env, operator.client_id, receiver.url(path))
    operator.credit()
    (delivery,) = eventually(lambda: settled(endpoint["id"], 1), "the delivery settled")
    first, second = attempt_log(delivery.id)
    assert (first.number, first.http_status, first.error, first.response_start) == (1, None, "timeout", "")
    assert TIMEOUT * 1000 * 0.9 <= first.duration_ms < TIMEOUT * 1000 + 1500, first.duration_ms
    assert (second.number, second.http_status, second.error) == (2, 200, None)
    (row,) = deliveries(hooks_env, endpoint["id"])
    assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 2, 200)
    attempts = receiver.at(path)
    assert len(attempts) == 2 and len({body for _, body in attempts}) == 1


def test_a_receiver_that_never_answers_does_not_hold_up_another(server, hooks_env, receiver):
    """Two endpoints of one client, one of which accepts the connection and never answers: the
    other gets every event while the silent one's attempts are still waiting for their answer."""
    operator, path = Operator(), fresh_path("prompt")
    with Silent() as silent:
        hanging = add_endpoint(hooks_env, operator.client_id, silent.url("/hang"), "wallet.credited")
        prompt = add_endpoint(hooks_env, operator.client_id, receiver.url(path), "wallet.credited")
        try:
            operator.credit(times=3)
            eventually(lambda: len(silent.connections) >= 1, "the silent endpoint attempted")
            received = receiver.wait_for(path, 3, timeout=WAIT)
            in_flight = stored_deliveries(hanging["id"])
            assert [(d.status, d.attempts) for d in in_flight] == [("pending", 0)] * 3, "the silent one answered?"
            assert set(event_ids(received)) == recorded_events(operator.client_id)
            for headers, body in received:
                verified(headers, body, prompt)
        finally:
            # No more attempts to it: its deliveries end `endpoint disabled`.
            run_cli(hooks_env, "webhook", "disable", str(hanging["id"]))
    ended = eventually(lambda: settled(hanging["id"], 3), "the silent endpoint's deliveries ended")
    assert {a.error for delivery in ended for a in attempt_log(delivery.id)} <= {"timeout", "connection"}


# -- 4. redelivery, recovery, ping, secret rotation -----------------------------------------------


def test_redeliver_sends_the_same_event_once_more(server, hooks_env, receiver):
    operator, path = Operator(), fresh_path("again")
    endpoint = add_endpoint(hooks_env, operator.client_id, receiver.url(path))
    operator.credit()
    (first,) = receiver.wait_for(path, 1)
    (delivery,) = eventually(lambda: settled(endpoint["id"], 1), "the delivery settled")
    done = run_cli(hooks_env, "webhook", "redeliver", str(delivery.id))
    assert (done.returncode, done.stdout, done.stderr) == (0, f"delivery {delivery.id}: queued\n", "")
    first_again, second = receiver.wait_for(path, 2)
    assert first_again == first
    assert second[0]["X-Event-ID"] == first[0]["X-Event-ID"] and second[1] == first[1]
    assert int(second[0]["X-Timestamp"]) >= int(first[0]["X-Timestamp"])
    verified(*second, endpoint)
    eventually(lambda: (rows := settled(endpoint["id"], 1)) and rows[0].attempts == 2, "the second attempt logged")
    (row,) = deliveries(hooks_env, endpoint["id"])
    assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 2, 200)
    assert len(receiver.at(path)) == 2


def whole_second_after(moment):
    """The first whole second after `moment` (time.time()), once it has come, as RFC 3339."""
    second = int(moment) + 1
    time.sleep(max(second - time.time(), 0) + 0.05)
    return datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_recover_sends_each_failed_delivery_since_a_time_once_more(server, hooks_env, receiver):
    """Deliveries made while the endpoint was disabled are recorded failed; once it is enabled
    again, `webhook recover --since` sends those created at or after that time, each once."""
    operator, path = Operator(), fresh_path("recover")
    endpoint = add_endpoint(hooks_env, operator.client_id, receiver.url(path))
    assert run_cli(hooks_env, "webhook", "disable", str(endpoint["id"])).returncode == 0
    assert endpoint_listed(hooks_env, operator.client_id, endpoint["id"])["is_active"] is False
    operator.credit()  # before --since: stays failed
    since = whole_second_after(time.time())
    operator.credit(times=2)
    rows = deliveries(hooks_env, endpoint["id"])
    assert [(r["status"], r["attempts"], r["last_error"]) for r in rows] == [("failed", 0, "endpoint disabled")] * 3
    assert run_cli(hooks_env, "webhook", "enable", str(endpoint["id"])).returncode == 0
    done = run_cli(hooks_env, "webhook", "recover", str(endpoint["id"]), "--since", since)
    assert (done.returncode, done.stdout, done.stderr) == (
        0, f"webhook endpoint {endpoint['id']}: 2 failed deliveries queued\n", ""
    )  # fmt: skip
    received = receiver.wait_for(path, 2)
    recovered = {row["event_id"] for row in rows[:2]}
    assert set(event_ids(received)) == recovered and len(received) == 2
    for headers, body in received:
        verified(headers, body, endpoint)
    eventually(
        lambda: (
            [(d.status, d.attempts) for d in stored_deliveries(endpoint["id"])]
            == [("failed", 0), ("delivered", 1), ("delivered", 1)]
        ),
        "the recovered deliveries delivered",
    )
    assert len(receiver.at(path)) == 2


def test_ping_sends_one_signed_event_to_its_endpoint_whatever_its_subscriptions(server, hooks_env, receiver):
    operator, path, down = Operator(), fresh_path("ping"), fresh_path("ping-down")
    receiver.script(down, 503)
    endpoint = add_endpoint(hooks_env, operator.client_id, receiver.url(path), "order.failed")
    broken = add_endpoint(hooks_env, operator.client_id, receiver.url(down), "order.failed")
    # The CLI process sends the ping, with its own settings: a generous timeout for a cold process.
    cli_env = dict(hooks_env, OCTOPUS_WEBHOOK_TIMEOUT="10")
    pinged = cli_json(cli_env, "webhook", "ping", str(endpoint["id"]), "--json")
    assert set(pinged) == {"event_id", "status", "http_status", "duration_ms", "error"}
    assert (pinged["status"], pinged["http_status"], pinged["error"]) == ("delivered", 200, None)
    assert isinstance(pinged["duration_ms"], int) and pinged["duration_ms"] >= 0
    ((headers, body),) = receiver.at(path)
    event = verified(headers, body, endpoint)
    assert event == {
        "id": pinged["event_id"], "type": "webhook.ping", "created_at": event["created_at"],
        "data": {"endpoint_id": endpoint["id"]},
    }  # fmt: skip
    failed = cli_json(cli_env, "webhook", "ping", str(broken["id"]), "--json")
    assert (failed["status"], failed["http_status"], failed["error"]) == ("failed", 503, "http 503")
    # Attempted once, never retried: nothing is left queued.
    (delivery,) = stored_deliveries(broken["id"])
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 1, None)
    with models.db.connection_context():
        job = Job.get((Job.kind == webhook_models.JOB_KIND) & (Job.subject_id == delivery.id))
    assert job.finished_at is not None
    assert len(receiver.at(down)) == 1 and len(receiver.at(path)) == 1
    # A disabled endpoint gets no attempt: the ping is recorded failed at once, and says why.
    assert run_cli(hooks_env, "webhook", "disable", str(endpoint["id"])).returncode == 0
    refused = cli_json(cli_env, "webhook", "ping", str(endpoint["id"]), "--json")
    assert EVENT_ID.fullmatch(refused["event_id"])
    assert {k: v for k, v in refused.items() if k != "event_id"} == {
        "status": "failed", "http_status": None, "duration_ms": None, "error": "endpoint disabled"
    }  # fmt: skip
    assert len(receiver.at(path)) == 1


def test_after_a_rotation_attempts_carry_both_signatures_and_the_new_token(server, hooks_env, receiver):
    """The next attempt after `rotate-secret` (a redelivery, and a new event) carries two
    webhook-signature entries, the new secret's first: it verifies with the new and with the old
    secret; X-Signature and X-OCTOPUS-WEBHOOK-TOKEN are the new secret's."""
    operator, path = Operator(), fresh_path("rotate")
    endpoint = add_endpoint(hooks_env, operator.client_id, receiver.url(path))
    old = endpoint["secret"]
    operator.credit()
    ((headers, body),) = receiver.wait_for(path, 1)
    verified(headers, body, endpoint)
    assert len(headers["webhook-signature"].split(" ")) == 1
    (delivery,) = eventually(lambda: settled(endpoint["id"], 1), "the delivery settled")
    rotated = cli_json(hooks_env, "webhook", "rotate-secret", str(endpoint["id"]), "--json")
    assert set(rotated) == {"id", "secret"} and rotated["id"] == endpoint["id"]
    new = rotated["secret"]
    assert new.startswith("whsec_") and len(base64.b64decode(new.removeprefix("whsec_"))) == 32 and new != old
    assert run_cli(hooks_env, "webhook", "redeliver", str(delivery.id)).returncode == 0
    receiver.wait_for(path, 2)
    operator.credit()
    _, redelivered, fresh = receiver.wait_for(path, 3)
    assert redelivered[1] == body
    for headers, body in (redelivered, fresh):
        verified(headers, body, endpoint, secret=new)  # the token and X-Signature: the new secret
        assert Webhook(old).verify(body, headers)
        first, second = headers["webhook-signature"].split(" ")
        assert Webhook(new).verify(body, {**headers, "webhook-signature": first})
        assert Webhook(old).verify(body, {**headers, "webhook-signature": second})
        stale = hmac.new(old.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Signature"] != stale


def test_metrics_expose_the_webhook_queue_and_attempts(server, hooks_env, receiver):
    operator, path = Operator(), fresh_path("metrics")
    add_endpoint(hooks_env, operator.client_id, receiver.url(path))
    operator.credit()
    receiver.wait_for(path, 1)
    with server.client() as http:

        def scraped():
            text = http.get("/metrics").text
            return 'octopus_webhook_attempts_total{outcome="delivered"}' in text and text

        metrics = eventually(scraped, "a delivered attempt counted")
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("octopus_webhook_")
    }
    assert samples['octopus_webhook_attempts_total{outcome="delivered"}'] >= 1
    assert samples["octopus_webhook_attempt_duration_seconds_count"] >= 1
    assert samples["octopus_webhook_attempt_duration_seconds_sum"] > 0
    assert samples["octopus_webhook_queue_depth"] >= 0
    assert samples["octopus_webhook_oldest_pending_age_seconds"] >= 0


# -- 3. the background worker's process; kill -9 mid-burst (these restart the module's server) --

BACKGROUND_STARTED = re.compile(r"background worker started: pid (\d+)")


def background_pid(server):
    """The pid of the server's current background worker, as its log announces it."""
    started = BACKGROUND_STARTED.findall(server.stderr)
    return int(started[-1]) if started else None


def running(pid):
    """Whether `pid` runs (a zombie, left unreaped by whoever adopted it, has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_background_worker_is_started_again_and_ends_with_the_server(server, hooks_env, receiver):
    """serve delivers from a background worker process of its own: killed with SIGKILL, it is
    started again and deliveries go on; when the server is killed with SIGKILL, it stops by itself;
    told to stop (SIGTERM), it stays stopped."""
    operator, path = Operator(), fresh_path("again")
    add_endpoint(hooks_env, operator.client_id, receiver.url(path), "wallet.credited")
    first = eventually(lambda: background_pid(server), "the background worker announced")
    assert first in server.process_tree()
    os.kill(first, signal.SIGKILL)
    second = eventually(lambda: background_pid(server) != first and background_pid(server), "another worker")
    operator.credit(times=3)
    eventually(lambda: len(set(event_ids(receiver.at(path)))) == 3, "deliveries by the new worker")
    assert f"background worker {first} exited (-9): another starts in 1 s" in server.stderr
    os.kill(server.pid, signal.SIGKILL)
    eventually(lambda: not running(second), "the background worker stopped with the server")
    assert server.stop() == -signal.SIGKILL
    server.start()
    third = eventually(lambda: background_pid(server), "the restarted server's background worker")
    os.kill(third, signal.SIGTERM)
    eventually(lambda: f"background worker {third} stopped" in server.stderr, "the worker stopped as told")
    time.sleep(1.5)  # longer than a restart would take
    assert background_pid(server) == third and not running(third)
    server.restart()


BURST = 200


def test_kill_9_of_the_server_mid_burst_loses_no_event(server, hooks_env, receiver):
    """200 operator credits while their deliveries run; the server and its background worker are
    killed with SIGKILL part-way.
    After a restart every event reaches the receiver at least once: the distinct event ids it got
    are exactly the events recorded for the client, and every delivery ends delivered."""
    operator, path = Operator(), fresh_path("burst")
    receiver.script(path, ("sleep", 0.05))
    endpoint = add_endpoint(hooks_env, operator.client_id, receiver.url(path), "wallet.credited")

    credits = threading.Thread(target=operator.credit, kwargs={"times": BURST}, name="credits")
    credits.start()
    try:
        eventually(lambda: len(set(event_ids(receiver.at(path)))) >= 30, "deliveries under way")
        os.killpg(server.pid, signal.SIGKILL)  # the background worker, which delivers, with it
        assert server.stop() == -signal.SIGKILL
    finally:
        credits.join(timeout=WAIT)
    assert not credits.is_alive()
    before = set(event_ids(receiver.at(path)))
    assert len(before) < BURST, "everything was delivered before the kill: nothing was tested"
    server.start()
    recorded = recorded_events(operator.client_id)
    assert len(recorded) == BURST
    eventually(lambda: set(event_ids(receiver.at(path))) == recorded, "every event delivered after the restart")
    rows = eventually(lambda: settled(endpoint["id"], BURST), "every delivery settled")
    assert {row.status for row in rows} == {"delivered"}
    received = receiver.at(path)
    for headers, body in received:
        verified(headers, body, endpoint)
    bodies = {}
    for headers, body in received:
        assert bodies.setdefault(headers["X-Event-ID"], body) == body, "a redelivery with another body"
