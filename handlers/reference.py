"""GET /api/v1/countries, currencies, categories, subcategories (contract 4)."""
from handlers.errors import invalid_feature, not_found
from models import Category, Client, Country, Currency, Subcategory, db

CACHE_HEADERS = {"Cache-Control": "private, max-age=86400, stale-while-revalidate=600"}


def listing(model):
    return model.active(), 200, CACHE_HEADERS


def detail(model, row_id):
    row = model.find_active(row_id)
    if row is None:
        raise not_found(f"{model.__name__} not found")
    return row, 200, CACHE_HEADERS


def require_vouchers(token_info):
    if not Client.has_feature(token_info["client_id"], "vouchers"):
        raise invalid_feature()


@db.connection_context()
def list_countries():
    return listing(Country)


@db.connection_context()
def get_country(country_id):
    return detail(Country, country_id)


@db.connection_context()
def list_currencies():
    return listing(Currency)


@db.connection_context()
def get_currency(currency_id):
    return detail(Currency, currency_id)


@db.connection_context()
def list_categories(token_info):
    require_vouchers(token_info)
    return listing(Category)


@db.connection_context()
def get_category(category_id, token_info):
    require_vouchers(token_info)
    return detail(Category, category_id)


@db.connection_context()
def list_subcategories(token_info):
    require_vouchers(token_info)
    return listing(Subcategory)


@db.connection_context()
def get_subcategory(subcategory_id, token_info):
    require_vouchers(token_info)
    return detail(Subcategory, subcategory_id)
