"""Events and their webhook deliveries against a real database (contract 9, 16.6, 15.1 items 33-35,
47), with a recording stand-in for the network: fan-out in the event's transaction, signatures that
verify with `standardwebhooks` and with a plain HMAC, retries, 410, redeliver, recover, rotation."""

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import json
import secrets

import pytest
from standardwebhooks import Webhook

from octopus_cards import models
from octopus_cards.models import Client, Delivery, DeliveryAttempt, Event, Wallet, WebhookEndpoint, webhooks
from octopus_cards.models.base import utcnow
from octopus_cards.models.exceptions import Refused
from octopus_cards.models.jobs import Job, clock
from octopus_cards.models.wallets import CREDIT

SCHEDULE = (30.0, 120.0)  # three attempts in all


@dataclasses.dataclass
class Outcome:
    ok: bool
    http_status: int | None
    duration_ms: int = 3
    error: str | None = None
    response_start: str = ""


def answered(status):
    return Outcome(200 <= status < 300, status, error=None if 200 <= status < 300 else f"http {status}")


class Receiver:
    """Answers each attempt with the next of `statuses` and keeps what it was sent."""

    def __init__(self, *statuses):
        self.statuses, self.received = list(statuses), []

    def __call__(self, url, body, headers):
        self.received.append((url, body, dict(headers)))
        return answered(self.statuses.pop(0)) if self.statuses else Outcome(False, None, error="timeout")


@contextlib.contextmanager
def free_slot(endpoint_id):
    yield True


@contextlib.contextmanager
def no_slot(endpoint_id):
    yield False


@pytest.fixture
def client(migrated):
    with models.db.connection_context():
        created, _ = Client.provision(b"p" * 32, f"hooks-{secrets.token_hex(3)}")
    return created


def endpoint_for(client, events=None, url="https://hooks.example.com/octopus"):
    with models.db.connection_context():
        return WebhookEndpoint.add(client.id, url, events)


def credit(client, amount=10):
    """An operator credit: one wallet.credited event."""
    with models.db.connection_context():
        wallet = Wallet.get_or_none(Wallet.client == client.id) or Wallet.open(client.id, "USD")
        return Wallet.post(wallet.id, CREDIT, amount, "Operator credit")


def run_due(receiver, client, schedule=SCHEDULE):
    """Attempt each due delivery job of the client's once, as a worker would; the statuses."""
    with models.db.connection_context():
        ours = Delivery.select(Delivery.id).join(WebhookEndpoint).where(WebhookEndpoint.client == client.id)
        due = Job.select().where(
            (Job.kind == webhooks.JOB_KIND) & Job.subject_id.in_(ours) & Job.finished_at.is_null()
            & (Job.run_after <= clock())
        ).order_by(Job.id)  # fmt: skip
        return [webhooks.attempt(job, receiver, schedule, free_slot) for job in due]


def make_due(delivery_id):
    with models.db.connection_context():
        Job.update(run_after=clock() - datetime.timedelta(seconds=1)).where(
            (Job.kind == webhooks.JOB_KIND) & (Job.subject_id == delivery_id)
        ).execute()


def deliveries_of(endpoint):
    with models.db.connection_context():
        return list(Delivery.select().where(Delivery.endpoint == endpoint.id).order_by(Delivery.id))


def test_an_event_gets_one_delivery_per_subscribed_endpoint_in_its_transaction(client):
    everything, wallets_only, orders_only = (
        endpoint_for(client),
        endpoint_for(client, ["wallet.credited"]),
        endpoint_for(client, ["order.delivered"]),
    )
    credit(client)
    assert [len(deliveries_of(e)) for e in (everything, wallets_only, orders_only)] == [1, 1, 0]
    (first,), (second,) = deliveries_of(everything), deliveries_of(wallets_only)
    assert first.event_id == second.event_id and first.status == second.status == "pending"


def test_every_attempt_verifies_with_standard_webhooks_and_with_a_plain_hmac(client):
    endpoint = endpoint_for(client)
    credit(client, 12)
    receiver = Receiver(200)
    assert run_due(receiver, client) == ["delivered"]
    ((url, body, headers),) = receiver.received
    with models.db.connection_context():
        event = Event.get(Event.id == headers["X-Event-ID"])
    assert url == endpoint.url and body == event.body.encode()
    envelope = json.loads(body)
    assert set(envelope) == {"id", "type", "created_at", "data"} and envelope["type"] == "wallet.credited"
    assert Webhook(endpoint.secret).verify(body, headers) == envelope
    expected = hmac.new(endpoint.secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Signature"], expected)
    assert headers["X-Webhook-ID"] == str(endpoint.id) and headers["X-OCTOPUS-WEBHOOK-TOKEN"] == endpoint.secret
    assert headers["X-Event-Type"] == "wallet.credited" and headers["webhook-id"] == envelope["id"]
    assert headers["User-Agent"] == "octopusrewards.com/webhook-agent"
    assert headers["Content-Type"] == "application/json" and headers["X-Timestamp"] == headers["webhook-timestamp"]


def test_failures_are_retried_on_the_schedule_with_the_same_id_and_body_then_fail(client):
    endpoint = endpoint_for(client)
    credit(client)
    receiver = Receiver(500, 503)
    assert run_due(receiver, client) == ["pending"]
    (delivery,) = deliveries_of(endpoint)
    assert delivery.attempts == 1 and delivery.last_error == "http 500" and delivery.last_status == 500
    assert 29 <= (delivery.next_attempt_at - utcnow()).total_seconds() <= 30
    assert run_due(receiver, client) == [], "retried before its time"
    make_due(delivery.id)
    assert run_due(receiver, client) == ["pending"]
    make_due(delivery.id)
    assert run_due(receiver, client) == ["failed"]  # the third attempt times out: the budget is spent
    (delivery,) = deliveries_of(endpoint)
    assert (delivery.status, delivery.attempts, delivery.last_error, delivery.next_attempt_at) == (
        "failed", 3, "timeout", None
    )  # fmt: skip
    bodies = {body for _, body, _ in receiver.received}
    ids = {headers["X-Event-ID"] for _, _, headers in receiver.received}
    stamps = [int(headers["X-Timestamp"]) for _, _, headers in receiver.received]
    assert len(bodies) == len(ids) == 1 and stamps == sorted(stamps)
    with models.db.connection_context():
        log = [(a.number, a.http_status, a.error) for a in DeliveryAttempt.select().where(
            DeliveryAttempt.delivery == delivery.id).order_by(DeliveryAttempt.number)]  # fmt: skip
    assert log == [(1, 500, "http 500"), (2, 503, "http 503"), (3, None, "timeout")]


def test_gone_disables_the_endpoint_and_later_events_are_recorded_failed(client):
    endpoint = endpoint_for(client)
    credit(client)
    assert run_due(Receiver(410), client) == ["failed"]
    with models.db.connection_context():
        assert not WebhookEndpoint.get_by_id(endpoint.id).is_active
    credit(client)
    latest = deliveries_of(endpoint)[-1]
    assert (latest.status, latest.last_error, latest.attempts) == ("failed", "endpoint disabled", 0)
    assert run_due(Receiver(200), client) == []


def test_a_disabled_endpoint_gets_no_attempt_of_a_queued_delivery(client):
    endpoint = endpoint_for(client)
    credit(client)
    with models.db.connection_context():
        WebhookEndpoint.set_active(endpoint.id, False)
    receiver = Receiver(200)
    assert run_due(receiver, client) == ["failed"] and receiver.received == []
    assert deliveries_of(endpoint)[0].last_error == "endpoint disabled"


def test_recover_sends_each_failed_delivery_since_a_time_once_more(client):
    endpoint = endpoint_for(client)
    with models.db.connection_context():
        WebhookEndpoint.set_active(endpoint.id, False)
    credit(client)
    credit(client)
    with models.db.connection_context():
        WebhookEndpoint.set_active(endpoint.id, True)
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
        assert Delivery.recover(endpoint.id, since) == 2
        assert Delivery.recover(endpoint.id, since) == 0  # pending now, not failed
    receiver = Receiver(500, 500)
    assert run_due(receiver, client) == ["failed", "failed"], "a recovered delivery gets one attempt"
    with models.db.connection_context():
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
        assert Delivery.recover(endpoint.id, later) == 0


def test_redeliver_queues_one_attempt_whatever_the_state(client):
    endpoint = endpoint_for(client)
    credit(client)
    first = Receiver(200, 200)
    assert run_due(first, client) == ["delivered"]
    (delivery,) = deliveries_of(endpoint)
    with models.db.connection_context():
        Delivery.redeliver(delivery.id)
    assert run_due(first, client) == ["delivered"]
    assert len({body for _, body, _ in first.received}) == 1 and len(first.received) == 2
    with models.db.connection_context(), pytest.raises(Refused, match="no webhook delivery with id 2147483647"):
        Delivery.redeliver(2**31 - 1)


def test_after_a_rotation_both_secrets_sign_for_a_day_and_the_token_is_the_new_one(client):
    endpoint = endpoint_for(client)
    old = endpoint.secret
    with models.db.connection_context():
        rotated = WebhookEndpoint.rotate_secret(endpoint.id)
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != old
    assert len(base64.b64decode(rotated["secret"].removeprefix("whsec_"))) == 32
    credit(client)
    receiver = Receiver(200)
    run_due(receiver, client)
    ((_, body, headers),) = receiver.received
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(rotated["secret"]).verify(body, headers) and Webhook(old).verify(body, headers)
    assert headers["X-OCTOPUS-WEBHOOK-TOKEN"] == rotated["secret"]
    assert headers["X-Signature"] == hmac.new(rotated["secret"].encode(), body, hashlib.sha256).hexdigest()
    with models.db.connection_context():
        stored = WebhookEndpoint.get_by_id(endpoint.id)
        assert stored.signing_secrets(utcnow() + datetime.timedelta(hours=24, seconds=1)) == [rotated["secret"]]


def test_a_ping_goes_to_its_endpoint_only_and_is_attempted_once(client):
    pinged, other = endpoint_for(client, ["order.failed"]), endpoint_for(client)
    with models.db.connection_context():
        delivery = webhooks.ping(pinged.id)
        job = Job.get((Job.kind == webhooks.JOB_KIND) & (Job.subject_id == delivery.id))
        assert webhooks.attempt(job, Receiver(500), SCHEDULE, free_slot) == "failed"
        event = Event.get_by_id(delivery.event_id)
    assert json.loads(event.body)["data"] == {"endpoint_id": pinged.id} and event.type == "webhook.ping"
    assert deliveries_of(other) == []


def test_add_refuses_unknown_clients_and_event_types(client):
    with models.db.connection_context():
        with pytest.raises(Refused, match="no client with id 2147483647"):
            WebhookEndpoint.add(2**31 - 1, "https://a.example/")
        with pytest.raises(Refused, match="unknown event type 'order.shipped'"):
            WebhookEndpoint.add(client.id, "https://a.example/", ["order.shipped"])
        chosen = WebhookEndpoint.add(client.id, "https://a.example/", ["wallet.credited", "order.failed"])
    assert chosen.subscriptions() == ["order.failed", "wallet.credited"]
    assert endpoint_for(client).subscriptions() == list(webhooks.EVENT_TYPES)


def test_prune_drops_events_and_attempts_past_thirty_days(client):
    endpoint = endpoint_for(client)
    credit(client)
    run_due(Receiver(200), client)
    (delivery,) = deliveries_of(endpoint)
    old = utcnow() - datetime.timedelta(days=31)
    with models.db.connection_context():
        Event.update(created_at=old).where(Event.id == delivery.event_id).execute()
        DeliveryAttempt.update(started_at=old).where(DeliveryAttempt.delivery == delivery.id).execute()
        assert webhooks.prune() == (1, 1)
        assert not Delivery.select().where(Delivery.id == delivery.id).exists()


def test_an_endpoint_without_a_free_slot_waits_a_second_without_an_attempt(client):
    endpoint = endpoint_for(client)
    credit(client)
    receiver = Receiver(200)
    with models.db.connection_context():
        (job,) = Job.select().where(
            (Job.kind == webhooks.JOB_KIND) & Job.subject_id.in_([d.id for d in deliveries_of(endpoint)])
        )  # fmt: skip
        assert webhooks.attempt(job, receiver, SCHEDULE, no_slot) == "pending"
        job = Job.get_by_id(job.id)
    (delivery,) = deliveries_of(endpoint)
    assert receiver.received == [] and (delivery.status, delivery.attempts) == ("pending", 0)
    assert job.last_error == "endpoint busy" and 0 < (job.run_after - clock()).total_seconds() <= 1
    make_due(delivery.id)
    assert run_due(receiver, client) == ["delivered"]
