"""GET /api/v1/countries, currencies, categories, subcategories (contract 4).

Clients may cache reference data for a day (the Cache-Control below). Countries and currencies
change only by migration: each process keeps their encoded answers for OCTOPUS_REFERENCE_CACHE_TTL
seconds, so a warm request touches no database beyond the bearer check.
"""

import time

import anyio

from octopus_cards.http.responses import compact_json, json_body
from octopus_cards.http.security import runtime
from octopus_cards.models import Category, Country, Currency, Subcategory, db
from octopus_cards.models.exceptions import NotFound

CACHE_HEADERS = {"Cache-Control": "private, max-age=86400, stale-while-revalidate=600"}


class Encoded:
    """One model's active rows, encoded once: the list, and each row by id."""

    def __init__(self, rows, expires):
        self.listing = compact_json(rows)
        self.by_id = {row["id"]: compact_json(row) for row in rows}
        self.expires = expires


CACHE = {}


def load(model, ttl):
    with db.connection_context():
        return Encoded(model.active(), time.monotonic() + ttl)


# Countries and currencies change only by migration. Categories and subcategories change with every
# catalogue import, which must show in every request that starts after it (contract 15.1, item 39).
CACHEABLE = (Country, Currency)


async def encoded(model):
    entry = CACHE.get(model)
    if entry is None or entry.expires <= time.monotonic():
        ttl = runtime().settings.reference_cache_ttl if model in CACHEABLE else 0
        entry = await anyio.to_thread.run_sync(load, model, ttl)
        CACHE[model] = entry
    return entry


async def listing(model):
    return json_body((await encoded(model)).listing, CACHE_HEADERS)


async def detail(model, row_id):
    body = (await encoded(model)).by_id.get(row_id)
    if body is None:
        raise NotFound(model.__name__)
    return json_body(body, CACHE_HEADERS)


async def list_countries():
    return await listing(Country)


async def get_country(country_id):
    return await detail(Country, country_id)


async def list_currencies():
    return await listing(Currency)


async def get_currency(currency_id):
    return await detail(Currency, currency_id)


async def list_categories():
    return await listing(Category)


async def get_category(category_id):
    return await detail(Category, category_id)


async def list_subcategories():
    return await listing(Subcategory)


async def get_subcategory(subcategory_id):
    return await detail(Subcategory, subcategory_id)
