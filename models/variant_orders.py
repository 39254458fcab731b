"""What top-up and eSIM orders share (contract 7.7-7.9, 8.4-8.6, 11, 12): one item bought by variant,
placed in one transaction (order row, wallet debit, the job that fulfils it), fulfilled through the
supplier port, settled in one transaction (status, what was delivered or why not, refund, receipt).
Settling is a compare-and-set on the status, so a retried, late or concurrent answer can neither
settle an order twice nor refund it twice.
"""

import logging

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, IntegrityError

from octopus_cards.models.base import BaseModel, utcnow, write_txn
from octopus_cards.models.clients import Client
from octopus_cards.models.encoding import timestamp
from octopus_cards.models.exceptions import DuplicateReference, NotFound, Refused
from octopus_cards.models.jobs import Job
from octopus_cards.models.money import MoneyField
from octopus_cards.models.receipts import Receipt
from octopus_cards.models.reference_data import Currency
from octopus_cards.models.suppliers import SupplierRefused, TransientSupplierError
from octopus_cards.models.wallets import CREDIT, DEBIT, Wallet

logger = logging.getLogger("octopus_cards.orders")

PENDING, DELIVERED, FAILED, CANCELLED = "PENDING", "DELIVERED", "FAILED", "CANCELLED"
# What an order that spent its retry budget ends with (contract 15.1, item 30).
SUPPLIER_UNAVAILABLE = ("SUPPLIER_UNAVAILABLE", "The supplier did not respond", False)


class VariantOrder(BaseModel):
    """A subclass names its vertical, the words of its remarks (6.2) and its job kind, and gives
    `fulfil(supplier, call_number)` (ask the supplier; the columns a delivery sets), `receipt()`
    (subject and text for the final status) and `public()` (the order object of its section)."""

    VERTICAL = REMARK = JOB_KIND = None

    client = ForeignKeyField(Client, on_delete="CASCADE")
    product_name = CharField(max_length=200)
    country_code = CharField(max_length=3)
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
    created_at = DateTimeField(default=utcnow)
    completed_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("client", "client_reference"), True), (("client", "id"), False))

    # -- placing --------------------------------------------------------------------------------

    @classmethod
    def check_reference(cls, client_id, reference):
        """The first business rule (contract 11): a reference is used once per client and vertical."""
        if reference is not None and (
            cls.select().where((cls.client == client_id) & (cls.client_reference == reference)).exists()
        ):
            raise DuplicateReference()

    @classmethod
    def record(cls, priced, supplier, hold=None, **fields):
        """Record an order priced (`priced.wallet`, `.charges`, `.precision`) with its debit and its
        job, in one transaction; the order as placed. `hold` (seconds): the caller fulfils it at
        once, so the job is claimed for it that long."""
        quoted = priced.charges
        try:
            with write_txn():
                order = cls.create(wallet=priced.wallet.id, amount=quoted.non_discounted_total,
                                   currency=quoted.source_currency, total_payable=quoted.total_payable,
                                   status=PENDING, **fields)  # fmt: skip
                if quoted.total_payable > 0:
                    debit = Wallet.post(priced.wallet.id, DEBIT, quoted.total_payable, f"{cls.REMARK} #{order.id}",
                                        quoted.fx, (cls.VERTICAL, order.id))  # fmt: skip
                    order.transaction_id = debit["id"]
                    cls.update(transaction_id=order.transaction_id).where(cls.id == order.id).execute()
                Job.enqueue(cls.JOB_KIND, order.id, held_for=hold, after=supplier.background_delay)
        except IntegrityError:  # a concurrent create took the reference first
            raise DuplicateReference() from None
        order.precision = priced.precision
        return order

    # -- fulfilling -----------------------------------------------------------------------------

    @classmethod
    def work(cls, job, supplier, retry_schedule):
        """Run a fulfilment job once: ask the supplier, settle what it answers, or schedule a retry.
        Returns the order's status as this run left it (None: there was nothing to do)."""
        order = cls.get_or_none(cls.id == job.subject_id)
        if order is None or order.status != PENDING:
            job.finish()
            return None
        try:
            delivered = order.fulfil(supplier, job.attempts)
        except TransientSupplierError as error:
            if job.attempts > len(retry_schedule):  # the budget is spent (contract 15.1, item 30)
                return order.conclude(job, FAILED, SUPPLIER_UNAVAILABLE)
            job.retry_after(retry_schedule[job.attempts - 1], str(error))
            return PENDING
        except SupplierRefused as refused:
            return order.conclude(job, *cls.refusal(refused))
        return order.conclude(job, DELIVERED, **delivered)

    @staticmethod
    def refusal(refused):
        """The final status and failure (code, reason, user-fixable) a supplier's refusal gives."""
        if refused.outcome == "cancel":
            return CANCELLED, None
        return FAILED, (refused.failure_code, refused.failure_reason, True)

    def conclude(self, job, status, failure=None, **delivered):
        """Settle the order and finish its job in one transaction; the status the order has then
        (someone may have settled it first)."""
        if self.settle(status, failure, finishing=job, **delivered):
            return status
        job.finish()
        return type(self).get_by_id(self.id).status

    def settle(self, status, failure=None, finishing=None, **delivered):
        """Move a PENDING order to its final `status`, in one transaction: DELIVERED with the columns
        `delivered` sets; otherwise refunded in full, and with `failure` (code, reason,
        user-fixable) when it failed; with its receipt. False if it was settled meanwhile.
        `finishing`: a job that ends in the same transaction."""
        model = type(self)
        code, reason, fixable = failure or (None, None, None)
        with write_txn():
            moved = (
                model.update(
                    status=status,
                    failure_code=code,
                    failure_reason=reason,
                    is_user_fixable=fixable,
                    completed_at=utcnow(),
                    **delivered,
                )  # fmt: skip
                .where((model.id == self.id) & (model.status == PENDING))
                .execute()
            )
            if moved != 1:
                logger.info("%s order %d was settled meanwhile; a late supplier answer is discarded",
                            self.VERTICAL, self.id)  # fmt: skip
                return False
            if status == DELIVERED:
                self.delivered()
            elif self.total_payable > 0:
                Wallet.post(self.wallet_id, CREDIT, self.total_payable, f"Refund for {self.REMARK} #{self.id}",
                            order=(self.VERTICAL, self.id))  # fmt: skip
            email = model.select(model.notification_email).where(model.id == self.id).scalar()
            if email:
                self.status, self.failure_code, self.failure_reason = status, code, reason
                Receipt.queue(self.VERTICAL, self.id, self.client_id, email, *self.receipt())
            if finishing is not None:
                finishing.finish()
        return True

    def delivered(self):
        """Inside the transaction that settles the order DELIVERED: what else it sets going."""

    @classmethod
    def cancel(cls, order_id):
        """The operator's cancel (contract 16.5, 15.1 item 32): a PENDING order ends CANCELLED with
        its full refund; a supplier answer still on its way is discarded when it comes."""
        order = cls.get_or_none(cls.id == order_id)
        if order is None:
            raise Refused(f"no {cls.VERTICAL} order with id {order_id}")
        if order.status != PENDING or not order.settle(CANCELLED):
            raise Refused(f"{cls.VERTICAL} order {order_id} is {cls.get_by_id(order_id).status}, not PENDING")

    @classmethod
    def set_notification_email(cls, client_id, order_id, email):
        """Contract 7.9, 8.6: store the receipt address; an order already final gets its receipt
        now, unless it had one. Returns the order."""
        with write_txn():
            # The row first: its lock orders this with a concurrent settle, whose receipt then has
            # the address, or whose final status the read below sees.
            stored = cls.update(notification_email=email).where((cls.id == order_id) & (cls.client == client_id))
            if not stored.execute():
                raise NotFound("Order")
            order = cls.find(client_id, order_id)
            had = Receipt.select().where((Receipt.vertical == cls.VERTICAL) & (Receipt.order_id == order_id)).exists()
            if order.status != PENDING and not had:
                Receipt.queue(cls.VERTICAL, order.id, client_id, email, *order.receipt())
        return order

    # -- reading --------------------------------------------------------------------------------

    @classmethod
    def with_precision(cls):
        """Orders with the precision of the currency they were priced in (`order.precision`)."""
        return cls.select(cls, Currency.precision).join(Currency, on=(Currency.currency == cls.currency)).objects()

    @classmethod
    def find(cls, client_id, order_id):
        order = cls.with_precision().where((cls.id == order_id) & (cls.client == client_id)).get_or_none()
        if order is None:
            raise NotFound("Order")
        return order

    @classmethod
    def page(cls, client_id, page, per_page, **filters):
        """One page of the client's orders, newest first, and how many there are; `filters`: column
        values, None for no filter."""
        query = cls.with_precision().where(cls.client == client_id)
        for column, value in filters.items():
            if value is not None:
                query = query.where(getattr(cls, column) == value)
        return list(query.order_by(cls.id.desc()).paginate(page, per_page)), query.count()

    @classmethod
    def operator_listing(cls, client_id=None, status=None):
        """`order list --json` rows (contract 16.5), newest first."""
        query = cls.select().order_by(cls.id.desc())
        if client_id is not None:
            query = query.where(cls.client == client_id)
        if status is not None:
            query = query.where(cls.status == status)
        return [
            {"vertical": cls.VERTICAL, "id": o.id, "client_id": o.client_id, "status": o.status,
             "client_reference": o.client_reference, "created_at": timestamp(o.created_at)}
            for o in query
        ]  # fmt: skip

    @classmethod
    def operator_view(cls, order_id):
        """`order show`: the order as its client sees it, less any code (contract 16.5)."""
        order = cls.with_precision().where(cls.id == order_id).get_or_none()
        if order is None:
            raise Refused(f"no {cls.VERTICAL} order with id {order_id}")
        return order.shown_to_operator()

    def shown_to_operator(self):
        return self.public()
