"""Clients, their features and allowlists, token state, and reference tables."""

import datetime

from peewee import (
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

    class Country(Base):
        name = CharField()
        official_name = CharField()
        alpha_2 = CharField(max_length=2, unique=True)
        alpha_3 = CharField(max_length=3, unique=True)
        numeric_code = CharField(max_length=3)
        dialing_prefix = CharField()
        is_active = BooleanField(default=True)

    class Currency(Base):
        name = CharField()
        currency = CharField(max_length=3, unique=True)
        precision = IntegerField()
        is_active = BooleanField(default=True)

    class Category(Base):
        name = CharField()
        is_active = BooleanField(default=True)

    class Subcategory(Base):
        name = CharField()
        is_active = BooleanField(default=True)

    class Client(Base):
        name = CharField()
        api_key = CharField(unique=True)
        secret_hash = CharField()
        is_active = BooleanField(default=True)
        default_currency = ForeignKeyField(Currency, null=True, on_delete="SET NULL")
        bulk_limit = IntegerField(default=100)
        created_at = DateTimeField(default=datetime.datetime.utcnow)

    class ClientFeature(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        feature = CharField()

        class Meta:
            indexes = ((("client", "feature"), True),)

    class ClientIpAllow(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        cidr = CharField()

        class Meta:
            indexes = ((("client", "cidr"), True),)

    class TokenFamily(Base):
        client = ForeignKeyField(Client, on_delete="CASCADE")
        created_at = DateTimeField()
        revoked_at = DateTimeField(null=True)

    class Token(Base):
        jti = CharField(primary_key=True)
        client = ForeignKeyField(Client, index=True, on_delete="CASCADE")
        family = ForeignKeyField(TokenFamily, index=True, on_delete="CASCADE")
        token_use = CharField()
        parent_jti = CharField(null=True)
        issued_at = DateTimeField()
        expires_at = DateTimeField(index=True)
        used_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)

    db.create_tables(
        [Country, Currency, Category, Subcategory, Client, ClientFeature, ClientIpAllow, TokenFamily, Token]
    )
