"""Money and pricing (contract 1.8, 5.4, 5.7, 15.1 items 25 and 36): rounding half-up to 4 places,
the charges table in its order, wallet selection and exchange rates."""

from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octopus_cards.models.exceptions import CurrencyNotConvertible, NotFound, NoWalletForCurrency
from octopus_cards.models.money import SCALE, MoneyField, in_units, money
from octopus_cards.models.pricing import charges, forex_rate, select_wallet

D = Decimal


@pytest.mark.parametrize(
    "value, rounded",
    [
        ("0.225", "0.2250"),
        ("0.00005", "0.0001"),  # half-up, not half-even
        ("0.00015", "0.0002"),
        ("0.00025", "0.0003"),  # half-even would give 0.0002
        ("-0.00005", "-0.0001"),  # half away from zero
        ("1.23444999", "1.2344"),
        ("-0", "0.0000"),
        ("1000000000", "1000000000.0000"),
        (3, "3.0000"),
    ],
)
def test_money_rounds_half_up_to_four_places(value, rounded):
    assert str(money(value)) == rounded


@pytest.mark.parametrize("value", [0.1, "NaN", "Infinity", "-Infinity", "1e", ""])
def test_money_refuses_floats_and_non_numbers(value):
    with pytest.raises((TypeError, ValueError)):
        money(value)


def test_negative_zero_is_zero():
    assert str(money("-0.00001")) == "0.0000"


@pytest.mark.parametrize(
    "amount, precision, text",
    [
        ("97.5", 2, "97.50"),
        ("4.275", 2, "4.275"),
        ("1.2345", 2, "1.2345"),
        ("5000", 0, "5000"),
        ("50", 2, "50.00"),
        ("0.1", 0, "0.1"),
        ("12.30000", 3, "12.300"),
        ("7", 4, "7.0000"),
    ],
)
def test_remarks_amount_keeps_at_least_the_currency_precision(amount, precision, text):
    assert in_units(D(amount), precision) == text


@given(st.decimals(min_value=-(10**14), max_value=10**14, places=4))
def test_the_database_form_round_trips_exactly(amount):
    field = MoneyField()
    stored = field.db_value(amount)
    assert isinstance(stored, int) and stored == amount * SCALE
    assert field.python_value(stored) == amount


# unit price, quantity, discount %, source, destination, rate ->
#   non_discounted_total, discount_amount, total_amount, net_amount
CHARGES = [
    ("50", 5, "3.5", "USD", "USD", None, "250", "8.75", "241.25", "241.25"),  # the contract's example
    ("1.5", 3, "15", "USD", "USD", None, "4.5", "0.675", "3.825", "3.825"),  # 0.225-style amounts stay exact
    ("4.5", 1, "5", "EUR", "EUR", None, "4.5", "0.225", "4.275", "4.275"),
    ("0.01", 1, "50", "USD", "USD", None, "0.01", "0.005", "0.005", "0.005"),
    ("0.0001", 1, "50", "USD", "USD", None, "0.0001", "0.0001", "0", "0"),  # 0.00005 rounds half-up
    ("100", 1, "0", "USD", "EUR", "0.92", "100", "0", "100", "92"),
    ("33.33", 3, "10", "USD", "EUR", "0.91234", "99.99", "9.999", "89.991", "82.1024"),  # 82.10238894
    ("5000", 2, "2.5", "JPY", "USD", "0.0067", "10000", "250", "9750", "65.325"),
    ("10", 1, "0", "USD", "JPY", "149.123456", "10", "0", "10", "1491.2346"),  # 1491.23456
    ("1000000000", 5000, "0", "USD", "USD", None, "5000000000000", "0", "5000000000000", "5000000000000"),
]


@pytest.mark.parametrize("price, quantity, discount, source, destination, rate, ndt, da, ta, net", CHARGES)
def test_charges_in_the_contracts_order(price, quantity, discount, source, destination, rate, ndt, da, ta, net):
    quote = charges(D(price), quantity, D(discount), source, destination, D(rate) if rate else None)
    assert (quote.non_discounted_total, quote.discount_amount, quote.total_amount, quote.net_amount) == (
        D(ndt),
        D(da),
        D(ta),
        D(net),
    )
    assert quote.total_payable == quote.net_amount
    assert quote.gst_amount == quote.handling_fee_amount == 0
    assert (quote.forex_rate, quote.conversion_fee) == ((None, None) if rate is None else (D(rate), 0))


def test_discount_is_computed_from_the_rounded_total():
    """15.1 item 25: 0.00015 × 3 = 0.00045 → 0.0005 first; 50 % of that is 0.00025 → 0.0003."""
    quote = charges(D("0.00015"), 3, D("50"), "USD", "USD")
    assert (quote.non_discounted_total, quote.discount_amount, quote.total_amount) == (
        D("0.0005"),
        D("0.0003"),
        D("0.0002"),
    )


def test_charges_refuse_float_prices():
    with pytest.raises(TypeError):
        charges(0.1, 3, D(0), "USD", "USD")


def test_a_rate_is_needed_exactly_when_currencies_differ():
    with pytest.raises(ValueError):
        charges(D(1), 1, D(0), "USD", "EUR")
    with pytest.raises(ValueError):
        charges(D(1), 1, D(0), "USD", "USD", D("1.1"))


WALLETS = [SimpleNamespace(id=1, currency="USD"), SimpleNamespace(id=2, currency="EUR")]


@pytest.mark.parametrize(
    "product_currency, default_currency, wallet_id, chosen",
    [
        ("USD", None, None, 1),  # the product's currency
        ("EUR", "USD", None, 2),  # the product's currency wins over the default
        ("JPY", "EUR", None, 2),  # else the default currency's wallet (FX applies)
        ("USD", None, 2, 2),  # a named wallet, whatever its currency
    ],
)
def test_wallet_selection(product_currency, default_currency, wallet_id, chosen):
    assert select_wallet(WALLETS, product_currency, default_currency, wallet_id).id == chosen


def test_wallet_selection_refusals():
    with pytest.raises(NotFound) as missing:
        select_wallet(WALLETS, "USD", wallet_id=3)
    assert str(missing.value) == "Wallet not found"
    with pytest.raises(NoWalletForCurrency):
        select_wallet(WALLETS, "JPY", "GBP")
    with pytest.raises(NoWalletForCurrency):
        select_wallet([], "USD")


def test_forex_rate_lookup():
    rates = {("USD", "EUR"): D("0.92")}

    def lookup(source, destination):
        return rates.get((source, destination))

    assert forex_rate(lookup, "USD", "USD") is None
    assert forex_rate(lookup, "USD", "EUR") == D("0.92")
    with pytest.raises(CurrencyNotConvertible):
        forex_rate(lookup, "EUR", "USD")  # the reverse is a rate of its own
