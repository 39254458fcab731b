"""What the order tests (vouchers, top-ups, eSIM) read back: an order polled over an in-process
API client, and the wallets, ledger, events, receipts and jobs the database holds for it. A
vertical is named as the ledger and receipts name it: "vouchers", "topups" or "esim"."""

import datetime
import json
import secrets
import time

from octopus_cards import models
from octopus_cards.models import Client, Event, Transaction, Wallet
from octopus_cards.models.esim_orders import EsimOrder
from octopus_cards.models.jobs import Job
from octopus_cards.models.receipts import Receipt
from octopus_cards.models.topup_orders import TopupOrder

ORDER_PATHS = {"vouchers": "/api/v1/orders", "topups": "/api/v1/topups/orders", "esim": "/api/v1/esim/orders"}
ORDER_MODELS = {"topups": TopupOrder, "esim": EsimOrder}


def in_db(function, *args, **kwargs):
    with models.db.connection_context():
        return function(*args, **kwargs)


def funded_client(feature, funds=100):
    """A new client with one feature and a USD wallet holding `funds`, provisioned through the models."""
    with models.db.connection_context():
        created, _ = Client.provision(b"p" * 32, f"{feature}-{secrets.token_hex(3)}", features=(feature,))
        Wallet.open_funded(created.id, "USD", funds, "test")
    return created


def until(buyer, vertical, order_id, done, timeout=10.0):
    """The order, as its detail GET answers it, once `done(order)`, or as it is after `timeout`.
    `buyer` is (client, http, headers) of an in-process client."""
    _, http, headers = buyer
    deadline = time.monotonic() + timeout
    while True:
        current = http.get(f"{ORDER_PATHS[vertical]}/{order_id}", headers=headers).json()
        if done(current) or time.monotonic() > deadline:
            return current
        time.sleep(0.05)


def settled(buyer, vertical, order_id, timeout=10.0):
    """The order once the background work has settled it."""
    return until(buyer, vertical, order_id, lambda order: order["status"] != "PENDING", timeout)


def wallet_of(client, currency="USD"):
    with models.db.connection_context():
        return Wallet.select().join(models.Currency).where(
            (Wallet.client == client.id) & (models.Currency.currency == currency)
        ).get()  # fmt: skip


def balance(client, currency="USD"):
    """The wallet's amount, once it is checked to equal what its ledger adds up to."""
    wallet = wallet_of(client, currency)
    assert in_db(Wallet.balance_matches_ledger, wallet.id)
    return wallet.amount


def ledger(vertical, order_id, transaction_type=None):
    """The transactions of an order, oldest first."""
    with models.db.connection_context():
        query = Transaction.select().where(
            (Transaction.order_vertical == vertical) & (Transaction.order_id == order_id)
        )
        if transaction_type is not None:
            query = query.where(Transaction.transaction_type == transaction_type)
        return list(query.order_by(Transaction.id))


def ledger_entries(vertical, order_id):
    """(transaction type, amount) of each transaction of an order, oldest first."""
    return [(t.transaction_type, t.amount) for t in ledger(vertical, order_id)]


def ledger_of(vertical, order_ids):
    """{order id: sorted transaction types} of the orders' transactions."""
    rows = {order_id: [] for order_id in order_ids}
    with models.db.connection_context():
        of_orders = (Transaction.order_vertical == vertical) & Transaction.order_id.in_(order_ids)
        for row in Transaction.select().where(of_orders):
            rows[row.order_id].append(row.transaction_type)
    return {order_id: sorted(types) for order_id, types in rows.items()}


def events(client):
    """The bodies of the client's events, oldest first."""
    with models.db.connection_context():
        return [
            json.loads(e.body)
            for e in Event.select().where(Event.client == client.id).order_by(Event.created_at, Event.id)
        ]


def receipts(vertical, order_id):
    with models.db.connection_context():
        return list(Receipt.select().where((Receipt.vertical == vertical) & (Receipt.order_id == order_id)))


def sent_receipt(vertical, order_id, timeout=10.0):
    """The order's one receipt once the background work has handled it (recorded `skipped`: no SMTP)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = receipts(vertical, order_id)
        if (rows and rows[0].status != "pending") or time.monotonic() > deadline:
            assert len(rows) == 1
            return rows[0]
        time.sleep(0.05)


def order_count(vertical, client):
    model = ORDER_MODELS[vertical]
    return in_db(model.select().where(model.client == client.id).count)


def fulfilment_job(vertical, order_id):
    return in_db(Job.get, (Job.kind == ORDER_MODELS[vertical].JOB_KIND) & (Job.subject_id == order_id))


def supplier_calls(vertical, order_id):
    """How many times the order's fulfilment job was claimed or held (one supplier call each)."""
    return fulfilment_job(vertical, order_id).attempts


def parsed(stamp):
    """An RFC 3339 UTC timestamp of the API, once it is checked to be one, as a naive datetime."""
    assert stamp is not None and stamp.endswith("Z") and len(stamp) == 20, stamp
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
