"""eSIM orders (contract 8.4-8.6, 15.1 items 43, 46): the request that places one waits for its
first supplier call (held job); a delivered eSIM carries its activation code and ICCID. The rest of
their life is every variant order's (variant_orders.py).

A delivered eSIM's install state (NOT_INSTALLED → ACTIVE → EXPIRED) is the supplier's: detail reads
refresh it, and a watch job per delivered order asks again on a widening schedule until it expires.
"""

import datetime

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField

from octopus_cards.models.base import utcnow, write_txn
from octopus_cards.models.encoding import timestamp
from octopus_cards.models.esim import price
from octopus_cards.models.jobs import Job
from octopus_cards.models.money import MoneyField, plain, shown
from octopus_cards.models.products import EsimProduct, EsimVariant
from octopus_cards.models.receipts import esim_receipt
from octopus_cards.models.suppliers import EXPIRED, NOT_INSTALLED, TransientSupplierError
from octopus_cards.models.variant_orders import CANCELLED, DELIVERED, FAILED, PENDING, VariantOrder

STATUS_TEXTS = {
    PENDING: "Order submitted for fulfilment",
    DELIVERED: "eSIM delivered",
    FAILED: "eSIM order failed",
    CANCELLED: "Order cancelled",
}
WATCH_KIND = "esim_state"
# Seconds between the watch job's looks at a delivered eSIM's install state: often while it is new,
# hourly later, and no more once it expired or after WATCH_DAYS past its validity.
WATCH_SCHEDULE = (10, 30, 60, 300, 900, 3600)
WATCH_DAYS = 30


class EsimOrder(VariantOrder):
    VERTICAL, REMARK, JOB_KIND = "esim", "eSIM Order", "esim_order"

    product = ForeignKeyField(EsimProduct)
    variant = ForeignKeyField(EsimVariant)
    data_amount_gb = MoneyField()
    validity_days = IntegerField()
    activation_code = CharField(null=True)
    iccid = CharField(null=True)
    activation_status = CharField(null=True)
    is_installed = BooleanField(default=False)
    installed_at = DateTimeField(null=True)
    activated_at = DateTimeField(null=True)
    delivered_at = DateTimeField(null=True)

    def fulfil(self, supplier, call_number):
        esim = supplier.issue_esim(self.product, self, call_number)
        return {**esim, "activation_status": NOT_INSTALLED, "delivered_at": utcnow()}

    def delivered(self):
        Job.enqueue(WATCH_KIND, self.id, after=WATCH_SCHEDULE[0])

    def receipt(self):
        return esim_receipt(self, self.status)

    def refresh_install_state(self, supplier):
        """Ask the supplier for a delivered eSIM's install state and store what changed; a supplier
        that cannot answer now leaves the stored state. Returns whether the eSIM is still to watch."""
        try:
            state = supplier.esim_install_state(self.product, self, utcnow())
        except TransientSupplierError:
            return True
        if any(getattr(self, key) != value for key, value in state.items()):
            with write_txn():
                EsimOrder.update(**state).where((EsimOrder.id == self.id) & (EsimOrder.status == DELIVERED)).execute()
        return state["activation_status"] != EXPIRED

    @classmethod
    def watch(cls, job, supplier):
        """Run a watch job once: refresh the install state, then look again later, or stop."""
        order = cls.get_or_none(cls.id == job.subject_id)
        if order is None or order.status != DELIVERED:
            job.finish()
            return None
        horizon = order.delivered_at + datetime.timedelta(days=order.validity_days + WATCH_DAYS)
        if not order.refresh_install_state(supplier) or utcnow() > horizon:
            job.finish()
        else:
            job.retry_after(WATCH_SCHEDULE[min(job.attempts, len(WATCH_SCHEDULE) - 1)], None)
        return cls.get_by_id(order.id).activation_status

    @classmethod
    def status_of(cls, order_id):
        return cls.select(cls.status).where(cls.id == order_id).scalar()

    def public(self, with_codes=True):
        """The eSIM order object (contract 8.4) of an order read `with_precision`; list items leave
        out the activation code and ICCID, and the code is null once the eSIM is installed."""
        data = {
            "id": self.id,
            "client_reference": self.client_reference,
            "status": self.status,
            "status_text": STATUS_TEXTS[self.status],
            "product_name": self.product_name,
            "country_code": self.country_code,
            "data_amount_gb": plain(self.data_amount_gb),
            "validity_days": self.validity_days,
            "amount": shown(self.amount, self.precision),
            "currency": self.currency,
            "activation_status": self.activation_status,
            "is_installed": self.is_installed,
            "installed_at": timestamp(self.installed_at) if self.installed_at else None,
            "activated_at": timestamp(self.activated_at) if self.activated_at else None,
            "transaction_id": self.transaction_id,
            "created_at": timestamp(self.created_at),
            "failure_code": self.failure_code,
            "failure_reason": self.failure_reason,
            "is_user_fixable": self.is_user_fixable,
            "notification_email": self.notification_email,
        }
        if with_codes:
            data["activation_code"] = None if self.is_installed else self.activation_code
            data["iccid"] = self.iccid
        return data

    def shown_to_operator(self):
        return dict(self.public(), activation_code=None)


def place(client_id, product_id, amount, supplier, wallet_id=None, reference=None, hold=None):
    """Price, check and record an order with its debit and its job (contract 8.4); the order. `hold`
    (seconds): the caller fulfils it at once, so the job is claimed for it that long."""
    priced = price(client_id, product_id, amount, wallet_id, lambda: EsimOrder.check_reference(client_id, reference))
    product, variant = priced.product, priced.variant
    return EsimOrder.record(
        priced, supplier, hold, client=client_id, product=product.id, product_name=product.name, variant=variant.id,
        country_code=product.country_code, data_amount_gb=variant.data_amount_gb,
        validity_days=variant.validity_days, client_reference=reference,
    )  # fmt: skip


def one_for(client_id, order_id, supplier=None):
    """The client's order; with `supplier`, a delivered eSIM's install state refreshed from it first
    while it is not installed or not yet expired (contract 8.5)."""
    order = EsimOrder.find(client_id, order_id)
    if supplier is not None and order.status == DELIVERED and order.activation_status != EXPIRED:
        order.refresh_install_state(supplier)
        order = EsimOrder.find(client_id, order_id)
    return order.public()


def page_for(client_id, status, reference, page, per_page):
    """The client's orders, newest first, without codes (contract 8.5)."""
    orders, total = EsimOrder.page(client_id, page, per_page, status=status, client_reference=reference)
    return [order.public(with_codes=False) for order in orders], total
