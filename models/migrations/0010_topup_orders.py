"""Top-up orders (contract 7.7, 13.2)."""

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
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

    class Client(Base):
        pass

    class TopupProduct(Base):
        pass

    class TopupVariant(Base):
        pass

    class Wallet(Base):
        pass

    class TopupOrder(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        product = ForeignKeyField(TopupProduct)
        product_name = CharField(max_length=200)
        variant = ForeignKeyField(TopupVariant)
        variant_name = CharField(max_length=200)
        country_code = CharField(max_length=3)
        wallet = ForeignKeyField(Wallet)
        amount = BigIntegerField()  # ten-thousandths, product currency
        currency = CharField(max_length=3)
        total_payable = BigIntegerField()  # wallet currency
        input_data = TextField(null=True)  # JSON
        client_reference = CharField(max_length=255, null=True)
        status = CharField()
        failure_code = CharField(null=True)
        failure_reason = CharField(null=True)
        is_user_fixable = BooleanField(null=True)
        notification_email = CharField(max_length=254, null=True)
        transaction_id = IntegerField(null=True)
        created_at = DateTimeField()
        completed_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("client", "client_reference"), True), (("client", "id"), False))

    db.create_tables([TopupOrder])
