"""GET /api/v1/products, /api/v1/products/{id}; POST …/availability and …/charges; POST and GET
/api/v1/orders, GET /api/v1/orders/{id} (contract 5)."""

from octopus_cards.http.reads import read
from octopus_cards.http.responses import json_answer, json_body, paginated, paginated_body
from octopus_cards.http.security import exact_body, runtime
from octopus_cards.http.sorting import shelf_order
from octopus_cards.models import db, orders, vouchers
from octopus_cards.worker import fulfil_now


async def list_products(token_info, page=1, limit=50, category=None, country_id=None, currency_id=None, search=None,
                        sort=None, sort_by=None, sort_dir=None):  # fmt: skip
    field, descending = shelf_order(sort, sort_by, sort_dir)
    shelf = vouchers.Shelf(category, country_id, currency_id, search, field, descending)
    body, size, total = await read(vouchers.encoded_page, token_info["client_id"], shelf, page, limit)
    return paginated_body(body, size, page, limit, total)


async def get_product(token_info, product_id):
    return json_body(await read(vouchers.encoded_product, token_info["client_id"], product_id))


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
    return json_answer(quoted)


@db.connection_context()
def create_order(token_info):
    body, rt, client_id = exact_body(), runtime(), token_info["client_id"]
    sync = body["quantity"] <= orders.SYNC_QUANTITY
    order, job, asked = orders.place(
        client_id, body["product_id"], body["denomination"], body["quantity"], rt.supplier, body.get("wallet_id"),
        body.get("client_reference"), body.get("email"),
        hold=rt.settings.voucher_sync_deadline + rt.settings.job_lease if sync else None,
        retry_schedule=rt.settings.fulfilment_retry_schedule,
    )  # fmt: skip
    if sync and not asked:
        fulfil_now(order, job, rt)
    # Asked inside the placing transaction, the order is settled as it stands; else it is read again.
    return json_answer(orders.public(order) if asked else orders.one_for(client_id, order.id), status=201)


@db.connection_context()
def list_orders(token_info, page=1, limit=50, status=None, product_id=None, client_reference=None):
    items, total = orders.page_for(token_info["client_id"], status, product_id, client_reference, page, limit)
    return paginated(items, page, limit, total)


@db.connection_context()
def get_order(token_info, order_id):
    return json_answer(orders.one_for(token_info["client_id"], order_id))
