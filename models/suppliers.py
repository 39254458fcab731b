"""The supplier port (contract 12): every fulfilment question goes to one supplier, chosen by name
(OCTOPUS_SUPPLIER). The `mock` supplier answers as the sandbox does, following each product's
`mock` scenario (12.1). A real supplier is another class with the same methods, registered here."""

import dataclasses
import datetime
import math
import secrets
import string
import time

ALPHABET = string.ascii_uppercase + string.digits
CARD_NUMBERS = len(ALPHABET) ** 12  # MOCK- and three groups of 4 (contract 12)


class TransientSupplierError(Exception):
    """The supplier could not answer now; the call is retried with backoff."""


class SupplierRefused(Exception):
    """The supplier's final word: the order `fail`s or is `cancel`led. A top-up or eSIM that `fail`s
    says why, in words the customer can act on (`failure_code`, `failure_reason`)."""

    def __init__(self, outcome, failure_code=None, failure_reason=None):
        super().__init__(outcome)
        self.outcome, self.failure_code, self.failure_reason = outcome, failure_code, failure_reason


@dataclasses.dataclass(frozen=True)
class Delivery:
    codes: list  # dicts: card_number, pin_code, claim_url, expires_at
    final: bool  # no more codes will come (a partial delivery)


NOT_INSTALLED, ACTIVE, EXPIRED = "NOT_INSTALLED", "ACTIVE", "EXPIRED"
DEFAULT_FAILURE = ("INVALID_ACCOUNT", "The account identifier was rejected by the operator")


class MockSupplier:
    """Every valid request succeeds, unless the product's scenario says otherwise.

    `background_delay` (OCTOPUS_FULFILMENT_DELAY): seconds before background work on a new order
    starts, so that integrators see their orders PENDING for a while, as with a real supplier."""

    name = "mock"

    def __init__(self, background_delay=0):
        self.background_delay = background_delay

    def answers_at_once(self, product):
        """Whether its calls for `product` return without waiting on anything: the mock's do, but
        for a scenario's delay. A synchronous order's first call then needs no deadline (15.1,
        item 29); a supplier across a network never answers at once."""
        return not (product.mock or {}).get("delay")

    def voucher_in_stock(self, product, denomination, quantity):
        """The supplier's stock check: `in_stock: false` says no."""
        return (product.mock or {}).get("in_stock", True) is not False

    def issue_vouchers(self, product, order, wanted, call_number):
        """Up to `wanted` codes for the order; `call_number` counts this order's calls from 1."""
        scenario = self.play(product, call_number)
        outcome = scenario.get("outcome", "deliver")
        if outcome in ("fail", "cancel"):
            raise SupplierRefused(outcome)
        if outcome == "partial":
            total = min(scenario.get("deliver_count", 1), order.quantity - 1)
            return Delivery([self.code(product, order) for _ in range(max(0, total - order.delivered_quantity))], True)
        return Delivery([self.code(product, order) for _ in range(wanted)], False)

    def top_up(self, product, order, call_number):
        """Recharge the order's account (its `input_data`) by its amount; returns when delivered."""
        self.settle_scenario(self.play(product, call_number))

    def topup_status(self, product, order):
        """What the supplier knows of a PENDING top-up: None while it has nothing final to say. The
        mock's top-ups end only by its `top_up` answers, which the order has recorded already."""
        return None

    def issue_esim(self, product, order, call_number):
        """The order's eSIM: its activation code (an LPA string) and ICCID."""
        self.settle_scenario(self.play(product, call_number))
        return {"activation_code": f"LPA:1$smdp.invalid${secrets.token_hex(16).upper()}",
                "iccid": "89" + "".join(secrets.choice(string.digits) for _ in range(18))}  # fmt: skip

    def esim_install_state(self, product, order, now):
        """A delivered eSIM's install state at `now`: installed `install_after` seconds after its
        delivery, expired `expire_after` seconds after that (12.1); never installed without them."""
        scenario = product.mock or {}
        state = {"is_installed": False, "installed_at": None, "activation_status": NOT_INSTALLED, "activated_at": None}
        if scenario.get("install_after") is None:
            return state
        installed = order.delivered_at + datetime.timedelta(seconds=math.ceil(scenario["install_after"]))
        if now < installed:
            return state
        state = {
            "is_installed": True,
            "installed_at": installed,
            "activation_status": ACTIVE,
            "activated_at": installed,
        }
        expire_after = scenario.get("expire_after")
        if expire_after is not None and now >= installed + datetime.timedelta(seconds=math.ceil(expire_after)):
            state["activation_status"] = EXPIRED
        return state

    @staticmethod
    def settle_scenario(scenario):
        """A top-up's or eSIM's final word, when the scenario gives one other than delivery."""
        outcome = scenario.get("outcome", "deliver")
        if outcome == "cancel":
            raise SupplierRefused(outcome)
        if outcome == "fail":
            code = scenario.get("failure_code", DEFAULT_FAILURE[0])
            raise SupplierRefused(outcome, code, scenario.get("failure_reason", DEFAULT_FAILURE[1]))

    @staticmethod
    def play(product, call_number):
        """The product's scenario for this call: its delay, then its transient failures."""
        scenario = product.mock or {}
        if scenario.get("delay"):  # time.sleep(0) would still hand the GIL over
            time.sleep(scenario["delay"])
        if call_number <= scenario.get("transient_failures", 0):
            raise TransientSupplierError("the mock supplier's scenario: a transient failure")
        return scenario

    @staticmethod
    def code(product, order):
        expires = datetime.datetime.combine(order.created_at.date(), datetime.time()) + datetime.timedelta(days=365)
        if product.delivery_mode == "URL":
            return {"card_number": None, "pin_code": None, "expires_at": expires,
                    "claim_url": f"https://vouchers.invalid/claim/{secrets.token_hex(16)}"}  # fmt: skip
        # One draw of the system's randomness for the whole code (a draw a character costs a system
        # call each), read as 12 digits in base len(ALPHABET) and a PIN below 10,000: each uniform.
        drawn, pin = divmod(secrets.randbelow(CARD_NUMBERS * 10_000), 10_000)
        characters = []
        for _ in range(12):
            drawn, digit = divmod(drawn, len(ALPHABET))
            characters.append(ALPHABET[digit])
        groups = ("".join(characters[at : at + 4]) for at in (0, 4, 8))
        return {"card_number": "MOCK-" + "-".join(groups), "pin_code": f"{pin:04d}",
                "claim_url": None, "expires_at": expires}  # fmt: skip


SUPPLIERS = {MockSupplier.name: MockSupplier}


def supplier_named(name, background_delay=0):
    return SUPPLIERS[name](background_delay)
