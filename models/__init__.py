"""Persistence: peewee models bound to one database chosen by URL at start-up."""

from octopus_cards.models.base import connect, db, migrate, write_txn
from octopus_cards.models.clients import FEATURES, Client, ClientFeature, ClientIpAllow
from octopus_cards.models.events import Event
from octopus_cards.models.maintenance import prune
from octopus_cards.models.ratelimit import RateLimitHit
from octopus_cards.models.reference_data import Category, Country, Currency, Subcategory
from octopus_cards.models.tokens import Token, TokenFamily, TokenState
from octopus_cards.models.wallets import ExchangeRate, Transaction, Wallet

__all__ = [
    "FEATURES",
    "Category",
    "Client",
    "ClientFeature",
    "ClientIpAllow",
    "Country",
    "Currency",
    "Event",
    "ExchangeRate",
    "RateLimitHit",
    "Subcategory",
    "Token",
    "TokenFamily",
    "TokenState",
    "Transaction",
    "Wallet",
    "connect",
    "db",
    "migrate",
    "prune",
    "write_txn",
]
