"""Prepared statements against a real database: built once, they must mean what the peewee query
means, whatever the values (each through its field's converter) and whatever the query holds."""

import datetime
import secrets
from decimal import Decimal

import pytest
from peewee import Model

from octopus_cards import models
from octopus_cards.models import Client, Transaction, Wallet
from octopus_cards.models.base import Prepared
from octopus_cards.models.clients import BUYER
from octopus_cards.models.reference_data import Currency
from octopus_cards.models.wallets import CREDIT, DEBIT

CREDITS_FROM = Prepared(
    lambda slot: (
        Transaction.select(Transaction, Wallet, Currency)
        .join(Wallet)
        .join(Currency)
        .where(
            (Transaction.wallet == slot("wallet"))
            & (Transaction.amount >= slot("at_least"))  # a money column: its value is scaled
            & (Transaction.transaction_type == CREDIT)  # a constant of the query
            & (Transaction.created_at >= slot("since"))
        )
        .order_by(Transaction.id)
    )
)
AMOUNTS = Prepared(
    lambda slot: Transaction.select(Transaction.amount).where(Transaction.wallet == slot("wallet")).tuples()
)


@pytest.fixture
def wallet(migrated):
    with models.db.connection_context():
        client, _ = Client.provision(b"p" * 32, f"prepared-{secrets.token_hex(3)}")
        wallet = Wallet.open(client.id, "USD")
        for amount in ("1.5", "20.25", "300"):
            Wallet.post(wallet.id, CREDIT, Decimal(amount), "Operator credit")
        Wallet.post(wallet.id, DEBIT, Decimal("100"), "Operator debit")
    return wallet


def test_rows_are_what_the_query_returns_with_each_value_converted(wallet):
    since = datetime.datetime(2000, 1, 1)
    with models.db.connection_context():
        for at_least in (Decimal("1.5"), Decimal("20.2500"), 300, Decimal("300.0001")):
            values = {"wallet": wallet.id, "at_least": at_least, "since": since}
            query = CREDITS_FROM.build(values.get)  # the plain peewee query, the values in place
            expected = [(t.id, t.amount, t.wallet.currency.currency) for t in query]
            found = CREDITS_FROM.rows(wallet=wallet.id, at_least=at_least, since=since)
            assert [(t.id, t.amount, t.wallet.currency.currency) for t in found] == expected
            assert all(isinstance(t, Transaction) for t in found)
        assert len(CREDITS_FROM.rows(wallet=wallet.id, at_least=Decimal("1.5"), since=since)) == 3
        assert CREDITS_FROM.first(wallet=wallet.id, at_least=Decimal("300.0001"), since=since) is None
        assert sorted(AMOUNTS.rows(wallet=wallet.id)) == [(Decimal(a),) for a in ("1.5", "20.25", "100", "300")]


def test_an_insert_fills_every_slot_and_answers_the_new_id(wallet):
    with models.db.connection_context():
        row = {"wallet": wallet.id, "amount": Decimal("0.0001"), "transaction_type": CREDIT, "status": "COMPLETED",
               "source_currency": None, "destination_currency": None, "forex_rate": None, "conversion_charges": None,
               "remarks": "direct", "order_vertical": None, "order_id": None,
               "created_at": datetime.datetime(2026, 1, 2, 3, 4, 5)}  # fmt: skip
        new_id = Prepared.insert(Transaction).execute_returning_id(**row)
        stored = Transaction.get_by_id(new_id)
    assert (stored.amount, stored.remarks, stored.created_at) == (Decimal("0.0001"), "direct", row["created_at"])


def as_data(row):
    """A model instance as plain data, its joined instances too: what peewee made of the row."""
    if not isinstance(row, Model):
        return row
    related = {name: as_data(other) for name, other in row.__rel__.items()}
    return type(row).__name__, dict(row.__data__), sorted(row._dirty), related


WALLETS_OF = Prepared(lambda slot: Wallet.select().where(Wallet.client == slot("client")).order_by(Wallet.id))


SINCE = datetime.datetime(2000, 1, 1)


@pytest.mark.parametrize(
    "statement, runs",
    [
        (CREDITS_FROM, lambda wallet, other: [{"wallet": wallet.id, "at_least": 1, "since": SINCE}]),
        (BUYER, lambda wallet, other: [{"client": wallet.client_id}, {"client": other.id}]),
        (WALLETS_OF, lambda wallet, other: [{"client": wallet.client_id}]),
    ],
    ids=["joined", "outer join", "one model"],
)
def test_model_rows_are_built_as_peewee_builds_them(wallet, statement, runs):
    """After its first rows, a statement of model rows builds them itself: to the last field, joined
    instance and dirty mark what peewee's reader makes of the same rows."""
    with models.db.connection_context():
        other, _ = Client.provision(b"p" * 32, f"prepared-{secrets.token_hex(3)}")  # no default currency
        Client.update(default_currency=Currency.get(Currency.currency == "EUR")).where(
            Client.id == wallet.client_id
        ).execute()
        for values in runs(wallet, other):
            expected = [as_data(row) for row in statement.build(values.get)]
            assert expected
            statement.rows(**values)  # the first rows teach it their layout
            assert statement.builders.get(models.db.obj) is not None
            assert [as_data(row) for row in statement.rows(**values)] == expected
