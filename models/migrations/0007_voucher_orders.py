"""Voucher orders and their codes, and the background job queue that fulfils them."""

from peewee import BigIntegerField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    # A frozen copy of the schema as it was: later model changes must not alter this step.
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Client(Base):
        pass

    class VoucherProduct(Base):
        pass

    class Wallet(Base):
        pass

    class VoucherOrder(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        product = ForeignKeyField(VoucherProduct)
        product_name = CharField(max_length=200)
        wallet = ForeignKeyField(Wallet)
        denomination = BigIntegerField()  # ten-thousandths, product currency
        quantity = IntegerField()
        amount = BigIntegerField()
        discount = BigIntegerField()
        total_payable = BigIntegerField()  # wallet currency
        client_reference = CharField(max_length=255, null=True)
        email = CharField(max_length=254, null=True)
        status = CharField()
        base_currency = CharField(max_length=3)
        deduction_currency = CharField(max_length=3)
        delivered_quantity = IntegerField(default=0)
        supplier_calls = IntegerField(default=0)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            indexes = ((("client", "client_reference"), True), (("client", "id"), False))

    class Voucher(Base):
        order = ForeignKeyField(VoucherOrder, on_delete="CASCADE")
        position = IntegerField()  # 1..quantity: a retried delivery cannot add a code twice
        card_number = CharField(null=True)
        pin_code = CharField(null=True)
        claim_url = CharField(null=True)
        expires_at = DateTimeField()
        voucher_reference_number = CharField()

        class Meta:
            indexes = ((("order", "position"), True),)

    class Job(Base):
        kind = CharField()
        subject_id = IntegerField()
        attempts = IntegerField(default=0)
        run_after = DateTimeField()
        locked_until = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        last_error = TextField(null=True)
        created_at = DateTimeField()

        class Meta:
            indexes = ((("kind", "subject_id"), True), (("finished_at", "run_after"), False))

    db.create_tables([VoucherOrder, Voucher, Job])
