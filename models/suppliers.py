"""The supplier port (contract 12): every fulfilment question goes to one supplier, chosen by name
(OCTOPUS_SUPPLIER). The `mock` supplier answers as the sandbox does, following each product's
`mock` scenario (12.1). A real supplier is another class with the same methods, registered here."""

import dataclasses
import datetime
import secrets
import string
import time

ALPHABET = string.ascii_uppercase + string.digits


class TransientSupplierError(Exception):
    """The supplier could not answer now; the call is retried with backoff."""


class SupplierRefused(Exception):
    """The supplier's final word: the order `fail`s or is `cancel`led."""

    def __init__(self, outcome):
        super().__init__(outcome)
        self.outcome = outcome


@dataclasses.dataclass(frozen=True)
class Delivery:
    codes: list  # dicts: card_number, pin_code, claim_url, expires_at
    final: bool  # no more codes will come (a partial delivery)


class MockSupplier:
    """Every valid request succeeds, unless the product's scenario says otherwise."""

    name = "mock"

    def voucher_in_stock(self, product, denomination, quantity):
        """The supplier's stock check: `in_stock: false` says no."""
        return (product.mock or {}).get("in_stock", True) is not False

    def issue_vouchers(self, product, order, wanted, call_number):
        """Up to `wanted` codes for the order; `call_number` counts this order's calls from 1."""
        scenario = product.mock or {}
        if scenario.get("delay"):  # time.sleep(0) would still hand the GIL over
            time.sleep(scenario["delay"])
        if call_number <= scenario.get("transient_failures", 0):
            raise TransientSupplierError("the mock supplier's scenario: a transient failure")
        outcome = scenario.get("outcome", "deliver")
        if outcome in ("fail", "cancel"):
            raise SupplierRefused(outcome)
        if outcome == "partial":
            total = min(scenario.get("deliver_count", 1), order.quantity - 1)
            return Delivery([self.code(product, order) for _ in range(max(0, total - order.delivered_quantity))], True)
        return Delivery([self.code(product, order) for _ in range(wanted)], False)

    @staticmethod
    def code(product, order):
        expires = datetime.datetime.combine(order.created_at.date(), datetime.time()) + datetime.timedelta(days=365)
        if product.delivery_mode == "URL":
            return {"card_number": None, "pin_code": None, "expires_at": expires,
                    "claim_url": f"https://vouchers.invalid/claim/{secrets.token_hex(16)}"}  # fmt: skip
        groups = ["".join(secrets.choice(ALPHABET) for _ in range(4)) for _ in range(3)]
        return {"card_number": "MOCK-" + "-".join(groups), "pin_code": f"{secrets.randbelow(10_000):04d}",
                "claim_url": None, "expires_at": expires}  # fmt: skip


SUPPLIERS = {MockSupplier.name: MockSupplier}


def supplier_named(name):
    return SUPPLIERS[name]()
