"""Persistence: peewee models bound to one database chosen by URL at start-up."""
from models.base import connect, db, migrate, write_txn
from models.clients import Client, ClientFeature, ClientIpAllow, FEATURES
from models.maintenance import prune
from models.ratelimit import RateLimitHit
from models.reference import Category, Country, Currency, Subcategory
from models.tokens import Token, TokenFamily, TokenState

__all__ = [
    "FEATURES",
    "Category",
    "Client",
    "ClientFeature",
    "ClientIpAllow",
    "Country",
    "Currency",
    "RateLimitHit",
    "Subcategory",
    "Token",
    "TokenFamily",
    "TokenState",
    "connect",
    "db",
    "migrate",
    "prune",
    "write_txn",
]
