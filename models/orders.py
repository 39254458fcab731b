"""Voucher orders (contract 5.5, 5.6, 11, 12): placed in one transaction (order row, stock, wallet
debit, and the job that fulfils it), fulfilled through the supplier port, settled in one transaction
(codes, status, refund, event). Settling is a compare-and-set on the order's state, so a retried,
late or concurrent fulfilment can neither add codes twice nor refund twice.
"""

import logging

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, IntegrityError

from octopus_cards.models.base import BaseModel, Prepared, utcnow, write_txn
from octopus_cards.models.clients import Client
from octopus_cards.models.encoding import timestamp
from octopus_cards.models.exceptions import DuplicateReference, InsufficientStock, NotFound, Refused
from octopus_cards.models.jobs import Job
from octopus_cards.models.money import MoneyField, money, shown
from octopus_cards.models.products import VoucherProduct
from octopus_cards.models.receipts import Receipt, voucher_receipt
from octopus_cards.models.reference_data import Currency
from octopus_cards.models.suppliers import SupplierRefused, TransientSupplierError
from octopus_cards.models.vouchers import price
from octopus_cards.models.wallets import CREDIT, DEBIT, Wallet
from octopus_cards.models.webhooks import Event

logger = logging.getLogger("octopus_cards.orders")

PENDING, DELIVERED, PARTIAL, FAILED, CANCELLED = (
    "PENDING", "DELIVERED", "PARTIALLY_DELIVERED", "FAILED", "CANCELLED"
)  # fmt: skip
STATUSES = (PENDING, DELIVERED, PARTIAL, FAILED, CANCELLED)
MESSAGES = {
    PENDING: "Order is being processed",
    DELIVERED: "Order delivered",
    PARTIAL: "Order partially delivered",
    FAILED: "Order failed",
    CANCELLED: "Order cancelled",
}
SYNC_QUANTITY = 5
JOB_KIND = "voucher_order"


class VoucherOrder(BaseModel):
    client = ForeignKeyField(Client, backref="voucher_orders", on_delete="CASCADE")
    product = ForeignKeyField(VoucherProduct)
    product_name = CharField(max_length=200)
    wallet = ForeignKeyField(Wallet)
    denomination = MoneyField()
    quantity = IntegerField()
    amount = MoneyField()
    discount = MoneyField()
    total_payable = MoneyField()
    client_reference = CharField(max_length=255, null=True)
    email = CharField(max_length=254, null=True)
    status = CharField()
    base_currency = CharField(max_length=3)
    deduction_currency = CharField(max_length=3)
    delivered_quantity = IntegerField(default=0)
    supplier_calls = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("client", "client_reference"), True), (("client", "id"), False))


class Voucher(BaseModel):
    order = ForeignKeyField(VoucherOrder, backref="vouchers", on_delete="CASCADE")
    position = IntegerField()
    card_number = CharField(null=True)
    pin_code = CharField(null=True)
    claim_url = CharField(null=True)
    expires_at = DateTimeField()
    voucher_reference_number = CharField()

    class Meta:
        indexes = ((("order", "position"), True),)


def place(client_id, product_id, denomination, quantity, supplier, wallet_id=None, reference=None, email=None,
          hold=None, retry_schedule=()):  # fmt: skip
    """Price, check and record an order with its debit and its job, in one transaction; the order
    as placed (its product and currency with it), its job, and whether the supplier was asked.

    `hold` (seconds): the caller fulfils it at once, so the job is claimed for it that long. A
    supplier that answers at once is then asked inside the transaction (work(), with
    `retry_schedule`): the order commits settled, in one commit instead of two, and its job is
    written only if the order waits for a retry.
    """

    def reference_unused():  # the first business rule (contract 11)
        if reference is not None and REFERENCE_TAKEN.first(client=client_id, reference=reference):
            raise DuplicateReference()

    priced = price(client_id, product_id, denomination, quantity, wallet_id, before_rules=reference_unused)
    product, quoted = priced.product, priced.charges
    if (product.stock is not None and product.stock < quantity) or not supplier.voucher_in_stock(
        product, denomination, quantity
    ):
        raise InsufficientStock()
    asked = hold is not None and supplier.answers_at_once(product)
    with write_txn():
        try:
            order = NEW_ORDER.create(VoucherOrder(
                client=client_id, product=product, product_name=product.name, wallet=priced.wallet.id,
                denomination=denomination, quantity=quantity, amount=quoted.non_discounted_total,
                discount=quoted.discount_amount, total_payable=quoted.total_payable, client_reference=reference,
                email=email, status=PENDING, base_currency=quoted.source_currency,
                deduction_currency=quoted.destination_currency,
            ))  # fmt: skip
        except IntegrityError:  # a concurrent create took the reference first
            raise DuplicateReference() from None
        if product.stock is not None and VoucherProduct.take_stock(product.id, quantity) != 1:
            raise InsufficientStock()
        if quoted.total_payable > 0:  # a 100 % discount leaves nothing to debit (or refund)
            Wallet.post(
                priced.wallet.id, DEBIT, quoted.total_payable, f"Order #{order.id}", quoted.fx, ("vouchers", order.id)
            )
        if asked:
            job = Job.at_once(JOB_KIND, order.id)
            status = work(job, supplier, retry_schedule, placed=order)
        else:
            job = Job.enqueue(JOB_KIND, order.id, held_for=hold, after=supplier.background_delay)
    if asked:
        job.ran(status)  # once committed: no write to a pipe while the database's write lock is held
    return order, job, asked


def work(job, supplier, retry_schedule, placed=None):
    """Run a fulfilment job once: ask the supplier, settle what it answers, or schedule a retry.
    Returns the order's status as this run left it (None: there was nothing to do). `placed`: the
    order as place() returned it, for its held job run right after (as placed, it is PENDING)."""
    order = ORDER.first(order=job.subject_id) if placed is None else placed
    if order is None or order.status != PENDING:
        job.finish()
        return None
    product = order.product
    try:
        delivery = supplier.issue_vouchers(product, order, order.quantity - order.delivered_quantity, job.attempts)
    except TransientSupplierError as error:
        if job.attempts > len(retry_schedule):  # the budget is spent (contract 15.1, item 30)
            return conclude(job, order, [], PARTIAL if order.delivered_quantity else FAILED)
        job.retry_after(retry_schedule[job.attempts - 1], str(error))
        return PENDING
    except SupplierRefused as refused:
        outcome = FAILED if refused.outcome == "fail" else CANCELLED
        return conclude(job, order, [], PARTIAL if order.delivered_quantity else outcome)
    delivered = order.delivered_quantity + len(delivery.codes)
    if delivered >= order.quantity:
        status = DELIVERED
    elif delivery.final:
        status = PARTIAL if delivered else FAILED
    else:
        status = PENDING
    if status != PENDING:
        return conclude(job, order, delivery.codes, status)
    if settle(order, delivery.codes, status):
        job.retry_after(retry_schedule[min(job.attempts, len(retry_schedule)) - 1], "fewer codes than ordered")
        return PENDING
    job.finish()
    return VoucherOrder.get_by_id(order.id).status


def conclude(job, order, codes, status):
    """Settle the order for good and finish its job in the same transaction; the status the order
    has then (someone may have settled it first)."""
    if settle(order, codes, status, finishing=job):
        return status
    job.finish()
    return VoucherOrder.get_by_id(order.id).status


def settle(order, codes, status, finishing=None):
    """Record new codes and the status, with the refund and the event a final status brings, in one
    transaction, and only if the order is still as it was read (else someone settled it first, and
    this returns False; when True, `order` shows the new status and count). `finishing`: a job that
    ends in the same transaction."""
    now = utcnow()
    delivered = order.delivered_quantity + len(codes)
    with write_txn():
        moved = SETTLE.execute(
            order=order.id, status=status, delivered=delivered, updated_at=now, was_delivered=order.delivered_quantity
        ).rowcount
        if moved != 1:
            logger.info("order %d was settled meanwhile; a late supplier answer is discarded", order.id)
            return False
        for position, code in enumerate(codes, start=order.delivered_quantity + 1):
            NEW_CODE.execute(**code, order=order.id, position=position,
                             voucher_reference_number=f"VRN-{order.id}-{position}")  # fmt: skip
        order.status, order.delivered_quantity, order.updated_at = status, delivered, now
        if status == PENDING:
            return True
        undelivered = order.quantity - delivered
        refund = money(order.total_payable * undelivered / order.quantity)
        if refund > 0:
            Wallet.post(order.wallet_id, CREDIT, refund, f"Refund for Order #{order.id}", order=("vouchers", order.id))
        Event.record(order.client_id, f"order.{status.lower()}", event_data(order, status, delivered, now))
        if order.email:
            Receipt.queue(
                "vouchers", order.id, order.client_id, order.email, *voucher_receipt(order, status, delivered)
            )
        if finishing is not None:
            finishing.finish()
    return True


def cancel(order_id):
    """The operator's cancel (contract 16.5, 15.1 item 32): a PENDING order ends CANCELLED with its
    full refund; a supplier answer still on its way is discarded when it comes."""
    order = VoucherOrder.get_or_none(VoucherOrder.id == order_id)
    if order is None:
        raise Refused(f"no vouchers order with id {order_id}")
    if order.status != PENDING or not settle(order, [], CANCELLED):
        raise Refused(f"vouchers order {order_id} is {VoucherOrder.get_by_id(order_id).status}, not PENDING")


def operator_listing(client_id=None, status=None):
    """`order list --json` rows (contract 16.5), newest first."""
    query = VoucherOrder.select().order_by(VoucherOrder.id.desc())
    if client_id is not None:
        query = query.where(VoucherOrder.client == client_id)
    if status is not None:
        query = query.where(VoucherOrder.status == status)
    return [
        {"vertical": "vouchers", "id": o.id, "client_id": o.client_id, "status": o.status,
         "client_reference": o.client_reference, "created_at": timestamp(o.created_at)}
        for o in query
    ]  # fmt: skip


def operator_view(order_id):
    """`order show`: the order as its client sees it, the codes null (contract 16.5, 15.1 item 38)."""
    order = VoucherOrder.get_or_none(VoucherOrder.id == order_id)
    if order is None:
        raise Refused(f"no vouchers order with id {order_id}")
    shown = public(order)
    shown["vouchers"] = [dict(v, card_number=None, pin_code=None, claim_url=None) for v in shown["vouchers"]]
    return shown


def event_data(order, status, delivered, updated_at):
    """The `data` of an `order.*` event (contract 9.2) for `order` as it now is (`status`,
    `delivered` codes, settled at `updated_at`): never a code."""
    precision = order.product.currency.precision
    return {
        "id": order.id,
        "reference_code": order.client_reference,
        "status": status,
        "product_name": order.product_name,
        "denomination": shown(order.denomination, precision),
        "quantity": order.quantity,
        "amount": shown(order.amount, precision),
        "delivered_quantity": delivered,
        "delivered_on": timestamp(updated_at) if delivered else None,
        "created_at": timestamp(order.created_at),
    }


def with_product():
    """Orders with their product and its currency, in one query."""
    return VoucherOrder.select(VoucherOrder, VoucherProduct, Currency).join(VoucherProduct).join(Currency)


def public(order, with_vouchers=True):
    """The order object (contract 5.5)."""
    precision = order.product.currency.precision
    data = {
        "id": order.id,
        "product_id": order.product_id,
        "product_name": order.product_name,
        "denomination": shown(order.denomination, precision),
        "quantity": order.quantity,
        "amount": shown(order.amount, precision),
        "discount": shown(order.discount, precision),
        "client_reference": order.client_reference,
        "wallet_id": order.wallet_id,
        "status": order.status,
        "base_currency": order.base_currency,
        "deduction_currency": order.deduction_currency,
        "message": MESSAGES[order.status],
        "email": order.email,
        "created_at": timestamp(order.created_at),
    }
    if with_vouchers:
        data["vouchers"] = [
            {"card_number": v.card_number, "pin_code": v.pin_code, "claim_url": v.claim_url,
             "expires_at": timestamp(v.expires_at), "voucher_reference_number": v.voucher_reference_number}
            for v in CODES.rows(order=order.id)
        ]  # fmt: skip
    return data


def one_for(client_id, order_id):
    order = ORDER.first(order=order_id)
    if order is None or order.client_id != client_id:
        raise NotFound("Order")
    return public(order)


def page_for(client_id, status, product_id, reference, page, limit):
    query = VoucherOrder.select().where(VoucherOrder.client == client_id)
    if status is not None:
        query = query.where(VoucherOrder.status == status)
    if product_id is not None:
        query = query.where(VoucherOrder.product == product_id)
    if reference is not None:
        query = query.where(VoucherOrder.client_reference == reference)
    total = query.count()
    rows = query.order_by(VoucherOrder.id.desc()).paginate(page, limit)
    return [public(order, with_vouchers=False) for order in rows], total


# A synchronous order runs each of these once or more: their SQL is built once.
REFERENCE_TAKEN = Prepared(
    lambda slot: (
        VoucherOrder.select(VoucherOrder.id)
        .where((VoucherOrder.client == slot("client")) & (VoucherOrder.client_reference == slot("reference")))
        .limit(1)
    )
)
NEW_ORDER = Prepared.insert(VoucherOrder)
ORDER = Prepared(lambda slot: with_product().where(VoucherOrder.id == slot("order")).limit(1))
SETTLE = Prepared(
    lambda slot: VoucherOrder.update(
        status=slot("status"), delivered_quantity=slot("delivered"), updated_at=slot("updated_at")
    ).where(
        (VoucherOrder.id == slot("order"))
        & (VoucherOrder.status == PENDING)
        & (VoucherOrder.delivered_quantity == slot("was_delivered"))
    )
)
NEW_CODE = Prepared.insert(Voucher)
CODES = Prepared(lambda slot: Voucher.select().where(Voucher.order == slot("order")).order_by(Voucher.position))
