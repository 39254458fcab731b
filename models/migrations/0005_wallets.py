"""Wallets, their transactions, exchange rates, and the events recorded with every transaction."""

from peewee import (
    BigIntegerField,
    CharField,
    Check,
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

    class Currency(Base):
        pass

    class Client(Base):
        pass

    class ExchangeRate(Base):
        source_currency = ForeignKeyField(Currency, on_delete="CASCADE")
        destination_currency = ForeignKeyField(Currency, on_delete="CASCADE")
        rate = CharField()

        class Meta:
            indexes = ((("source_currency", "destination_currency"), True),)

    class Wallet(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        currency = ForeignKeyField(Currency)
        amount = BigIntegerField(default=0)  # ten-thousandths
        type = CharField(default="PREPAID")
        created_at = DateTimeField()

        class Meta:
            indexes = ((("client", "currency"), True),)
            constraints = [
                Check("type IN ('PREPAID', 'POSTPAID')"),
                Check("type = 'POSTPAID' OR amount >= 0"),
            ]

    class Transaction(Base):
        wallet = ForeignKeyField(Wallet, on_delete="CASCADE")
        amount = BigIntegerField()  # ten-thousandths, > 0
        transaction_type = CharField()
        status = CharField(default="COMPLETED")
        source_currency = CharField(null=True)
        destination_currency = CharField(null=True)
        forex_rate = CharField(null=True)
        conversion_charges = BigIntegerField(null=True)
        remarks = TextField()
        order_vertical = CharField(null=True)
        order_id = IntegerField(null=True)
        created_at = DateTimeField()

        class Meta:
            table_name = "wallet_transaction"
            indexes = (
                # A debit and a refund at most once per order (NULLs, operator transactions, never clash).
                (("order_vertical", "order_id", "transaction_type"), True),
            )
            constraints = [Check("amount > 0"), Check("transaction_type IN ('CREDIT', 'DEBIT')")]

    class Event(Base):
        id = CharField(primary_key=True)
        client = ForeignKeyField(Client, on_delete="CASCADE")
        type = CharField()
        body = TextField()
        created_at = DateTimeField()

    db.create_tables([ExchangeRate, Wallet, Transaction, Event])
