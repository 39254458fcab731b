"""The voucher vertical's catalogue as a client sees it (contract 5.1-5.4, 5.7): visibility,
effective discounts, filters and sorting, live availability and exact quotes.

A product is visible to a client when it is active, not blacklisted for it, and in stock (stock not
tracked, or above 0); anything else is `Product not found`.

Product lists and objects are what clients read most, and they change only with the catalogue
version (products.CatalogueVersion), which every change to them moves in its own transaction. Each
process keeps them encoded, under the version they were built at; every request reads the version
first and is served from that store only while it stands, so a change shows in every request that
starts after it is committed, in every process (contract 15.1, item 39). Availability and quotes
read the catalogue afresh.
"""

import collections
import dataclasses
import threading
from decimal import Decimal
from operator import itemgetter

from peewee import JOIN

from octopus_cards.models.base import Prepared, db
from octopus_cards.models.clients import Client
from octopus_cards.models.encoding import dumps
from octopus_cards.models.exceptions import (
    InvalidDenomination,
    NotFound,
    QuantityAboveLimit,
)
from octopus_cards.models.money import decimals, plain, shown
from octopus_cards.models.pricing import charges
from octopus_cards.models.products import (
    CatalogueVersion,
    ClientBlacklist,
    ClientDiscount,
    Denomination,
    VoucherProduct,
)
from octopus_cards.models.reference_data import Category, Country, Currency, Subcategory
from octopus_cards.models.wallets import Wallet


@dataclasses.dataclass(frozen=True)
class Shelf:
    """What narrows and orders a product list (contract 5.1)."""

    category: str | None = None
    country_id: int | None = None
    currency_id: int | None = None
    search: str | None = None
    sort_field: str | None = None  # None: newest first
    descending: bool = False


def visible_to(client_id):
    """The condition on VoucherProduct that the client sees the product (contract 5)."""
    blacklisted = ClientBlacklist.select(ClientBlacklist.product).where(ClientBlacklist.client == client_id)
    return (
        VoucherProduct.is_active
        & (VoucherProduct.stock.is_null() | (VoucherProduct.stock > 0))
        & VoucherProduct.id.not_in(blacklisted)
    )


def visible(client_id):
    """The client's visible products, as model objects with what quotes and orders need."""
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
        .where(visible_to(client_id))
    )


# -- product objects (contract 5.1) ----------------------------------------------------------------


def offers(client_id, product_ids):
    """{product id: [(min, max, effective discount)]}, in the catalogue's order: the denominations
    and the client's own discount, in one query."""
    return effective(offer_rows(client_id, Denomination.product.in_(product_ids)))


def offer_rows(client_id, which):
    own = ClientDiscount.alias()
    return (
        Denomination.select(
            Denomination.product, Denomination.min_value, Denomination.max_value, Denomination.discount, own.discount
        )
        .join(
            own,
            JOIN.LEFT_OUTER,
            on=(own.product_id == Denomination.product) & (own.client == client_id) & (own.vertical == "vouchers"),
        )
        .where(which)
        .order_by(Denomination.product, Denomination.position)
        .tuples()
    )


def effective(rows):
    found = {}
    for product_id, low, high, discount, own_discount in rows:
        found.setdefault(product_id, []).append((low, high, max(discount, own_discount or 0)))
    return found


def objects(client_id, product_ids, condition=None):
    """The product objects of `product_ids` (those that meet `condition`), in that order."""
    if not product_ids:
        return []
    query = (
        VoucherProduct.select(
            VoucherProduct.id,
            VoucherProduct.name,
            Category.name,
            Subcategory.name,
            Country.alpha_3,
            Currency.currency,
            Currency.precision,
            VoucherProduct.image_url,
            VoucherProduct.delivery_mode,
            VoucherProduct.delivery_time,
            VoucherProduct.validity,
        )  # fmt: skip
        .join(Category)
        .join_from(VoucherProduct, Subcategory, JOIN.LEFT_OUTER)
        .join_from(VoucherProduct, Country)
        .join_from(VoucherProduct, Currency)
        .where(VoucherProduct.id.in_(product_ids))
    )
    if condition is not None:
        query = query.where(condition)
    rows = {row[0]: row for row in query.tuples()}
    found = offers(client_id, list(rows))
    return [public(rows[id_], found.get(id_, [])) for id_ in product_ids if id_ in rows]


def public(row, denominations):
    id_, name, category, subcategory, country, currency, precision, image_url, mode, time, validity = row
    return {
        "id": id_,
        "name": name,
        "category": category,
        "sub_category": subcategory,
        "country_code": country,
        "currency_code": currency,
        "image_url": image_url,
        "delivery_mode": mode,
        "delivery_time": time,
        "validity": validity,
        "available_denominations": [
            {"min_value": shown(low, precision), "max_value": shown(high, precision), "discount": plain(discount)}
            for low, high, discount in denominations
        ],
    }


# (id, name, category name) rows
SORT_KEYS = {
    "id": itemgetter(0),
    "name": lambda row: row[1].casefold(),
    "category": lambda row: row[2].casefold(),
}


def shelf_page(client_id, shelf, page, limit):
    """One page of the client's visible products as the API lists them, and how many there are."""
    query = VoucherProduct.select(VoucherProduct.id, VoucherProduct.name, Category.name).join(Category)
    query = query.where(visible_to(client_id))
    if shelf.country_id is not None:
        query = query.where(VoucherProduct.country == shelf.country_id)
    if shelf.currency_id is not None:
        query = query.where(VoucherProduct.currency == shelf.currency_id)
    rows = list(query.tuples())
    # Names compare and sort by Unicode case folding, in Python: SQL's LOWER knows only ASCII on SQLite.
    if shelf.category is not None:
        category = shelf.category.casefold()
        rows = [row for row in rows if row[2].casefold() == category]
    if shelf.search:
        needle = shelf.search.casefold()
        rows = [row for row in rows if needle in row[1].casefold()]
    rows.sort(key=SORT_KEYS["id"])  # ties stay in id ascending order, whichever way a field sorts
    if shelf.sort_field is None:
        rows.reverse()  # newest first
    else:
        rows.sort(key=SORT_KEYS[shelf.sort_field], reverse=shelf.descending)  # a stable sort
    chosen = [row[0] for row in rows[(page - 1) * limit : page * limit]]
    return objects(client_id, chosen), len(rows)


def describe(client_id, product_id):
    found = objects(client_id, [product_id], visible_to(client_id))
    if not found:
        raise NotFound("Product")
    return found[0]


# -- encoded, per process, while the catalogue version stands -------------------------------------


class Encoded:
    """Encoded answers of this process under the catalogue version they were built at: an LRU
    bounded in entries and bytes, emptied when a newer version (or another database) is seen.
    Handlers run in threads: one lock."""

    def __init__(self, max_entries=1024, max_bytes=32 << 20):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.lock = threading.Lock()
        self.entries = collections.OrderedDict()  # key -> (body, ...)
        self.size = 0  # bytes of the bodies held
        self.database = self.version = None

    def current(self, version):
        """Under the lock: whether answers of `version` may be served and kept."""
        if db.obj is not self.database or self.version is None or version > self.version:
            self.entries.clear()
            self.size, self.database, self.version = 0, db.obj, version
        return version == self.version

    def get(self, version, key):
        with self.lock:
            if not self.current(version):
                return None
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, version, key, value):
        size = len(value[0] or b"")
        if size > self.max_bytes // 8:
            return
        with self.lock:
            if not self.current(version) or key in self.entries:
                return
            self.entries[key] = value
            self.size += size
            while len(self.entries) > self.max_entries or self.size > self.max_bytes:
                _, dropped = self.entries.popitem(last=False)
                self.size -= len(dropped[0] or b"")


ENCODED = Encoded()


def cached(key, build):
    """The answer under `key` at the database's catalogue version: kept, or built and kept."""
    version = CatalogueVersion.current()
    found = ENCODED.get(version, key)
    if found is None:
        found = build()
        ENCODED.put(version, key, found)
    return found


def encoded_page(client_id, shelf, page, limit):
    """shelf_page encoded: (JSON body, items in it, items across all pages)."""

    def build():
        items, total = shelf_page(client_id, shelf, page, limit)
        return dumps(items).encode(), len(items), total

    return cached(("list", client_id, shelf, page, limit), build)


def encoded_product(client_id, product_id):
    """describe() encoded; Product not found as it would."""

    def build():
        try:
            return (dumps(describe(client_id, product_id)).encode(),)
        except NotFound:
            return (None,)

    body = cached(("one", client_id, product_id), build)[0]
    if body is None:
        raise NotFound("Product")
    return body


# -- availability and quotes: read afresh ---------------------------------------------------------


def product_for(client_id, product_id):
    product = VISIBLE_PRODUCT.first(client=client_id, product=product_id)
    if product is None:
        raise NotFound("Product")
    return product


def matching_range(client_id, product, denomination):
    """The first denomination entry containing the value, as (min, max, the client's effective
    discount), if the value respects the currency's precision (contract 5.4, 15.1 item 26); None
    otherwise. `denomination` is an int or a Decimal."""
    denomination = Decimal(denomination)
    if decimals(denomination) > product.currency.precision:
        return None
    for entry in effective(PRODUCT_OFFERS.rows(client=client_id, product=product.id)).get(product.id, []):
        if entry[0] <= denomination <= entry[1]:
            return entry
    return None


def is_available(client_id, product_id, denomination, quantity, supplier):
    """Contract 5.3: the denomination fits, tracked stock covers the quantity, the supplier agrees."""
    product = product_for(client_id, product_id)
    return (
        matching_range(client_id, product, denomination) is not None
        and (product.stock is None or product.stock >= quantity)
        and supplier.voucher_in_stock(product, denomination, quantity)
    )


@dataclasses.dataclass(frozen=True)
class Priced:
    product: VoucherProduct
    wallet: object  # wallets.PayingWallet
    bulk_limit: int
    charges: object  # pricing.Charges


def price(client_id, product_id, denomination, quantity, wallet_id=None, before_rules=None):
    """What `quantity` codes of `denomination` cost the client, and from which wallet, checked in
    the order of contract 1.10: the resources (404s), then `before_rules` (an order's duplicate
    reference), then the business rules."""
    product = product_for(client_id, product_id)
    wallets = Wallet.payers(client_id, wallet_id)
    if before_rules is not None:
        before_rules()
    entry = matching_range(client_id, product, denomination)
    if entry is None:
        raise InvalidDenomination()
    client = Client.buying(client_id)
    if quantity > client.bulk_limit:
        raise QuantityAboveLimit()
    wallet, rate = Wallet.paying(client, wallets, product.currency.currency, wallet_id)
    _, _, discount = entry
    quoted = charges(Decimal(denomination), quantity, discount, product.currency.currency, wallet.currency, rate)
    return Priced(product, wallet, client.bulk_limit, quoted)


def quote(client_id, product_id, denomination, quantity, wallet_id=None):
    """The charges object of contract 5.4."""
    priced = price(client_id, product_id, denomination, quantity, wallet_id)
    shown_charges = priced.charges.public(priced.product.currency.precision, priced.wallet.precision)
    return {**shown_charges, "max_quantity": priced.bulk_limit}


# Every quote and order reads these: their SQL is built once.
VISIBLE_PRODUCT = Prepared(lambda slot: visible(slot("client")).where(VoucherProduct.id == slot("product")).limit(1))
PRODUCT_OFFERS = Prepared(lambda slot: offer_rows(slot("client"), Denomination.product == slot("product")))
