"""The catalogue file (contract 17): read YAML or JSON, check it against the JSON Schema shipped
beside this module and against the database's reference data, import it in one transaction with
the upsert rules of 17.2, and export the whole catalogue so that the export imports back to the same.

Every refusal names the place: `vouchers[2].denominations[0].min: must be above 0`.
"""

import dataclasses
import functools
import json
from decimal import Decimal, InvalidOperation
from importlib import resources

import jsonschema
import yaml
from peewee import fn

from octopus_cards.models.base import db, on_sqlite, write_txn
from octopus_cards.models.encoding import dumps
from octopus_cards.models.exceptions import Refused
from octopus_cards.models.money import decimals, money, plain
from octopus_cards.models.products import (
    PRODUCTS,
    VERTICALS,
    CatalogueVersion,
    Denomination,
    EsimProduct,
    EsimVariant,
    TopupProduct,
    TopupVariant,
    VoucherProduct,
)
from octopus_cards.models.reference_data import Category, Country, Currency, Subcategory
from octopus_cards.models.wallets import ExchangeRate, parse_rate

SCHEMA = "catalogue.schema.json"
DEMO = "demo_catalogue.yaml"
GLOBAL = "GLO"
# The largest denomination an order may name (contract 5.5), and the largest amount of any kind.
MAX_AMOUNT = Decimal("1000000000")


class CatalogueError(Refused):
    """The file breaks a rule; the message names the place. Nothing was changed."""


# -- reading ------------------------------------------------------------------------------------


class DecimalLoader(yaml.SafeLoader):
    """YAML whose floats are read as the exact decimals they are written as."""


def _decimal(loader, node):
    text = loader.construct_scalar(node)
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation:
        return text  # .inf, .nan: the schema refuses them as not a number
    return value if value.is_finite() else text


DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal)


class DecimalDumper(yaml.SafeDumper):
    """YAML that writes decimals as plain numbers, which DecimalLoader reads back exactly."""


def _represent_decimal(dumper, value):
    if value == value.to_integral_value():
        return dumper.represent_int(int(value))
    return dumper.represent_scalar("tag:yaml.org,2002:float", f"{value.normalize():f}")


DecimalDumper.add_representer(Decimal, _represent_decimal)


def read(text):
    """The document in `text`: JSON (read as JSON to keep its numbers exact), else YAML."""
    text = text.removeprefix("\ufeff")
    try:
        document = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError):
        try:
            document = yaml.load(text, Loader=DecimalLoader)  # noqa: S506 - a SafeLoader subclass
        except (yaml.YAMLError, RecursionError) as exc:
            raise CatalogueError(f"not YAML or JSON: {' '.join(str(exc).split())}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise CatalogueError("the catalogue must be a mapping with exchange_rates, vouchers, topups and esim")
    return document


def place(path):
    """`vouchers[2].denominations[0].min` from a JSON path."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "the catalogue"


@functools.cache
def schema_validator():
    schema = json.loads(resources.files(__package__).joinpath(SCHEMA).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def check_schema(document):
    errors = sorted(schema_validator().iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        raise CatalogueError(f"{place(error.absolute_path)}: {error.message}")


# -- checking against the reference data ----------------------------------------------------------


@dataclasses.dataclass
class References:
    """Active currencies and countries, read once per check."""

    currencies: dict  # code -> (id, precision)
    countries: dict  # alpha-3 -> id

    @classmethod
    def load(cls):
        currencies = {
            code: (id_, precision)
            for id_, code, precision in Currency.select(Currency.id, Currency.currency, Currency.precision)
            .where(Currency.is_active)
            .tuples()
        }
        countries = dict(Country.select(Country.alpha_3, Country.id).where(Country.is_active).tuples())
        return cls(currencies, countries)

    def currency(self, where, code):
        if code not in self.currencies:
            raise CatalogueError(f"{where}: unknown currency {code!r}")
        return self.currencies[code]

    def country(self, where, code, allow_global):
        if code == GLOBAL and allow_global:
            return code
        if code not in self.countries:
            kind = "an alpha-3 country code or GLO" if allow_global else "the alpha-3 code of an active country"
            raise CatalogueError(f"{where}: must be {kind}, not {code!r}")
        return code


def amount(where, value, precision=4, minimum=Decimal(0), maximum=MAX_AMOUNT, above=False):
    """A decimal with at most `precision` decimals, within bounds."""
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise CatalogueError(f"{where}: not a number")
    if decimals(number) > precision:
        raise CatalogueError(f"{where}: at most {precision} decimals")
    if number < minimum or (above and number == minimum):
        raise CatalogueError(f"{where}: must be {'>' if above else '>='} {minimum}")
    if number > maximum:
        raise CatalogueError(f"{where}: must be <= {maximum}")
    return money(number)


def percent(where, value):
    return amount(where, value, maximum=Decimal(100))


def unique(where, entries, key):
    seen = set()
    for index, entry in enumerate(entries):
        value = key(entry)
        if value is not None and value in seen:
            raise CatalogueError(f"{where}[{index}]: {value!r} appears twice")
        seen.add(value)


def unique_names(where, entries):
    """An entry without an id is found by its name: no other entry may have it."""
    seen = {}  # name -> whether an entry without an id had it
    for index, entry in enumerate(entries):
        name, without_id = entry["name"], "id" not in entry
        if name in seen and (without_id or seen[name]):
            raise CatalogueError(f"{where}[{index}]: {name!r} appears twice")
        seen[name] = seen.get(name, False) or without_id


def existing_id(model, entry):
    """The id of the stored row the entry names (by id, else by name), or None."""
    if "id" in entry:
        return entry["id"] if model.select().where(model.id == entry["id"]).exists() else None
    row = model.select(model.id).where(model.name == entry["name"]).order_by(model.id).first()
    return None if row is None else row.id


def check_variant_ids(where, entry, product_model, variant_model, owner_field):
    """A variant id the file gives must be new, or a variant of this very product."""
    owner = existing_id(product_model, entry)
    for index, variant in enumerate(entry["variants"]):
        stored = variant_model.get_or_none(variant_model.id == variant["id"]) if "id" in variant else None
        if stored is not None and getattr(stored, owner_field.name + "_id") != owner:
            raise CatalogueError(f"{where}.variants[{index}].id: {variant['id']} is a variant of another product")


def check_references(document, refs):
    for index, rate in enumerate(document.get("exchange_rates", [])):
        where = f"exchange_rates[{index}]"
        refs.currency(f"{where}.from", rate["from"])
        refs.currency(f"{where}.to", rate["to"])
        if rate["from"] == rate["to"]:
            raise CatalogueError(f"{where}: from and to must differ")
        try:
            parse_rate(str(rate["rate"]))
        except Refused as refused:
            raise CatalogueError(f"{where}.rate: {refused}") from None
    for vertical in VERTICALS:
        entries = document.get(vertical, [])
        unique(vertical, entries, lambda entry: entry.get("id"))
        unique_names(vertical, entries)
        if vertical in VARIANTS:
            every = [variant for entry in entries for variant in entry["variants"]]
            unique(f"{vertical}[*].variants", every, lambda variant: variant.get("id"))
    for index, entry in enumerate(document.get("vouchers", [])):
        check_voucher(f"vouchers[{index}]", entry, refs)
    for index, entry in enumerate(document.get("topups", [])):
        check_topup(f"topups[{index}]", entry, refs)
    for index, entry in enumerate(document.get("esim", [])):
        check_esim(f"esim[{index}]", entry, refs)


def check_voucher(where, entry, refs):
    refs.country(f"{where}.country", entry["country"], allow_global=False)
    _, precision = refs.currency(f"{where}.currency", entry["currency"])
    for index, denomination in enumerate(entry["denominations"]):
        at = f"{where}.denominations[{index}]"
        for key in ("min", "max", "value"):
            if key in denomination:
                amount(f"{at}.{key}", denomination[key], precision, above=True)
        if "min" in denomination and Decimal(str(denomination["min"])) > Decimal(str(denomination["max"])):
            raise CatalogueError(f"{at}: min must not exceed max")
        percent(f"{at}.discount", denomination.get("discount", 0))


def check_topup(where, entry, refs):
    refs.country(f"{where}.country", entry["country"], allow_global=True)
    _, precision = refs.currency(f"{where}.currency", entry["currency"])
    unique(f"{where}.input_fields", entry.get("input_fields", []), lambda field: field["name"])
    unique_names(f"{where}.variants", entry["variants"])
    check_variant_ids(where, entry, TopupProduct, TopupVariant, TopupVariant.product)
    for index, variant in enumerate(entry["variants"]):
        at = f"{where}.variants[{index}]"
        if variant.get("currency", entry["currency"]) != entry["currency"]:
            raise CatalogueError(f"{at}.currency: must be the product's currency, {entry['currency']}")
        fixed = variant.get("fixed_amounts") or []
        ranged = variant.get("min_amount") is not None or variant.get("max_amount") is not None
        if bool(fixed) == ranged:
            raise CatalogueError(f"{at}: either fixed_amounts or min_amount and max_amount")
        for position, value in enumerate(fixed):
            amount(f"{at}.fixed_amounts[{position}]", value, precision, above=True)
        if ranged:
            low = amount(f"{at}.min_amount", variant.get("min_amount"), precision, above=True)
            high = amount(f"{at}.max_amount", variant.get("max_amount"), precision, above=True)
            if low > high:
                raise CatalogueError(f"{at}: min_amount must not exceed max_amount")
        for position, code in enumerate(variant.get("available_in", [])):
            refs.country(f"{at}.available_in[{position}]", code, allow_global=False)
        percent(f"{at}.discount", variant.get("discount", 0))


def check_esim(where, entry, refs):
    refs.country(f"{where}.country", entry["country"], allow_global=True)
    _, precision = refs.currency(f"{where}.currency", entry["currency"])
    unique_names(f"{where}.variants", entry["variants"])
    check_variant_ids(where, entry, EsimProduct, EsimVariant, EsimVariant.esim_product)
    for index, variant in enumerate(entry["variants"]):
        at = f"{where}.variants[{index}]"
        amount(f"{at}.amount", variant["amount"], precision, above=True)
        amount(f"{at}.data_amount_gb", variant["data_amount_gb"])
        percent(f"{at}.discount", variant.get("discount", 0))


def validate(text):
    """The checked document of a catalogue file; CatalogueError naming the first broken rule."""
    document = read(text)
    check_schema(document)
    check_references(document, References.load())
    return document


# -- importing ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Counts:
    created: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(VERTICALS, 0))
    updated: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(VERTICALS, 0))
    deactivated: int = 0

    def report(self):
        result = {v: {"created": self.created[v], "updated": self.updated[v]} for v in VERTICALS}
        return {**result, "deactivated": self.deactivated}


def upsert(model, entry, values, reserved, parent=None):
    """The row `entry` names (by id, else by name, within `parent`), created or brought to
    `values`; returns (row, created, changed). A new row without an id of its own gets one above
    every id the table has and every id the file gives (`reserved`), so it takes none of them."""
    query = model.select()
    if parent is not None:
        field, owner = parent
        query = query.where(field == owner)
    if "id" in entry:
        row = query.where(model.id == entry["id"]).first()
        if row is None and model.get_or_none(model.id == entry["id"]) is not None:
            raise CatalogueError(f"id {entry['id']} belongs to another product")
    else:
        row = query.where(model.name == entry["name"]).order_by(model.id).first()
    if row is None:
        if "id" in entry:
            new_id = entry["id"]
        else:
            new_id = max(model.select(fn.MAX(model.id)).scalar() or 0, reserved.get(model, 0)) + 1
        return model.create(id=new_id, **values), True, True
    changed = {name: value for name, value in values.items() if row.__data__.get(name) != value}
    if changed:
        model.update(**changed).where(model.id == row.id).execute()
    return row, False, bool(changed)


def scenario(entry):
    """The `mock` object as the database gives it back (its numbers as JSON reads them)."""
    return None if entry.get("mock") is None else json.loads(dumps(entry["mock"]))


def named(model, name):
    if name is None:
        return None
    row = model.get_or_none(model.name == name)
    return (row or model.create(name=name)).id


def import_voucher(entry, refs, reserved):
    currency_id, _ = refs.currencies[entry["currency"]]
    values = {
        "name": entry["name"],
        "category": named(Category, entry["category"]),
        "subcategory": named(Subcategory, entry.get("subcategory")),
        "country": refs.countries[entry["country"]],
        "currency": currency_id,
        "image_url": entry.get("image_url"),
        "delivery_mode": entry.get("delivery_mode"),
        "delivery_time": entry.get("delivery_time"),
        "validity": entry.get("validity"),
        "stock": entry.get("stock"),
        "is_active": entry.get("active", True),
        "mock": scenario(entry),
    }
    row, created, changed = upsert(VoucherProduct, entry, values, reserved)
    wanted = [
        (money(d.get("min", d.get("value"))), money(d.get("max", d.get("value"))), money(d.get("discount", 0)))
        for d in entry["denominations"]
    ]
    stored = [(d.min_value, d.max_value, d.discount) for d in row.denominations.order_by(Denomination.position)]
    if wanted != stored:
        Denomination.delete().where(Denomination.product == row.id).execute()
        Denomination.insert_many(
            [
                {"product": row.id, "position": i, "min_value": low, "max_value": high, "discount": off}
                for i, (low, high, off) in enumerate(wanted)
            ]
        ).execute()
    return row, created, changed or wanted != stored, []


def import_topup(entry, refs, reserved):
    currency_id, _ = refs.currencies[entry["currency"]]
    values = {
        "name": entry["name"],
        "topup_type": entry["type"],
        "country_code": entry["country"],
        "currency": currency_id,
        "image_url": entry.get("image_url"),
        "input_fields": [{"required": False, **field} for field in entry.get("input_fields", [])],
        "is_active": entry.get("active", True),
        "mock": scenario(entry),
    }
    row, created, changed = upsert(TopupProduct, entry, values, reserved)
    variant_ids = []
    for variant in entry["variants"]:
        fixed = variant.get("fixed_amounts") or []
        variant_values = {
            "product": row.id,
            "sku": variant.get("sku"),
            "name": variant["name"],
            "category": variant.get("category", ""),
            "currency": currency_id,
            "min_amount": None if fixed else money(variant["min_amount"]),
            "max_amount": None if fixed else money(variant["max_amount"]),
            "fixed_amounts": [str(plain(money(value))) for value in fixed],
            "available_in": list(variant.get("available_in", [])),
            "fields": dict(variant.get("fields", {})),
            "discount": money(variant.get("discount", 0)),
            "is_active": variant.get("active", True),
        }
        parent = (TopupVariant.product, row.id)
        stored, variant_created, variant_changed = upsert(TopupVariant, variant, variant_values, reserved, parent)
        variant_ids.append(stored.id)
        changed = changed or variant_created or variant_changed
    return row, created, changed, variant_ids


def import_esim(entry, refs, reserved):
    currency_id, _ = refs.currencies[entry["currency"]]
    values = {
        "name": entry["name"],
        "country_code": entry["country"],
        "currency": currency_id,
        "image_url": entry.get("image_url"),
        "is_active": entry.get("active", True),
        "mock": scenario(entry),
    }
    row, created, changed = upsert(EsimProduct, entry, values, reserved)
    variant_ids = []
    for variant in entry["variants"]:
        variant_values = {
            "esim_product": row.id,
            "name": variant["name"],
            "description": variant.get("description", ""),
            "currency": currency_id,
            "amount": money(variant["amount"]),
            "data_amount_gb": money(variant["data_amount_gb"]),
            "validity_days": variant["validity_days"],
            "discount": money(variant.get("discount", 0)),
            "is_active": variant.get("active", True),
        }
        parent = (EsimVariant.esim_product, row.id)
        stored, variant_created, variant_changed = upsert(EsimVariant, variant, variant_values, reserved, parent)
        variant_ids.append(stored.id)
        changed = changed or variant_created or variant_changed
    return row, created, changed, variant_ids


IMPORTERS = {"vouchers": import_voucher, "topups": import_topup, "esim": import_esim}
VARIANTS = {"topups": (TopupVariant, TopupVariant.product), "esim": (EsimVariant, EsimVariant.esim_product)}
TABLES = (VoucherProduct, TopupProduct, TopupVariant, EsimProduct, EsimVariant, Category, Subcategory)


def deactivate_missing(vertical, model, kept, kept_variants):
    count = model.update(is_active=False).where(model.is_active & model.id.not_in(kept or [0])).execute()
    if vertical in VARIANTS:
        variant, product = VARIANTS[vertical]
        count += (
            variant.update(is_active=False)
            .where(variant.is_active & product.in_(kept or [0]) & variant.id.not_in(kept_variants or [0]))
            .execute()
        )
    return count


def reserved_ids(document):
    """The largest id the file gives, by table."""
    found = {}
    for vertical, model in PRODUCTS.items():
        for entry in document.get(vertical, []):
            found[model] = max(found.get(model, 0), entry.get("id", 0))
            if vertical in VARIANTS:
                variant_model = VARIANTS[vertical][0]
                for variant in entry["variants"]:
                    found[variant_model] = max(found.get(variant_model, 0), variant.get("id", 0))
    return found


def import_catalogue(text, deactivate=False):
    """Import a catalogue file in one transaction; returns the counts of contract 16.4."""
    document = validate(text)
    counts = Counts()
    reserved = reserved_ids(document)
    hidden = 0  # voucher products deactivated
    with write_txn():
        refs = References.load()
        for rate in document.get("exchange_rates", []):
            ExchangeRate.store(
                refs.currencies[rate["from"]][0], refs.currencies[rate["to"]][0], parse_rate(str(rate["rate"]))
            )
        for vertical in VERTICALS:
            kept, kept_variants = [], []
            for index, entry in enumerate(document.get(vertical, [])):
                try:
                    row, created, changed, variant_ids = IMPORTERS[vertical](entry, refs, reserved)
                except CatalogueError as error:
                    raise CatalogueError(f"{vertical}[{index}]: {error}") from None
                counts.created[vertical] += created
                counts.updated[vertical] += changed and not created
                kept.append(row.id)
                kept_variants += variant_ids
            if deactivate:
                deactivated = deactivate_missing(vertical, PRODUCTS[vertical], kept, kept_variants)
                counts.deactivated += deactivated
                hidden += deactivated if vertical == "vouchers" else 0
        if counts.created["vouchers"] or counts.updated["vouchers"] or hidden:
            CatalogueVersion.bump()  # voucher product lists change (an identical import leaves them)
        advance_sequences()
    return counts.report()


def advance_sequences():
    """Rows created with the file's ids leave PostgreSQL's id sequences behind; move them past."""
    if on_sqlite():
        return
    for model in TABLES:
        table = model._meta.table_name
        db.execute_sql(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
            f'COALESCE((SELECT MAX(id) FROM "{table}"), 0) + 1, false)'
        )


def demo_text():
    """The bundled demo catalogue (contract 17.3)."""
    return resources.files(__package__).joinpath(DEMO).read_text(encoding="utf-8")


def import_demo_if_empty():
    """The demo catalogue, imported when the catalogue has no product yet; None otherwise."""
    if any(model.select().exists() for model in PRODUCTS.values()):
        return None
    return import_catalogue(demo_text())


# -- exporting ------------------------------------------------------------------------------------


def optional(**fields):
    return {name: value for name, value in fields.items() if value is not None}


def export():
    """The whole catalogue as a document of the catalogue format; it imports back to the same."""
    codes = dict(Currency.select(Currency.id, Currency.currency).tuples())
    alpha3 = dict(Country.select(Country.id, Country.alpha_3).tuples())
    categories = dict(Category.select(Category.id, Category.name).tuples())
    subcategories = dict(Subcategory.select(Subcategory.id, Subcategory.name).tuples())
    document = {"exchange_rates": list(reversed(ExchangeRate.listing()))}
    document["vouchers"] = [
        {
            "id": p.id,
            "name": p.name,
            "category": categories[p.category_id],
            **optional(subcategory=subcategories.get(p.subcategory_id)),
            "country": alpha3[p.country_id],
            "currency": codes[p.currency_id],
            **optional(image_url=p.image_url, delivery_mode=p.delivery_mode, delivery_time=p.delivery_time),
            **optional(validity=p.validity, stock=p.stock, mock=p.mock),
            "active": p.is_active,
            "denominations": [
                ({"value": d.min_value} if d.min_value == d.max_value else {"min": d.min_value, "max": d.max_value})
                | {"discount": d.discount}
                for d in p.denominations.order_by(Denomination.position)
            ],
        }
        for p in VoucherProduct.select().order_by(VoucherProduct.id)
    ]
    document["topups"] = [
        {
            "id": p.id,
            "name": p.name,
            "type": p.topup_type,
            "country": p.country_code,
            "currency": codes[p.currency_id],
            **optional(image_url=p.image_url, mock=p.mock),
            "active": p.is_active,
            "input_fields": p.input_fields,
            "variants": [
                {
                    "id": v.id,
                    "name": v.name,
                    **optional(sku=v.sku),
                    "category": v.category,
                    **({"fixed_amounts": v.fixed_amounts} if v.fixed_amounts else {}),
                    **optional(min_amount=v.min_amount, max_amount=v.max_amount),
                    "available_in": v.available_in,
                    "fields": v.fields,
                    "discount": v.discount,
                    "active": v.is_active,
                }
                for v in p.variants.order_by(TopupVariant.id)
            ],
        }
        for p in TopupProduct.select().order_by(TopupProduct.id)
    ]
    document["esim"] = [
        {
            "id": p.id,
            "name": p.name,
            "country": p.country_code,
            "currency": codes[p.currency_id],
            **optional(image_url=p.image_url, mock=p.mock),
            "active": p.is_active,
            "variants": [
                {
                    "id": v.id,
                    "name": v.name,
                    "description": v.description,
                    "amount": v.amount,
                    "data_amount_gb": v.data_amount_gb,
                    "validity_days": v.validity_days,
                    "discount": v.discount,
                    "active": v.is_active,
                }
                for v in p.variants.order_by(EsimVariant.id)
            ],
        }
        for p in EsimProduct.select().order_by(EsimProduct.id)
    ]
    return document


def dump(document, as_json=False):
    if as_json:
        return dumps(document)
    return yaml.dump(document, Dumper=DecimalDumper, sort_keys=False, allow_unicode=True, width=120)
