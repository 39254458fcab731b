"""API clients: credentials, features and IP allowlists (contract 3.1, 3.7, 13.1)."""

import hashlib
import hmac
import secrets

from peewee import (
    JOIN,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
)

from octopus_cards.models.base import BaseModel, Prepared, db, utcnow
from octopus_cards.models.exceptions import Refused
from octopus_cards.models.reference_data import Currency

FEATURES = ("vouchers", "topups", "esim")
BULK_LIMIT_RANGE = (1, 5000)

API_KEY_PREFIX = "ock_"


def hash_secret(pepper, secret):
    """Keyed hash of a server-generated secret: HMAC-SHA256 with the pepper as key."""
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def new_secret():
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


class Client(BaseModel):
    name = CharField()
    api_key = CharField(unique=True)
    secret_hash = CharField()
    is_active = BooleanField(default=True)
    default_currency = ForeignKeyField(Currency, null=True, on_delete="SET NULL")
    bulk_limit = IntegerField(default=100)
    created_at = DateTimeField(default=utcnow)
    # Raised by every logout: token families issued under an older generation are dead.
    token_generation = IntegerField(default=0)

    @classmethod
    def provision(
        cls, pepper, name, networks=(), features=(), api_key=None, secret=None, default_currency=None, bulk_limit=100
    ):
        """Create a client; returns it with its secret, which is shown once and never stored.

        The key and secret are generated unless given (the bootstrap client of a CI sandbox).
        """
        secret = secret or new_secret()
        with db.atomic():
            client = cls.create(
                name=name,
                api_key=api_key or API_KEY_PREFIX + secrets.token_hex(16),
                secret_hash=hash_secret(pepper, secret),
                default_currency=default_currency,
                bulk_limit=bulk_limit,
            )
            for network in networks:
                client.allow_network(network)
            for feature in features:
                client.enable_feature(feature)
        return client, secret

    @classmethod
    def find(cls, client_id):
        """The client with this id; Refused (one line for the operator) when there is none."""
        client = cls.get_or_none(cls.id == client_id)
        if client is None:
            raise Refused(f"no client with id {client_id}")
        return client

    @classmethod
    def buying(cls, client_id):
        """The client of a token (so it exists), as pricing sees it: its bulk limit and default currency."""
        return BUYER.first(client=client_id)

    def rotate_secret(self, pepper, secret=None):
        secret = secret or new_secret()
        self.secret_hash = hash_secret(pepper, secret)
        self.save(only=[Client.secret_hash])
        return secret

    @classmethod
    def bootstrap(cls, pepper, api_key, secret):
        """Make sure a client with exactly this key and secret exists: active, every feature, and
        no IP restriction."""
        with db.atomic():
            client = cls.get_or_none(cls.api_key == api_key)
            if client is None:
                client, _ = cls.provision(pepper, "bootstrap", (), FEATURES, api_key=api_key, secret=secret)
            else:
                client.rotate_secret(pepper, secret)
                client.set_active(True)
                for feature in FEATURES:
                    client.enable_feature(feature)
                ClientIpAllow.delete().where(ClientIpAllow.client == client).execute()
        return client

    @classmethod
    def authenticate(cls, pepper, api_key, secret):
        """(client id, allowlist) of the active client owning this key and secret, else None.

        One query. An unknown key or an inactive client costs the same hash and comparison.
        """
        rows = (
            []  # no key holds a NUL, and PostgreSQL refuses one in a query: it is simply unknown
            if "\x00" in api_key
            else CREDENTIALS.execute(api_key=api_key).fetchall()
        )
        stored = rows[0][1] if rows else DUMMY_HASH
        matches = hmac.compare_digest(hash_secret(pepper, secret), stored)
        if matches and rows[0][2]:
            return rows[0][0], tuple(row[3] for row in rows if row[3] is not None)
        return None

    def configure(self, default_currency=None, bulk_limit=None):
        """Change the default currency (a Currency) and the bulk limit; None leaves one as it is."""
        if default_currency is not None:
            self.default_currency = default_currency
        if bulk_limit is not None:
            self.bulk_limit = bulk_limit
        self.save(only=[Client.default_currency, Client.bulk_limit])

    @property
    def default_currency_code(self):
        return None if self.default_currency_id is None else Currency.get_by_id(self.default_currency_id).currency

    def set_active(self, active):
        self.is_active = active
        self.save(only=[Client.is_active])

    def networks(self):
        return [row.cidr for row in self.ip_allows.order_by(ClientIpAllow.id)]

    def allow_network(self, network):
        ClientIpAllow.insert(client=self, cidr=str(network)).on_conflict_ignore().execute()

    def remove_network(self, network):
        return (
            ClientIpAllow.delete()
            .where((ClientIpAllow.client == self) & (ClientIpAllow.cidr == str(network)))
            .execute()
        )

    def features(self):
        return sorted(row.feature for row in self.feature_rows)

    def enable_feature(self, feature):
        ClientFeature.insert(client=self, feature=feature).on_conflict_ignore().execute()

    def disable_feature(self, feature):
        return (
            ClientFeature.delete().where((ClientFeature.client == self) & (ClientFeature.feature == feature)).execute()
        )


# Never equal to a real hash (not hex), so an unknown key can never match.
DUMMY_HASH = "-" * 64


class ClientFeature(BaseModel):
    client = ForeignKeyField(Client, backref="feature_rows", on_delete="CASCADE")
    feature = CharField()

    class Meta:
        indexes = ((("client", "feature"), True),)


class ClientIpAllow(BaseModel):
    client = ForeignKeyField(Client, backref="ip_allows", on_delete="CASCADE")
    cidr = CharField()

    class Meta:
        indexes = ((("client", "cidr"), True),)


CREDENTIALS = Prepared(
    lambda slot: (
        Client.select(Client.id, Client.secret_hash, Client.is_active, ClientIpAllow.cidr)
        .join(ClientIpAllow, JOIN.LEFT_OUTER)
        .where(Client.api_key == slot("api_key"))
    )
)
# Every quote and order reads its client (the default currency with it: wallet selection's fallback).
BUYER = Prepared(
    lambda slot: (
        Client.select(Client, Currency).join(Currency, JOIN.LEFT_OUTER).where(Client.id == slot("client")).limit(1)
    )
)
