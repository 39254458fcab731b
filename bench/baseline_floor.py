"""The honest floor (SQLite only): a raw Starlette app doing octopus-cards' hot-path work (see
baseline_common) with no hand-off at all: its short SQLite statements run on the event loop's
thread, over one connection per process, written as plain SQL (no ORM). It is the physical limit of
a one-process Python server on SQLite: what octopus-cards, which hands its database work to a
thread pool and builds its queries with peewee, is measured against (issue 15).

Run by bench/run.py as `python bench/baseline_floor.py --host 127.0.0.1 --port P [--workers N]`
with the same OCTOPUS_* environment as the server under test. The JWT rules, addresses, headers and
bodies are baseline_common's; the currency list is encoded once per process, as octopus-cards does.
"""

import contextlib
import hashlib
import hmac
import json
import sqlite3
import sys

import baseline_common as common
from baseline_starlette import CURRENCY_NOT_FOUND, Json, address_of, app_of, error, login_request, refresh_request
from starlette.background import BackgroundTask

from octopus_cards.cli import pin_worker
from octopus_cards.settings import Settings

TOKEN_STATE = """
    SELECT t.client_id, t.family_id, t.token_use, t.revoked_at, t.used_at, f.generation, c.token_generation,
           c.is_active, a.cidr
    FROM token t JOIN client c ON c.id = t.client_id JOIN token_family f ON f.id = t.family_id
    LEFT JOIN client_ip_allow a ON a.client_id = c.id
    WHERE t.jti = ?"""
CURRENCIES = "SELECT id, name, currency, precision FROM currency WHERE is_active ORDER BY id"
CREDENTIALS = "SELECT id, secret_hash, is_active FROM client WHERE api_key = ?"
NETWORKS = "SELECT cidr FROM client_ip_allow WHERE client_id = ?"
NEW_FAMILY = """
    INSERT INTO token_family (client_id, created_at, generation)
    VALUES (?, ?, (SELECT token_generation FROM client WHERE id = ?))"""
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


def stamp(moment):
    """A datetime as the models' columns hold it."""
    return moment.isoformat(" ")


class Store:
    """The process's one connection; every statement runs on the caller's (the loop's) thread."""

    def __init__(self, url):
        scheme, _, path = url.partition(":///")
        if scheme != "sqlite":
            raise SystemExit("the floor runs on SQLite only")
        # Checked on every use to be the thread that opened it: the loop's.
        self.db = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode = wal", "foreign_keys = 1", "synchronous = normal", "busy_timeout = 5000"):
            self.db.execute(f"PRAGMA {pragma}")
        self.encoded = {}

    @contextlib.contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def token_state(self, jti):
        return common.state_of(self.db.execute(TOKEN_STATE, (jti,)).fetchall())

    def authorize(self, jti, client_id, address):
        state = self.token_state(jti)
        if state is None or not state["live"] or state["token_use"] != "access" or state["client_id"] != client_id:
            raise common.Unauthorized("Invalid token")
        common.check_allowed(address, state["networks"])
        return client_id

    def currencies(self):
        """The active currencies, encoded once: (the list body, {id: one currency's body})."""
        if not self.encoded:
            fields = ("id", "name", "currency", "precision")
            rows = [dict(zip(fields, row, strict=True)) for row in self.db.execute(CURRENCIES)]
            self.encoded["list"] = json.dumps(rows).encode()
            self.encoded["one"] = {row["id"]: json.dumps(row).encode() for row in rows}
        return self.encoded["list"], self.encoded["one"]

    def pair_insert(self, client_id, family_id, pair, parent_jti):
        """The INSERT of a token pair, and its values."""
        values = []
        for token in pair:
            values += [token["jti"], client_id, family_id, token["token_use"], parent_jti,
                       stamp(token["issued_at"]), stamp(token["expires_at"])]  # fmt: skip
        return NEW_PAIR, values

    def login(self, codec, pepper, username, password, address):
        client = self.db.execute(CREDENTIALS, (username,)).fetchone()
        digest = hmac.new(pepper, password.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(digest, client[1] if client else common.DUMMY_HASH) or not client[2]:
            raise common.Unauthorized("Invalid credentials")
        client_id = client[0]
        common.check_allowed(address, [row[0] for row in self.db.execute(NETWORKS, (client_id,))])
        pair = codec.issue_pair(client_id)
        with self.transaction() as db:
            family_id = db.execute(NEW_FAMILY, (client_id, stamp(common.utcnow()), client_id)).lastrowid
            db.execute(*self.pair_insert(client_id, family_id, pair, None))
        return common.token_payload(client_id, pair)

    def refresh(self, codec, token, address):
        invalid = common.Unauthorized("Invalid refresh token")
        try:
            client_id, jti, expired = codec.verify(token, "refresh")
        except common.Unauthorized:
            raise invalid from None
        state = self.token_state(jti)
        if state is None or state["token_use"] != "refresh" or state["client_id"] != client_id:
            raise invalid
        if state["used"] and not state["revoked"]:
            self.revoke_family(state["family_id"])
        if expired or not state["live"]:
            raise invalid
        common.check_allowed(address, state["networks"])
        pair = codec.issue_pair(client_id)
        with self.transaction() as db:
            won = db.execute(USE_REFRESH, (stamp(common.utcnow()), jti, state["family_id"])).rowcount == 1
            if won:
                db.execute(*self.pair_insert(client_id, state["family_id"], pair, jti))
        if not won:
            self.revoke_family(state["family_id"])
            raise invalid
        return common.token_payload(client_id, pair)

    def revoke_family(self, family_id):
        now = stamp(common.utcnow())
        with self.transaction() as db:
            for sql in REVOKE_FAMILY:
                db.execute(sql, (now, family_id))

    def logout(self, client_id):
        with self.transaction() as db:
            db.execute(LOGOUT, (client_id,))
        return common.LOGOUT_BODY

    async def mark_logged_out(self, client_id):
        """After the response, on the loop (the connection is the loop's alone)."""
        now = stamp(common.utcnow())
        families, tokens = MARK_LOGGED_OUT
        with self.transaction() as db:
            db.execute(families, (now, client_id, client_id))
            db.execute(tokens, (now, client_id, client_id, client_id))


def create_app():
    settings = Settings.from_env()
    pin_worker(settings.worker_cpus)
    store = Store(settings.database_url)
    codec = common.Jwt(settings)

    def verified_bearer(request):
        client_id, jti = common.bearer_claims(codec, request.headers.get("authorization", ""))
        return store.authorize(jti, client_id, address_of(request, settings))

    def answering(work):
        """Run `work()` (Unauthorized and Forbidden become their errors)."""
        try:
            return work()
        except common.Unauthorized as exc:
            return error(401, exc.message)
        except common.Forbidden:
            return error(403, "IP address not authorized")

    async def currencies(request):
        def work():
            verified_bearer(request)
            return Json(store.currencies()[0], headers=common.CACHE_HEADERS)

        return answering(work)

    async def currency(request):
        def work():
            verified_bearer(request)
            found = store.currencies()[1].get(request.path_params["currency_id"])
            if found is None:
                return Json(CURRENCY_NOT_FOUND, status_code=404)
            return Json(found, headers=common.CACHE_HEADERS)

        return answering(work)

    async def login(request):
        fields, failed = await login_request(request)
        if failed:
            return failed
        return answering(
            lambda: Json(store.login(codec, settings.secret_pepper, *fields, address_of(request, settings)))
        )

    async def refresh(request):
        token, failed = await refresh_request(request)
        if failed:
            return failed
        return answering(lambda: Json(store.refresh(codec, token, address_of(request, settings))))

    async def logout(request):
        def work():
            client_id = verified_bearer(request)
            return Json(store.logout(client_id), background=BackgroundTask(store.mark_logged_out, client_id))

        return answering(work)

    return app_of(currencies, currency, login, refresh, logout)


if __name__ == "__main__":
    sys.exit(common.serve("baseline_floor:create_app"))
