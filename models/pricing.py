"""What an order costs and which wallet pays it (contract 5.4, 5.7, 15.1 item 25): pure functions,
shared by every vertical."""

import dataclasses

from octopus_cards.models.exceptions import CurrencyNotConvertible, NotFound, NoWalletForCurrency
from octopus_cards.models.money import money, plain, shown

ZERO = money(0)


@dataclasses.dataclass(frozen=True)
class Charges:
    non_discounted_total: object
    discount: object
    discount_amount: object
    total_amount: object
    net_amount: object
    total_payable: object
    source_currency: str
    destination_currency: str
    forex_rate: object  # None when the currencies match

    gst_amount = ZERO
    handling_fee_amount = ZERO

    @property
    def conversion_fee(self):
        return None if self.forex_rate is None else ZERO

    @property
    def fx(self):
        """(source, destination, rate) of the conversion for the ledger (Wallet.post); None without one."""
        return None if self.forex_rate is None else (self.source_currency, self.destination_currency, self.forex_rate)

    def public(self, in_product, in_wallet):
        """The charges object (contract 5.4) but the voucher-only `max_quantity`; amounts shown with
        the precision of the product's (`in_product`) or the wallet's currency (`in_wallet`)."""
        return {
            "non_discounted_total": shown(self.non_discounted_total, in_product),
            "discount_amount": shown(self.discount_amount, in_product),
            "total_amount": shown(self.total_amount, in_product),
            "discount": plain(self.discount),
            "gst_amount": shown(self.gst_amount, in_product),
            "total_payable": shown(self.total_payable, in_wallet),
            "net_amount": shown(self.net_amount, in_wallet),
            "handling_fee_amount": shown(self.handling_fee_amount, in_wallet),
            "charges_details": {
                "source_currency": self.source_currency,
                "destination_currency": self.destination_currency,
                "forex_rate": plain(self.forex_rate),
                "conversion_fee": None if self.conversion_fee is None else shown(self.conversion_fee, in_wallet),
            },
        }


def charges(unit_price, quantity, discount, source_currency, destination_currency, forex_rate=None):
    """The charges of `quantity` items at `unit_price`, in the table's order, each amount rounded
    before the next is computed from it."""
    if (forex_rate is None) != (source_currency == destination_currency):
        raise ValueError("a rate is needed exactly when the currencies differ")
    non_discounted_total = money(unit_price * quantity)
    discount_amount = money(non_discounted_total * money(discount) / 100)
    total_amount = non_discounted_total - discount_amount
    net_amount = total_amount if forex_rate is None else money(total_amount * forex_rate)
    return Charges(
        non_discounted_total=non_discounted_total,
        discount=money(discount),
        discount_amount=discount_amount,
        total_amount=total_amount,
        net_amount=net_amount,
        total_payable=net_amount,
        source_currency=source_currency,
        destination_currency=destination_currency,
        forex_rate=forex_rate,
    )


def select_wallet(wallets, product_currency, default_currency=None, wallet_id=None):
    """The paying wallet among the client's `wallets` (objects with `id` and `currency`): the one
    asked for, else the one in the product currency, else the one in the default currency."""
    if wallet_id is not None:
        chosen = next((wallet for wallet in wallets if wallet.id == wallet_id), None)
        if chosen is None:
            raise NotFound("Wallet")
        return chosen
    by_currency = {wallet.currency: wallet for wallet in wallets}
    chosen = by_currency.get(product_currency) or by_currency.get(default_currency)
    if chosen is None:
        raise NoWalletForCurrency()
    return chosen


def forex_rate(lookup, source_currency, destination_currency):
    """The rate from `source_currency` to `destination_currency` as `lookup(from, to)` finds it,
    None when they match."""
    if source_currency == destination_currency:
        return None
    rate = lookup(source_currency, destination_currency)
    if rate is None:
        raise CurrencyNotConvertible()
    return rate
