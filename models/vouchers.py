"""The voucher vertical's catalogue as a client sees it (contract 5.1-5.4, 5.7): visibility,
effective discounts, filters and sorting, live availability and exact quotes.

A product is visible to a client when it is active, not blacklisted for it, and in stock (stock not
tracked, or above 0); anything else is `Product not found`. The catalogue changes only by operator
commands, and every request reads it afresh (contract 15.1, item 39).
"""

import dataclasses
from decimal import Decimal

from peewee import JOIN

from octopus_cards.models.clients import Client
from octopus_cards.models.exceptions import (
    InvalidDenomination,
    NotFound,
    QuantityAboveLimit,
)
from octopus_cards.models.money import decimals, plain, shown
from octopus_cards.models.pricing import charges, forex_rate, select_wallet
from octopus_cards.models.products import ClientBlacklist, ClientDiscount, Denomination, VoucherProduct
from octopus_cards.models.reference_data import Category, Country, Currency, Subcategory
from octopus_cards.models.wallets import ExchangeRate, Wallet


@dataclasses.dataclass(frozen=True)
class Shelf:
    """What narrows and orders a product list (contract 5.1)."""

    category: str | None = None
    country_id: int | None = None
    currency_id: int | None = None
    search: str | None = None
    sort_field: str | None = None  # None: newest first
    descending: bool = False


def visible(client_id):
    """The client's visible products, with what their objects show."""
    blacklisted = ClientBlacklist.select(ClientBlacklist.product).where(ClientBlacklist.client == client_id)
    return (
        # The joined rows' ids too: without them peewee would blank the product's foreign keys.
        VoucherProduct.select(
            VoucherProduct,
            Category.id,
            Category.name,
            Subcategory.id,
            Subcategory.name,
            Country.id,
            Country.alpha_3,
            Currency.id,
            Currency.currency,
            Currency.precision,
        )  # fmt: skip
        .join(Category)
        .join_from(VoucherProduct, Subcategory, JOIN.LEFT_OUTER)
        .join_from(VoucherProduct, Country)
        .join_from(VoucherProduct, Currency)
        .where(
            VoucherProduct.is_active
            & (VoucherProduct.stock.is_null() | (VoucherProduct.stock > 0))
            & VoucherProduct.id.not_in(blacklisted)
        )
    )


def client_discounts(client_id):
    """{product id: the client's own discount} on voucher products."""
    rows = ClientDiscount.select(ClientDiscount.product_id, ClientDiscount.discount).where(
        (ClientDiscount.client == client_id) & (ClientDiscount.vertical == "vouchers")
    )
    return {row.product_id: row.discount for row in rows}


def ranges(product_ids):
    """{product id: its denominations in the catalogue's order}."""
    found = {}
    query = Denomination.select().where(Denomination.product.in_(product_ids)).order_by(Denomination.position)
    for denomination in query:
        found.setdefault(denomination.product_id, []).append(denomination)
    return found


def public(product, denominations, own_discount):
    precision = product.currency.precision
    return {
        "id": product.id,
        "name": product.name,
        "category": product.category.name,
        "sub_category": product.subcategory.name if product.subcategory_id else None,
        "country_code": product.country.alpha_3,
        "currency_code": product.currency.currency,
        "image_url": product.image_url,
        "delivery_mode": product.delivery_mode,
        "delivery_time": product.delivery_time,
        "validity": product.validity,
        "available_denominations": [
            {
                "min_value": shown(d.min_value, precision),
                "max_value": shown(d.max_value, precision),
                "discount": plain(max(d.discount, own_discount or 0)),
            }
            for d in denominations
        ],
    }


SORT_KEYS = {
    "id": lambda product: product.id,
    "name": lambda product: product.name.casefold(),
    "category": lambda product: product.category.name.casefold(),
}


def shelf_page(client_id, shelf, page, limit):
    """One page of the client's visible products as the API lists them, and how many there are."""
    query = visible(client_id)
    if shelf.country_id is not None:
        query = query.where(VoucherProduct.country == shelf.country_id)
    if shelf.currency_id is not None:
        query = query.where(VoucherProduct.currency == shelf.currency_id)
    products = list(query)
    if shelf.category is not None:  # in Python: SQL's LOWER knows only ASCII on SQLite
        products = [p for p in products if p.category.name.casefold() == shelf.category.casefold()]
    if shelf.search:
        needle = shelf.search.casefold()
        products = [p for p in products if needle in p.name.casefold()]
    products.sort(key=SORT_KEYS["id"])  # ties stay in id ascending order, whichever way a field sorts
    if shelf.sort_field is None:
        products.reverse()  # newest first
    else:
        products.sort(key=SORT_KEYS[shelf.sort_field], reverse=shelf.descending)  # a stable sort
    total = len(products)
    chosen = products[(page - 1) * limit : page * limit]
    found, discounts = ranges([p.id for p in chosen]), client_discounts(client_id)
    return [public(p, found.get(p.id, []), discounts.get(p.id)) for p in chosen], total


def product_for(client_id, product_id):
    product = visible(client_id).where(VoucherProduct.id == product_id).first()
    if product is None:
        raise NotFound("Product")
    return product


def describe(client_id, product_id):
    product = product_for(client_id, product_id)
    return public(product, ranges([product.id]).get(product.id, []), client_discounts(client_id).get(product.id))


def matching_range(product, denomination):
    """The first denomination entry containing the value, if the value respects the currency's
    precision (contract 5.4, 15.1 item 26); None otherwise. `denomination` is an int or a Decimal."""
    denomination = Decimal(denomination)
    if decimals(denomination) > product.currency.precision:
        return None
    for entry in ranges([product.id]).get(product.id, []):
        if entry.min_value <= denomination <= entry.max_value:
            return entry
    return None


def is_available(client_id, product_id, denomination, quantity, supplier):
    """Contract 5.3: the denomination fits, tracked stock covers the quantity, the supplier agrees."""
    product = product_for(client_id, product_id)
    return (
        matching_range(product, denomination) is not None
        and (product.stock is None or product.stock >= quantity)
        and supplier.voucher_in_stock(product, denomination, quantity)
    )


@dataclasses.dataclass(frozen=True)
class PayingWallet:
    id: int
    currency: str
    precision: int


@dataclasses.dataclass(frozen=True)
class Priced:
    product: VoucherProduct
    wallet: PayingWallet
    bulk_limit: int
    charges: object  # pricing.Charges


def price(client_id, product_id, denomination, quantity, wallet_id=None, before_rules=None):
    """What `quantity` codes of `denomination` cost the client, and from which wallet, checked in
    the order of contract 1.10: the resources (404s), then `before_rules` (an order's duplicate
    reference), then the business rules."""
    product = product_for(client_id, product_id)
    rows = (
        Wallet.select(Wallet.id, Currency.currency, Currency.precision).join(Currency).where(Wallet.client == client_id)
    )
    wallets = [PayingWallet(id_, code, precision) for id_, code, precision in rows.tuples()]
    if wallet_id is not None and all(wallet.id != wallet_id for wallet in wallets):
        raise NotFound("Wallet")
    if before_rules is not None:
        before_rules()
    entry = matching_range(product, denomination)
    if entry is None:
        raise InvalidDenomination()
    client = Client.get_by_id(client_id)
    if quantity > client.bulk_limit:
        raise QuantityAboveLimit()
    default_currency = client.default_currency.currency if client.default_currency_id else None
    wallet = select_wallet(wallets, product.currency.currency, default_currency, wallet_id)
    rate = forex_rate(ExchangeRate.between, product.currency.currency, wallet.currency)
    discount = max(entry.discount, client_discounts(client_id).get(product.id, 0))
    quoted = charges(Decimal(denomination), quantity, discount, product.currency.currency, wallet.currency, rate)
    return Priced(product, wallet, client.bulk_limit, quoted)


def quote(client_id, product_id, denomination, quantity, wallet_id=None):
    """The charges object of contract 5.4."""
    priced = price(client_id, product_id, denomination, quantity, wallet_id)
    product, wallet, quoted = priced.product, priced.wallet, priced.charges

    in_product, in_wallet = product.currency.precision, wallet.precision
    return {
        "non_discounted_total": shown(quoted.non_discounted_total, in_product),
        "discount_amount": shown(quoted.discount_amount, in_product),
        "total_amount": shown(quoted.total_amount, in_product),
        "discount": plain(quoted.discount),
        "gst_amount": shown(quoted.gst_amount, in_product),
        "total_payable": shown(quoted.total_payable, in_wallet),
        "max_quantity": priced.bulk_limit,
        "net_amount": shown(quoted.net_amount, in_wallet),
        "handling_fee_amount": shown(quoted.handling_fee_amount, in_wallet),
        "charges_details": {
            "source_currency": quoted.source_currency,
            "destination_currency": quoted.destination_currency,
            "forex_rate": plain(quoted.forex_rate),
            "conversion_fee": None if quoted.conversion_fee is None else shown(quoted.conversion_fee, in_wallet),
        },
    }
