"""What the domain refuses. The HTTP layer turns each into the contract's envelope in one place
(octopus_cards/http/errors.py); nothing here knows about statuses or error codes."""


class DomainError(Exception):
    """A request the domain cannot carry out as asked."""


class NotFound(DomainError):
    """`thing` (`Country`, `Wallet`, ...) is missing, inactive, or not the caller's to see."""

    def __init__(self, thing):
        super().__init__(f"{thing} not found")
        self.thing = thing


class NoWalletForCurrency(DomainError):
    """No wallet was named, and the client has none in the product's nor in its default currency."""


class CurrencyNotConvertible(DomainError):
    """The wallet's currency differs from the product's and no exchange rate joins them."""


class InsufficientBalance(DomainError):
    """A PREPAID wallet holds less than the debit (or a POSTPAID one would pass its floor)."""

    def __init__(self):
        super().__init__("Insufficient wallet balance")


class BalanceLimitExceeded(DomainError):
    """A credit would take the balance past the largest amount a wallet can hold."""

    def __init__(self, limit):
        super().__init__(f"the balance would exceed {limit}")


class Refused(DomainError):
    """An operator's request the domain will not carry out; the message says why, in one line."""


class InvalidDenomination(DomainError):
    """The value fits no denomination of the product, or has more decimals than its currency."""


class QuantityAboveLimit(DomainError):
    """The quantity is above the client's bulk limit."""


class DuplicateReference(DomainError):
    """The client already used this client_reference in the vertical (contract 11)."""


class InsufficientStock(DomainError):
    """Fewer codes in stock, or the supplier says none, than the order asks for."""


class InvalidAmount(DomainError):
    """A top-up or eSIM amount matches no active variant of the product."""


class InvalidInput(DomainError):
    """A top-up's `input_data` breaks the product's input fields; the message names the key
    (`input_data.player_id is required`, contract 15.1 item 41)."""
