"""/api/v1/topups/…: products, variants, operator lookup, charges, orders and their receipt address
(contract 7)."""

from octopus_cards.http.responses import json_answer, paginated
from octopus_cards.http.security import exact_body, runtime
from octopus_cards.models import db, topup_orders, topups
from octopus_cards.models.products import TopupProduct


@db.connection_context()
def list_products(token_info, page=1, per_page=50, type=None, search=None):  # `type`: the contract's name
    items, total = TopupProduct.shelf_page(page, per_page, search, topup_type=type)
    return paginated(items, page, per_page, total)


@db.connection_context()
def get_product(token_info, product_id):
    return json_answer(topups.describe(product_id))


@db.connection_context()
def list_variants(token_info, product_id):
    return json_answer(topups.variants_of(product_id))


@db.connection_context()
def get_variant(token_info, variant_id):
    return json_answer(topups.describe_variant(variant_id))


@db.connection_context()
def lookup(token_info):
    return json_answer(topups.lookup(exact_body()["mobile_number"]))


@db.connection_context()
def quote_charges(token_info):
    body = exact_body()
    return json_answer(
        topups.quote(
            token_info["client_id"], body["product_id"], body["amount"], body.get("category"), body.get("wallet_id")
        )  # fmt: skip
    )


@db.connection_context()
def create_order(token_info):
    body, client_id = exact_body(), token_info["client_id"]
    order = topup_orders.place(
        client_id, body["product_id"], body["amount"], runtime().supplier, body.get("input_data"), body.get("category"),
        body.get("wallet_id"), body.get("client_reference"),
    )  # fmt: skip
    return json_answer(order.public(), status=201)


@db.connection_context()
def list_orders(token_info, page=1, per_page=50, status=None, product_id=None, country=None, client_reference=None):
    items, total = topup_orders.page_for(
        token_info["client_id"], status, product_id, country, client_reference, page, per_page
    )
    return paginated(items, page, per_page, total)


@db.connection_context()
def get_order(token_info, order_id):
    return json_answer(topup_orders.one_for(token_info["client_id"], order_id, runtime().supplier))


@db.connection_context()
def set_notification_email(token_info, order_id):
    order = topup_orders.TopupOrder.set_notification_email(token_info["client_id"], order_id, exact_body()["email"])
    return json_answer(order.public())
