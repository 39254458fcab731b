"""The top-up vertical's catalogue as a client sees it (contract 7.1-7.6): products with their input
fields, variants, the operator lookup of a mobile number, variant selection and exact quotes.

Only active products, and their active variants, are visible. A variant's effective discount is
the higher of its own and the client's discount on its product (contract 15.1, item 40).
"""

import dataclasses
from decimal import Decimal

import phonenumbers

from octopus_cards.models.clients import Client
from octopus_cards.models.exceptions import InvalidAmount, InvalidInput
from octopus_cards.models.money import decimals, shown
from octopus_cards.models.pricing import charges
from octopus_cards.models.products import ClientDiscount, TopupProduct, TopupVariant
from octopus_cards.models.reference_data import Country
from octopus_cards.models.wallets import Wallet

MOBILE = "MOBILE"
INPUT_LENGTH = range(1, 129)  # characters of an input_data value


def describe(product_id):
    """The product object with its input fields (contract 7.2)."""
    product = TopupProduct.object_of(product_id, TopupProduct.input_fields)
    fields = [{"name": f["name"], "label": f["label"], "required": f["required"]} for f in product["input_fields"]]
    return {**product, "input_fields": fields}


# -- variants ---------------------------------------------------------------------------------------


def variant_object(variant, country_names):
    """The variant object (contract 7.3): range variants carry min and max, fixed ones do not."""
    precision = variant.currency.precision
    data = {"id": variant.id, "name": variant.name, "category": variant.category,
            "currency_code": variant.currency.currency}  # fmt: skip
    if variant.min_amount is not None:
        data["min_amount"] = shown(variant.min_amount, precision)
        data["max_amount"] = shown(variant.max_amount, precision)
    data["fixed_amounts"] = list(variant.fixed_amounts)
    data["available_in"] = [{"code": code, "name": country_names.get(code, code)} for code in variant.available_in]
    data["fields"] = dict(variant.fields)
    return data


def country_names(variants):
    codes = {code for variant in variants for code in variant.available_in}
    if not codes:
        return {}
    return dict(Country.select(Country.alpha_3, Country.name).where(Country.alpha_3.in_(codes)).tuples())


def variants_of(product_id):
    TopupProduct.visible(product_id)
    variants = TopupVariant.active_of(product_id)
    names = country_names(variants)
    return [variant_object(variant, names) for variant in variants]


def describe_variant(variant_id):
    """An active variant of an active product."""
    variant = TopupVariant.visible(variant_id)
    return variant_object(variant, country_names([variant]))


def select_variant(product, amount, category=None):
    """The variant an order of `amount` buys (contract 7.5): a fixed variant listing the amount,
    else a range variant holding it; the lowest id among equals. The amount must also fit the
    currency's precision."""
    if decimals(amount) > product.currency.precision:
        raise InvalidAmount()
    candidates = [v for v in TopupVariant.active_of(product.id) if category is None or v.category == category]
    for variant in candidates:
        if any(Decimal(fixed) == amount for fixed in variant.fixed_amounts):
            return variant
    for variant in candidates:
        if variant.min_amount is not None and variant.min_amount <= amount <= variant.max_amount:
            return variant
    raise InvalidAmount()


# -- input data -------------------------------------------------------------------------------------


def check_input(product, input_data):
    """Contract 7.7, 15.1 item 41: only the product's fields, every required one, values strings of
    1-128 characters; `input_data` None when the order sends none."""
    fields = {field["name"]: field["required"] for field in product.input_fields}
    if input_data is None:
        if any(fields.values()):
            raise InvalidInput("input_data is required")
        return
    for key in input_data:
        if key not in fields:
            raise InvalidInput(f"input_data.{key} is not allowed")
    for key, required in fields.items():
        if required and input_data.get(key) is None:
            raise InvalidInput(f"input_data.{key} is required")
    for key, value in input_data.items():
        if not isinstance(value, str) or len(value) not in INPUT_LENGTH:
            raise InvalidInput(f"input_data.{key} is invalid")


# -- lookup -----------------------------------------------------------------------------------------


def calling_country(number, prefixes):
    """The alpha-2 code of the country a mobile number (E.164) belongs to (contract 7.4, 15.1 items
    42, 48): the region libphonenumber's numbering plans give a valid number; for a number valid
    in no region, the country whose dialing prefix is its longest prefix, ties going to the calling
    code's main country. `prefixes` maps each country's alpha-2 code to its dialing prefix."""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_valid_number(parsed):
        region = phonenumbers.region_code_for_number(parsed)
        if region in prefixes:
            return region
    matching = [(len(prefix), code) for code, prefix in prefixes.items() if prefix and number.startswith(prefix)]
    if not matching:
        return None
    longest = max(length for length, _ in matching)
    tied = sorted(code for length, code in matching if length == longest)
    main = phonenumbers.region_code_for_country_code(int(number[1:longest]))
    return main if main in tied else tied[0]


def lookup(mobile_number):
    """The candidate operators of a mobile number, best guess first (contract 7.4)."""
    prefixes = dict(Country.select(Country.alpha_2, Country.dialing_prefix).where(Country.is_active).tuples())
    region = calling_country(mobile_number, prefixes)
    if region is None:
        return []
    alpha_3 = Country.get(Country.alpha_2 == region).alpha_3
    products = (
        TopupProduct.select(TopupProduct.id, TopupProduct.name)
        .where(TopupProduct.is_active & (TopupProduct.topup_type == MOBILE) & (TopupProduct.country_code == alpha_3))
        .order_by(TopupProduct.id)
        .tuples()
    )
    return [
        {"product_id": id_, "name": name, "country_code": alpha_3, "identified": position == 0}
        for position, (id_, name) in enumerate(products)
    ]


# -- quotes -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Priced:
    product: TopupProduct
    variant: TopupVariant
    wallet: object  # wallets.PayingWallet
    charges: object  # pricing.Charges

    @property
    def precision(self):
        """The precision of the currency the amounts are in."""
        return self.product.currency.precision


def effective_discount(client_id, product_id, variant):
    return max(variant.discount, ClientDiscount.own(client_id, "topups", [product_id]).get(product_id, 0))


def price(client_id, product_id, amount, category=None, wallet_id=None, before_rules=None):
    """What a top-up of `amount` costs the client and from which wallet, checked in the order of
    contract 1.10: the resources (404s), then `before_rules(product)` (an order's `input_data`
    and duplicate reference), then the business rules."""
    product = TopupProduct.visible(product_id)
    wallets = Wallet.payers(client_id, wallet_id)
    if before_rules is not None:
        before_rules(product)
    amount = Decimal(amount)
    variant = select_variant(product, amount, category)
    wallet, rate = Wallet.paying(Client.buying(client_id), wallets, product.currency.currency, wallet_id)
    discount = effective_discount(client_id, product.id, variant)
    quoted = charges(amount, 1, discount, product.currency.currency, wallet.currency, rate)
    return Priced(product, variant, wallet, quoted)


def quote(client_id, product_id, amount, category=None, wallet_id=None):
    """The charges object of contract 7.6."""
    priced = price(client_id, product_id, amount, category, wallet_id)
    return priced.charges.public(priced.product.currency.precision, priced.wallet.precision)
