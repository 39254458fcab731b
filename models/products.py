"""The catalogue's tables: voucher products and their denominations, top-up and eSIM products and
their variants (contract 13.2), and each client's discounts and blacklist (16.2); and the catalogue
version, moved in the same transaction by every change to what a voucher product list shows.

Products are never deleted (past orders keep theirs); they are deactivated.
"""

import json

from peewee import BigIntegerField, BooleanField, CharField, ForeignKeyField, IntegerField, TextField

from octopus_cards.models.base import BaseModel, Prepared, write_txn
from octopus_cards.models.clients import Client
from octopus_cards.models.exceptions import NotFound, Refused
from octopus_cards.models.money import MoneyField, PercentField
from octopus_cards.models.reference_data import Category, Country, Currency, Subcategory

VERTICALS = ("vouchers", "topups", "esim")


class JSONField(TextField):
    """A JSON document in a text column (mock scenarios, input fields, variant details)."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class CatalogueVersion(BaseModel):
    """One row (id 1): a number moved, in the same transaction, by every change to what a voucher
    product list or object shows to a client: a catalogue import that changes voucher products,
    a client's voucher discount or blacklist, stock running out. Server processes keep encoded
    lists under the number they were built at and serve them only while it stands (contract 15.1,
    item 39; models/vouchers.py). Anything new that changes such a list must call `bump()` too."""

    version = BigIntegerField()

    @classmethod
    def current(cls):
        return CURRENT_VERSION.execute(id=1).fetchone()[0]

    @classmethod
    def bump(cls):
        """Inside the changing transaction, after the catalogue rows it writes: on PostgreSQL the
        row stays locked until the commit, and taken after them it closes no deadlock cycle."""
        cls.update(version=cls.version + 1).where(cls.id == 1).execute()


CURRENT_VERSION = Prepared(
    lambda slot: CatalogueVersion.select(CatalogueVersion.version).where(CatalogueVersion.id == slot("id"))
)


class VoucherProduct(BaseModel):
    name = CharField(max_length=200)
    category = ForeignKeyField(Category)
    subcategory = ForeignKeyField(Subcategory, null=True)
    country = ForeignKeyField(Country)
    currency = ForeignKeyField(Currency)
    image_url = TextField(null=True)
    delivery_mode = CharField(null=True)
    delivery_time = CharField(null=True)
    validity = CharField(null=True)
    stock = IntegerField(null=True)  # None: not tracked
    is_active = BooleanField(default=True)
    mock = JSONField(null=True)

    @classmethod
    def take_stock(cls, product_id, quantity):
        """Inside a write transaction: take `quantity` from the product's tracked stock if it holds
        that many. Returns 1 if taken, else 0 (always 0 for untracked stock). Stock run out hides
        the product (contract 5), which moves the catalogue version."""
        taken = cls.update(stock=cls.stock - quantity).where((cls.id == product_id) & (cls.stock >= quantity)).execute()
        if taken and cls.select().where((cls.id == product_id) & (cls.stock == 0)).exists():
            CatalogueVersion.bump()
        return taken


class Denomination(BaseModel):
    product = ForeignKeyField(VoucherProduct, backref="denominations", on_delete="CASCADE")
    position = IntegerField()  # the catalogue's order: the first entry containing a value applies
    min_value = MoneyField()
    max_value = MoneyField()
    discount = PercentField()

    class Meta:
        indexes = ((("product", "position"), True),)


def with_currency(model):
    """Rows of a table with a `currency`, read with their currency in one query."""
    return model.select(model, Currency).join(Currency)


class VariantProduct(BaseModel):
    """What top-up and eSIM products share: sold by variant, visible to every client while active
    (contract 7.1, 8.1)."""

    name = CharField(max_length=200)
    country_code = CharField(max_length=3)  # alpha-3 or GLO
    currency = ForeignKeyField(Currency)
    image_url = TextField(null=True)
    is_active = BooleanField(default=True)
    mock = JSONField(null=True)

    @classmethod
    def visible(cls, product_id):
        """The active product with this id, or Product not found."""
        product = with_currency(cls).where((cls.id == product_id) & cls.is_active).first()
        if product is None:
            raise NotFound("Product")
        return product

    @classmethod
    def objects(cls, *more):
        """The active products as their objects (contract 7.1, 8.1), newest first: a query of dict
        rows, their keys in the contract's order (`more`: further columns, after them)."""
        columns = (cls.id, cls.name, *cls.kind_columns(), cls.country_code, Currency.currency.alias("currency_code"),
                   cls.image_url, *more)  # fmt: skip
        return cls.select(*columns).join(Currency).where(cls.is_active).order_by(cls.id.desc()).dicts()

    @classmethod
    def kind_columns(cls):
        """What the product object says of the product's kind, after its name."""
        return ()

    @classmethod
    def object_of(cls, product_id, *more):
        """The object of the active product with this id, or Product not found."""
        found = cls.objects(*more).where(cls.id == product_id).first()
        if found is None:
            raise NotFound("Product")
        return found

    @classmethod
    def shelf_page(cls, page, per_page, search=None, **filters):
        """One page of the active products' objects, newest first, and how many there are;
        `filters`: column values, None for no filter."""
        query = cls.objects()
        for column, value in filters.items():
            if value is not None:
                query = query.where(getattr(cls, column) == value)
        products = list(query)
        if search:  # Unicode case folding, in Python: SQL's LOWER knows only ASCII on SQLite
            needle = search.casefold()
            products = [product for product in products if needle in product["name"].casefold()]
        return products[(page - 1) * per_page : page * per_page], len(products)


class TopupProduct(VariantProduct):
    topup_type = CharField()
    input_fields = JSONField()

    @classmethod
    def kind_columns(cls):
        return (cls.topup_type,)


class Variant(BaseModel):
    """What top-up and eSIM variants share: sold while they and their product are active. A
    subclass names its product's foreign key (`OWNER`)."""

    OWNER = None

    @classmethod
    def active_of(cls, product_id):
        """The product's active variants, id ascending, with their currency."""
        owner = getattr(cls, cls.OWNER)
        return list(with_currency(cls).where((owner == product_id) & cls.is_active).order_by(cls.id))

    @classmethod
    def visible(cls, variant_id):
        """The active variant with this id of an active product, or Variant not found."""
        product = getattr(cls, cls.OWNER).rel_model
        variant = (
            with_currency(cls)
            .switch(cls)
            .join(product)
            .where((cls.id == variant_id) & cls.is_active & product.is_active)
            .first()
        )
        if variant is None:
            raise NotFound("Variant")
        return variant


class TopupVariant(Variant):
    OWNER = "product"

    product = ForeignKeyField(TopupProduct, backref="variants", on_delete="CASCADE")
    sku = CharField(null=True)
    name = CharField(max_length=200)
    category = CharField()
    currency = ForeignKeyField(Currency)
    min_amount = MoneyField(null=True)
    max_amount = MoneyField(null=True)
    fixed_amounts = JSONField()
    available_in = JSONField()
    fields = JSONField()
    discount = PercentField(default=0)
    is_active = BooleanField(default=True)


class EsimProduct(VariantProduct):
    """A country's or region's eSIM; its variants are the data plans."""


class EsimVariant(Variant):
    OWNER = "esim_product"

    esim_product = ForeignKeyField(EsimProduct, backref="variants", on_delete="CASCADE")
    name = CharField(max_length=200)
    description = TextField()
    currency = ForeignKeyField(Currency)
    amount = MoneyField()
    data_amount_gb = MoneyField()
    validity_days = IntegerField()
    discount = PercentField(default=0)
    is_active = BooleanField(default=True)


PRODUCTS = {"vouchers": VoucherProduct, "topups": TopupProduct, "esim": EsimProduct}


class ClientDiscount(BaseModel):
    """A client's discount (percent) on one product of a vertical; the effective discount is the
    higher of this and the product's own (contract 15.1, item 40)."""

    client = ForeignKeyField(Client, backref="discounts", on_delete="CASCADE")
    vertical = CharField()
    product_id = IntegerField()
    discount = PercentField()

    class Meta:
        indexes = ((("client", "vertical", "product_id"), True),)

    @classmethod
    def own(cls, client_id, vertical, product_ids):
        """{product id: the client's own discount} on these products of a vertical."""
        mine = (cls.client == client_id) & (cls.vertical == vertical) & cls.product_id.in_(list(product_ids))
        return dict(cls.select(cls.product_id, cls.discount).where(mine).tuples())


class ClientBlacklist(BaseModel):
    """A voucher product the client may not see (contract 5: visibility)."""

    client = ForeignKeyField(Client, backref="blacklist", on_delete="CASCADE")
    product = ForeignKeyField(VoucherProduct, on_delete="CASCADE")

    class Meta:
        indexes = ((("client", "product"), True),)


def find_product(vertical, product_id):
    """The product of that vertical with this id, active or not."""
    product = PRODUCTS[vertical].get_or_none(PRODUCTS[vertical].id == product_id)
    if product is None:
        raise Refused(f"no {vertical} product with id {product_id}")
    return product


def set_discount(client_id, vertical, product_id, discount):
    with write_txn():
        Client.find(client_id)
        find_product(vertical, product_id)
        ClientDiscount.insert(
            client=client_id, vertical=vertical, product_id=product_id, discount=discount
        ).on_conflict(
            conflict_target=[ClientDiscount.client, ClientDiscount.vertical, ClientDiscount.product_id],
            preserve=[ClientDiscount.discount],
        ).execute()
        if vertical == "vouchers":
            CatalogueVersion.bump()


def clear_discount(client_id, vertical, product_id):
    with write_txn():
        Client.find(client_id)
        find_product(vertical, product_id)
        removed = (
            ClientDiscount.delete()
            .where(
                (ClientDiscount.client == client_id)
                & (ClientDiscount.vertical == vertical)
                & (ClientDiscount.product_id == product_id)
            )
            .execute()
        )
        if not removed:
            raise Refused(f"client {client_id} has no discount on {vertical} product {product_id}")
        if vertical == "vouchers":
            CatalogueVersion.bump()


def blacklist(client_id, product_id):
    with write_txn():
        Client.find(client_id)
        find_product("vouchers", product_id)
        ClientBlacklist.insert(client=client_id, product=product_id).on_conflict_ignore().execute()
        CatalogueVersion.bump()


def unblacklist(client_id, product_id):
    with write_txn():
        Client.find(client_id)
        find_product("vouchers", product_id)
        removed = (
            ClientBlacklist.delete()
            .where((ClientBlacklist.client == client_id) & (ClientBlacklist.product == product_id))
            .execute()
        )
        if not removed:
            raise Refused(f"voucher product {product_id} is not blacklisted for client {client_id}")
        CatalogueVersion.bump()
