"""The catalogue of the three verticals, and each client's discounts and blacklist."""

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    Check,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    # A frozen copy of the schema as it was: later model changes must not alter this step.
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Currency(Base):
        pass

    class Country(Base):
        pass

    class Category(Base):
        pass

    class Subcategory(Base):
        pass

    class Client(Base):
        pass

    class VoucherProduct(Base):
        name = CharField(max_length=200)
        category = ForeignKeyField(Category)
        subcategory = ForeignKeyField(Subcategory, null=True)
        country = ForeignKeyField(Country)
        currency = ForeignKeyField(Currency)
        image_url = TextField(null=True)
        delivery_mode = CharField(null=True)
        delivery_time = CharField(null=True)
        validity = CharField(null=True)
        stock = IntegerField(null=True)  # NULL: not tracked
        is_active = BooleanField(default=True)
        mock = TextField(null=True)  # the sandbox scenario (JSON)

        class Meta:
            constraints = [Check("stock IS NULL OR stock >= 0")]

    class Denomination(Base):
        product = ForeignKeyField(VoucherProduct, on_delete="CASCADE")
        position = IntegerField()  # the catalogue's order: the first range containing a value applies
        min_value = BigIntegerField()  # ten-thousandths
        max_value = BigIntegerField()
        discount = BigIntegerField()  # percent, ten-thousandths

        class Meta:
            indexes = ((("product", "position"), True),)
            constraints = [Check("min_value <= max_value")]

    class TopupProduct(Base):
        name = CharField(max_length=200)
        topup_type = CharField()
        country_code = CharField(max_length=3)
        currency = ForeignKeyField(Currency)
        image_url = TextField(null=True)
        input_fields = TextField()  # JSON
        is_active = BooleanField(default=True)
        mock = TextField(null=True)

    class TopupVariant(Base):
        product = ForeignKeyField(TopupProduct, on_delete="CASCADE")
        sku = CharField(null=True)
        name = CharField(max_length=200)
        category = CharField()
        currency = ForeignKeyField(Currency)
        min_amount = BigIntegerField(null=True)
        max_amount = BigIntegerField(null=True)
        fixed_amounts = TextField()  # JSON array of decimal strings
        available_in = TextField()  # JSON array of alpha-3 codes
        fields = TextField()  # JSON object of strings
        discount = BigIntegerField(default=0)
        is_active = BooleanField(default=True)

    class EsimProduct(Base):
        name = CharField(max_length=200)
        country_code = CharField(max_length=3)
        currency = ForeignKeyField(Currency)
        image_url = TextField(null=True)
        is_active = BooleanField(default=True)
        mock = TextField(null=True)

    class EsimVariant(Base):
        esim_product = ForeignKeyField(EsimProduct, on_delete="CASCADE")
        name = CharField(max_length=200)
        description = TextField()
        currency = ForeignKeyField(Currency)
        amount = BigIntegerField()
        data_amount_gb = BigIntegerField()  # ten-thousandths of a GB; 0 = unlimited or per minute
        validity_days = IntegerField()
        discount = BigIntegerField(default=0)
        is_active = BooleanField(default=True)

    class ClientDiscount(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        vertical = CharField()
        product_id = IntegerField()
        discount = BigIntegerField()

        class Meta:
            indexes = ((("client", "vertical", "product_id"), True),)

    class ClientBlacklist(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        product = ForeignKeyField(VoucherProduct, on_delete="CASCADE")

        class Meta:
            indexes = ((("client", "product"), True),)

    db.create_tables(
        [VoucherProduct, Denomination, TopupProduct, TopupVariant, EsimProduct, EsimVariant, ClientDiscount,
         ClientBlacklist]
    )  # fmt: skip
