"""Top-up orders (contract 7.7-7.9, 11, 12): placed in one transaction (order row, wallet debit,
and the job that fulfils it), always fulfilled in the background through the supplier port,
settled in one transaction (status, failure fields, refund, receipt). Settling is a
compare-and-set on the order's status, so a retried, late or concurrent answer can neither
settle an order twice nor refund it twice.
"""

import logging

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, IntegrityError

from octopus_cards.models.base import BaseModel, utcnow, write_txn
from octopus_cards.models.clients import Client
from octopus_cards.models.encoding import timestamp
from octopus_cards.models.exceptions import DuplicateReference, NotFound, Refused
from octopus_cards.models.jobs import Job
from octopus_cards.models.money import MoneyField, shown
from octopus_cards.models.products import JSONField, TopupProduct, TopupVariant
from octopus_cards.models.receipts import Receipt, topup_receipt
from octopus_cards.models.reference_data import Currency
from octopus_cards.models.suppliers import SupplierRefused, TransientSupplierError
from octopus_cards.models.topups import check_input, price
from octopus_cards.models.wallets import CREDIT, DEBIT, Wallet

logger = logging.getLogger("octopus_cards.topups")

PENDING, DELIVERED, FAILED, CANCELLED = "PENDING", "DELIVERED", "FAILED", "CANCELLED"
STATUSES = (PENDING, DELIVERED, FAILED, CANCELLED)
STATUS_TEXTS = {
    PENDING: "Order submitted for fulfilment",
    DELIVERED: "Top-up delivered",
    FAILED: "Top-up failed",
    CANCELLED: "Order cancelled",
}
# What an order that spent its retry budget ends with (contract 15.1, item 30).
SUPPLIER_UNAVAILABLE = ("SUPPLIER_UNAVAILABLE", "The supplier did not respond", False)
JOB_KIND = "topup_order"
VERTICAL = "topups"


class TopupOrder(BaseModel):
    client = ForeignKeyField(Client, backref="topup_orders", on_delete="CASCADE")
    product = ForeignKeyField(TopupProduct)
    product_name = CharField(max_length=200)
    variant = ForeignKeyField(TopupVariant)
    variant_name = CharField(max_length=200)
    country_code = CharField(max_length=3)
    wallet = ForeignKeyField(Wallet)
    amount = MoneyField()
    currency = CharField(max_length=3)
    total_payable = MoneyField()
    input_data = JSONField(null=True)
    client_reference = CharField(max_length=255, null=True)
    status = CharField()
    failure_code = CharField(null=True)
    failure_reason = CharField(null=True)
    is_user_fixable = BooleanField(null=True)
    notification_email = CharField(max_length=254, null=True)
    transaction_id = IntegerField(null=True)  # the debit; none when a 100 % discount left nothing to pay
    created_at = DateTimeField(default=utcnow)
    completed_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("client", "client_reference"), True), (("client", "id"), False))


def place(client_id, product_id, amount, supplier, input_data=None, category=None, wallet_id=None, reference=None):
    """Price, check and record an order with its debit and its job, in one transaction."""

    def before_rules(product):
        check_input(product, input_data)
        if (
            reference is not None
            and TopupOrder.select()
            .where((TopupOrder.client == client_id) & (TopupOrder.client_reference == reference))
            .exists()
        ):  # the first business rule (contract 11)
            raise DuplicateReference()

    priced = price(client_id, product_id, amount, category, wallet_id, before_rules)
    product, variant, quoted = priced.product, priced.variant, priced.charges
    try:
        with write_txn():
            order = TopupOrder.create(
                client=client_id, product=product.id, product_name=product.name, variant=variant.id,
                variant_name=variant.name, country_code=product.country_code, wallet=priced.wallet.id,
                amount=quoted.non_discounted_total, currency=quoted.source_currency,
                total_payable=quoted.total_payable, input_data=input_data, client_reference=reference,
                status=PENDING,
            )  # fmt: skip
            if quoted.total_payable > 0:
                fx = None if quoted.forex_rate is None else (quoted.source_currency, quoted.destination_currency,
                                                             quoted.forex_rate)  # fmt: skip
                debit = Wallet.post(
                    priced.wallet.id, DEBIT, quoted.total_payable, f"Topup Order #{order.id}", fx, (VERTICAL, order.id)
                )
                order.transaction_id = debit["id"]
                TopupOrder.update(transaction_id=debit["id"]).where(TopupOrder.id == order.id).execute()
            Job.enqueue(JOB_KIND, order.id, after=supplier.background_delay)
    except IntegrityError:  # a concurrent create took the reference first
        raise DuplicateReference() from None
    return order.id


def work(job, supplier, retry_schedule):
    """Run a fulfilment job once: ask the supplier, settle what it answers, or schedule a retry.
    Returns the order's status as this run left it (None: there was nothing to do)."""
    order = TopupOrder.get_or_none(TopupOrder.id == job.subject_id)
    if order is None or order.status != PENDING:
        job.finish()
        return None
    try:
        supplier.top_up(order.product, order, job.attempts)
    except TransientSupplierError as error:
        if job.attempts > len(retry_schedule):  # the budget is spent (contract 15.1, item 30)
            return conclude(job, order, FAILED, SUPPLIER_UNAVAILABLE)
        job.retry_after(retry_schedule[job.attempts - 1], str(error))
        return PENDING
    except SupplierRefused as refused:
        if refused.outcome == "cancel":
            return conclude(job, order, CANCELLED)
        return conclude(job, order, FAILED, (refused.failure_code, refused.failure_reason, True))
    return conclude(job, order, DELIVERED)


def conclude(job, order, status, failure=None):
    """Settle the order and finish its job in one transaction; the status the order has then
    (someone may have settled it first)."""
    if settle(order, status, failure, finishing=job):
        return status
    job.finish()
    return TopupOrder.get_by_id(order.id).status


def settle(order, status, failure=None, finishing=None):
    """Move a PENDING order to its final `status`, with `failure` (code, reason, user-fixable) when
    it failed, its full refund when it did not deliver, and its receipt, in one transaction; False
    if it was settled meanwhile. `finishing`: a job that ends in the same transaction."""
    code, reason, fixable = failure or (None, None, None)
    with write_txn():
        moved = (
            TopupOrder.update(
                status=status, failure_code=code, failure_reason=reason, is_user_fixable=fixable, completed_at=utcnow()
            )  # fmt: skip
            .where((TopupOrder.id == order.id) & (TopupOrder.status == PENDING))
            .execute()
        )
        if moved != 1:
            logger.info("top-up order %d was settled meanwhile; a late supplier answer is discarded", order.id)
            return False
        if status != DELIVERED and order.total_payable > 0:
            Wallet.post(order.wallet_id, CREDIT, order.total_payable, f"Refund for Topup Order #{order.id}",
                        order=(VERTICAL, order.id))  # fmt: skip
        email = TopupOrder.select(TopupOrder.notification_email).where(TopupOrder.id == order.id).scalar()
        if email:
            order.failure_code, order.failure_reason = code, reason
            Receipt.queue(VERTICAL, order.id, order.client_id, email, *topup_receipt(order, status))
        if finishing is not None:
            finishing.finish()
    return True


def refresh(order, supplier):
    """Contract 7.8: a PENDING order's status, fresh from the supplier; what it says is settled
    here as the background work would. A supplier that cannot answer now leaves it as stored."""
    try:
        news = supplier.topup_status(order.product, order)
    except TransientSupplierError:
        return
    except SupplierRefused as refused:
        if refused.outcome == "cancel":
            settle(order, CANCELLED)
        else:
            settle(order, FAILED, (refused.failure_code, refused.failure_reason, True))
        return
    if news == DELIVERED:
        settle(order, DELIVERED)


def cancel(order_id):
    """The operator's cancel (contract 16.5, 15.1 item 32): a PENDING order ends CANCELLED with its
    full refund; a supplier answer still on its way is discarded when it comes."""
    order = TopupOrder.get_or_none(TopupOrder.id == order_id)
    if order is None:
        raise Refused(f"no topups order with id {order_id}")
    if order.status != PENDING or not settle(order, CANCELLED):
        raise Refused(f"topups order {order_id} is {TopupOrder.get_by_id(order_id).status}, not PENDING")


def set_notification_email(client_id, order_id, email):
    """Contract 7.9: store the receipt address; an order already final gets its receipt now, unless
    it had one."""
    with write_txn():
        # The row first: its lock orders this with a concurrent settle, whose receipt then has the
        # address, or whose final status the read below sees.
        stored = (
            TopupOrder.update(notification_email=email)
            .where((TopupOrder.id == order_id) & (TopupOrder.client == client_id))
            .execute()
        )
        if not stored:
            raise NotFound("Order")
        order = find(client_id, order_id)
        had_receipt = Receipt.select().where((Receipt.vertical == VERTICAL) & (Receipt.order_id == order_id)).exists()
        if order.status != PENDING and not had_receipt:
            Receipt.queue(VERTICAL, order.id, client_id, email, *topup_receipt(order, order.status))
    return public(order)


def with_precision():
    """Orders with the precision of the currency they were priced in (`order.precision`)."""
    return (
        TopupOrder.select(TopupOrder, Currency.precision)
        .join(Currency, on=(Currency.currency == TopupOrder.currency))
        .objects()
    )


def find(client_id, order_id):
    order = with_precision().where((TopupOrder.id == order_id) & (TopupOrder.client == client_id)).get_or_none()
    if order is None:
        raise NotFound("Order")
    return order


def public(order):
    """The top-up order object (contract 7.7), of an order read `with_precision`."""
    precision = order.precision
    return {
        "id": order.id,
        "client_reference": order.client_reference,
        "product_id": order.product_id,
        "product_name": order.product_name,
        "variant_name": order.variant_name,
        "country_code": order.country_code,
        "amount": shown(order.amount, precision),
        "currency": order.currency,
        "status": order.status,
        "status_text": STATUS_TEXTS[order.status],
        "transaction_id": order.transaction_id,
        "failure_code": order.failure_code,
        "failure_reason": order.failure_reason,
        "is_user_fixable": order.is_user_fixable,
        "notification_email": order.notification_email,
        "created_at": timestamp(order.created_at),
        "completed_at": timestamp(order.completed_at) if order.completed_at else None,
    }


def one_for(client_id, order_id, supplier=None):
    """The client's order; with `supplier`, a PENDING one refreshed from it first (contract 7.8)."""
    order = find(client_id, order_id)
    if supplier is not None and order.status == PENDING:
        refresh(order, supplier)
        order = find(client_id, order_id)
    return public(order)


def page_for(client_id, status, product_id, country, reference, page, per_page):
    """The client's orders, newest first (contract 7.8); `RECHARGED` is a status no order has."""
    query = with_precision().where(TopupOrder.client == client_id)
    if status is not None:
        query = query.where(TopupOrder.status == status)
    if product_id is not None:
        query = query.where(TopupOrder.product == product_id)
    if country is not None:
        query = query.where(TopupOrder.country_code == country)
    if reference is not None:
        query = query.where(TopupOrder.client_reference == reference)
    total = query.count()
    return [public(order) for order in query.order_by(TopupOrder.id.desc()).paginate(page, per_page)], total


def operator_listing(client_id=None, status=None):
    """`order list --json` rows (contract 16.5), newest first."""
    query = TopupOrder.select().order_by(TopupOrder.id.desc())
    if client_id is not None:
        query = query.where(TopupOrder.client == client_id)
    if status is not None:
        query = query.where(TopupOrder.status == status)
    return [
        {"vertical": VERTICAL, "id": o.id, "client_id": o.client_id, "status": o.status,
         "client_reference": o.client_reference, "created_at": timestamp(o.created_at)}
        for o in query
    ]  # fmt: skip


def operator_view(order_id):
    """`order show`: the order as its client sees it (a top-up has no codes to hide)."""
    order = with_precision().where(TopupOrder.id == order_id).get_or_none()
    if order is None:
        raise Refused(f"no topups order with id {order_id}")
    return public(order)
