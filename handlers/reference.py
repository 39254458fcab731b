"""GET /api/v1/countries, currencies, categories, subcategories (contract 4).

Reference data changes only by migration or operator tooling, and clients may cache it for a
day (the Cache-Control below); each process keeps the encoded answers for
OCTOPUS_REFERENCE_CACHE_TTL seconds, so a warm request touches no database beyond the bearer check.
"""
import json
import time

import anyio
from starlette.responses import Response

from handlers.errors import invalid_feature, not_found
from handlers.security import runtime
from models import Category, Country, Currency, Subcategory, db

CACHE_HEADERS = {"Cache-Control": "private, max-age=86400, stale-while-revalidate=600"}


class Encoded:
    """One model's active rows, encoded once: the list, and each row by id."""

    def __init__(self, rows, expires):
        self.listing = encode(rows)
        self.by_id = {row["id"]: encode(row) for row in rows}
        self.expires = expires


CACHE = {}


def encode(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def load(model, ttl):
    with db.connection_context():
        return Encoded(model.active(), time.monotonic() + ttl)


async def encoded(model):
    entry = CACHE.get(model)
    if entry is None or entry.expires <= time.monotonic():
        entry = await anyio.to_thread.run_sync(load, model, runtime().settings.reference_cache_ttl)
        CACHE[model] = entry
    return entry


def json_response(body):
    return Response(body, media_type="application/json", headers=CACHE_HEADERS)


async def listing(model):
    return json_response((await encoded(model)).listing)


async def detail(model, row_id):
    body = (await encoded(model)).by_id.get(row_id)
    if body is None:
        raise not_found(f"{model.__name__} not found")
    return json_response(body)


def require_vouchers(token_info):
    if "vouchers" not in token_info["features"]:
        raise invalid_feature()


async def list_countries():
    return await listing(Country)


async def get_country(country_id):
    return await detail(Country, country_id)


async def list_currencies():
    return await listing(Currency)


async def get_currency(currency_id):
    return await detail(Currency, currency_id)


async def list_categories(token_info):
    require_vouchers(token_info)
    return await listing(Category)


async def get_category(category_id, token_info):
    require_vouchers(token_info)
    return await detail(Category, category_id)


async def list_subcategories(token_info):
    require_vouchers(token_info)
    return await listing(Subcategory)


async def get_subcategory(subcategory_id, token_info):
    require_vouchers(token_info)
    return await detail(Subcategory, subcategory_id)
