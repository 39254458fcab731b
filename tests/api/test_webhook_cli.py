"""`octopus-cards webhook ...` (contract 16.6, 9.5, 9.6, 15.1 items 34, 35, 38), in-process against
the session database; `ping` against a real receiver on 127.0.0.1."""

import json
import secrets

import pytest

from octopus_cards import models
from octopus_cards.models import Delivery, Wallet, WebhookEndpoint, webhooks
from octopus_cards.models.wallets import CREDIT

from support.receivers import WebhookReceiver

EVERY_TYPE = list(webhooks.EVENT_TYPES)


@pytest.fixture
def client_id(cli):
    code, out, _ = cli("client", "create", "--name", f"hooks-{secrets.token_hex(3)}", "--json")
    assert code == 0
    return json.loads(out)["client_id"]


def add(cli, client_id, url="https://hooks.example.com/octopus", *extra):
    code, out, err = cli("webhook", "add", str(client_id), url, "--json", *extra)
    assert (code, err) == (0, ""), err
    return json.loads(out)


def refused(cli, *argv):
    """The command is refused with one line on stderr, and prints nothing."""
    code, out, err = cli(*argv)
    assert (code, out) == (2, "") and err.count("\n") == 1, (code, out, err)
    return err.strip()


def test_add_prints_the_endpoint_with_its_secret_once(cli, client_id):
    added = add(cli, client_id)
    assert list(added) == ["id", "client_id", "url", "events", "secret", "is_active"]
    assert (added["client_id"], added["url"], added["events"], added["is_active"]) == (
        client_id, "https://hooks.example.com/octopus", EVERY_TYPE, True
    )  # fmt: skip
    assert added["secret"].startswith("whsec_")
    code, out, _ = cli("webhook", "list", "--client", str(client_id), "--json")
    assert code == 0 and json.loads(out) == [{k: v for k, v in added.items() if k != "secret"}]
    assert added["secret"] not in out
    chosen = add(cli, client_id, "https://b.example/", "--event", "wallet.debited", "--event", "order.failed")
    assert chosen["events"] == ["order.failed", "wallet.debited"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/", "https"),
        ("http://hooks.example.com/", "https"),
        ("https://user:pw@hooks.example.com/", "user"),
        ("https://hooks.example.com/" + "a" * 2048, "2,048"),
        ("/relative/path", ""),
        ("https:///no-host", ""),
    ],
)
def test_add_refuses_a_url_outside_the_rules(cli, client_id, url, message):
    line = refused(cli, "webhook", "add", str(client_id), url)
    assert line.startswith("octopus-cards: ") and message in line
    with models.db.connection_context():
        assert not WebhookEndpoint.select().where(WebhookEndpoint.client == client_id).exists()


def test_add_refuses_unknown_clients_and_event_types(cli, client_id):
    assert refused(cli, "webhook", "add", "2147483647", "https://a.example/") == (
        "octopus-cards: no client with id 2147483647"
    )
    assert "unknown event type 'order.shipped'" in refused(
        cli, "webhook", "add", str(client_id), "https://a.example/", "--event", "order.shipped"
    )


def test_disable_enable_remove_and_rotate(cli, client_id):
    added = add(cli, client_id)
    endpoint = str(added["id"])
    assert cli("webhook", "disable", endpoint)[:2] == (0, f"webhook endpoint {endpoint}: disabled\n")
    assert json.loads(cli("webhook", "list", "--client", str(client_id), "--json")[1])[0]["is_active"] is False
    assert cli("webhook", "enable", endpoint)[:2] == (0, f"webhook endpoint {endpoint}: enabled\n")
    code, out, _ = cli("webhook", "rotate-secret", endpoint, "--json")
    rotated = json.loads(out)
    assert code == 0 and list(rotated) == ["id", "secret"] and rotated["id"] == added["id"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != added["secret"]
    assert cli("webhook", "remove", endpoint)[:2] == (0, f"webhook endpoint {endpoint}: removed\n")
    for action in ("remove", "enable", "disable", "rotate-secret", "ping"):
        assert refused(cli, "webhook", action, endpoint) == f"octopus-cards: no webhook endpoint with id {endpoint}"


def test_deliveries_list_redeliver_and_recover(cli, client_id):
    added = add(cli, client_id)
    with models.db.connection_context():
        wallet = Wallet.open(client_id, "USD")
        Wallet.post(wallet.id, CREDIT, 5, "Operator credit")
    code, out, _ = cli("webhook", "deliveries", "--endpoint", str(added["id"]), "--json")
    (row,) = json.loads(out)
    assert code == 0 and list(row) == [
        "id", "event_id", "event_type", "endpoint_id", "status", "attempts", "next_attempt_at", "delivered_at",
        "last_status", "last_error",
    ]  # fmt: skip
    assert (row["event_type"], row["endpoint_id"], row["status"], row["attempts"]) == (
        "wallet.credited", added["id"], "pending", 0
    )  # fmt: skip
    by_event = json.loads(cli("webhook", "deliveries", "--event", row["event_id"], "--json")[1])
    assert [d["id"] for d in by_event] == [row["id"]]
    assert (
        json.loads(cli("webhook", "deliveries", "--endpoint", str(added["id"]), "--status", "failed", "--json")[1])
        == []
    )
    assert cli("webhook", "redeliver", str(row["id"]))[:2] == (0, f"delivery {row['id']}: queued\n")
    assert refused(cli, "webhook", "redeliver", "2147483647") == "octopus-cards: no webhook delivery with id 2147483647"
    code, out, _ = cli("webhook", "recover", str(added["id"]), "--since", "2025-01-15T12:00:00Z")
    assert (code, out) == (0, f"webhook endpoint {added['id']}: 0 failed deliveries queued\n")
    assert "invalid timestamp" in refused(cli, "webhook", "recover", str(added["id"]), "--since", "yesterday")
    assert "invalid timestamp" in refused(cli, "webhook", "recover", str(added["id"]), "--since", "2025-01-15T12:00:00")
    assert "invalid choice" in refused(cli, "webhook", "deliveries", "--status", "PENDING")


def test_ping_sends_one_signed_attempt_and_prints_its_outcome(cli, client_id, monkeypatch):
    monkeypatch.setenv("OCTOPUS_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("OCTOPUS_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    with WebhookReceiver() as receiver:
        receiver.script("/down", 500)
        up = add(cli, client_id, receiver.url("/up"), "--event", "order.failed")
        down = add(cli, client_id, receiver.url("/down"))
        code, out, _ = cli("webhook", "ping", str(up["id"]), "--json")
        pinged = json.loads(out)
        assert code == 0 and list(pinged) == ["event_id", "status", "http_status", "duration_ms", "error"]
        assert (pinged["status"], pinged["http_status"], pinged["error"]) == ("delivered", 200, None)
        ((headers, body),) = receiver.at("/up")
        assert json.loads(body) == {
            "id": pinged["event_id"], "type": "webhook.ping", "created_at": json.loads(body)["created_at"],
            "data": {"endpoint_id": up["id"]},
        }  # fmt: skip
        assert headers["X-Event-ID"] == pinged["event_id"] and headers["X-Webhook-ID"] == str(up["id"])
        code, out, _ = cli("webhook", "ping", str(down["id"]), "--json")
        failed = json.loads(out)
        assert (failed["status"], failed["http_status"], failed["error"]) == ("failed", 500, "http 500")
        assert len(receiver.at("/down")) == 1
    with models.db.connection_context():
        assert Delivery.get(Delivery.event == failed["event_id"]).status == "failed"
