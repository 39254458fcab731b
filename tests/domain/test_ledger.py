"""The ledger against a real database (contract 6, 9.2, 13.2): one rule for every balance change,
PREPAID never below zero under any interleaving, balance = Σ transactions, an event per transaction."""

import json
import secrets
import threading
from decimal import Decimal

import peewee
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus_cards import models
from octopus_cards.models import Client, Event, Transaction, Wallet
from octopus_cards.models.encoding import dumps
from octopus_cards.models.exceptions import BalanceLimitExceeded, InsufficientBalance, NotFound, Refused
from octopus_cards.models.wallets import BALANCE_LIMIT, CREDIT, DEBIT, POSTPAID, PREPAID

D = Decimal


@pytest.fixture
def client(migrated):
    with models.db.connection_context():
        created, _ = Client.provision(b"p" * 32, f"ledger-{secrets.token_hex(3)}")
    return created


def open_wallet(client, currency="USD", kind=PREPAID, funds=0):
    with models.db.connection_context():
        wallet = Wallet.open(client.id, currency, kind)
        if funds:
            Wallet.post(wallet.id, CREDIT, funds, "Operator credit")
    return wallet.id


def unused_order_id():
    """An order id no real order of the session has (their ledger rows share the unique index)."""
    return 1_000_000_000 + secrets.randbelow(1_000_000_000)


def state(wallet_id):
    with models.db.connection_context():
        balance = Wallet.get_by_id(wallet_id).amount
        transactions = list(Transaction.select().where(Transaction.wallet == wallet_id).order_by(Transaction.id))
        client_id = Wallet.get_by_id(wallet_id).client_id
        events = list(Event.select().where(Event.client == client_id).order_by(Event.created_at))
        consistent = Wallet.balance_matches_ledger(wallet_id)
    return balance, transactions, events, consistent


def test_a_credit_and_a_debit_write_balance_transaction_and_event(client):
    wallet_id = open_wallet(client)
    with models.db.connection_context():
        credited = Wallet.post(wallet_id, CREDIT, D("100.005"), "Operator credit")
        debited = Wallet.post(wallet_id, DEBIT, D("0.225"), "Order #5", order=("vouchers", unused_order_id()))
    assert credited["remarks"] == "USD Wallet credited by amount 100.005 - Operator credit"
    assert debited["remarks"] == "USD Wallet debited by amount 0.225 - Order #5"
    assert (debited["transaction_type"], debited["status"], debited["amount"]) == ("DEBIT", "COMPLETED", D("0.225"))
    balance, transactions, events, consistent = state(wallet_id)
    assert balance == D("99.78") and consistent and len(transactions) == 2
    assert [event.type for event in events] == ["wallet.credited", "wallet.debited"]
    body = json.loads(events[1].body)
    assert set(body) == {"id", "type", "created_at", "data"} and body["id"] == events[1].id
    assert body["id"].startswith("evt_") and len(body["id"]) == 4 + 27
    assert body["data"] == json.loads(dumps(debited))  # the transaction object, as the API shows it


def test_amounts_are_exact_integers_in_the_database(client):
    wallet_id = open_wallet(client, funds=D("12345678901.1234"))
    with models.db.connection_context():
        raw = Wallet.select(Wallet.amount.cast("BIGINT")).where(Wallet.id == wallet_id).tuples().first()[0]
    assert raw == 123456789011234 and isinstance(raw, int)


def test_fx_fields_are_recorded_when_currencies_differ(client):
    wallet_id = open_wallet(client, "EUR", funds=100)
    with models.db.connection_context():
        debited = Wallet.post(wallet_id, DEBIT, D("92"), "Order #7", fx=("USD", "EUR", D("0.92")))
    assert (debited["source_currency"], debited["destination_currency"]) == ("USD", "EUR")
    assert (debited["forex_rate"], debited["conversion_charges"]) == (D("0.92"), D("0.00"))


def test_a_prepaid_debit_beyond_the_balance_changes_nothing(client):
    wallet_id = open_wallet(client, funds=10)
    before = state(wallet_id)
    with models.db.connection_context(), pytest.raises(InsufficientBalance):
        Wallet.post(wallet_id, DEBIT, D("10.0001"), "Order #1")
    after = state(wallet_id)
    assert (after[0], len(after[1]), len(after[2])) == (before[0], len(before[1]), len(before[2]))


def test_postpaid_goes_negative_down_to_its_floor(client):
    wallet_id = open_wallet(client, kind=POSTPAID)
    with models.db.connection_context():
        Wallet.post(wallet_id, DEBIT, D(250), "Order #1")
        assert Wallet.get_by_id(wallet_id).amount == D(-250)
        with pytest.raises(InsufficientBalance):
            Wallet.post(wallet_id, DEBIT, BALANCE_LIMIT, "Order #2")
    assert state(wallet_id)[3]


def test_a_credit_past_the_limit_is_refused(client):
    wallet_id = open_wallet(client, funds=BALANCE_LIMIT)
    with models.db.connection_context(), pytest.raises(BalanceLimitExceeded):
        Wallet.post(wallet_id, CREDIT, D("0.0001"), "Operator credit")


@pytest.mark.parametrize("amount", [D(0), D("-1"), D("0.00004"), BALANCE_LIMIT + 1])
def test_amounts_out_of_range_are_refused(client, amount):
    wallet_id = open_wallet(client)
    with models.db.connection_context(), pytest.raises(Refused):
        Wallet.post(wallet_id, CREDIT, amount, "Operator credit")
    assert state(wallet_id)[1] == []


def test_an_order_is_debited_at_most_once(client):
    wallet_id, order_id = open_wallet(client, funds=100), unused_order_id()
    with models.db.connection_context():
        Wallet.post(wallet_id, DEBIT, D(10), "Order #9", order=("vouchers", order_id))
        with pytest.raises(peewee.IntegrityError):
            Wallet.post(wallet_id, DEBIT, D(10), "Order #9", order=("vouchers", order_id))
        Wallet.post(wallet_id, CREDIT, D(10), "Refund for Order #9", order=("vouchers", order_id))
        Wallet.post(wallet_id, DEBIT, D(10), "Topup Order #9", order=("topups", order_id))
    balance, transactions, events, consistent = state(wallet_id)
    assert balance == D(90) and len(transactions) == 4 and len(events) == 4 and consistent


def test_one_wallet_per_currency_and_known_currencies_only(client):
    open_wallet(client, "USD")
    with models.db.connection_context():
        with pytest.raises(Refused, match="already has a USD wallet"):
            Wallet.open(client.id, "usd")
        with pytest.raises(Refused, match="unknown currency 'ZZZ'"):
            Wallet.open(client.id, "ZZZ")
        with pytest.raises(NotFound):
            Wallet.post(2**31 - 1, CREDIT, 1, "x")


operations = st.lists(
    st.tuples(st.sampled_from([CREDIT, DEBIT]), st.decimals(min_value="0.0001", max_value="1000", places=4)),
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from([PREPAID, POSTPAID]), steps=operations)
def test_any_sequence_keeps_the_ledger_invariants(client, kind, steps):
    """For any sequence: balance = Σ transactions after every step, PREPAID never negative,
    a refused debit changes nothing."""
    with models.db.connection_context():
        wallet = Wallet.select().where((Wallet.client == client) & (Wallet.type == kind)).first()
        wallet_id = wallet.id if wallet else Wallet.open(client.id, "USD" if kind == PREPAID else "EUR", kind).id
        for transaction_type, amount in steps:
            before = Wallet.get_by_id(wallet_id).amount
            count = Transaction.select().where(Transaction.wallet == wallet_id).count()
            try:
                Wallet.post(wallet_id, transaction_type, amount, "step")
            except InsufficientBalance:
                assert kind == PREPAID and amount > before
                assert Wallet.get_by_id(wallet_id).amount == before
                assert Transaction.select().where(Transaction.wallet == wallet_id).count() == count
            balance = Wallet.get_by_id(wallet_id).amount
            assert kind == POSTPAID or balance >= 0
            assert Wallet.balance_matches_ledger(wallet_id)
        assert (
            Event.select().where(Event.client == client).count()
            == Transaction.select().join(Wallet).where(Wallet.client == client).count()
        )


def test_concurrent_debits_never_overdraw(client):
    """64 threads debit a PREPAID wallet funded for exactly 20 of them: 20 succeed, 44 are refused."""
    wallet_id = open_wallet(client, funds=D("20") * D("7.3333"))
    barrier = threading.Barrier(64)
    outcomes = []

    def debit():
        barrier.wait()
        with models.db.connection_context():
            try:
                Wallet.post(wallet_id, DEBIT, D("7.3333"), "race")
                outcomes.append("ok")
            except InsufficientBalance:
                outcomes.append("refused")

    threads = [threading.Thread(target=debit) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("ok") == 20 and outcomes.count("refused") == 44
    balance, transactions, events, consistent = state(wallet_id)
    assert balance == 0 and consistent
    assert len([t for t in transactions if t.transaction_type == DEBIT]) == 20
    assert [event.type for event in events].count("wallet.debited") == 20
