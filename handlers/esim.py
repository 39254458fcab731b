"""/api/v1/esim/…: products, variants, charges, orders and their receipt address (contract 8)."""

import time

import anyio

from octopus_cards.http.responses import json_answer, paginated
from octopus_cards.http.security import exact_body, runtime
from octopus_cards.models import db, esim, esim_orders
from octopus_cards.models.products import EsimProduct
from octopus_cards.worker import esim_within


@db.connection_context()
def list_products(token_info, page=1, per_page=50, country_code=None, search=None):
    items, total = EsimProduct.shelf_page(page, per_page, search, country_code=country_code)
    return paginated(items, page, per_page, total)


@db.connection_context()
def get_product(token_info, product_id):
    return json_answer(esim.describe(token_info["client_id"], product_id))


@db.connection_context()
def list_variants(token_info, product_id):
    return json_answer(esim.variants_of(token_info["client_id"], product_id))


@db.connection_context()
def get_variant(token_info, variant_id):
    return json_answer(esim.describe_variant(token_info["client_id"], variant_id))


@db.connection_context()
def quote_charges(token_info):
    body = exact_body()
    return json_answer(esim.quote(token_info["client_id"], body["product_id"], body["amount"], body.get("wallet_id")))


async def create_order(token_info):
    """Async: the wait for the supplier (up to the eSIM deadline) holds no thread."""
    started, body, rt, client_id = time.monotonic(), exact_body(), runtime(), token_info["client_id"]
    deadline = rt.settings.esim_sync_deadline

    @db.connection_context()
    def place():
        return esim_orders.place(client_id, body["product_id"], body["amount"], rt.supplier, body.get("wallet_id"),
                                 body.get("client_reference"), hold=deadline + rt.settings.job_lease)  # fmt: skip

    order_id = (await anyio.to_thread.run_sync(place)).id
    await esim_within(order_id, rt, deadline - (time.monotonic() - started))
    order = await anyio.to_thread.run_sync(db.connection_context()(esim_orders.one_for), client_id, order_id)
    return json_answer(order)


@db.connection_context()
def list_orders(token_info, page=1, per_page=50, status=None, client_reference=None):
    items, total = esim_orders.page_for(token_info["client_id"], status, client_reference, page, per_page)
    return paginated(items, page, per_page, total)


@db.connection_context()
def get_order(token_info, order_id):
    return json_answer(esim_orders.one_for(token_info["client_id"], order_id, runtime().supplier))


@db.connection_context()
def set_notification_email(token_info, order_id):
    order = esim_orders.EsimOrder.set_notification_email(token_info["client_id"], order_id, exact_body()["email"])
    return json_answer(order.public())
