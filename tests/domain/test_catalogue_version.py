"""The catalogue version (models/products.py CatalogueVersion): moved, in the changing transaction,
by every change to what a voucher product list shows, and by nothing else (contract 15.1, item 39);
and the per-process store of encoded lists it guards (models/vouchers.py)."""

import json
import secrets
from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.models import Client, VoucherProduct, catalogue, products, vouchers
from octopus_cards.models.exceptions import Refused
from octopus_cards.models.products import CatalogueVersion


def version():
    with models.db.connection_context():
        return CatalogueVersion.current()


def voucher(product_id, name, **fields):
    return {"id": product_id, "name": name, "category": "Versioned", "country": "USA", "currency": "USD",
            "denominations": [{"min": 10, "max": 100, "discount": 2.5}], **fields}  # fmt: skip


def imported(document, deactivate=False):
    with models.db.connection_context():
        return catalogue.import_catalogue(json.dumps(document), deactivate)


@pytest.fixture
def product_id(migrated):
    """A fresh voucher product of its own."""
    new_id = 200_000_000 + secrets.randbelow(1_000_000) * 10
    imported({"vouchers": [voucher(new_id, "Versioned")]})
    return new_id


@pytest.fixture
def client(migrated):
    with models.db.connection_context():
        return Client.provision(b"p" * 40, f"versioned-{secrets.token_hex(3)}", [], ["vouchers"])[0]


def moves(action):
    """Whether `action` moved the version (by exactly one step, if it did)."""
    before = version()
    action()
    after = version()
    assert after in (before, before + 1)
    return after == before + 1


def in_db(function, *args):
    def run():
        with models.db.connection_context():
            function(*args)

    return run


def test_imports_move_it_only_when_voucher_products_change(product_id):
    same = {"vouchers": [voucher(product_id, "Versioned")]}
    assert not moves(lambda: imported(same))  # contract 15.1, item 39: an identical import changes nothing
    assert moves(lambda: imported({"vouchers": [voucher(product_id, "Renamed")]}))
    assert moves(lambda: imported({"vouchers": [voucher(product_id, "Renamed", denominations=[{"value": 20}])]}))
    assert moves(lambda: imported({"vouchers": [voucher(product_id, "Renamed", active=False)]}))
    assert moves(lambda: imported({"vouchers": [voucher(product_id + 1, "Brand new")]}))
    rates = {"exchange_rates": [{"from": "USD", "to": "EUR", "rate": "0.92"}]}
    assert not moves(lambda: imported(rates))
    topup = {"name": f"Versioned {secrets.token_hex(3)}", "type": "MOBILE", "country": "GBR", "currency": "GBP",
             "variants": [{"name": "Any", "min_amount": 1, "max_amount": 50}]}  # fmt: skip
    assert not moves(lambda: imported({"topups": [topup]}))
    before = version()
    with pytest.raises(catalogue.CatalogueError):  # refused: nothing changed
        imported({"vouchers": [voucher(product_id, "Broken"), voucher(product_id + 2, "Broken", currency="XXX")]})
    assert version() == before


def test_deactivating_missing_voucher_products_moves_it(product_id):
    """Every voucher product the file leaves out is deactivated: then the demo comes back for the others."""
    try:
        assert moves(lambda: imported({"vouchers": [voucher(product_id, "Versioned")]}, deactivate=True))
    finally:
        with models.db.connection_context():
            catalogue.import_catalogue(catalogue.demo_text())


def test_voucher_discounts_and_the_blacklist_move_it(product_id, client):
    assert moves(in_db(products.set_discount, client.id, "vouchers", product_id, Decimal("5")))
    assert moves(in_db(products.clear_discount, client.id, "vouchers", product_id))
    assert moves(in_db(products.blacklist, client.id, product_id))
    assert moves(in_db(products.unblacklist, client.id, product_id))
    before = version()
    for refused in (in_db(products.clear_discount, client.id, "vouchers", product_id),
                    in_db(products.unblacklist, client.id, product_id),
                    in_db(products.blacklist, client.id, 2_147_483_647)):  # fmt: skip
        with pytest.raises(Refused):  # nothing changed
            refused()
    assert version() == before


def test_other_verticals_discounts_leave_it(client):
    with models.db.connection_context():
        esim_id = models.EsimProduct.select(models.EsimProduct.id).order_by(models.EsimProduct.id).first().id
    assert not moves(in_db(products.set_discount, client.id, "esim", esim_id, Decimal("5")))
    assert not moves(in_db(products.clear_discount, client.id, "esim", esim_id))


def take(product_id, quantity):
    with models.db.connection_context(), models.write_txn():
        return VoucherProduct.take_stock(product_id, quantity)


def test_stock_moves_it_when_it_runs_out(migrated):
    tracked, untracked = (200_000_000 + secrets.randbelow(1_000_000) * 10 for _ in range(2))
    imported({"vouchers": [voucher(tracked, "Tracked", stock=3), voucher(untracked + 1, "Untracked")]})
    taken = []
    assert not moves(lambda: taken.append(take(tracked, 2)))
    assert not moves(lambda: taken.append(take(tracked, 2)))  # only 1 left: nothing taken
    assert moves(lambda: taken.append(take(tracked, 1)))  # the last one: the product is hidden now
    assert not moves(lambda: taken.append(take(tracked, 1)))
    assert not moves(lambda: taken.append(take(untracked + 1, 1)))  # not tracked: nothing to take
    assert taken == [1, 0, 1, 0, 0]
    with models.db.connection_context():
        assert VoucherProduct.get_by_id(tracked).stock == 0


class FakeDatabase:
    pass


def test_the_store_is_bounded_and_follows_the_version(monkeypatch):
    store = vouchers.Encoded(max_entries=3, max_bytes=80)
    for key in "abc":
        store.put(7, key, (key.encode() * 8,))
    assert store.get(7, "a") == (b"a" * 8,)  # a is now the most recent
    store.put(7, "d", (b"d" * 8,))
    assert store.get(7, "b") is None and [store.get(7, key) is not None for key in "acd"] == [True] * 3
    store.put(7, "big", (b"x" * 11,))  # above an eighth of the bytes: not kept
    assert store.get(7, "big") is None
    store.put(7, "e", (b"e" * 8,))
    store.put(7, "f", (b"f" * 8,))
    assert store.size <= 80 and len(store.entries) == 3
    assert store.get(6, "f") is None  # an older version: neither served nor kept
    store.put(6, "old", (b"o",))
    assert store.get(7, "old") is None and store.get(7, "f") is not None
    assert store.get(8, "f") is None and not store.entries  # a newer one: everything goes
    store.put(8, "g", (b"g",))
    monkeypatch.setattr(models.db, "obj", FakeDatabase())
    assert store.get(8, "g") is None  # another database: its versions are not comparable
