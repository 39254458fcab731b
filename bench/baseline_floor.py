"""The honest floor: a raw Starlette app doing octopus-cards' hot-path work (see baseline_common)
with no hand-off at all: its statements run on the event loop's thread, written as plain SQL (no
ORM). On SQLite it runs them over one connection per process: the physical limit of a one-process
Python server on SQLite. On PostgreSQL it awaits them through asyncpg (a pool of connections, each
statement prepared once per connection): no thread, and no request waits on another's round trip.
octopus-cards, which hands its database work to threads and builds its queries with peewee, is
measured against it (issue 15).

Besides auth and the currencies it serves the two voucher scenarios, doing the statements
octopus-cards does for them, in the same order:

* GET /api/v1/products (page and limit; newest first): the token state, the catalogue version,
  and the page encoded once per process while that version stands, as octopus-cards keeps it;
* POST /api/v1/orders, quantity 1 to 5 in the order's currency (the synchronous order): the
  product, the client's wallets, the product's offers and the client read; one write transaction
  with the order, the debit and its transaction, the `wallet.debited` event, the client's webhook
  endpoints read, and the codes (made as the mock supplier makes them) with the order's
  `order.delivered` event; the codes read back for the answer.

Its arithmetic and formats are its own few lines, not octopus-cards' helpers, so that an
optimisation there does not speed up the yardstick too.

Run by bench/run.py as `python bench/baseline_floor.py --host 127.0.0.1 --port P [--workers N]`
with the same OCTOPUS_* environment as the server under test. The JWT rules, addresses, headers and
bodies are baseline_common's; the currency list is encoded once per process, as octopus-cards does.
"""

import contextlib
import datetime
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import string
import sys
from decimal import ROUND_HALF_UP, Decimal

import baseline_common as common
import simplejson
from baseline_starlette import (
    CURRENCY_NOT_FOUND,
    Json,
    address_of,
    app_of,
    error,
    json_body,
    login_request,
    refresh_request,
)
from cyksuid.v2 import ksuid
from starlette.background import BackgroundTask
from starlette.routing import Route

from octopus_cards.cli import pin_worker
from octopus_cards.settings import Settings

TOKEN_STATE = """
    SELECT t.client_id, t.family_id, t.token_use, t.revoked_at, t.used_at, f.generation, c.token_generation,
           c.is_active, a.cidr, cf.feature
    FROM token t JOIN client c ON c.id = t.client_id JOIN token_family f ON f.id = t.family_id
    LEFT JOIN client_ip_allow a ON a.client_id = c.id LEFT JOIN client_feature cf ON cf.client_id = c.id
    WHERE t.jti = ?"""
CURRENCIES = 'SELECT id, name, currency, "precision" FROM currency WHERE is_active ORDER BY id'
CREDENTIALS = "SELECT id, secret_hash, is_active FROM client WHERE api_key = ?"
NETWORKS = "SELECT cidr FROM client_ip_allow WHERE client_id = ?"
NEW_FAMILY = """
    INSERT INTO token_family (client_id, created_at, generation)
    VALUES (?, ?, (SELECT token_generation FROM client WHERE id = ?)) RETURNING id"""
NEW_PAIR = """
    INSERT INTO token (jti, client_id, family_id, token_use, parent_jti, issued_at, expires_at)
    VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)"""
USE_REFRESH = """
    UPDATE token SET used_at = ?
    WHERE jti = ? AND used_at IS NULL AND revoked_at IS NULL AND family_id IN (
        SELECT f.id FROM token_family f JOIN client c ON c.id = f.client_id
        WHERE f.id = ? AND f.generation = c.token_generation)"""
REVOKE_FAMILY = (
    "UPDATE token_family SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
    "UPDATE token SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
)
LOGOUT = "UPDATE client SET token_generation = token_generation + 1 WHERE id = ?"
OLDER = "client_id = ? AND generation < (SELECT token_generation FROM client WHERE id = ?)"
MARK_LOGGED_OUT = (
    f"UPDATE token_family SET revoked_at = ? WHERE {OLDER} AND revoked_at IS NULL",
    f"UPDATE token SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL"
    f" AND family_id IN (SELECT id FROM token_family WHERE {OLDER})",
)

# -- vouchers --
VISIBLE = """p.is_active AND (p.stock IS NULL OR p.stock > 0)
    AND p.id NOT IN (SELECT product_id FROM client_blacklist WHERE client_id = ?)"""
CATALOGUE_VERSION = "SELECT version FROM catalogue_version WHERE id = 1"
SHELF = f"""
    SELECT p.id, p.name, cat.name, sub.name, co.alpha_3, cu.currency, cu."precision", p.image_url,
           p.delivery_mode, p.delivery_time, p.validity
    FROM voucher_product p JOIN category cat ON cat.id = p.category_id
    LEFT JOIN subcategory sub ON sub.id = p.subcategory_id
    JOIN country co ON co.id = p.country_id JOIN currency cu ON cu.id = p.currency_id
    WHERE {VISIBLE} ORDER BY p.id DESC LIMIT ? OFFSET ?"""
SHELF_SIZE = f"SELECT count(*) FROM voucher_product p WHERE {VISIBLE}"
OFFERS = """
    SELECT d.product_id, d.min_value, d.max_value, d.discount, own.discount
    FROM denomination d LEFT JOIN client_discount own
        ON own.product_id = d.product_id AND own.client_id = ? AND own.vertical = 'vouchers'
    WHERE d.product_id IN ({}) ORDER BY d.product_id, d.position"""
PRODUCT = f"""
    SELECT p.id, p.name, p.delivery_mode, p.stock, p.mock, cu.currency, cu."precision"
    FROM voucher_product p JOIN currency cu ON cu.id = p.currency_id WHERE {VISIBLE} AND p.id = ?"""
WALLETS = "SELECT w.id, cu.currency FROM wallet w JOIN currency cu ON cu.id = w.currency_id WHERE w.client_id = ?"
BUYER = """
    SELECT c.bulk_limit, cu.currency FROM client c LEFT JOIN currency cu ON cu.id = c.default_currency_id
    WHERE c.id = ?"""
NEW_ORDER = """
    INSERT INTO voucher_order (client_id, product_id, product_name, wallet_id, denomination, quantity, amount,
        discount, total_payable, client_reference, email, status, base_currency, deduction_currency,
        delivered_quantity, supplier_calls, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 'PENDING', ?, ?, 0, 0, ?, ?) RETURNING id"""
TAKE_STOCK = "UPDATE voucher_product SET stock = stock - ? WHERE id = ? AND stock >= ?"
POSTING = """
    SELECT w.client_id, cu.id, cu.currency, cu."precision" FROM wallet w JOIN currency cu ON cu.id = w.currency_id
    WHERE w.id = ?"""
DEBIT = "UPDATE wallet SET amount = amount - ? WHERE id = ? AND amount >= ?"
NEW_TRANSACTION = """
    INSERT INTO wallet_transaction (wallet_id, amount, transaction_type, status, remarks, order_vertical, order_id,
        created_at)
    VALUES (?, ?, 'DEBIT', 'COMPLETED', ?, 'vouchers', ?, ?) RETURNING id"""
NEW_EVENT = "INSERT INTO event (id, client_id, type, body, created_at) VALUES (?, ?, ?, ?, ?)"
ENDPOINTS = "SELECT id, events, is_active FROM webhook_endpoint WHERE client_id = ?"
DELIVERED = """
    UPDATE voucher_order SET status = 'DELIVERED', delivered_quantity = ?, updated_at = ?
    WHERE id = ? AND status = 'PENDING' AND delivered_quantity = 0"""
NEW_CODE = """
    INSERT INTO voucher (order_id, position, card_number, pin_code, claim_url, expires_at, voucher_reference_number)
    VALUES (?, ?, ?, ?, NULL, ?, ?)"""
CODES = """
    SELECT card_number, pin_code, claim_url, expires_at, voucher_reference_number
    FROM voucher WHERE order_id = ? ORDER BY position"""

ALPHABET = string.ascii_uppercase + string.digits
UNITS = 10_000  # money columns hold ten-thousandths
PLACES = Decimal("0.0001")
RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
POOL_SIZE = 32  # PostgreSQL: one connection for each of the benchmark's connections


def moment(value):
    """A timestamp column's value as a datetime (SQLite gives text)."""
    return datetime.datetime.fromisoformat(value) if isinstance(value, str) else value


def decimal_of(stored):
    return (Decimal(stored) / UNITS).quantize(PLACES)


def stored(amount):
    return int(amount * UNITS)


def rounded(value):
    return value.quantize(PLACES, rounding=ROUND_HALF_UP)


def plain(value):
    """No exponent, no trailing zeros."""
    return Decimal(f"{value.normalize():f}")


def shown(value, precision):
    """At least the currency's precision: 25.00, 4.275, JPY 5000."""
    places = max(precision, -plain(value).as_tuple().exponent)
    return value.quantize(Decimal(1).scaleb(-places))


def encoded(value):
    return simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":")).encode()


class Refused(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


class Sqlite:
    """The process's one connection; its statements run, and finish, on the loop's thread (the
    coroutines never suspend, so a transaction is never interleaved with another request's)."""

    def __init__(self, path):
        # Checked on every use to be the thread that opened it: the loop's.
        self.db = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode = wal", "foreign_keys = 1", "synchronous = normal", "busy_timeout = 5000"):
            self.db.execute(f"PRAGMA {pragma}")

    @contextlib.asynccontextmanager
    async def session(self):
        yield self

    @staticmethod
    def stamp(moment):
        """A datetime as the models' columns hold it."""
        return moment.isoformat(" ")

    async def rows(self, sql, params=()):
        return self.db.execute(sql, params).fetchall()

    async def count(self, sql, params=()):
        """The statement's changed rows."""
        return self.db.execute(sql, params).rowcount

    @contextlib.asynccontextmanager
    async def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


class Postgres:
    """A pool of asyncpg connections: a request holds one while it runs."""

    def __init__(self, url):
        self.url, self.pool, self.texts = url, None, {}

    async def open(self):
        import asyncpg

        self.pool = await asyncpg.create_pool(self.url, min_size=1, max_size=POOL_SIZE)

    async def close(self):
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def session(self):
        async with self.pool.acquire() as connection:
            yield PostgresSession(connection, self.texts)


class PostgresSession:
    def __init__(self, connection, texts):
        self.connection, self.texts = connection, texts

    @staticmethod
    def stamp(moment):
        return moment

    def text(self, sql):
        """The statement with asyncpg's numbered placeholders."""
        text = self.texts.get(sql)
        if text is None:
            numbers = iter(range(1, sql.count("?") + 1))
            text = self.texts[sql] = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
        return text

    async def rows(self, sql, params=()):
        return [tuple(record) for record in await self.connection.fetch(self.text(sql), *params)]

    async def count(self, sql, params=()):
        status = await self.connection.execute(self.text(sql), *params)
        return int(status.rpartition(" ")[2])

    def transaction(self):
        return self.connection.transaction()


class Floor:
    """The work of each endpoint, over a session of the database (`s`), and what the process keeps
    encoded: the currencies, the product pages of the current catalogue version."""

    def __init__(self, url):
        scheme, _, rest = url.partition("://")
        if scheme == "sqlite":
            self.db = Sqlite(rest.removeprefix("/"))
        elif scheme in ("postgres", "postgresql"):
            self.db = Postgres(f"postgresql://{rest}")
        else:
            raise SystemExit(f"the floor runs on SQLite or PostgreSQL, not {scheme}")
        self.encoded = {}
        self.pages, self.version = {}, None

    async def token_state(self, s, jti):
        rows = await s.rows(TOKEN_STATE, (jti,))
        state = common.state_of([row[:-1] for row in rows])
        if state is not None:
            state["features"] = {row[-1] for row in rows}
        return state

    async def authorize(self, s, jti, client_id, address, feature=None):
        state = await self.token_state(s, jti)
        if state is None or not state["live"] or state["token_use"] != "access" or state["client_id"] != client_id:
            raise common.Unauthorized("Invalid token")
        common.check_allowed(address, state["networks"])
        if feature is not None and feature not in state["features"]:
            raise Refused(403, "Feature not enabled for this client")
        return client_id

    async def currencies(self, s):
        """The active currencies, encoded once: (the list body, {id: one currency's body})."""
        if not self.encoded:
            fields = ("id", "name", "currency", "precision")
            rows = [dict(zip(fields, row, strict=True)) for row in await s.rows(CURRENCIES)]
            self.encoded["list"] = json.dumps(rows).encode()
            self.encoded["one"] = {row["id"]: json.dumps(row).encode() for row in rows}
        return self.encoded["list"], self.encoded["one"]

    @staticmethod
    def pair_insert(s, client_id, family_id, pair, parent_jti):
        """The INSERT of a token pair, and its values."""
        values = []
        for token in pair:
            values += [token["jti"], client_id, family_id, token["token_use"], parent_jti,
                       s.stamp(token["issued_at"]), s.stamp(token["expires_at"])]  # fmt: skip
        return NEW_PAIR, values

    async def login(self, s, codec, pepper, username, password, address):
        client = await s.rows(CREDENTIALS, (username,))
        client = client[0] if client else None
        digest = hmac.new(pepper, password.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(digest, client[1] if client else common.DUMMY_HASH) or not client[2]:
            raise common.Unauthorized("Invalid credentials")
        client_id = client[0]
        common.check_allowed(address, [row[0] for row in await s.rows(NETWORKS, (client_id,))])
        pair = codec.issue_pair(client_id)
        async with s.transaction():
            ((family_id,),) = await s.rows(NEW_FAMILY, (client_id, s.stamp(common.utcnow()), client_id))
            await s.count(*self.pair_insert(s, client_id, family_id, pair, None))
        return common.token_payload(client_id, pair)

    async def refresh(self, s, codec, token, address):
        invalid = common.Unauthorized("Invalid refresh token")
        try:
            client_id, jti, expired = codec.verify(token, "refresh")
        except common.Unauthorized:
            raise invalid from None
        state = await self.token_state(s, jti)
        if state is None or state["token_use"] != "refresh" or state["client_id"] != client_id:
            raise invalid
        if state["used"] and not state["revoked"]:
            await self.revoke_family(s, state["family_id"])
        if expired or not state["live"]:
            raise invalid
        common.check_allowed(address, state["networks"])
        pair = codec.issue_pair(client_id)
        async with s.transaction():
            won = await s.count(USE_REFRESH, (s.stamp(common.utcnow()), jti, state["family_id"])) == 1
            if won:
                await s.count(*self.pair_insert(s, client_id, state["family_id"], pair, jti))
        if not won:
            await self.revoke_family(s, state["family_id"])
            raise invalid
        return common.token_payload(client_id, pair)

    @staticmethod
    async def revoke_family(s, family_id):
        now = s.stamp(common.utcnow())
        async with s.transaction():
            for sql in REVOKE_FAMILY:
                await s.count(sql, (now, family_id))

    @staticmethod
    async def logout(s, client_id):
        async with s.transaction():
            await s.count(LOGOUT, (client_id,))
        return common.LOGOUT_BODY

    async def mark_logged_out(self, client_id):
        """After the response, in a session of its own."""
        async with self.db.session() as s:
            now = s.stamp(common.utcnow())
            families, tokens = MARK_LOGGED_OUT
            async with s.transaction():
                await s.count(families, (now, client_id, client_id))
                await s.count(tokens, (now, client_id, client_id, client_id))

    # -- vouchers --

    @staticmethod
    async def offers(s, client_id, product_ids):
        """{product id: [(min, max, effective discount)]} in the catalogue's order."""
        found = {product_id: [] for product_id in product_ids}
        sql = OFFERS.format(", ".join("?" * len(product_ids)))
        for product_id, low, high, discount, own in await s.rows(sql, (client_id, *product_ids)):
            found[product_id].append((decimal_of(low), decimal_of(high), decimal_of(max(discount, own or 0))))
        return found

    async def products_page(self, s, client_id, page, limit):
        """(body, items, total) of a page, newest first, kept while the catalogue version stands."""
        ((version,),) = await s.rows(CATALOGUE_VERSION)
        if version != self.version:
            self.pages, self.version = {}, version
        key = (client_id, page, limit)
        if key not in self.pages:
            rows = await s.rows(SHELF, (client_id, limit, (page - 1) * limit))
            ((total,),) = await s.rows(SHELF_SIZE, (client_id,))
            offers = await self.offers(s, client_id, [row[0] for row in rows]) if rows else {}
            items = [
                {"id": id_, "name": name, "category": category, "sub_category": subcategory, "country_code": country,
                 "currency_code": currency, "image_url": image_url, "delivery_mode": mode, "delivery_time": time,
                 "validity": validity,
                 "available_denominations": [
                     {"min_value": shown(low, precision), "max_value": shown(high, precision),
                      "discount": plain(discount)}
                     for low, high, discount in offers[id_]
                 ]}
                for id_, name, category, subcategory, country, currency, precision, image_url, mode, time, validity
                in rows
            ]  # fmt: skip
            self.pages[key] = (encoded(items), len(items), total)
        return self.pages[key]

    @staticmethod
    async def record_event(s, client_id, event_type, data, now):
        event_id = f"evt_{ksuid()}"
        body = encoded({"id": event_id, "type": event_type, "created_at": now.strftime(RFC3339), "data": data})
        await s.count(NEW_EVENT, (event_id, client_id, event_type, body.decode(), s.stamp(now)))
        # The benchmark's buyer has no endpoints; the floor reads them, as octopus-cards does.
        await s.rows(ENDPOINTS, (client_id,))

    async def order(self, s, client_id, product_id, denomination, quantity):
        """A synchronous order, delivered: its object (contract 5.5) with its codes."""
        product = await s.rows(PRODUCT, (client_id, product_id))
        if not product:
            raise Refused(404, "Product not found")
        ((_, name, delivery_mode, stock, mock, currency, precision),) = product
        wallets = await s.rows(WALLETS, (client_id,))
        denomination = Decimal(str(denomination))
        offered = (await self.offers(s, client_id, [product_id]))[product_id]
        entry = next((entry for entry in offered if entry[0] <= denomination <= entry[1]), None)
        if entry is None or -denomination.as_tuple().exponent > precision:
            raise Refused(400, "Invalid denomination")
        ((bulk_limit, default_currency),) = await s.rows(BUYER, (client_id,))
        if quantity > bulk_limit:
            raise Refused(400, "Quantity exceeds the bulk limit")
        by_currency = {wallet_currency: wallet_id for wallet_id, wallet_currency in wallets}
        wallet_id = by_currency.get(currency) or by_currency.get(default_currency)
        if wallet_id is None or currency not in by_currency:
            raise Refused(400, "The floor pays from a wallet in the product's currency only")
        if (stock is not None and stock < quantity) or (json.loads(mock) if mock else None):
            raise Refused(400, "The floor sells neither tracked stock nor sandbox scenarios")
        amount = rounded(denomination * quantity)
        discount = rounded(amount * entry[2] / 100)
        payable = amount - discount
        now = common.utcnow()
        async with s.transaction():
            values = (client_id, product_id, name, wallet_id, stored(denomination), quantity, stored(amount),
                      stored(discount), stored(payable), currency, currency, s.stamp(now), s.stamp(now))  # fmt: skip
            ((order_id,),) = await s.rows(NEW_ORDER, values)
            ((wallet_client, currency_id, code, wallet_precision),) = await s.rows(POSTING, (wallet_id,))
            if await s.count(DEBIT, (stored(payable), wallet_id, stored(payable))) != 1:
                raise Refused(400, "Insufficient wallet balance")
            remarks = f"{code} Wallet debited by amount {shown(payable, wallet_precision)} - Order #{order_id}"
            ((transaction_id,),) = await s.rows(
                NEW_TRANSACTION, (wallet_id, stored(payable), remarks, order_id, s.stamp(now))
            )
            data = {"id": transaction_id, "wallet_id": wallet_id, "currency_id": currency_id,
                    "amount": shown(payable, wallet_precision), "transaction_type": "DEBIT", "status": "COMPLETED",
                    "source_currency": None, "destination_currency": None, "forex_rate": None,
                    "conversion_charges": None, "remarks": remarks, "created_at": now.strftime(RFC3339)}  # fmt: skip
            await self.record_event(s, wallet_client, "wallet.debited", data, now)
            expires = datetime.datetime.combine(now.date(), datetime.time()) + datetime.timedelta(days=365)
            settled = common.utcnow()
            await s.count(DELIVERED, (quantity, s.stamp(settled), order_id))
            for position in range(1, quantity + 1):
                drawn, pin = divmod(secrets.randbelow(len(ALPHABET) ** 12 * 10_000), 10_000)
                characters = []
                for _ in range(12):
                    drawn, digit = divmod(drawn, len(ALPHABET))
                    characters.append(ALPHABET[digit])
                card = "MOCK-" + "-".join("".join(characters[at : at + 4]) for at in (0, 4, 8))
                pin = f"{pin:04d}"
                await s.count(NEW_CODE, (order_id, position, card, pin, s.stamp(expires), f"VRN-{order_id}-{position}"))
            data = {"id": order_id, "reference_code": None, "status": "DELIVERED", "product_name": name,
                    "denomination": shown(denomination, precision), "quantity": quantity,
                    "amount": shown(amount, precision), "delivered_quantity": quantity,
                    "delivered_on": settled.strftime(RFC3339), "created_at": now.strftime(RFC3339)}  # fmt: skip
            await self.record_event(s, client_id, "order.delivered", data, settled)
        return {
            "id": order_id, "product_id": product_id, "product_name": name,
            "denomination": shown(denomination, precision), "quantity": quantity,
            "amount": shown(amount, precision), "discount": shown(discount, precision),
            "client_reference": None, "wallet_id": wallet_id, "status": "DELIVERED", "base_currency": currency,
            "deduction_currency": currency, "message": "Order delivered", "email": None,
            "created_at": now.strftime(RFC3339),
            "vouchers": [
                {"card_number": card, "pin_code": pin, "claim_url": claim,
                 "expires_at": moment(expires).strftime(RFC3339), "voucher_reference_number": reference_number}
                for card, pin, claim, expires, reference_number in await s.rows(CODES, (order_id,))
            ],
        }  # fmt: skip


def whole(value, low, high):
    return type(value) is int and low <= value <= high


def create_app():
    settings = Settings.from_env()
    pin_worker(settings.worker_cpus)
    floor = Floor(settings.database_url)
    codec = common.Jwt(settings)

    async def bearer(s, request, feature=None):
        """The caller's client id, its token checked (Unauthorized, Forbidden or Refused if not)."""
        client_id, jti = common.bearer_claims(codec, request.headers.get("authorization", ""))
        return await floor.authorize(s, jti, client_id, address_of(request, settings), feature)

    async def answering(work):
        """`await work(s)` in a session (Unauthorized, Forbidden and Refused become their errors)."""
        try:
            async with floor.db.session() as s:
                return await work(s)
        except common.Unauthorized as exc:
            return error(401, exc.message)
        except common.Forbidden:
            return error(403, "IP address not authorized")
        except Refused as exc:
            return error(exc.status, exc.message)

    async def currencies(request):
        async def work(s):
            await bearer(s, request)
            return Json((await floor.currencies(s))[0], headers=common.CACHE_HEADERS)

        return await answering(work)

    async def currency(request):
        async def work(s):
            await bearer(s, request)
            found = (await floor.currencies(s))[1].get(request.path_params["currency_id"])
            if found is None:
                return Json(CURRENCY_NOT_FOUND, status_code=404)
            return Json(found, headers=common.CACHE_HEADERS)

        return await answering(work)

    async def login(request):
        fields, failed = await login_request(request)
        if failed:
            return failed
        address = address_of(request, settings)

        async def work(s):
            return Json(await floor.login(s, codec, settings.secret_pepper, *fields, address))

        return await answering(work)

    async def refresh(request):
        token, failed = await refresh_request(request)
        if failed:
            return failed

        async def work(s):
            return Json(await floor.refresh(s, codec, token, address_of(request, settings)))

        return await answering(work)

    async def logout(request):
        async def work(s):
            client_id = await bearer(s, request)
            body = await floor.logout(s, client_id)
            return Json(body, background=BackgroundTask(floor.mark_logged_out, client_id))

        return await answering(work)

    async def products(request):
        try:
            page, limit = int(request.query_params.get("page", 1)), int(request.query_params.get("limit", 50))
        except ValueError:
            page = limit = None

        async def work(s):
            client_id = await bearer(s, request, "vouchers")
            if (
                page is None
                or not (whole(page, 1, 10**6) and whole(limit, 1, 100))
                or (set(request.query_params) - {"page", "limit"})
            ):
                raise Refused(400, "The floor lists pages of 1 to 100 products, newest first")
            body, size, total = await floor.products_page(s, client_id, page, limit)
            pages = -(-total // limit)
            headers = {"X-Page": str(page), "X-Per-Page": str(limit), "X-Total-Count": str(total),
                       "X-Total-Pages": str(pages), "X-Page-Size": str(size),
                       "X-Has-More": "true" if page < pages else "false"}  # fmt: skip
            return Json(body, headers=headers)

        return await answering(work)

    async def create_order(request):
        body, failed = await json_body(request)
        if failed:
            return failed
        fields = body if isinstance(body, dict) else {}
        product_id, denomination, quantity = (fields.get(k) for k in ("product_id", "denomination", "quantity"))

        async def work(s):
            client_id = await bearer(s, request, "vouchers")
            if (set(fields) - {"product_id", "denomination", "quantity"} or not whole(product_id, 1, 2**31)
                    or type(denomination) not in (int, float) or not whole(quantity, 1, 5)):  # fmt: skip
                raise Refused(400, "The floor takes product_id, denomination and a quantity of 1 to 5")
            answer = await floor.order(s, client_id, product_id, denomination, quantity)
            return Json(encoded(answer), status_code=201)

        return await answering(work)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if isinstance(floor.db, Postgres):
            await floor.db.open()
            yield
            await floor.db.close()
        else:
            yield

    vouchers = (
        Route("/api/v1/products", products, methods=["GET"]),
        Route("/api/v1/orders", create_order, methods=["POST"]),
    )
    return app_of(currencies, currency, login, refresh, logout, vouchers, lifespan=lifespan)


if __name__ == "__main__":
    sys.exit(common.serve("baseline_floor:create_app"))
