"""The catalogue file (contract 17): schema and reference checks that name the place, import with
the upsert rules of 17.2 in one transaction, idempotence, deactivation, and the demo catalogue."""

import json
import secrets

import pytest
import yaml
from peewee import fn

from octopus_cards import models
from octopus_cards.models import EsimVariant, TopupProduct, TopupVariant, VoucherProduct, catalogue
from octopus_cards.models.catalogue import CatalogueError


def voucher(name, **fields):
    return {
        "name": name,
        "category": "Shopping",
        "country": "USA",
        "currency": "USD",
        "denominations": [{"min": 10, "max": 100, "discount": 2.5}],
        **fields,
    }


def imported(document, deactivate=False):
    with models.db.connection_context():
        return catalogue.import_catalogue(json.dumps(document), deactivate)


def unique_name(prefix):
    return f"{prefix} {secrets.token_hex(4)}"


def test_the_demo_catalogue_has_what_17_3_asks_for():
    document = catalogue.read(catalogue.demo_text())
    with models.db.connection_context():
        catalogue.validate(catalogue.demo_text())
    vouchers = document["vouchers"]
    real = [v for v in vouchers if not v["name"].startswith("Sandbox: ")]
    assert len(real) >= 20
    assert len({v["category"] for v in real}) >= 4 and len({v["country"] for v in real}) >= 5
    assert {"USD", "EUR", "GBP", "JPY"} <= {v["currency"] for v in real}
    assert any(v.get("delivery_mode") == "URL" for v in real)
    assert any(all("value" in d for d in v["denominations"]) for v in real)  # fixed only
    assert any(all("min" in d for d in v["denominations"]) for v in real)  # a range
    assert any(v.get("stock") is not None for v in real)
    rates = {(r["from"], r["to"]) for r in document["exchange_rates"]}
    assert {("USD", "EUR"), ("EUR", "USD"), ("USD", "GBP"), ("GBP", "USD"), ("EUR", "GBP"), ("GBP", "EUR")} <= rates
    topups = document["topups"]
    assert any(t["type"] == "GAMING" for t in topups)
    assert len({t["country"] for t in topups if t["type"] == "MOBILE"}) >= 3
    assert any(len(e["variants"]) > 1 for e in document["esim"])
    scenarios = {
        (vertical, key)
        for vertical in ("vouchers", "topups", "esim")
        for product in document[vertical]
        if product["name"].startswith("Sandbox: ")
        for key, value in product["mock"].items()
        for key in ([key] if key != "outcome" else [f"outcome={value}"])
    }
    assert {
        ("vouchers", "outcome=partial"),
        ("vouchers", "deliver_count"),
        ("vouchers", "outcome=fail"),
        ("vouchers", "outcome=cancel"),
        ("vouchers", "transient_failures"),
        ("vouchers", "delay"),
        ("vouchers", "in_stock"),
        ("topups", "outcome=fail"),
        ("topups", "failure_code"),
        ("topups", "outcome=cancel"),
        ("topups", "transient_failures"),
        ("topups", "delay"),
        ("esim", "install_after"),
        ("esim", "expire_after"),
        ("esim", "outcome=fail"),
        ("esim", "delay"),
        ("esim", "transient_failures"),
    } <= scenarios


def test_import_creates_then_updates_only_what_changed(migrated):
    name = unique_name("Gift")
    first = imported({"vouchers": [voucher(name)]})
    assert first["vouchers"] == {"created": 1, "updated": 0}
    assert imported({"vouchers": [voucher(name)]})["vouchers"] == {"created": 0, "updated": 0}
    changed = imported({"vouchers": [voucher(name, denominations=[{"value": 25}, {"min": 5, "max": 9}])]})
    assert changed["vouchers"] == {"created": 0, "updated": 1}
    with models.db.connection_context():
        product = VoucherProduct.get(VoucherProduct.name == name)
        ranges = [
            (d.min_value, d.max_value, d.discount) for d in product.denominations.order_by(models.Denomination.position)
        ]
    assert ranges == [(25, 25, 0), (5, 9, 0)]  # replaced as a whole, in the file's order


def test_an_entry_with_an_id_keeps_it_and_a_later_product_gets_a_fresh_one(migrated):
    fixed_id = 1_500_000 + secrets.randbelow(100_000)
    imported({"vouchers": [voucher(unique_name("Pinned"), id=fixed_id)]})
    later = unique_name("Later")
    imported({"vouchers": [voucher(later)]})  # PostgreSQL's id sequence must be past the pinned id
    with models.db.connection_context():
        assert VoucherProduct.get_by_id(fixed_id).is_active
        assert VoucherProduct.get(VoucherProduct.name == later).id != fixed_id


def test_variants_follow_the_same_rules_and_missing_ones_are_deactivated_on_request(migrated):
    name = unique_name("Top-up")
    variants = [{"name": "Small", "fixed_amounts": ["1.5"]}, {"name": "Any", "min_amount": 1, "max_amount": 50}]
    topup = {"name": name, "type": "MOBILE", "country": "GBR", "currency": "GBP", "variants": variants}
    assert imported({"topups": [topup]})["topups"] == {"created": 1, "updated": 0}
    assert imported({"topups": [dict(topup, variants=variants[:1])]})["topups"] == {"created": 0, "updated": 0}
    report = imported({"topups": [dict(topup, variants=variants[:1])]}, deactivate=True)
    assert report["deactivated"] >= 1
    with models.db.connection_context():
        product = TopupProduct.get(TopupProduct.name == name)
        states = {v.name: v.is_active for v in TopupVariant.select().where(TopupVariant.product == product)}
    assert states == {"Small": True, "Any": False}


def test_deactivate_missing_never_deletes(migrated):
    keep, drop = unique_name("Keep"), unique_name("Drop")
    imported(
        {
            "esim": [
                {
                    "name": drop,
                    "country": "GLO",
                    "currency": "USD",
                    "variants": [{"name": "1GB", "amount": 5, "data_amount_gb": 1, "validity_days": 7}],
                }
            ]
        }
    )
    imported({"vouchers": [voucher(keep)]}, deactivate=True)
    with models.db.connection_context():
        dropped = models.EsimProduct.get(models.EsimProduct.name == drop)
        assert not dropped.is_active and EsimVariant.select().where(EsimVariant.esim_product == dropped).exists()
        assert VoucherProduct.get(VoucherProduct.name == keep).is_active
    with models.db.connection_context():  # the demo products come back for the other tests
        catalogue.import_catalogue(catalogue.demo_text())


BAD = [
    (
        {
            "esim": [
                {
                    "name": "e",
                    "country": "GLO",
                    "currency": "USD",
                    "variants": [{"name": "v", "amount": 1000000000000000, "data_amount_gb": 1, "validity_days": 1}],
                }
            ]
        },
        "esim[0].variants[0].amount: must be <= 1000000000",
    ),
    ({"vouchers": [voucher("x", validity="v" * 256)]}, "vouchers[0].validity: " + repr("v" * 256) + " is too long"),
    ({"vouchers": [voucher("Same", id=1), voucher("Same")]}, "vouchers[1]: 'Same' appears twice"),
    (
        {
            "topups": [
                {
                    "name": "t",
                    "type": "GAMING",
                    "country": "GLO",
                    "currency": "USD",
                    "variants": [
                        {"name": "v", "fixed_amounts": ["1"]},
                        {"name": "v", "min_amount": 1, "max_amount": 2},
                    ],
                }
            ]
        },
        "topups[0].variants[1]: 'v' appears twice",
    ),
    (
        {"vouchers": [voucher("x", denominations=[{"min": 0, "max": 5}])]},
        "vouchers[0].denominations[0].min: must be > 0",
    ),
    (
        {"vouchers": [voucher("x", denominations=[{"min": 9, "max": 5}])]},
        "vouchers[0].denominations[0]: min must not exceed max",
    ),
    (
        {"vouchers": [voucher("x", currency="JPY", denominations=[{"value": 10.5}])]},
        "vouchers[0].denominations[0].value: at most 0 decimals",
    ),
    (
        {"vouchers": [voucher("x", denominations=[{"value": "1.00001"}])]},
        "vouchers[0].denominations[0].value: at most 2 decimals",
    ),
    (
        {
            "topups": [
                {
                    "name": "t",
                    "type": "GAMING",
                    "country": "GLO",
                    "currency": "JPY",
                    "variants": [{"name": "v", "fixed_amounts": ["100", "0.5"]}],
                }
            ]
        },  # fmt: skip
        "topups[0].variants[0].fixed_amounts[1]: at most 0 decimals",
    ),
    (
        {
            "topups": [
                {
                    "name": "t",
                    "type": "MOBILE",
                    "country": "USA",
                    "currency": "USD",
                    "variants": [{"name": "v", "min_amount": "1.005", "max_amount": 5}],
                }
            ]
        },  # fmt: skip
        "topups[0].variants[0].min_amount: at most 2 decimals",
    ),
    (
        {"vouchers": [voucher("x", denominations=[{"value": 5, "discount": 101}])]},
        "vouchers[0].denominations[0].discount: must be <= 100",
    ),
    (
        {"vouchers": [voucher("x", country="GLO")]},
        "vouchers[0].country: must be the alpha-3 code of an active country, not 'GLO'",
    ),
    (
        {"vouchers": [voucher("x", country="ZZZ")]},
        "vouchers[0].country: must be the alpha-3 code of an active country, not 'ZZZ'",
    ),
    ({"vouchers": [voucher("x", currency="ZZZ")]}, "vouchers[0].currency: unknown currency 'ZZZ'"),
    ({"vouchers": [voucher("x", denominations=[])]}, "vouchers[0].denominations: [] should be non-empty"),
    (
        {"vouchers": [voucher("x", colour="red")]},
        "vouchers[0]: Additional properties are not allowed ('colour' was unexpected)",
    ),
    ({"vouchers": [voucher("x", id=1), voucher("y", id=1)]}, "vouchers[1]: 1 appears twice"),
    ({"vouchers": [voucher("x"), voucher("x")]}, "vouchers[1]: 'x' appears twice"),
    ({"vouchers": [{"name": "x"}]}, "vouchers[0]: 'category' is a required property"),
    ({"exchange_rates": [{"from": "USD", "to": "USD", "rate": 1}]}, "exchange_rates[0]: from and to must differ"),
    (
        {"exchange_rates": [{"from": "USD", "to": "EUR", "rate": 0}]},
        "exchange_rates[0].rate: invalid rate '0': a number above 0 and below 1000000000, at most 10 decimals",
    ),
    (
        {
            "topups": [
                {
                    "name": "t",
                    "type": "MOBILE",
                    "country": "USA",
                    "currency": "USD",
                    "variants": [{"name": "v", "fixed_amounts": ["1"], "min_amount": 1, "max_amount": 2}],
                }
            ]
        },
        "topups[0].variants[0]: either fixed_amounts or min_amount and max_amount",
    ),
    (
        {
            "topups": [
                {
                    "name": "t",
                    "type": "MOBILE",
                    "country": "USA",
                    "currency": "USD",
                    "variants": [{"name": "v", "currency": "EUR", "fixed_amounts": ["1"]}],
                }
            ]
        },
        "topups[0].variants[0].currency: must be the product's currency, USD",
    ),
    (
        {
            "esim": [
                {
                    "name": "e",
                    "country": "JPN",
                    "currency": "USD",
                    "variants": [{"name": "v", "amount": 5, "data_amount_gb": 1, "validity_days": 0}],
                }
            ]
        },
        "esim[0].variants[0].validity_days: 0 is less than the minimum of 1",
    ),
    (
        {
            "topups": [
                {
                    "name": "t",
                    "type": "MOBILE",
                    "country": "USA",
                    "currency": "USD",
                    "variants": [{"name": "v", "fixed_amounts": ["1"]}],
                    "mock": {"outcome": "partial"},
                }
            ]
        },
        "topups[0].mock.outcome: 'partial' is not one of ['deliver', 'fail', 'cancel']",
    ),
]


@pytest.mark.parametrize("document, message", BAD)
def test_every_refusal_names_the_place_and_changes_nothing(migrated, document, message):
    with models.db.connection_context():
        before = catalogue.export()
        with pytest.raises(CatalogueError) as refused:
            catalogue.import_catalogue(json.dumps(document))
        assert str(refused.value) == message
        assert catalogue.export() == before


@pytest.mark.parametrize("text", ["- a list", "{not json: [", "key: [unclosed", "vouchers: 5"])
def test_unreadable_or_misshapen_files_are_refused(migrated, text):
    with models.db.connection_context(), pytest.raises(CatalogueError):
        catalogue.import_catalogue(text)


def test_a_later_failing_entry_rolls_back_the_earlier_ones(migrated, monkeypatch):
    """The import is one transaction: a failure on the last entry leaves nothing of the first."""
    good = unique_name("Good")

    def failing(entry, refs, reserved):
        raise CatalogueError("the database refused it")

    monkeypatch.setitem(catalogue.IMPORTERS, "esim", failing)
    document = {
        "vouchers": [voucher(good)],
        "esim": [
            {
                "name": unique_name("E"),
                "country": "GLO",
                "currency": "USD",
                "variants": [{"name": "v", "amount": 1, "data_amount_gb": 1, "validity_days": 1}],
            }
        ],
    }
    with models.db.connection_context():
        with pytest.raises(CatalogueError, match="esim\\[0\\]: the database refused it"):
            catalogue.import_catalogue(json.dumps(document))
        assert not VoucherProduct.select().where(VoucherProduct.name == good).exists()


def test_export_imports_back_to_the_same(migrated):
    with models.db.connection_context():
        exported = catalogue.export()
        again = catalogue.import_catalogue(catalogue.dump(exported))
        assert again == {
            "vouchers": {"created": 0, "updated": 0},
            "topups": {"created": 0, "updated": 0},
            "esim": {"created": 0, "updated": 0},
            "deactivated": 0,
        }
        assert catalogue.export() == exported
        assert yaml.safe_load(catalogue.dump(exported)) is not None
        assert json.loads(catalogue.dump(exported, as_json=True))["vouchers"]


def test_new_entries_never_take_an_id_the_file_gives(migrated):
    """An entry without an id listed before one with an id must not take that id (17.2): the file
    imports the same way every time, and a second import changes nothing."""
    with models.db.connection_context():
        top = VoucherProduct.select(fn.MAX(VoucherProduct.id)).scalar() or 0
    first, second = unique_name("First"), unique_name("Second")
    document = {"vouchers": [voucher(first), voucher(second, id=top + 1)]}
    assert imported(document)["vouchers"] == {"created": 2, "updated": 0}
    assert imported(document)["vouchers"] == {"created": 0, "updated": 0}
    with models.db.connection_context():
        assert VoucherProduct.get_by_id(top + 1).name == second
        assert VoucherProduct.get(VoucherProduct.name == first).id > top + 1


def test_a_variant_id_of_another_product_is_refused_at_validation(migrated):
    owner = unique_name("Owner")
    variant_id = 870_000 + secrets.randbelow(10_000)
    imported(
        {
            "esim": [
                {
                    "name": owner,
                    "country": "GLO",
                    "currency": "USD",
                    "variants": [{"id": variant_id, "name": "v", "amount": 1, "data_amount_gb": 1, "validity_days": 1}],
                }
            ]
        }
    )
    thief = {
        "esim": [
            {
                "name": unique_name("Thief"),
                "country": "GLO",
                "currency": "USD",
                "variants": [{"id": variant_id, "name": "v", "amount": 1, "data_amount_gb": 1, "validity_days": 1}],
            }
        ]
    }
    with models.db.connection_context(), pytest.raises(CatalogueError) as refused:
        catalogue.validate(json.dumps(thief))
    assert str(refused.value) == f"esim[0].variants[0].id: {variant_id} is a variant of another product"


@pytest.mark.parametrize("text", ["{vouchers: []}", '\ufeff{"vouchers": []}', "vouchers: []\n"])
def test_flow_yaml_and_json_with_a_byte_order_mark_are_read(text):
    assert catalogue.read(text) == {"vouchers": []}
