"""eSIM orders (contract 8.4, 13.2)."""

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
)


def up(migrator, db):
    # A frozen copy of the schema as it was: later model changes must not alter this step.
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Client(Base):
        pass

    class EsimProduct(Base):
        pass

    class EsimVariant(Base):
        pass

    class Wallet(Base):
        pass

    class EsimOrder(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        product = ForeignKeyField(EsimProduct)
        product_name = CharField(max_length=200)
        variant = ForeignKeyField(EsimVariant)
        country_code = CharField(max_length=3)
        data_amount_gb = BigIntegerField()  # ten-thousandths
        validity_days = IntegerField()
        wallet = ForeignKeyField(Wallet)
        amount = BigIntegerField()  # ten-thousandths, variant currency
        currency = CharField(max_length=3)
        total_payable = BigIntegerField()  # wallet currency
        client_reference = CharField(max_length=255, null=True)
        status = CharField()
        failure_code = CharField(null=True)
        failure_reason = CharField(null=True)
        is_user_fixable = BooleanField(null=True)
        notification_email = CharField(max_length=254, null=True)
        transaction_id = IntegerField(null=True)
        activation_code = CharField(null=True)
        iccid = CharField(null=True)
        activation_status = CharField(null=True)
        is_installed = BooleanField(default=False)
        installed_at = DateTimeField(null=True)
        activated_at = DateTimeField(null=True)
        delivered_at = DateTimeField(null=True)
        created_at = DateTimeField()
        completed_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("client", "client_reference"), True), (("client", "id"), False))

    db.create_tables([EsimOrder])
