"""Top-up orders against a real database (contract 7.7, 7.8, 12, 15.1 items 30, 32): the detail
refresh settles what the supplier says, fulfilment jobs settle once, an operator's cancel wins over
a supplier answer still on its way, and every order is refunded at most once."""

import json
import secrets
import threading
from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.models import catalogue, topup_orders
from octopus_cards.models.exceptions import Refused
from octopus_cards.models.jobs import Job
from octopus_cards.models.receipts import Receipt
from octopus_cards.models.suppliers import SupplierRefused, TransientSupplierError
from octopus_cards.models.topup_orders import TopupOrder

from support.orders import balance, funded_client, in_db, ledger_entries

D = Decimal
PRICE = D("9.80")  # 10 less the variant's 2 %


class FakeSupplier:
    """A supplier whose answers a test chooses: `status` from topup_status, `raises` from both
    calls, `meanwhile` run inside top_up before it answers (something happening while the call is
    in flight). Background work on its orders would start only in an hour."""

    background_delay = 3600

    def __init__(self, status=None, raises=None, meanwhile=None):
        self.status, self.raises, self.meanwhile = status, raises, meanwhile
        self.status_calls, self.top_up_calls = 0, []

    def topup_status(self, product, order):
        self.status_calls += 1
        if self.raises is not None:
            raise self.raises
        return self.status

    def top_up(self, product, order, call_number):
        self.top_up_calls.append(call_number)
        if self.meanwhile is not None:
            self.meanwhile()
        if self.raises is not None:
            raise self.raises


@pytest.fixture(scope="module")
def product_id(migrated):
    base = 7_000_000 + secrets.randbelow(1_000_000) * 10
    document = {"topups": [{
        "id": base, "name": f"Domain game {base}", "type": "GAMING", "country": "GLO", "currency": "USD",
        "input_fields": [{"name": "player_id", "label": "Player ID", "required": True}],
        "variants": [{"name": "Any amount", "min_amount": "1", "max_amount": "100", "discount": 2}],
    }]}  # fmt: skip
    with models.db.connection_context():
        catalogue.import_catalogue(json.dumps(document))
    return base


@pytest.fixture
def client(migrated):
    return funded_client("topups")


@pytest.fixture
def order_id(client, product_id):
    """A PENDING order of 10 (9.80 debited), its job not due for an hour."""
    with models.db.connection_context():
        return topup_orders.place(client.id, product_id, 10, FakeSupplier(), {"player_id": "p-1"}).id


def placed(*args):
    return topup_orders.place(*args).id


def set_address(client_id, order_id, email):
    return TopupOrder.set_notification_email(client_id, order_id, email).public()


def stored(order_id):
    return in_db(TopupOrder.get_by_id, order_id)


def view(client, order_id, supplier=None):
    return in_db(topup_orders.one_for, client.id, order_id, supplier)


def job_of(order_id, attempts=1):
    """The order's fulfilment job as a worker holds it after claiming it `attempts` times."""
    job = in_db(Job.get, (Job.kind == TopupOrder.JOB_KIND) & (Job.subject_id == order_id))
    job.attempts = attempts
    return job


def work(order_id, supplier, attempts=1, schedule=(0.0, 0.0)):
    job = job_of(order_id, attempts)
    return in_db(TopupOrder.work, job, supplier, schedule), in_db(Job.get_by_id, job.id)


def test_a_placed_order_is_pending_with_its_debit_and_job(client, order_id):
    order = stored(order_id)
    assert (order.status, order.total_payable, order.completed_at, order.input_data) == (
        "PENDING", PRICE, None, {"player_id": "p-1"})  # fmt: skip
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE)] and balance(client) == 100 - PRICE
    job = job_of(order_id)
    assert job.finished_at is None and job.run_after > job.created_at  # after the supplier's background delay


def test_a_refresh_that_hears_delivered_settles_it_without_refund(client, order_id):
    supplier = FakeSupplier(status="DELIVERED")
    shown = view(client, order_id, supplier)
    assert supplier.status_calls == 1 and supplier.top_up_calls == []
    assert (shown["status"], shown["status_text"]) == ("DELIVERED", "Top-up delivered")
    assert (shown["failure_code"], shown["failure_reason"], shown["is_user_fixable"]) == (None, None, None)
    assert shown["completed_at"] is not None
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE)] and balance(client) == 100 - PRICE
    # Its job then has nothing to do: the supplier is not asked again.
    late = FakeSupplier(raises=AssertionError("the supplier must not be called"))
    status, job = work(order_id, late)
    assert (status, late.top_up_calls, job.finished_at is not None) == (None, [], True)
    assert view(client, order_id) == shown


def test_a_refresh_that_hears_a_refusal_fails_it_with_its_refund(client, order_id):
    shown = view(client, order_id, FakeSupplier(raises=SupplierRefused("fail", "X", "Y")))
    assert (shown["status"], shown["status_text"]) == ("FAILED", "Top-up failed")
    assert (shown["failure_code"], shown["failure_reason"], shown["is_user_fixable"]) == ("X", "Y", True)
    assert shown["completed_at"] is not None
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE), ("CREDIT", PRICE)] and balance(client) == 100
    status, job = work(order_id, FakeSupplier())
    assert status is None and job.finished_at is not None
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE), ("CREDIT", PRICE)]
    assert view(client, order_id) == shown


def test_a_refresh_that_hears_a_cancel_cancels_it_with_its_refund(client, order_id):
    shown = view(client, order_id, FakeSupplier(raises=SupplierRefused("cancel")))
    assert (shown["status"], shown["status_text"], shown["failure_code"]) == ("CANCELLED", "Order cancelled", None)
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE), ("CREDIT", PRICE)] and balance(client) == 100


@pytest.mark.parametrize(
    "supplier",
    [
        FakeSupplier(raises=TransientSupplierError("try later")),
        FakeSupplier(status=None),
        FakeSupplier(status="PENDING"),
    ],
    ids=["transient", "nothing-yet", "pending"],
)
def test_a_refresh_without_a_final_word_changes_nothing(client, order_id, supplier):
    before = view(client, order_id)
    assert view(client, order_id, supplier) == before
    assert before["status"] == "PENDING" and before["completed_at"] is None
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE)] and balance(client) == 100 - PRICE
    assert job_of(order_id).finished_at is None


def test_a_final_order_is_not_refreshed(client, order_id):
    status, _ = work(order_id, FakeSupplier())
    assert status == "DELIVERED"
    supplier = FakeSupplier(raises=SupplierRefused("fail", "X", "Y"))
    assert view(client, order_id, supplier)["status"] == "DELIVERED" and supplier.status_calls == 0


def test_a_late_answer_after_an_operators_cancel_changes_nothing(client, order_id):
    in_db(TopupOrder.cancel, order_id)
    cancelled = view(client, order_id)
    assert (cancelled["status"], cancelled["completed_at"] is not None) == ("CANCELLED", True)
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE), ("CREDIT", PRICE)] and balance(client) == 100
    status, job = work(order_id, FakeSupplier())
    assert status is None and job.finished_at is not None
    assert view(client, order_id) == cancelled
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE), ("CREDIT", PRICE)] and balance(client) == 100


@pytest.mark.parametrize(
    "answer",
    [None, SupplierRefused("fail", "X", "Y"), SupplierRefused("cancel")],
    ids=["delivered", "failed", "cancelled"],
)
def test_an_operators_cancel_wins_over_a_call_in_flight(client, order_id, answer):
    """15.1, item 32: the cancel comes (from another connection) while the supplier call runs."""

    def operator_cancels():
        thread = threading.Thread(target=in_db, args=(TopupOrder.cancel, order_id))
        thread.start()
        thread.join()

    supplier = FakeSupplier(raises=answer, meanwhile=operator_cancels)
    status, job = work(order_id, supplier)
    assert supplier.top_up_calls == [1]
    assert status == "CANCELLED" and job.finished_at is not None
    shown = view(client, order_id)
    assert (shown["status"], shown["failure_code"], shown["is_user_fixable"]) == ("CANCELLED", None, None)
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE), ("CREDIT", PRICE)] and balance(client) == 100


def test_the_operator_cannot_cancel_a_final_or_unknown_order(client, order_id):
    assert work(order_id, FakeSupplier())[0] == "DELIVERED"
    with pytest.raises(Refused, match="DELIVERED"):
        in_db(TopupOrder.cancel, order_id)
    with pytest.raises(Refused, match="no topups order with id 2147483647"):
        in_db(TopupOrder.cancel, 2147483647)
    assert stored(order_id).status == "DELIVERED" and ledger_entries("topups", order_id) == [("DEBIT", PRICE)]


def test_transient_failures_are_retried_until_the_budget_is_spent(client, order_id):
    """15.1, item 30: 1 + len(schedule) calls, then FAILED SUPPLIER_UNAVAILABLE with its refund."""
    supplier = FakeSupplier(raises=TransientSupplierError("down"))
    for attempt in (1, 2):
        status, job = work(order_id, supplier, attempts=attempt)
        assert status == "PENDING" and job.finished_at is None and job.last_error == "down"
        assert stored(order_id).status == "PENDING" and ledger_entries("topups", order_id) == [("DEBIT", PRICE)]
    status, job = work(order_id, supplier, attempts=3)
    assert status == "FAILED" and job.finished_at is not None and supplier.top_up_calls == [1, 2, 3]
    order = stored(order_id)
    assert (order.failure_code, order.failure_reason, order.is_user_fixable) == (
        "SUPPLIER_UNAVAILABLE", "The supplier did not respond", False)  # fmt: skip
    assert ledger_entries("topups", order_id) == [("DEBIT", PRICE), ("CREDIT", PRICE)] and balance(client) == 100


def test_concurrent_settles_settle_once(client, product_id):
    """A delivery and a failure settling one order at once: one wins, refunded at most once."""
    for _ in range(5):
        order_id = in_db(placed, client.id, product_id, 10, FakeSupplier(), {"player_id": "p"})
        order = stored(order_id)
        barrier, results = threading.Barrier(2), {}

        def settle(status, failure=None, order=order, barrier=barrier, results=results):
            barrier.wait()
            results[status] = in_db(order.settle, status, failure)

        threads = [threading.Thread(target=settle, args=("DELIVERED",)),
                   threading.Thread(target=settle, args=("FAILED", ("X", "Y", True)))]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results.values()) == [False, True]
        winner = stored(order_id).status
        assert results[winner] is True
        expected = [("DEBIT", PRICE)] + ([("CREDIT", PRICE)] if winner == "FAILED" else [])
        assert ledger_entries("topups", order_id) == expected
    balance(client)  # equal to its ledger


def test_settling_queues_the_receipt_of_an_order_with_an_address(client, order_id):
    in_db(TopupOrder.update(notification_email="buyer@example.com").where(TopupOrder.id == order_id).execute)
    assert work(order_id, FakeSupplier(raises=SupplierRefused("fail", "X", "Player ID not found")))[0] == "FAILED"
    (receipt,) = in_db(lambda: list(Receipt.select().where((Receipt.vertical == "topups")
                                                           & (Receipt.order_id == order_id))))  # fmt: skip
    assert (receipt.recipient, receipt.client_id, receipt.status) == ("buyer@example.com", client.id, "pending")
    assert f"#{order_id}" in receipt.subject and f"#{order_id}" in receipt.text
    assert "refund" in receipt.text.lower()
    # An address set afterwards does not queue a second receipt.
    shown = in_db(set_address, client.id, order_id, "other@example.com")
    assert shown["notification_email"] == "other@example.com"
    assert in_db(Receipt.select().where((Receipt.vertical == "topups") & (Receipt.order_id == order_id)).count) == 1


def test_a_failed_orders_receipt_gives_the_reason_whichever_way_it_is_queued(client, product_id, order_id):
    """topup_receipt writes the failure reason of a FAILED order: the receipt queued by the settle
    itself says the same as the one queued by an address set once the order is final."""
    in_db(TopupOrder.update(notification_email="buyer@example.com").where(TopupOrder.id == order_id).execute)
    failed = FakeSupplier(raises=SupplierRefused("fail", "X", "Player ID not found"))
    assert work(order_id, failed)[0] == "FAILED"
    later = in_db(placed, client.id, product_id, 10, FakeSupplier(), {"player_id": "p"})
    assert work(later, failed)[0] == "FAILED"
    in_db(set_address, client.id, later, "buyer@example.com")

    def text(order):
        receipt = in_db(Receipt.get, (Receipt.vertical == "topups") & (Receipt.order_id == order))
        return receipt.text.replace(f"#{order}", "#N").replace(f"/{order}.", "/N.")

    assert "Player ID not found" in text(later)
    assert text(order_id) == text(later)
