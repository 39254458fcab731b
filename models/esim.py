"""The eSIM vertical's catalogue as a client sees it (contract 8.1-8.3): products, their variants
with the client's effective discount, variant selection by price, and exact quotes.

Only active products, and their active variants, are visible. A variant's effective discount is the
higher of its own and the client's discount on its product (contract 15.1, item 40).
"""

import dataclasses
from decimal import Decimal

from octopus_cards.models.clients import Client
from octopus_cards.models.exceptions import InvalidAmount
from octopus_cards.models.money import plain, shown
from octopus_cards.models.pricing import charges
from octopus_cards.models.products import ClientDiscount, EsimProduct, EsimVariant
from octopus_cards.models.wallets import Wallet

VERTICAL = "esim"


# -- variants ---------------------------------------------------------------------------------------


def effective_discount(variant, own):
    return max(variant.discount, own.get(variant.esim_product_id, 0))


def variant_object(variant, own):
    """The variant object (contract 8.2) with the client's effective discount (`own`: its
    discounts by product)."""
    return {
        "id": variant.id,
        "esim_product_id": variant.esim_product_id,
        "name": variant.name,
        "description": variant.description,
        "currency_code": variant.currency.currency,
        "amount": shown(variant.amount, variant.currency.precision),
        "data_amount_gb": plain(variant.data_amount_gb),
        "validity_days": variant.validity_days,
        "client_discount": plain(effective_discount(variant, own)),
    }


def variants_of(client_id, product_id):
    EsimProduct.visible(product_id)
    own = ClientDiscount.own(client_id, VERTICAL, [product_id])
    return [variant_object(variant, own) for variant in EsimVariant.active_of(product_id)]


def describe(client_id, product_id):
    """The product object with its variants (contract 8.1)."""
    return {**EsimProduct.object_of(product_id), "variants": variants_of(client_id, product_id)}


def describe_variant(client_id, variant_id):
    """An active variant of an active product."""
    variant = EsimVariant.visible(variant_id)
    return variant_object(variant, ClientDiscount.own(client_id, VERTICAL, [variant.esim_product_id]))


def select_variant(product, amount):
    """The active variant priced `amount`, the lowest id among several (contract 8.3)."""
    for variant in EsimVariant.active_of(product.id):
        if variant.amount == amount:
            return variant
    raise InvalidAmount()


# -- quotes -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Priced:
    product: EsimProduct
    variant: EsimVariant
    wallet: object  # wallets.PayingWallet
    charges: object  # pricing.Charges

    @property
    def precision(self):
        """The precision of the currency the amounts are in."""
        return self.variant.currency.precision


def price(client_id, product_id, amount, wallet_id=None, before_rules=None):
    """What the eSIM priced `amount` costs the client and from which wallet, checked in the order of
    contract 1.10: the resources (404s), then `before_rules` (an order's duplicate reference), then
    the business rules."""
    product = EsimProduct.visible(product_id)
    wallets = Wallet.payers(client_id, wallet_id)
    if before_rules is not None:
        before_rules()
    variant = select_variant(product, Decimal(amount))
    currency = variant.currency.currency
    wallet, rate = Wallet.paying(Client.buying(client_id), wallets, currency, wallet_id)
    discount = effective_discount(variant, ClientDiscount.own(client_id, VERTICAL, [product.id]))
    return Priced(product, variant, wallet, charges(variant.amount, 1, discount, currency, wallet.currency, rate))


def quote(client_id, product_id, amount, wallet_id=None):
    """The charges object of contract 8.3."""
    priced = price(client_id, product_id, amount, wallet_id)
    return priced.charges.public(priced.variant.currency.precision, priced.wallet.precision)
