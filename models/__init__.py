"""Persistence: peewee models bound to one database chosen by URL at start-up."""

from octopus_cards.models.base import connect, db, migrate, on_sqlite, write_txn
from octopus_cards.models.clients import FEATURES, Client, ClientFeature, ClientIpAllow
from octopus_cards.models.maintenance import prune
from octopus_cards.models.products import (
    ClientBlacklist,
    ClientDiscount,
    Denomination,
    EsimProduct,
    EsimVariant,
    TopupProduct,
    TopupVariant,
    VoucherProduct,
)
from octopus_cards.models.ratelimit import RateLimitHit
from octopus_cards.models.reference_data import Category, Country, Currency, Subcategory
from octopus_cards.models.tokens import Token, TokenFamily, TokenState
from octopus_cards.models.wallets import ExchangeRate, Transaction, Wallet
from octopus_cards.models.webhooks import Delivery, DeliveryAttempt, Event, WebhookEndpoint

__all__ = [
    "Category",
    "Client",
    "ClientBlacklist",
    "ClientDiscount",
    "ClientFeature",
    "ClientIpAllow",
    "Country",
    "Currency",
    "Delivery",
    "DeliveryAttempt",
    "Denomination",
    "EsimProduct",
    "EsimVariant",
    "Event",
    "ExchangeRate",
    "FEATURES",
    "RateLimitHit",
    "Subcategory",
    "Token",
    "TokenFamily",
    "TokenState",
    "TopupProduct",
    "TopupVariant",
    "Transaction",
    "VoucherProduct",
    "Wallet",
    "WebhookEndpoint",
    "connect",
    "db",
    "migrate",
    "on_sqlite",
    "prune",
    "write_txn",
]
