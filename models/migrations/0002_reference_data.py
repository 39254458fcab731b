"""Countries and currencies from the ISO packages; a starter set of voucher categories."""

import iso4217
import phonenumbers
import pycountry

CATEGORIES = ["Gaming", "Mobile Top-Ups", "Entertainment", "Shopping", "Food & Dining", "Travel"]
SUBCATEGORIES = ["Steam", "PlayStation", "Xbox", "Nintendo", "Netflix", "Spotify", "Amazon", "Uber"]


def countries():
    for country in sorted(pycountry.countries, key=lambda c: c.alpha_2):
        calling_code = phonenumbers.country_code_for_region(country.alpha_2)
        yield {
            "name": getattr(country, "common_name", None) or country.name,
            "official_name": getattr(country, "official_name", None) or country.name,
            "alpha_2": country.alpha_2,
            "alpha_3": country.alpha_3,
            "numeric_code": country.numeric,
            "dialing_prefix": f"+{calling_code}" if calling_code else "",
        }


def currencies():
    # USD and EUR first: the ids integrators see in every example.
    first = ["USD", "EUR"]
    rest = sorted(c.code for c in iso4217.Currency if c.code not in first)
    for code in first + rest:
        currency = iso4217.Currency(code)
        # No minor unit: precious metals, test and fund codes, not money a client pays with.
        if currency.exponent is None:
            continue
        yield {"name": currency.currency_name, "currency": code, "precision": currency.exponent}


def up(migrator, db):
    tables = {
        "country": list(countries()),
        "currency": list(currencies()),
        "category": [{"name": name} for name in CATEGORIES],
        "subcategory": [{"name": name} for name in SUBCATEGORIES],
    }
    for table, rows in tables.items():
        columns = list(rows[0]) + ["is_active"]
        placeholders = ", ".join([db.param] * len(columns))
        sql = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({placeholders})'
        for row in rows:
            db.execute_sql(sql, [*row.values(), True])
