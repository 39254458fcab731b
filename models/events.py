"""Events (contract 9.1, 9.2): recorded in the same database transaction as the change they
announce, with the exact body every delivery of them will send."""

from ksuid import Ksuid
from peewee import CharField, DateTimeField, ForeignKeyField, TextField

from octopus_cards.models.base import BaseModel, utcnow
from octopus_cards.models.clients import Client
from octopus_cards.models.encoding import dumps, timestamp

WALLET_CREDITED = "wallet.credited"
WALLET_DEBITED = "wallet.debited"


class Event(BaseModel):
    id = CharField(primary_key=True)  # evt_ + KSUID
    client = ForeignKeyField(Client, backref="events", on_delete="CASCADE")
    type = CharField()
    body = TextField()  # the envelope, byte for byte as it is sent
    created_at = DateTimeField()

    @classmethod
    def record(cls, client_id, event_type, data):
        """Write the event of `event_type` with `data`; call inside the change's transaction."""
        event_id, now = f"evt_{Ksuid()}", utcnow()
        body = dumps({"id": event_id, "type": event_type, "created_at": timestamp(now), "data": data})
        return cls.create(id=event_id, client=client_id, type=event_type, body=body, created_at=now)
