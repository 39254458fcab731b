"""E-mail receipts end to end (issue 12; contract 5.5 `email`, 14 OCTOPUS_SMTP_URL and
OCTOPUS_MAIL_FROM): a real `octopus-cards serve` with background work mails one plain-text receipt
per voucher order that asked for one, to a real SMTP server (aiosmtpd) on 127.0.0.1, once the order
reaches its final status; without a mail server the receipt is recorded as skipped."""

import re
import secrets
import time

import pytest

from octopus_cards import models
from octopus_cards.models.receipts import Receipt

from support.live_server import LiveServer, cli_json
from support.polling import eventually
from support.receivers import MailReceiver

pytestmark = pytest.mark.e2e

MAIL_FROM = "receipts@octopus.test"


@pytest.fixture(scope="module")
def shop_env(env):
    return dict(env, OCTOPUS_BACKGROUND="true", OCTOPUS_CATALOG="demo", OCTOPUS_WEBHOOK_RETRY_SCHEDULE="0.3,0.3")


def receipts_of(order_ids):
    with models.db.connection_context():
        return list(
            Receipt.select()
            .where((Receipt.vertical == "vouchers") & Receipt.order_id.in_(order_ids))
            .order_by(Receipt.order_id)
        )


def settled(order_ids, count):
    """The receipts of the orders, once there are `count` and none is pending."""
    rows = receipts_of(order_ids)
    return rows if len(rows) == count and all(row.status != "pending" for row in rows) else None


def place_orders(server, settings, orders):
    """A new client with a funded USD wallet places `orders` (bodies of POST /api/v1/orders) and
    waits for each to leave PENDING; the orders as GET /api/v1/orders/{id} then returns them."""
    created = cli_json(settings, "client", "create", "--name", f"mail-{secrets.token_hex(4)}", "--feature",
                       "vouchers", "--json")  # fmt: skip
    wallet = cli_json(settings, "wallet", "create", str(created["client_id"]), "USD", "--json")
    cli_json(settings, "wallet", "credit", str(wallet["id"]), "1000", "--json")
    with server.client() as http:
        login = {"username": created["api_key"], "password": created["api_secret"]}
        token = http.post("/auth/login", json=login).json()["data"]["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        ids = []
        for body in orders:
            answer = http.post("/api/v1/orders", json=body)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])

        def final(order_id):
            order = http.get(f"/api/v1/orders/{order_id}").json()
            return order if order["status"] != "PENDING" else None

        return [eventually(lambda i=order_id: final(i), f"order {order_id} settled") for order_id in ids]


def buyer_address():
    return f"buyer-{secrets.token_hex(4)}@example.com"


def test_a_voucher_order_with_email_gets_one_plain_text_receipt(shop_env, tmp_path):
    """Two orders with `email` (one answered DELIVERED, one fulfilled in the background) and one
    without: one message each for the first two, from OCTOPUS_MAIL_FROM to the order's address,
    naming the order and where its codes are, without a code; none for the third."""
    with MailReceiver() as mail:
        settings = dict(shop_env, OCTOPUS_SMTP_URL=mail.url, OCTOPUS_MAIL_FROM=MAIL_FROM)
        with LiveServer(settings, tmp_path / "logs", name="mail") as server:
            sync_to, async_to = buyer_address(), buyer_address()
            orders = place_orders(server, settings, [
                {"product_id": 1001, "denomination": 10, "quantity": 1, "email": sync_to},
                {"product_id": 1001, "denomination": 10, "quantity": 6, "email": async_to},
                {"product_id": 1001, "denomination": 10, "quantity": 1},
            ])  # fmt: skip
            assert [order["status"] for order in orders] == ["DELIVERED"] * 3
            ids = [order["id"] for order in orders]
            sent = eventually(lambda: settled(ids, 2), "two receipts settled")
            assert [r.status for r in sent] == ["sent", "sent"], [r.last_error for r in sent]
            assert [(r.order_id, r.recipient, r.attempts, r.last_error) for r in sent] == [
                (ids[0], sync_to, 1, None), (ids[1], async_to, 1, None)
            ]  # fmt: skip
            time.sleep(0.5)  # a second message would have arrived by now
            ours = {sync_to, async_to}
            messages = [(to, message) for to, message in mail.messages if set(to) & ours]
    assert sorted(to for to, _ in messages) == sorted([[sync_to], [async_to]]), "not one message per order"
    by_recipient = {to[0]: message for to, message in messages}
    for order, address in ((orders[0], sync_to), (orders[1], async_to)):
        message = by_recipient[address]
        assert (message["From"], message["To"]) == (MAIL_FROM, address)
        assert f"#{order['id']}" in message["Subject"], message["Subject"]
        assert message.get_content_type() == "text/plain" and not message.is_multipart()
        text = message.get_content()
        assert re.search(rf"\b{order['id']}\b", text) and f"GET /api/v1/orders/{order['id']}" in text, text
        assert len(order["vouchers"]) == order["quantity"]
        numbers = set(re.findall(r"\d+", text.replace(str(order["id"]), "")))
        for voucher in order["vouchers"]:
            assert voucher["card_number"] not in text and voucher["pin_code"] not in numbers, "a code in the receipt"


def test_without_smtp_url_the_receipt_is_recorded_skipped(shop_env, tmp_path):
    settings = dict(shop_env, OCTOPUS_SMTP_URL=None)
    with LiveServer(settings, tmp_path / "logs", name="no-mail") as server:
        (order,) = place_orders(server, settings, [
            {"product_id": 1001, "denomination": 10, "quantity": 1, "email": buyer_address()}
        ])  # fmt: skip
        (receipt,) = eventually(lambda: settled([order["id"]], 1), "the receipt settled")
    assert (receipt.status, receipt.attempts, receipt.sent_at) == ("skipped", 0, None)
