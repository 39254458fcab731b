"""Events and their webhook deliveries (contract 9, 16.6, 15.1 items 33-35, 47).

An event is recorded in the transaction of the change it announces, with the exact body every
delivery of it sends; in that same transaction it gets one delivery per endpoint of the client that
subscribes to its type, each with a job that the background workers claim. An attempt is signed
when it is sent, so each carries its own timestamp and the endpoint's current secret."""

import base64
import datetime
import hashlib
import hmac
import json
import secrets
import time

from cyksuid.v2 import ksuid
from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from octopus_cards.models.base import BaseModel, Prepared, db, utcnow, write_txn
from octopus_cards.models.clients import Client
from octopus_cards.models.encoding import dumps, timestamp
from octopus_cards.models.exceptions import Refused
from octopus_cards.models.jobs import Job

WALLET_CREDITED = "wallet.credited"
WALLET_DEBITED = "wallet.debited"
EVENT_TYPES = (
    "order.delivered",
    "order.partially_delivered",
    "order.failed",
    "order.cancelled",
    WALLET_DEBITED,
    WALLET_CREDITED,
)
PING = "webhook.ping"

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED)
JOB_KIND = "webhook_delivery"
ENDPOINT_DISABLED = "endpoint disabled"
GONE = 410

USER_AGENT = "octopusrewards.com/webhook-agent"
ROTATION_OVERLAP = datetime.timedelta(hours=24)  # the previous secret keeps signing (9.4)
RETENTION = datetime.timedelta(days=30)  # events and attempts (9.6)


def new_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Event(BaseModel):
    id = CharField(primary_key=True)  # evt_ + KSUID
    client = ForeignKeyField(Client, backref="events", on_delete="CASCADE")
    type = CharField()
    body = TextField()  # the envelope, byte for byte as it is sent
    created_at = DateTimeField()

    @classmethod
    def record(cls, client_id, event_type, data):
        """Write the event of `event_type` with `data`, and a delivery to each endpoint of the
        client that subscribes to it; call inside the change's transaction."""
        event = cls.new(client_id, event_type, data)
        for endpoint in ENDPOINTS_OF.rows(client=client_id):
            if event_type in endpoint.subscriptions():
                Delivery.open(event, endpoint)
        return event

    @classmethod
    def new(cls, client_id, event_type, data):
        event_id, now = f"evt_{ksuid()}", utcnow()
        body = dumps({"id": event_id, "type": event_type, "created_at": timestamp(now), "data": data})
        return NEW_EVENT.create(cls(id=event_id, client=client_id, type=event_type, body=body, created_at=now))


class WebhookEndpoint(BaseModel):
    client = ForeignKeyField(Client, backref="webhook_endpoints", on_delete="CASCADE")
    url = CharField(max_length=2048)
    events = TextField()  # JSON list of the subscribed types
    secret = CharField()
    previous_secret = CharField(null=True)
    previous_secret_until = DateTimeField(null=True)
    is_active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)

    def subscriptions(self):
        return json.loads(self.events)

    def described(self, with_secret=False):
        """`webhook add|list --json` (16.6): the secret only when it is being handed out."""
        shown = {"id": self.id, "client_id": self.client_id, "url": self.url, "events": self.subscriptions()}
        if with_secret:
            shown["secret"] = self.secret
        shown["is_active"] = self.is_active
        return shown

    @classmethod
    def find(cls, endpoint_id):
        endpoint = cls.get_or_none(cls.id == endpoint_id)
        if endpoint is None:
            raise Refused(f"no webhook endpoint with id {endpoint_id}")
        return endpoint

    @classmethod
    def add(cls, client_id, url, events=None):
        """Register `url` (already checked for syntax) for the client; every type unless `events`."""
        with write_txn():
            Client.find(client_id)
            unknown = sorted(set(events or ()) - set(EVENT_TYPES))
            if unknown:
                raise Refused(f"unknown event type {unknown[0]!r} (choose from {', '.join(EVENT_TYPES)})")
            chosen = [kind for kind in EVENT_TYPES if kind in events] if events else list(EVENT_TYPES)
            return cls.create(client=client_id, url=url, events=json.dumps(chosen), secret=new_secret())

    @classmethod
    def listing(cls, client_id=None):
        query = cls.select().order_by(cls.id.desc())
        if client_id is not None:
            query = query.where(cls.client == client_id)
        return [endpoint.described() for endpoint in query]

    @classmethod
    def remove(cls, endpoint_id):
        """The endpoint, its deliveries and their jobs."""
        with write_txn():
            endpoint = cls.find(endpoint_id)
            Delivery.forget(Delivery.select(Delivery.id).where(Delivery.endpoint == endpoint_id))
            endpoint.delete_instance()

    @classmethod
    def set_active(cls, endpoint_id, active):
        with write_txn():
            cls.find(endpoint_id)
            cls.update(is_active=active).where(cls.id == endpoint_id).execute()

    @classmethod
    def rotate_secret(cls, endpoint_id):
        """A new secret; the old one still signs for ROTATION_OVERLAP, so receivers can switch."""
        with write_txn():
            endpoint = cls.find(endpoint_id)
            secret = new_secret()
            overlap_until = utcnow() + ROTATION_OVERLAP
            cls.update(secret=secret, previous_secret=endpoint.secret, previous_secret_until=overlap_until).where(
                cls.id == endpoint_id
            ).execute()
            return {"id": endpoint.id, "secret": secret}

    def signing_secrets(self, now):
        """The secrets an attempt at `now` is signed with, the current one first."""
        if self.previous_secret and self.previous_secret_until and now < self.previous_secret_until:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def headers(self, event, sent_at, body, now):
        """The headers of one attempt (9.1, 9.4) that sends `body` at Unix time `sent_at`."""
        signatures = []
        for secret in self.signing_secrets(now):
            key = base64.b64decode(secret.removeprefix("whsec_"))
            signed = f"{event.id}.{sent_at}.".encode() + body
            signatures.append("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode())
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-OCTOPUS-WEBHOOK-TOKEN": self.secret,
            "X-Webhook-ID": str(self.id),
            "X-Event-ID": event.id,
            "X-Event-Type": event.type,
            "X-Timestamp": str(sent_at),
            "X-Signature": hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest(),
            "webhook-id": event.id,
            "webhook-timestamp": str(sent_at),
            "webhook-signature": " ".join(signatures),
        }


# Every balance change and every order's end records an event: their SQL is built once.
NEW_EVENT = Prepared.insert(Event)
ENDPOINTS_OF = Prepared(lambda slot: WebhookEndpoint.select().where(WebhookEndpoint.client == slot("client")))


class Delivery(BaseModel):
    event = ForeignKeyField(Event, backref="deliveries", on_delete="CASCADE")
    endpoint = ForeignKeyField(WebhookEndpoint, backref="deliveries", on_delete="CASCADE")
    status = CharField()
    attempts = IntegerField(default=0)
    # The number of the attempt after which there is no retry; None: the retry schedule's.
    last_attempt = IntegerField(null=True)
    next_attempt_at = DateTimeField(null=True)
    delivered_at = DateTimeField(null=True)
    last_status = IntegerField(null=True)
    last_error = CharField(null=True)
    last_sent_at = IntegerField(null=True)  # X-Timestamp of the latest attempt: never goes back
    created_at = DateTimeField()

    class Meta:
        indexes = ((("endpoint", "status", "created_at"), False), (("status",), False))

    @classmethod
    def open(cls, event, endpoint, last_attempt=None, hold=None):
        """The delivery of `event` to `endpoint`, queued; failed at once if the endpoint is
        disabled, so that `webhook recover` can send it later (9.6)."""
        now = utcnow()
        if not endpoint.is_active:
            return cls.create(event=event, endpoint=endpoint, status=FAILED, last_error=ENDPOINT_DISABLED,
                              created_at=now)  # fmt: skip
        delivery = NEW_DELIVERY.create(cls(event=event, endpoint=endpoint, status=PENDING, last_attempt=last_attempt,
                                           next_attempt_at=now, created_at=now))  # fmt: skip
        Job.enqueue(JOB_KIND, delivery.id, held_for=hold)
        return delivery

    @classmethod
    def find(cls, delivery_id):
        delivery = cls.get_or_none(cls.id == delivery_id)
        if delivery is None:
            raise Refused(f"no webhook delivery with id {delivery_id}")
        return delivery

    def described(self):
        """A row of `webhook deliveries --json` (16.6)."""
        return {
            "id": self.id,
            "event_id": self.event_id,
            "event_type": self.event.type,
            "endpoint_id": self.endpoint_id,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": timestamp(self.next_attempt_at) if self.next_attempt_at else None,
            "delivered_at": timestamp(self.delivered_at) if self.delivered_at else None,
            "last_status": self.last_status,
            "last_error": self.last_error,
        }

    @classmethod
    def listing(cls, endpoint_id=None, event_id=None, status=None):
        query = cls.select(cls, Event).join(Event).order_by(cls.id.desc())
        if endpoint_id is not None:
            query = query.where(cls.endpoint == endpoint_id)
        if event_id is not None:
            query = query.where(cls.event == event_id)
        if status is not None:
            query = query.where(cls.status == status)
        return [delivery.described() for delivery in query]

    @classmethod
    def redeliver(cls, delivery_id):
        """One more attempt now, whatever the delivery's state (9.6)."""
        with write_txn():
            cls.find(delivery_id)
            cls.requeue(cls.id == delivery_id)

    @classmethod
    def recover(cls, endpoint_id, since):
        """One more attempt of every failed delivery to the endpoint created at or after `since`
        (whole seconds, 15.1 item 35); how many."""
        with write_txn():
            WebhookEndpoint.find(endpoint_id)
            since = since.replace(microsecond=0, tzinfo=None)
            return cls.requeue((cls.endpoint == endpoint_id) & (cls.status == FAILED) & (cls.created_at >= since))

    @classmethod
    def requeue(cls, which):
        now, count = utcnow(), 0
        for delivery in cls.select().where(which):
            cls.update(status=PENDING, last_attempt=delivery.attempts + 1, next_attempt_at=now).where(
                cls.id == delivery.id
            ).execute()
            queued = Job.update(run_after=now, finished_at=None, locked_until=None).where(
                (Job.kind == JOB_KIND) & (Job.subject_id == delivery.id)
            )
            if not queued.execute():
                Job.enqueue(JOB_KIND, delivery.id)
            count += 1
        return count

    @classmethod
    def forget(cls, ids):
        """Delete deliveries with their jobs (their ids may come back on SQLite, which reuses the
        highest rowid)."""
        Job.delete().where((Job.kind == JOB_KIND) & Job.subject_id.in_(ids)).execute()
        cls.delete().where(cls.id.in_(ids)).execute()

    @classmethod
    def pending_count(cls):
        return cls.select().where(cls.status == PENDING).count()

    @classmethod
    def oldest_pending(cls):
        return cls.select(cls.created_at).where(cls.status == PENDING).order_by(cls.created_at).scalar()

    def budget(self, retry_schedule):
        return self.last_attempt or 1 + len(retry_schedule)

    def settle(self, number, sent_at, started, result, retry_schedule):
        """Record attempt `number` and move the delivery on, in one transaction; the new status.
        `result` is the sender's outcome (`ok`, `http_status`, `duration_ms`, `error`,
        `response_start`). A 410 disables the endpoint (9.5)."""
        now = utcnow()
        with write_txn():
            NEW_ATTEMPT.execute(delivery=self.id, number=number, started_at=started, sent_at=sent_at,
                                http_status=result.http_status, duration_ms=result.duration_ms, error=result.error,
                                response_start=result.response_start)  # fmt: skip
            if result.ok:
                status, next_at = DELIVERED, None
            elif result.http_status == GONE or number >= self.budget(retry_schedule):
                status, next_at = FAILED, None
            else:
                status = PENDING
                next_at = now + datetime.timedelta(seconds=retry_schedule[number - 1])
            SETTLE_DELIVERY.execute(
                delivery=self.id,
                status=status,
                attempts=number,
                next_attempt_at=next_at,
                last_status=result.http_status,
                last_error=result.error,
                last_sent_at=sent_at,
                delivered_at=now if status == DELIVERED else None,
            )
            if result.http_status == GONE:
                WebhookEndpoint.update(is_active=False).where(WebhookEndpoint.id == self.endpoint_id).execute()
        return status, next_at

    def close(self, error):
        with write_txn():
            Delivery.update(status=FAILED, next_attempt_at=None, last_error=error).where(
                Delivery.id == self.id
            ).execute()


class DeliveryAttempt(BaseModel):
    """One attempt of a delivery, as 9.6 has it logged."""

    delivery = ForeignKeyField(Delivery, backref="attempt_log", on_delete="CASCADE")
    number = IntegerField()
    started_at = DateTimeField()
    sent_at = IntegerField()  # its X-Timestamp
    http_status = IntegerField(null=True)
    duration_ms = IntegerField()
    error = CharField(null=True)
    response_start = TextField()  # the first 1 KiB of the response body


# Every delivery runs these: their SQL is built once.
NEW_DELIVERY = Prepared.insert(
    Delivery,
    (
        Delivery.event,
        Delivery.endpoint,
        Delivery.status,
        Delivery.attempts,
        Delivery.last_attempt,
        Delivery.next_attempt_at,
        Delivery.created_at,
    ),  # fmt: skip
)
DELIVERY = Prepared(
    lambda slot: (
        Delivery.select(Delivery, Event, WebhookEndpoint)
        .join_from(Delivery, Event)
        .join_from(Delivery, WebhookEndpoint)
        .where(Delivery.id == slot("delivery"))
        .limit(1)
    )
)
NEW_ATTEMPT = Prepared.insert(DeliveryAttempt)
SETTLE_DELIVERY = Prepared(
    lambda slot: Delivery.update(
        {
            field: slot(field.name)
            for field in (
                Delivery.status,
                Delivery.attempts,
                Delivery.next_attempt_at,
                Delivery.last_status,
                Delivery.last_error,
                Delivery.last_sent_at,
                Delivery.delivered_at,
            )
        }  # fmt: skip
    ).where(Delivery.id == slot("delivery"))
)

BUSY_RETRY = 1  # seconds before a delivery to an endpoint with no free slot is looked at again


def attempt(job, send, retry_schedule, slot):
    """Run a delivery job once: sign and send the event, log the attempt, and retry or end.
    `send(url, body, headers)` returns the sender's outcome; `slot(endpoint_id)` is a context
    manager that says whether this process may open one more attempt to the endpoint (so a
    slow receiver holds up only its own deliveries): if not, the job waits BUSY_RETRY seconds,
    not counted as an attempt. The delivery's status after it. No database connection is held
    while the receiver takes its time."""
    with db.connection_context():
        delivery = DELIVERY.first(delivery=job.subject_id)
        if delivery is None or delivery.status != PENDING:
            job.finish()
            return None
        if not delivery.endpoint.is_active:
            delivery.close(ENDPOINT_DISABLED)
            job.finish()
            return FAILED
    with slot(delivery.endpoint_id) as free:
        if not free:
            with db.connection_context():
                job.retry_after(BUSY_RETRY, "endpoint busy")
            return PENDING
        started = utcnow()
        sent_at = max(int(time.time()), delivery.last_sent_at or 0)
        body = delivery.event.body.encode()
        result = send(delivery.endpoint.url, body, delivery.endpoint.headers(delivery.event, sent_at, body, started))
    with db.connection_context(), write_txn():  # the attempt, the delivery's state and its job at once
        status, next_at = delivery.settle(delivery.attempts + 1, sent_at, started, result, retry_schedule)
        if status == PENDING:
            job.retry_after((next_at - utcnow()).total_seconds(), result.error)
        else:
            job.finish()
    return status


def ping(endpoint_id):
    """A `webhook.ping` event with one delivery to the endpoint, whatever it subscribes to, attempted
    once (15.1 item 34); its delivery, its job held for the caller to run at once."""
    with write_txn():
        endpoint = WebhookEndpoint.find(endpoint_id)
        event = Event.new(endpoint.client_id, PING, {"endpoint_id": endpoint.id})
        return Delivery.open(event, endpoint, last_attempt=1, hold=60)


def prune():
    """Events (with their deliveries and attempts) and attempts older than the retention."""
    cutoff = utcnow() - RETENTION
    with write_txn():
        attempts = DeliveryAttempt.delete().where(DeliveryAttempt.started_at < cutoff).execute()
        old = Event.select(Event.id).where(Event.created_at < cutoff)
        Delivery.forget(Delivery.select(Delivery.id).where(Delivery.event.in_(old)))
        events = Event.delete().where(Event.created_at < cutoff).execute()
    return events, attempts
