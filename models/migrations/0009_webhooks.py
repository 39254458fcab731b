"""Webhook endpoints, their deliveries and the log of every attempt (contract 9.5, 9.6, 16.6), and
e-mail receipts."""

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    # A frozen copy of the schema as it was: later model changes must not alter this step.
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Client(Base):
        pass

    class Event(Base):
        id = CharField(primary_key=True)

    class WebhookEndpoint(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        url = CharField(max_length=2048)
        events = TextField()
        secret = CharField()
        previous_secret = CharField(null=True)
        previous_secret_until = DateTimeField(null=True)
        is_active = BooleanField(default=True)
        created_at = DateTimeField()

    class Delivery(Base):
        event = ForeignKeyField(Event, on_delete="CASCADE")
        endpoint = ForeignKeyField(WebhookEndpoint, on_delete="CASCADE")
        status = CharField()
        attempts = IntegerField(default=0)
        last_attempt = IntegerField(null=True)
        next_attempt_at = DateTimeField(null=True)
        delivered_at = DateTimeField(null=True)
        last_status = IntegerField(null=True)
        last_error = CharField(null=True)
        last_sent_at = IntegerField(null=True)
        created_at = DateTimeField()

        class Meta:
            indexes = ((("endpoint", "status", "created_at"), False), (("status",), False))

    class DeliveryAttempt(Base):
        delivery = ForeignKeyField(Delivery, on_delete="CASCADE")
        number = IntegerField()
        started_at = DateTimeField()
        sent_at = IntegerField()
        http_status = IntegerField(null=True)
        duration_ms = IntegerField()
        error = CharField(null=True)
        response_start = TextField()

    class Receipt(Base):
        vertical = CharField()
        order_id = IntegerField()
        client = ForeignKeyField(Client, on_delete="CASCADE")
        recipient = CharField(max_length=254)
        subject = CharField()
        text = TextField()
        status = CharField()
        attempts = IntegerField(default=0)
        last_error = CharField(null=True)
        sent_at = DateTimeField(null=True)
        created_at = DateTimeField()

        class Meta:
            indexes = ((("vertical", "order_id"), True),)

    db.create_tables([WebhookEndpoint, Delivery, DeliveryAttempt, Receipt])
