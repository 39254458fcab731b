"""eSIM orders (contract 8.4-8.6, 11, 12, 15.1 items 43, 46): placed in one transaction (order row,
wallet debit, and the job that fulfils it, held for the request that waits for it), fulfilled
through the supplier port, settled in one transaction (status, activation code, failure fields,
refund, receipt) by a compare-and-set on the status, so that no answer settles an order twice.

A delivered eSIM's install state (NOT_INSTALLED → ACTIVE → EXPIRED) is the supplier's: detail reads
refresh it, and a watch job per delivered order asks again on a widening schedule until it expires.
"""

import datetime
import logging

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, IntegrityError

from octopus_cards.models.base import BaseModel, utcnow, write_txn
from octopus_cards.models.clients import Client
from octopus_cards.models.encoding import timestamp
from octopus_cards.models.esim import VERTICAL, price
from octopus_cards.models.exceptions import DuplicateReference, NotFound, Refused
from octopus_cards.models.jobs import Job
from octopus_cards.models.money import MoneyField, plain, shown
from octopus_cards.models.products import EsimProduct, EsimVariant
from octopus_cards.models.receipts import Receipt, esim_receipt
from octopus_cards.models.reference_data import Currency
from octopus_cards.models.suppliers import EXPIRED, NOT_INSTALLED, SupplierRefused, TransientSupplierError
from octopus_cards.models.wallets import CREDIT, DEBIT, Wallet

logger = logging.getLogger("octopus_cards.esim")

PENDING, DELIVERED, FAILED, CANCELLED = "PENDING", "DELIVERED", "FAILED", "CANCELLED"
STATUSES = (PENDING, DELIVERED, FAILED, CANCELLED)
STATUS_TEXTS = {
    PENDING: "Order submitted for fulfilment",
    DELIVERED: "eSIM delivered",
    FAILED: "eSIM order failed",
    CANCELLED: "Order cancelled",
}
# What an order that spent its retry budget ends with (contract 15.1, item 30).
SUPPLIER_UNAVAILABLE = ("SUPPLIER_UNAVAILABLE", "The supplier did not respond", False)
JOB_KIND = "esim_order"
WATCH_KIND = "esim_state"
# Seconds between the watch job's looks at a delivered eSIM's install state: often while it is new,
# hourly later, and no more once it expired or after WATCH_DAYS past its validity.
WATCH_SCHEDULE = (10, 30, 60, 300, 900, 3600)
WATCH_DAYS = 30


class EsimOrder(BaseModel):
    client = ForeignKeyField(Client, backref="esim_orders", on_delete="CASCADE")
    product = ForeignKeyField(EsimProduct)
    product_name = CharField(max_length=200)
    variant = ForeignKeyField(EsimVariant)
    country_code = CharField(max_length=3)
    data_amount_gb = MoneyField()
    validity_days = IntegerField()
    wallet = ForeignKeyField(Wallet)
    amount = MoneyField()
    currency = CharField(max_length=3)
    total_payable = MoneyField()
    client_reference = CharField(max_length=255, null=True)
    status = CharField()
    failure_code = CharField(null=True)
    failure_reason = CharField(null=True)
    is_user_fixable = BooleanField(null=True)
    notification_email = CharField(max_length=254, null=True)
    transaction_id = IntegerField(null=True)  # the debit; none when a 100 % discount left nothing to pay
    activation_code = CharField(null=True)
    iccid = CharField(null=True)
    activation_status = CharField(null=True)
    is_installed = BooleanField(default=False)
    installed_at = DateTimeField(null=True)
    activated_at = DateTimeField(null=True)
    delivered_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    completed_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("client", "client_reference"), True), (("client", "id"), False))


def place(client_id, product_id, amount, supplier, wallet_id=None, reference=None, hold=None):
    """Price, check and record an order with its debit and its job, in one transaction. `hold`
    (seconds): the caller fulfils it at once, so the job is claimed for it that long."""

    def reference_unused():  # the first business rule (contract 11)
        if (
            reference is not None
            and EsimOrder.select()
            .where((EsimOrder.client == client_id) & (EsimOrder.client_reference == reference))
            .exists()
        ):
            raise DuplicateReference()

    priced = price(client_id, product_id, amount, wallet_id, reference_unused)
    product, variant, quoted = priced.product, priced.variant, priced.charges
    try:
        with write_txn():
            order = EsimOrder.create(
                client=client_id, product=product.id, product_name=product.name, variant=variant.id,
                country_code=product.country_code, data_amount_gb=variant.data_amount_gb,
                validity_days=variant.validity_days, wallet=priced.wallet.id, amount=quoted.non_discounted_total,
                currency=quoted.source_currency, total_payable=quoted.total_payable, client_reference=reference,
                status=PENDING,
            )  # fmt: skip
            if quoted.total_payable > 0:
                fx = None if quoted.forex_rate is None else (quoted.source_currency, quoted.destination_currency,
                                                             quoted.forex_rate)  # fmt: skip
                debit = Wallet.post(
                    priced.wallet.id, DEBIT, quoted.total_payable, f"eSIM Order #{order.id}", fx, (VERTICAL, order.id)
                )
                EsimOrder.update(transaction_id=debit["id"]).where(EsimOrder.id == order.id).execute()
            Job.enqueue(JOB_KIND, order.id, held_for=hold, after=supplier.background_delay)
    except IntegrityError:  # a concurrent create took the reference first
        raise DuplicateReference() from None
    return order.id


def work(job, supplier, retry_schedule):
    """Run a fulfilment job once: ask the supplier for the eSIM, settle what it answers, or schedule
    a retry. Returns the order's status as this run left it (None: there was nothing to do)."""
    order = EsimOrder.get_or_none(EsimOrder.id == job.subject_id)
    if order is None or order.status != PENDING:
        job.finish()
        return None
    try:
        esim = supplier.issue_esim(order.product, order, job.attempts)
    except TransientSupplierError as error:
        if job.attempts > len(retry_schedule):  # the budget is spent (contract 15.1, item 30)
            return conclude(job, order, FAILED, failure=SUPPLIER_UNAVAILABLE)
        job.retry_after(retry_schedule[job.attempts - 1], str(error))
        return PENDING
    except SupplierRefused as refused:
        if refused.outcome == "cancel":
            return conclude(job, order, CANCELLED)
        return conclude(job, order, FAILED, failure=(refused.failure_code, refused.failure_reason, True))
    return conclude(job, order, DELIVERED, esim=esim)


def conclude(job, order, status, failure=None, esim=None):
    """Settle the order and finish its job in one transaction; the status the order has then
    (someone may have settled it first)."""
    if settle(order, status, failure, esim, finishing=job):
        return status
    job.finish()
    return EsimOrder.get_by_id(order.id).status


def settle(order, status, failure=None, esim=None, finishing=None):
    """Move a PENDING order to its final `status`: DELIVERED with its `esim` (activation code and
    ICCID) and a watch on its install state; otherwise with its full refund, and `failure` (code,
    reason, user-fixable) when it failed; its receipt; in one transaction. False if it was settled
    meanwhile. `finishing`: a job that ends in the same transaction."""
    code, reason, fixable = failure or (None, None, None)
    now = utcnow()
    delivered = status == DELIVERED
    with write_txn():
        moved = (
            EsimOrder.update(
                status=status,
                failure_code=code,
                failure_reason=reason,
                is_user_fixable=fixable,
                completed_at=now,
                delivered_at=now if delivered else None,
                activation_status=NOT_INSTALLED if delivered else None,
                **(esim or {}),
            )  # fmt: skip
            .where((EsimOrder.id == order.id) & (EsimOrder.status == PENDING))
            .execute()
        )
        if moved != 1:
            logger.info("eSIM order %d was settled meanwhile; a late supplier answer is discarded", order.id)
            return False
        if delivered:
            Job.enqueue(WATCH_KIND, order.id, after=WATCH_SCHEDULE[0])
        elif order.total_payable > 0:
            Wallet.post(order.wallet_id, CREDIT, order.total_payable, f"Refund for eSIM Order #{order.id}",
                        order=(VERTICAL, order.id))  # fmt: skip
        email = EsimOrder.select(EsimOrder.notification_email).where(EsimOrder.id == order.id).scalar()
        if email:
            order.failure_code, order.failure_reason = code, reason
            Receipt.queue(VERTICAL, order.id, order.client_id, email, *esim_receipt(order, status))
        if finishing is not None:
            finishing.finish()
    return True


def refresh_install_state(order, supplier):
    """Ask the supplier for a delivered eSIM's install state and store what changed; a supplier
    that cannot answer now leaves the stored state. Returns whether the eSIM is still to watch."""
    try:
        state = supplier.esim_install_state(order.product, order, utcnow())
    except TransientSupplierError:
        return True
    if any(getattr(order, key) != value for key, value in state.items()):
        with write_txn():
            EsimOrder.update(**state).where((EsimOrder.id == order.id) & (EsimOrder.status == DELIVERED)).execute()
    return state["activation_status"] != EXPIRED


def watch(job, supplier):
    """Run a watch job once: refresh the install state, then look again later, or stop."""
    order = EsimOrder.get_or_none(EsimOrder.id == job.subject_id)
    if order is None or order.status != DELIVERED:
        job.finish()
        return None
    horizon = order.delivered_at + datetime.timedelta(days=order.validity_days + WATCH_DAYS)
    if not refresh_install_state(order, supplier) or utcnow() > horizon:
        job.finish()
    else:
        job.retry_after(WATCH_SCHEDULE[min(job.attempts, len(WATCH_SCHEDULE) - 1)], None)
    return EsimOrder.get_by_id(order.id).activation_status


def cancel(order_id):
    """The operator's cancel (contract 16.5, 15.1 item 32): a PENDING order ends CANCELLED with its
    full refund; a supplier answer still on its way is discarded when it comes."""
    order = EsimOrder.get_or_none(EsimOrder.id == order_id)
    if order is None:
        raise Refused(f"no esim order with id {order_id}")
    if order.status != PENDING or not settle(order, CANCELLED):
        raise Refused(f"esim order {order_id} is {EsimOrder.get_by_id(order_id).status}, not PENDING")


def set_notification_email(client_id, order_id, email):
    """Contract 8.6: store the receipt address; an order already final gets its receipt now, unless
    it had one."""
    with write_txn():
        # The row first: its lock orders this with a concurrent settle, whose receipt then has the
        # address, or whose final status the read below sees.
        stored = (
            EsimOrder.update(notification_email=email)
            .where((EsimOrder.id == order_id) & (EsimOrder.client == client_id))
            .execute()
        )
        if not stored:
            raise NotFound("Order")
        order = find(client_id, order_id)
        had_receipt = Receipt.select().where((Receipt.vertical == VERTICAL) & (Receipt.order_id == order_id)).exists()
        if order.status != PENDING and not had_receipt:
            Receipt.queue(VERTICAL, order.id, client_id, email, *esim_receipt(order, order.status))
    return public(order)


def with_precision():
    """Orders with the precision of the currency they were priced in (`order.precision`)."""
    return (
        EsimOrder.select(EsimOrder, Currency.precision)
        .join(Currency, on=(Currency.currency == EsimOrder.currency))
        .objects()
    )


def find(client_id, order_id):
    order = with_precision().where((EsimOrder.id == order_id) & (EsimOrder.client == client_id)).get_or_none()
    if order is None:
        raise NotFound("Order")
    return order


def public(order, with_codes=True):
    """The eSIM order object (contract 8.4) of an order read `with_precision`; list items leave
    out the activation code and ICCID, and the code is null once the eSIM is installed."""
    data = {
        "id": order.id,
        "client_reference": order.client_reference,
        "status": order.status,
        "status_text": STATUS_TEXTS[order.status],
        "product_name": order.product_name,
        "country_code": order.country_code,
        "data_amount_gb": plain(order.data_amount_gb),
        "validity_days": order.validity_days,
        "amount": shown(order.amount, order.precision),
        "currency": order.currency,
        "activation_status": order.activation_status,
        "is_installed": order.is_installed,
        "installed_at": timestamp(order.installed_at) if order.installed_at else None,
        "activated_at": timestamp(order.activated_at) if order.activated_at else None,
        "transaction_id": order.transaction_id,
        "created_at": timestamp(order.created_at),
        "failure_code": order.failure_code,
        "failure_reason": order.failure_reason,
        "is_user_fixable": order.is_user_fixable,
        "notification_email": order.notification_email,
    }
    if with_codes:
        data["activation_code"] = None if order.is_installed else order.activation_code
        data["iccid"] = order.iccid
    return data


def one_for(client_id, order_id, supplier=None):
    """The client's order; with `supplier`, a delivered eSIM's install state refreshed from it first
    while it is not installed or not yet expired (contract 8.5)."""
    order = find(client_id, order_id)
    if supplier is not None and order.status == DELIVERED and order.activation_status != EXPIRED:
        refresh_install_state(order, supplier)
        order = find(client_id, order_id)
    return public(order)


def status_of(order_id):
    return EsimOrder.select(EsimOrder.status).where(EsimOrder.id == order_id).scalar()


def page_for(client_id, status, reference, page, per_page):
    """The client's orders, newest first, without codes (contract 8.5)."""
    query = with_precision().where(EsimOrder.client == client_id)
    if status is not None:
        query = query.where(EsimOrder.status == status)
    if reference is not None:
        query = query.where(EsimOrder.client_reference == reference)
    total = query.count()
    rows = query.order_by(EsimOrder.id.desc()).paginate(page, per_page)
    return [public(order, with_codes=False) for order in rows], total


def operator_listing(client_id=None, status=None):
    """`order list --json` rows (contract 16.5), newest first."""
    query = EsimOrder.select().order_by(EsimOrder.id.desc())
    if client_id is not None:
        query = query.where(EsimOrder.client == client_id)
    if status is not None:
        query = query.where(EsimOrder.status == status)
    return [
        {"vertical": VERTICAL, "id": o.id, "client_id": o.client_id, "status": o.status,
         "client_reference": o.client_reference, "created_at": timestamp(o.created_at)}
        for o in query
    ]  # fmt: skip


def operator_view(order_id):
    """`order show`: the order as its client sees it, the activation code null (contract 16.5)."""
    order = with_precision().where(EsimOrder.id == order_id).get_or_none()
    if order is None:
        raise Refused(f"no esim order with id {order_id}")
    return dict(public(order), activation_code=None)
