"""eSIM orders against a real database (contract 8.4, 8.5, 12, 12.1, 15.1 item 30): the watch job
stores the install state the supplier reports and stops once the eSIM expired (or long after its
validity), keeps the stored state when the supplier cannot answer; detail reads refresh it; and the
mock supplier's install state follows `install_after` and `expire_after`."""

import datetime
import json
import secrets
import types
from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.models import catalogue, esim_orders
from octopus_cards.models.base import utcnow
from octopus_cards.models.esim_orders import WATCH_SCHEDULE, EsimOrder
from octopus_cards.models.jobs import Job
from octopus_cards.models.suppliers import ACTIVE, EXPIRED, NOT_INSTALLED, MockSupplier, TransientSupplierError

from support.orders import funded_client, in_db, ledger_entries

D = Decimal
PRICE = D("9.80")  # 10 less the variant's 2 %
CODE = "LPA:1$smdp.invalid$" + "0123456789ABCDEF" * 2
ICCID = "89" + "1" * 18
NOT_YET = {"is_installed": False, "installed_at": None, "activation_status": NOT_INSTALLED, "activated_at": None}


def installed_state(at, status=ACTIVE):
    return {"is_installed": True, "installed_at": at, "activation_status": status, "activated_at": at}


class FakeSupplier:
    """A supplier whose answers a test chooses: `state` from esim_install_state (or `raises`), a
    fixed eSIM from issue_esim. Background work on its orders would start only in an hour."""

    background_delay = 3600

    def __init__(self, state=None, raises=None):
        self.state, self.raises, self.asked = state, raises, []

    def issue_esim(self, product, order, call_number):
        return {"activation_code": CODE, "iccid": ICCID}

    def esim_install_state(self, product, order, now):
        self.asked.append(now)
        if self.raises is not None:
            raise self.raises
        return dict(self.state)


@pytest.fixture(scope="module")
def product_id(migrated):
    base = 13_000_000 + secrets.randbelow(1_000_000) * 10
    document = {"esim": [{
        "id": base, "name": f"Domain eSIM {base}", "country": "JPN", "currency": "USD",
        "variants": [{"id": base, "name": "Japan 2GB 7 days", "amount": "10.00", "data_amount_gb": 2,
                      "validity_days": 7, "discount": 2}],
    }]}  # fmt: skip
    with models.db.connection_context():
        catalogue.import_catalogue(json.dumps(document))
    return base


@pytest.fixture
def client(migrated):
    return funded_client("esim")


def place(client, product_id):
    """A PENDING order of 10 (9.80 debited), its fulfilment job not due for an hour."""
    return in_db(lambda: esim_orders.place(client.id, product_id, D(10), FakeSupplier()).id)


def job_of(kind, order_id, attempts=1):
    """The order's job of `kind` as a worker holds it after claiming it `attempts` times."""
    job = in_db(Job.get, (Job.kind == kind) & (Job.subject_id == order_id))
    job.attempts = attempts
    return job


@pytest.fixture
def delivered(client, product_id):
    """A DELIVERED order (its fulfilment job run once with the fake's eSIM), with its watch job."""
    order_id = place(client, product_id)
    assert in_db(EsimOrder.work, job_of(EsimOrder.JOB_KIND, order_id), FakeSupplier(), (0.0,)) == "DELIVERED"
    return order_id


def stored(order_id):
    return in_db(EsimOrder.get_by_id, order_id)


def state_of(order):
    return {key: getattr(order, key) for key in ("is_installed", "installed_at", "activation_status", "activated_at")}


def watch(order_id, supplier, attempts=1):
    """Run the order's watch job once; what it returned, and the job row after it."""
    job = job_of(esim_orders.WATCH_KIND, order_id, attempts)
    return in_db(EsimOrder.watch, job, supplier), in_db(Job.get_by_id, job.id)


def rescheduled_in(job):
    """Seconds from now until a rescheduled job is due (None if it finished)."""
    if job.finished_at is not None:
        return None
    assert job.locked_until is None
    return (job.run_after - utcnow()).total_seconds()


# -- placing and delivering -------------------------------------------------------------------------


def test_a_placed_order_is_pending_with_its_debit_and_job(client, product_id):
    order_id = place(client, product_id)
    order = stored(order_id)
    assert (order.status, order.amount, order.total_payable, order.currency) == ("PENDING", D(10), PRICE, "USD")
    assert (order.activation_code, order.iccid, order.activation_status, order.delivered_at) == (None, None, None, None)
    assert ledger_entries("esim", order_id) == [("DEBIT", PRICE)]
    job = job_of(EsimOrder.JOB_KIND, order_id)
    assert job.finished_at is None and job.run_after > job.created_at  # after the supplier's background delay
    assert in_db(Job.get_or_none, (Job.kind == esim_orders.WATCH_KIND) & (Job.subject_id == order_id)) is None


def test_a_delivery_stores_the_esim_and_starts_watching_it(delivered):
    order = stored(delivered)
    assert (order.status, order.activation_code, order.iccid) == ("DELIVERED", CODE, ICCID)
    assert state_of(order) == NOT_YET and order.delivered_at is not None
    assert job_of(EsimOrder.JOB_KIND, delivered).finished_at is not None
    job = job_of(esim_orders.WATCH_KIND, delivered)
    assert job.finished_at is None and job.locked_until is None
    assert job.run_after - order.delivered_at >= datetime.timedelta(seconds=WATCH_SCHEDULE[0])
    assert ledger_entries("esim", delivered) == [("DEBIT", PRICE)]


# -- the watch job ----------------------------------------------------------------------------------


def test_the_watch_stores_an_installed_state_and_looks_again(delivered):
    at = stored(delivered).delivered_at + datetime.timedelta(seconds=30)
    supplier = FakeSupplier(installed_state(at))
    status, job = watch(delivered, supplier)
    assert status == ACTIVE and len(supplier.asked) == 1
    order = stored(delivered)
    assert state_of(order) == installed_state(at)
    assert (order.status, order.activation_code, order.iccid) == ("DELIVERED", CODE, ICCID)  # the row keeps them
    assert abs(rescheduled_in(job) - WATCH_SCHEDULE[1]) <= 2


def test_the_watch_stops_once_the_esim_expired(delivered):
    at = stored(delivered).delivered_at + datetime.timedelta(seconds=30)
    watch(delivered, FakeSupplier(installed_state(at)))
    status, job = watch(delivered, FakeSupplier(installed_state(at, EXPIRED)), attempts=2)
    assert status == EXPIRED and job.finished_at is not None and job.locked_until is None
    assert state_of(stored(delivered)) == installed_state(at, EXPIRED)


def test_the_watch_keeps_looking_while_not_installed(delivered):
    status, job = watch(delivered, FakeSupplier(NOT_YET))
    assert status == NOT_INSTALLED and state_of(stored(delivered)) == NOT_YET
    assert abs(rescheduled_in(job) - WATCH_SCHEDULE[1]) <= 2


def test_a_supplier_that_cannot_answer_leaves_the_stored_state(delivered):
    at = stored(delivered).delivered_at + datetime.timedelta(seconds=30)
    watch(delivered, FakeSupplier(installed_state(at)))
    supplier = FakeSupplier(raises=TransientSupplierError("try later"))
    status, job = watch(delivered, supplier, attempts=2)
    assert status == ACTIVE and len(supplier.asked) == 1
    assert state_of(stored(delivered)) == installed_state(at)
    assert abs(rescheduled_in(job) - WATCH_SCHEDULE[2]) <= 2


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5, 6, 9])
def test_the_watch_schedule_widens(delivered, attempts):
    _, job = watch(delivered, FakeSupplier(NOT_YET), attempts=attempts)
    expected = WATCH_SCHEDULE[min(attempts, len(WATCH_SCHEDULE) - 1)]
    assert abs(rescheduled_in(job) - expected) <= 2


def test_the_watch_gives_up_long_after_the_validity(delivered):
    """Past validity_days (7) + WATCH_DAYS (30) since delivery, an eSIM never reported expired
    is watched no more."""
    past = utcnow() - datetime.timedelta(days=7 + esim_orders.WATCH_DAYS + 1)
    in_db(EsimOrder.update(delivered_at=past).where(EsimOrder.id == delivered).execute)
    status, job = watch(delivered, FakeSupplier(NOT_YET))
    assert status == NOT_INSTALLED and job.finished_at is not None


def test_the_watch_of_an_order_that_is_not_delivered_does_nothing(client, product_id):
    order_id = place(client, product_id)
    in_db(EsimOrder.cancel, order_id)
    in_db(Job.enqueue, esim_orders.WATCH_KIND, order_id)
    supplier = FakeSupplier(raises=AssertionError("the supplier must not be asked"))
    status, job = watch(order_id, supplier)
    assert (status, supplier.asked, job.finished_at is not None) == (None, [], True)
    assert stored(order_id).activation_status is None


# -- detail reads -----------------------------------------------------------------------------------


def test_a_detail_read_stores_the_state_and_hides_the_code_once_installed(client, delivered):
    before = in_db(esim_orders.one_for, client.id, delivered)
    assert (before["activation_code"], before["iccid"], before["activation_status"]) == (CODE, ICCID, NOT_INSTALLED)
    at = stored(delivered).delivered_at + datetime.timedelta(seconds=5)
    shown = in_db(esim_orders.one_for, client.id, delivered, FakeSupplier(installed_state(at)))
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {k: shown[k] for k in ("is_installed", "installed_at", "activation_status", "activated_at")} == {
        "is_installed": True, "installed_at": stamp, "activation_status": ACTIVE, "activated_at": stamp}  # fmt: skip
    assert (shown["activation_code"], shown["iccid"]) == (None, ICCID)
    assert in_db(esim_orders.one_for, client.id, delivered) == shown  # stored
    # A supplier that cannot answer: the stored state.
    assert in_db(esim_orders.one_for, client.id, delivered, FakeSupplier(raises=TransientSupplierError("x"))) == shown


def test_an_expired_esim_is_not_asked_about_again(client, delivered):
    at = stored(delivered).delivered_at
    in_db(esim_orders.one_for, client.id, delivered, FakeSupplier(installed_state(at, EXPIRED)))
    supplier = FakeSupplier(NOT_YET)
    shown = in_db(esim_orders.one_for, client.id, delivered, supplier)
    assert supplier.asked == [] and shown["activation_status"] == EXPIRED


def test_an_order_that_is_not_delivered_is_not_asked_about(client, product_id):
    order_id = place(client, product_id)
    supplier = FakeSupplier(installed_state(utcnow()))
    shown = in_db(esim_orders.one_for, client.id, order_id, supplier)
    assert supplier.asked == [] and (shown["status"], shown["activation_status"]) == ("PENDING", None)


# -- the mock supplier's install state (12.1) -------------------------------------------------------

DELIVERED_AT = datetime.datetime(2025, 1, 15, 12, 0, 0)


def seconds(n):
    return DELIVERED_AT + datetime.timedelta(seconds=n)


@pytest.mark.parametrize(
    "mock, now, expected",
    [(None, seconds(10**6), NOT_YET),
     ({}, seconds(10**6), NOT_YET),
     ({"outcome": "deliver", "expire_after": 5}, seconds(10**6), NOT_YET),  # no install_after: never installed
     ({"install_after": 30}, seconds(0), NOT_YET),
     ({"install_after": 30}, seconds(29.999), NOT_YET),
     ({"install_after": 30}, seconds(30), installed_state(seconds(30))),
     ({"install_after": 30}, seconds(10**6), installed_state(seconds(30))),  # no expire_after: never expires
     ({"install_after": 0}, seconds(0), installed_state(seconds(0))),
     ({"install_after": 0.5}, seconds(0.9), NOT_YET),  # whole seconds: installed after 1 s
     ({"install_after": 0.5}, seconds(1), installed_state(seconds(1))),
     ({"install_after": 30, "expire_after": 60}, seconds(89), installed_state(seconds(30))),
     ({"install_after": 30, "expire_after": 60}, seconds(90), installed_state(seconds(30), EXPIRED)),
     ({"install_after": 30, "expire_after": 60}, seconds(10**6), installed_state(seconds(30), EXPIRED)),
     ({"install_after": 30, "expire_after": 0}, seconds(29), NOT_YET),
     ({"install_after": 30, "expire_after": 0}, seconds(30), installed_state(seconds(30), EXPIRED))],
)  # fmt: skip
def test_the_mock_install_state(mock, now, expected):
    product = types.SimpleNamespace(mock=mock)
    order = types.SimpleNamespace(delivered_at=DELIVERED_AT)
    assert MockSupplier().esim_install_state(product, order, now) == expected
