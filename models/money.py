"""Money: Decimal in Python, rounded half-up to 4 places (contract 1.8, 15.1 items 13, 25, 36), and
exact in the database as whole ten-thousandths (SQLite has no decimal type: a REAL column drifts)."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from peewee import BigIntegerField

PLACES = Decimal("0.0001")
SCALE = 10_000


def money(value):
    """`value` (Decimal, int or decimal text; never float) rounded half-up to 4 places."""
    if isinstance(value, float):
        raise TypeError("money is never a float")
    try:
        # Quantizing fails for values too large to hold 4 places in 28 digits.
        amount = Decimal(value).quantize(PLACES, rounding=ROUND_HALF_UP) + 0  # + 0 turns -0 into 0
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount


def decimals(value):
    """How many decimals a finite Decimal needs: trailing zeros do not count (`1.50` needs 1)."""
    return max(0, -value.normalize().as_tuple().exponent)


def plain(value):
    """A Decimal as the exact JSON number it is: no exponent, no trailing zeros (rates, percentages)."""
    return None if value is None else Decimal(f"{value.normalize():f}")


def in_units(amount, precision):
    """`{AMOUNT}` of the remarks (15.1, 36): trailing zeros removed, never fewer decimals than the
    currency's precision: 97.50, 4.275, 1.2345, JPY 5000."""
    places = max(precision, decimals(money(amount)))
    return f"{money(amount):.{places}f}"


def shown(amount, precision):
    """An amount as the API and the events write it: an exact JSON number with at least the
    currency's precision (`50.00`, `4.275`, JPY `5000`)."""
    return Decimal(in_units(amount, precision))


class MoneyField(BigIntegerField):
    """A money column stored as an integer count of ten-thousandths; SUM and `amount - :n` stay exact."""

    def db_value(self, value):
        return None if value is None else int(money(value) * SCALE)

    def python_value(self, value):
        return None if value is None else (Decimal(value) / SCALE).quantize(PLACES)


class PercentField(MoneyField):
    """A percentage (discounts, 0-100) with 4 decimals, stored like money."""
