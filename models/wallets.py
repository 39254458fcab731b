"""Wallets, their transactions and exchange rates (contract 6, 13.2, 16.3, 16.4): the ledger.

Every balance change goes through `post`: the guarded balance update, its transaction row and its
event in one database transaction. PREPAID balances never go below zero under any interleaving:
the debit's UPDATE itself carries the condition, so of concurrent debits only those the balance
covers match a row. A wallet's balance is always the sum of its transactions.
"""

import dataclasses
from decimal import Decimal, InvalidOperation

from peewee import Case, CharField, DateTimeField, ForeignKeyField, IntegerField, IntegrityError, TextField, fn

from octopus_cards.models.base import BaseModel, Prepared, db, utcnow, write_txn
from octopus_cards.models.clients import Client
from octopus_cards.models.encoding import timestamp
from octopus_cards.models.exceptions import (
    BalanceLimitExceeded,
    InsufficientBalance,
    NotFound,
    Refused,
)
from octopus_cards.models.money import SCALE, MoneyField, decimals, in_units, money, plain, shown
from octopus_cards.models.pricing import forex_rate, select_wallet
from octopus_cards.models.reference_data import Currency
from octopus_cards.models.webhooks import WALLET_CREDITED, WALLET_DEBITED, Event

PREPAID, POSTPAID = "PREPAID", "POSTPAID"
WALLET_TYPES = (PREPAID, POSTPAID)
CREDIT, DEBIT = "CREDIT", "DEBIT"
COMPLETED = "COMPLETED"
# The largest balance (and, for POSTPAID, the deepest debt) a wallet holds: its ten-thousandths
# stay well inside a 64-bit integer, so SQL arithmetic on them can never overflow.
BALANCE_LIMIT = Decimal("100000000000000")
MAX_RATE = Decimal("1000000000")
RATE_PLACES = 10


def active_currency(code):
    """The active currency with this ISO 4217 code (any case)."""
    currency = Currency.get_or_none((Currency.currency == code.upper()) & Currency.is_active)
    if currency is None:
        raise Refused(f"unknown currency {code!r}")
    return currency


def parse_rate(text):
    try:
        rate = Decimal(text)
    except InvalidOperation:
        rate = None
    if rate is None or not rate.is_finite() or not 0 < rate < MAX_RATE or decimals(rate) > RATE_PLACES:
        raise Refused(f"invalid rate {text!r}: a number above 0 and below {MAX_RATE}, at most {RATE_PLACES} decimals")
    return rate


class ExchangeRate(BaseModel):
    """1 `source_currency` = `rate` `destination_currency` (contract 16.4)."""

    source_currency = ForeignKeyField(Currency, on_delete="CASCADE")
    destination_currency = ForeignKeyField(Currency, on_delete="CASCADE")
    rate = CharField()  # the exact decimal text: rates are multiplied in Python, never summed in SQL

    class Meta:
        indexes = ((("source_currency", "destination_currency"), True),)

    @classmethod
    def put(cls, source_code, destination_code, rate_text):
        source, destination = active_currency(source_code), active_currency(destination_code)
        if source.id == destination.id:
            raise Refused("FROM and TO must be different currencies")
        rate = parse_rate(rate_text)
        with write_txn():
            cls.store(source.id, destination.id, rate)
        return {"from": source.currency, "to": destination.currency, "rate": plain(rate)}

    @classmethod
    def store(cls, source_currency_id, destination_currency_id, rate):
        """Set the rate, replacing the one there was."""
        cls.insert(
            source_currency=source_currency_id, destination_currency=destination_currency_id, rate=str(rate)
        ).on_conflict(conflict_target=[cls.source_currency, cls.destination_currency], preserve=[cls.rate]).execute()

    @classmethod
    def remove(cls, source_code, destination_code):
        source, destination = active_currency(source_code), active_currency(destination_code)
        removed = (
            cls.delete().where((cls.source_currency == source) & (cls.destination_currency == destination)).execute()
        )
        if not removed:
            raise Refused(f"no rate from {source.currency} to {destination.currency}")

    @classmethod
    def listing(cls):
        source, destination = Currency.alias(), Currency.alias()
        rows = (
            cls.select(source.currency, destination.currency, cls.rate)
            .join(source, on=cls.source_currency == source.id)
            .join_from(cls, destination, on=cls.destination_currency == destination.id)
            .order_by(cls.id.desc())
            .tuples()
        )
        return [{"from": src, "to": dst, "rate": plain(Decimal(rate))} for src, dst, rate in rows]

    @classmethod
    def lookup(cls, source_currency_id, destination_currency_id):
        row = cls.get_or_none(
            (cls.source_currency == source_currency_id) & (cls.destination_currency == destination_currency_id)
        )
        return None if row is None else Decimal(row.rate)

    @classmethod
    def between(cls, source_code, destination_code):
        """The rate from one currency code to another, or None."""
        source, destination = Currency.alias(), Currency.alias()
        rate = (
            cls.select(cls.rate)
            .join(source, on=cls.source_currency == source.id)
            .join_from(cls, destination, on=cls.destination_currency == destination.id)
            .where((source.currency == source_code) & (destination.currency == destination_code))
            .scalar()
        )
        return None if rate is None else Decimal(rate)


@dataclasses.dataclass(frozen=True)
class PayingWallet:
    """A wallet as wallet selection and pricing see it (contract 5.7)."""

    id: int
    currency: str
    precision: int


class Wallet(BaseModel):
    client = ForeignKeyField(Client, backref="wallets", on_delete="CASCADE")
    currency = ForeignKeyField(Currency)
    amount = MoneyField(default=0)
    type = CharField(default=PREPAID)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("client", "currency"), True),)

    @classmethod
    def open(cls, client_id, currency_code, wallet_type=PREPAID):
        """A new, empty wallet; a client has at most one per currency."""
        if wallet_type not in WALLET_TYPES:
            raise Refused(f"invalid wallet type {wallet_type!r}: PREPAID or POSTPAID")
        currency = active_currency(currency_code)
        with write_txn():
            Client.find(client_id)
            if cls.select().where((cls.client == client_id) & (cls.currency == currency)).exists():
                raise Refused(f"client {client_id} already has a {currency.currency} wallet")
            try:
                with db.atomic():
                    return cls.create(client=client_id, currency=currency, type=wallet_type)
            except IntegrityError:  # another process opened it between the check and the insert
                raise Refused(f"client {client_id} already has a {currency.currency} wallet") from None

    @classmethod
    def open_funded(cls, client_id, currency_code, amount, note):
        """The client's PREPAID wallet in this currency, opened and credited with `amount` unless
        it exists already (then None): a sandbox's starting balance, idempotent across starts."""
        with write_txn():
            currency = active_currency(currency_code)
            if cls.select().where((cls.client == client_id) & (cls.currency == currency)).exists():
                return None
            wallet = cls.open(client_id, currency_code)
            if amount > 0:
                cls.post(wallet.id, CREDIT, amount, note)
            return wallet

    @classmethod
    def described(cls, client_id=None, wallet_id=None):
        """Wallet objects as the operator commands print them, newest first."""
        query = cls.select(cls.id, cls.client, Currency.currency, Currency.id, Currency.precision, cls.amount, cls.type)
        if client_id is not None:
            query = query.where(cls.client == client_id)
        if wallet_id is not None:
            query = query.where(cls.id == wallet_id)
        rows = query.join(Currency).order_by(cls.id.desc()).tuples()
        return [
            {"id": id_, "client_id": owner, "currency": code, "currency_id": currency_id,
             "amount": shown(amount, precision), "type": wallet_type}
            for id_, owner, code, currency_id, precision, amount, wallet_type in rows
        ]  # fmt: skip

    @classmethod
    def page_for(cls, client_id, currency_code, page, limit):
        """The client's wallets as the API lists them (contract 6.1), and how many there are."""
        query = cls.select().join(Currency).where(cls.client == client_id)
        if currency_code is not None:
            query = query.where(Currency.currency == currency_code.upper())
        total = query.count()
        rows = (
            query.select(cls.id, Currency.id, Currency.precision, cls.amount, cls.type)
            .order_by(cls.id.desc())
            .paginate(page, limit)
            .tuples()
        )
        items = [
            {"id": id_, "currency_id": currency_id, "amount": shown(amount, precision), "type": kind}
            for id_, currency_id, precision, amount, kind in rows
        ]
        return items, total

    @classmethod
    def payers(cls, client_id, wallet_id=None):
        """The client's wallets that could pay an order; Wallet not found when `wallet_id` is
        given and is not one of them."""
        wallets = [PayingWallet(*row) for row in PAYERS.rows(client=client_id)]
        if wallet_id is not None and all(wallet.id != wallet_id for wallet in wallets):
            raise NotFound("Wallet")
        return wallets

    @staticmethod
    def paying(client, wallets, currency, wallet_id=None):
        """The wallet among `wallets` (`payers`) that pays for what is priced in `currency` (contract
        5.7: the one asked for, else the one in that currency, else the client's default currency's),
        and the exchange rate it pays at (None when the currencies match)."""
        default_currency = client.default_currency.currency if client.default_currency_id else None
        wallet = select_wallet(wallets, currency, default_currency, wallet_id)
        return wallet, forex_rate(ExchangeRate.between, currency, wallet.currency)

    @classmethod
    def owned(cls, client_id, wallet_id):
        if not cls.select().where((cls.id == wallet_id) & (cls.client == client_id)).exists():
            raise NotFound("Wallet")

    @classmethod
    def post(cls, wallet_id, transaction_type, amount, reason, fx=None, order=None):
        """The one way a balance changes: credit or debit `amount` (> 0, in the wallet's currency),
        write its transaction and record its `wallet.*` event, in one database transaction.

        `reason` ends the remarks (`Order #12`, an operator's note); `fx` is (source, destination,
        rate) when the wallet pays in another currency than the product's; `order` is (vertical, id).
        Raises InsufficientBalance when a debit is not covered; then nothing is written.
        """
        if amount > BALANCE_LIMIT:
            raise Refused(f"the amount must not exceed {BALANCE_LIMIT}")
        amount = money(amount)
        if amount <= 0:
            raise Refused("the amount must be above 0")
        debit = transaction_type == DEBIT
        with write_txn():
            wallet = POSTING.first(wallet=wallet_id)
            if wallet is None:
                raise NotFound("Wallet")
            client_id, currency_id, code, precision = wallet
            if debit:
                changed = DEBIT_BALANCE.execute(wallet=wallet_id, amount=amount, floor=amount - BALANCE_LIMIT)
            else:
                changed = CREDIT_BALANCE.execute(wallet=wallet_id, amount=amount, ceiling=BALANCE_LIMIT - amount)
            if changed.rowcount != 1:
                raise InsufficientBalance() if debit else BalanceLimitExceeded(BALANCE_LIMIT)
            source, destination, rate = fx or (None, None, None)
            verb = "debited" if debit else "credited"
            transaction = NEW_TRANSACTION.create(
                Transaction(
                    wallet=wallet_id,
                    amount=amount,
                    transaction_type=transaction_type,
                    source_currency=source,
                    destination_currency=destination,
                    forex_rate=None if rate is None else str(rate),
                    conversion_charges=None if rate is None else 0,
                    remarks=f"{code} Wallet {verb} by amount {in_units(amount, precision)} - {reason}",
                    order_vertical=order[0] if order else None,
                    order_id=order[1] if order else None,
                )
            )
            data = Transaction.public(
                (transaction.id, wallet_id, currency_id, precision, transaction.amount, transaction_type,
                 transaction.status, source, destination, transaction.forex_rate, transaction.conversion_charges,
                 transaction.remarks, transaction.created_at)
            )  # fmt: skip
            Event.record(client_id, WALLET_DEBITED if debit else WALLET_CREDITED, data)
        return data

    @classmethod
    def balance_matches_ledger(cls, wallet_id):
        """The balance equals the sum of the wallet's transactions (an invariant; for tests and audits)."""
        sign = Case(None, [(Transaction.transaction_type == CREDIT, 1)], -1)
        # The sign first: a money column on the left would scale the literals as money.
        total = fn.COALESCE(fn.SUM(sign * Transaction.amount), 0).coerce(False)
        ledger = Transaction.select(total).where(Transaction.wallet == wallet_id).scalar()
        return cls.get_by_id(wallet_id).amount == money(ledger) / SCALE


class Transaction(BaseModel):
    wallet = ForeignKeyField(Wallet, backref="transactions", on_delete="CASCADE")
    amount = MoneyField()
    transaction_type = CharField()
    status = CharField(default=COMPLETED)
    source_currency = CharField(null=True)
    destination_currency = CharField(null=True)
    forex_rate = CharField(null=True)
    conversion_charges = MoneyField(null=True)
    remarks = TextField()
    order_vertical = CharField(null=True)
    order_id = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "wallet_transaction"
        indexes = ((("order_vertical", "order_id", "transaction_type"), True),)

    @staticmethod
    def public(row):
        """The transaction object (contract 6.2) from a PUBLIC_FIELDS row."""
        (id_, wallet_id, currency_id, precision, amount, kind, status, source, destination, rate, charges,
         remarks, created_at) = row  # fmt: skip
        return {
            "id": id_,
            "wallet_id": wallet_id,
            "currency_id": currency_id,
            "amount": shown(amount, precision),
            "transaction_type": kind,
            "status": status,
            "source_currency": source,
            "destination_currency": destination,
            "forex_rate": plain(Decimal(rate)) if rate is not None else None,
            "conversion_charges": shown(charges, precision) if charges is not None else None,
            "remarks": remarks,
            "created_at": timestamp(created_at),
        }

    @classmethod
    def visible_to(cls, client_id):
        return cls.select(*PUBLIC_FIELDS).join(Wallet).join(Currency).where(Wallet.client == client_id)

    @classmethod
    def page_for(cls, client_id, wallet_id, page, limit):
        """The client's transactions, newest first (contract 6.2), and how many there are."""
        query = cls.visible_to(client_id)
        if wallet_id is not None:
            Wallet.owned(client_id, wallet_id)
            query = query.where(cls.wallet == wallet_id)
        total = query.count()
        return [cls.public(row) for row in query.order_by(cls.id.desc()).paginate(page, limit).tuples()], total

    @classmethod
    def one_for(cls, client_id, transaction_id):
        row = cls.visible_to(client_id).where(cls.id == transaction_id).tuples().first()
        if row is None:
            raise NotFound("Transaction")
        return cls.public(row)


# What the transaction object is made of: the row and its wallet's currency.
PUBLIC_FIELDS = (
    Transaction.id,
    Transaction.wallet,
    Currency.id,
    Currency.precision,
    Transaction.amount,
    Transaction.transaction_type,
    Transaction.status,
    Transaction.source_currency,
    Transaction.destination_currency,
    Transaction.forex_rate,
    Transaction.conversion_charges,
    Transaction.remarks,
    Transaction.created_at,
)


# Every quote and order reads the client's wallets, and debits and refunds through `post`: their
# statements are built once.
PAYERS = Prepared(
    lambda slot: (
        Wallet.select(Wallet.id, Currency.currency, Currency.precision)
        .join(Currency)
        .where(Wallet.client == slot("client"))
        .tuples()
    )
)
POSTING = Prepared(
    lambda slot: (
        Wallet.select(Wallet.client, Currency.id, Currency.currency, Currency.precision)
        .join(Currency)
        .where(Wallet.id == slot("wallet"))
        .tuples()
        .limit(1)
    )
)
# The debit's condition is in its UPDATE: of concurrent debits only those the balance covers match.
DEBIT_BALANCE = Prepared(
    lambda slot: Wallet.update(amount=Wallet.amount - slot("amount")).where(
        (Wallet.id == slot("wallet"))
        & ((Wallet.amount >= slot("amount")) | ((Wallet.type == POSTPAID) & (Wallet.amount >= slot("floor"))))
    )
)
CREDIT_BALANCE = Prepared(
    lambda slot: Wallet.update(amount=Wallet.amount + slot("amount")).where(
        (Wallet.id == slot("wallet")) & (Wallet.amount <= slot("ceiling"))
    )
)
NEW_TRANSACTION = Prepared.insert(Transaction)
