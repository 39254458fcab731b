"""GET /api/v1/products, /api/v1/products/{id}; POST …/availability and …/charges (contract 5.1-5.4)."""

from octopus_cards.http.responses import json_body, paginated
from octopus_cards.http.security import exact_body, runtime
from octopus_cards.http.sorting import shelf_order
from octopus_cards.models import db, vouchers
from octopus_cards.models.encoding import dumps


@db.connection_context()
def list_products(token_info, page=1, limit=50, category=None, country_id=None, currency_id=None, search=None,
                  sort=None, sort_by=None, sort_dir=None):  # fmt: skip
    field, descending = shelf_order(sort, sort_by, sort_dir)
    shelf = vouchers.Shelf(category, country_id, currency_id, search, field, descending)
    items, total = vouchers.shelf_page(token_info["client_id"], shelf, page, limit)
    return paginated(items, page, limit, total)


@db.connection_context()
def get_product(token_info, product_id):
    return json_body(dumps(vouchers.describe(token_info["client_id"], product_id)).encode())


@db.connection_context()
def check_availability(token_info, product_id):
    body = exact_body()
    available = vouchers.is_available(
        token_info["client_id"], product_id, body["denomination"], body["quantity"], runtime().supplier
    )
    return {"is_available": available}, 200


@db.connection_context()
def quote_charges(token_info, product_id):
    body = exact_body()
    quoted = vouchers.quote(token_info["client_id"], product_id, body["denomination"], body["quantity"],
                            body.get("wallet_id"))  # fmt: skip
    return json_body(dumps(quoted).encode())
