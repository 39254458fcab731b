"""Top-up orders (contract 7.7-7.9): always fulfilled in the background; a PENDING order's detail
asks the supplier for news. The rest of their life is every variant order's (variant_orders.py).
"""

from peewee import CharField, ForeignKeyField

from octopus_cards.models.encoding import timestamp
from octopus_cards.models.money import shown
from octopus_cards.models.products import JSONField, TopupProduct, TopupVariant
from octopus_cards.models.receipts import topup_receipt
from octopus_cards.models.suppliers import SupplierRefused, TransientSupplierError
from octopus_cards.models.topups import check_input, price
from octopus_cards.models.variant_orders import CANCELLED, DELIVERED, FAILED, PENDING, VariantOrder

STATUS_TEXTS = {
    PENDING: "Order submitted for fulfilment",
    DELIVERED: "Top-up delivered",
    FAILED: "Top-up failed",
    CANCELLED: "Order cancelled",
}


class TopupOrder(VariantOrder):
    VERTICAL, REMARK, JOB_KIND = "topups", "Topup Order", "topup_order"

    product = ForeignKeyField(TopupProduct)
    variant = ForeignKeyField(TopupVariant)
    variant_name = CharField(max_length=200)
    input_data = JSONField(null=True)

    def fulfil(self, supplier, call_number):
        supplier.top_up(self.product, self, call_number)
        return {}

    def receipt(self):
        return topup_receipt(self, self.status)

    def refresh(self, supplier):
        """Contract 7.8: a PENDING order's status, fresh from the supplier; what it says is settled
        here as the background work would. A supplier that cannot answer now leaves it as stored."""
        try:
            news = supplier.topup_status(self.product, self)
        except TransientSupplierError:
            return
        except SupplierRefused as refused:
            self.settle(*self.refusal(refused))
            return
        if news == DELIVERED:
            self.settle(DELIVERED)

    def public(self):
        """The top-up order object (contract 7.7), of an order read `with_precision`."""
        return {
            "id": self.id,
            "client_reference": self.client_reference,
            "product_id": self.product_id,
            "product_name": self.product_name,
            "variant_name": self.variant_name,
            "country_code": self.country_code,
            "amount": shown(self.amount, self.precision),
            "currency": self.currency,
            "status": self.status,
            "status_text": STATUS_TEXTS[self.status],
            "transaction_id": self.transaction_id,
            "failure_code": self.failure_code,
            "failure_reason": self.failure_reason,
            "is_user_fixable": self.is_user_fixable,
            "notification_email": self.notification_email,
            "created_at": timestamp(self.created_at),
            "completed_at": timestamp(self.completed_at) if self.completed_at else None,
        }


def place(client_id, product_id, amount, supplier, input_data=None, category=None, wallet_id=None, reference=None):
    """Price, check and record an order with its debit and its job (contract 7.7); the order as
    placed, PENDING, whatever the background work has done since."""

    def before_rules(product):
        check_input(product, input_data)
        TopupOrder.check_reference(client_id, reference)

    priced = price(client_id, product_id, amount, category, wallet_id, before_rules)
    product, variant = priced.product, priced.variant
    return TopupOrder.record(
        priced, supplier, client=client_id, product=product.id, product_name=product.name, variant=variant.id,
        variant_name=variant.name, country_code=product.country_code, input_data=input_data,
        client_reference=reference,
    )  # fmt: skip


def one_for(client_id, order_id, supplier=None):
    """The client's order; with `supplier`, a PENDING one refreshed from it first (contract 7.8)."""
    order = TopupOrder.find(client_id, order_id)
    if supplier is not None and order.status == PENDING:
        order.refresh(supplier)
        order = TopupOrder.find(client_id, order_id)
    return order.public()


def page_for(client_id, status, product_id, country, reference, page, per_page):
    """The client's orders, newest first (contract 7.8); `RECHARGED` is a status no order has."""
    orders, total = TopupOrder.page(client_id, page, per_page, status=status, product=product_id,
                                    country_code=country, client_reference=reference)  # fmt: skip
    return [order.public() for order in orders], total
