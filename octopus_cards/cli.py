"""The operator's command line (contract 16): `octopus-cards migrate | serve | client | wallet | fx ...`."""

import argparse
import copy
import datetime
import gc
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

from peewee import DatabaseError

from octopus_cards import models
from octopus_cards.models import (
    FEATURES,
    Client,
    Delivery,
    ExchangeRate,
    Wallet,
    WebhookEndpoint,
    catalogue,
    orders,
    products,
    webhooks,
)
from octopus_cards.models.clients import BULK_LIMIT_RANGE
from octopus_cards.models.encoding import dumps
from octopus_cards.models.esim_orders import EsimOrder
from octopus_cards.models.exceptions import DomainError
from octopus_cards.models.money import decimals
from octopus_cards.models.products import VERTICALS
from octopus_cards.models.topup_orders import TopupOrder
from octopus_cards.models.wallets import CREDIT, DEBIT, WALLET_TYPES, active_currency
from octopus_cards.outbound import addresses
from octopus_cards.settings import Settings, SettingsError, parse_network

logger = logging.getLogger("octopus_cards")

MAX_ID = 2**31 - 1
OPERATOR_COMMANDS = ("client", "wallet", "fx", "catalog", "order", "webhook")


class CliError(Exception):
    """A one-line message for the operator; exit status 2."""


class Parser(argparse.ArgumentParser):
    """Refused arguments are one line on stderr, like every other refusal (contract 15.1, item 38)."""

    def error(self, message):
        print(f"octopus-cards: {message}", file=sys.stderr)
        sys.exit(2)


def network_arg(text):
    try:
        return parse_network(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid CIDR or IP address: {text!r}") from None


def feature_arg(text):
    if text not in FEATURES:
        raise argparse.ArgumentTypeError(f"unknown feature {text!r} (choose from {', '.join(FEATURES)})")
    return text


def id_arg(thing):
    def parse(text):
        if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
            raise argparse.ArgumentTypeError(f"invalid {thing} id: {text!r}")
        return int(text)

    return parse


client_id_arg = id_arg("client")
wallet_id_arg = id_arg("wallet")


def bulk_limit_arg(text):
    low, high = BULK_LIMIT_RANGE
    if not text.isdigit() or not low <= int(text) <= high:
        raise argparse.ArgumentTypeError(f"invalid bulk limit {text!r}: a whole number from {low} to {high}")
    return int(text)


def amount_arg(text):
    """A positive amount with at most 4 decimals, as written (never through a float)."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount <= 0 or decimals(amount) > 4:
        raise argparse.ArgumentTypeError(f"invalid amount {text!r}: a number above 0 with at most 4 decimals")
    return amount


def percent_arg(text):
    """0-100 with at most 4 decimals (contract 16.2)."""
    try:
        percent = Decimal(text)
    except InvalidOperation:
        percent = None
    if percent is None or not percent.is_finite() or not 0 <= percent <= 100 or decimals(percent) > 4:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r}: 0 to 100 with at most 4 decimals")
    return percent


def vertical_arg(text):
    if text not in VERTICALS:
        raise argparse.ArgumentTypeError(f"unknown vertical {text!r} (choose from {', '.join(VERTICALS)})")
    return text


product_id_arg = id_arg("product")


def wallet_type_arg(text):
    if text not in WALLET_TYPES:
        raise argparse.ArgumentTypeError(f"invalid wallet type {text!r} (choose from {', '.join(WALLET_TYPES)})")
    return text


endpoint_id_arg = id_arg("endpoint")
delivery_id_arg = id_arg("delivery")


def event_type_arg(text):
    if text not in webhooks.EVENT_TYPES:
        raise argparse.ArgumentTypeError(f"unknown event type {text!r} (choose from {', '.join(webhooks.EVENT_TYPES)})")
    return text


def rfc3339_arg(text):
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"invalid timestamp {text!r}: RFC 3339, e.g. 2025-01-15T12:00:00Z")
    return moment.astimezone(datetime.UTC)


def build_parser():
    parser = Parser(prog="octopus-cards", description="Octopus Cards API server and operator tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("migrate", help="apply pending database migrations")
    commands.add_parser("prune", help="delete token records expired for over a day and stale rate-limit counters")
    commands.add_parser("worker", help="run background work (fulfilment) without serving HTTP")

    serve = commands.add_parser("serve", help="migrate, then serve the API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--demo", action="store_true", help="create a demo client when there is none and print its credentials"
    )
    serve.epilog = "OCTOPUS_BOOTSTRAP_CLIENT=key:secret makes sure a client with those credentials exists."

    client = commands.add_parser("client", help="manage API clients").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = client.add_parser("create", help="create a client and print its API key and secret once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--ip",
        action="append",
        default=[],
        type=network_arg,
        metavar="CIDR",
        help="allow this CIDR (repeatable; none = every address)",
    )
    create.add_argument(
        "--feature",
        action="append",
        default=[],
        type=feature_arg,
        metavar="F",
        help=f"enable a feature (repeatable): {', '.join(FEATURES)}",
    )
    create.add_argument("--default-currency", metavar="CUR", help="the currency whose wallet pays when none matches")
    create.add_argument(
        "--bulk-limit",
        type=bulk_limit_arg,
        default=100,
        metavar="N",
        help="the largest voucher quantity per order, 1-5000 (default 100)",
    )
    create.add_argument("--json", action="store_true", help="print JSON")

    listing = client.add_parser("list", help="list clients")
    listing.add_argument("--json", action="store_true", help="print JSON")

    configure = client.add_parser("set", help="change a client's default currency or bulk limit")
    configure.add_argument("id", type=client_id_arg)
    configure.add_argument("--default-currency", metavar="CUR")
    configure.add_argument("--bulk-limit", type=bulk_limit_arg, metavar="N")

    for action, help_text in (("allow-ip", "add a CIDR to the allowlist"), ("remove-ip", "remove a CIDR")):
        sub = client.add_parser(action, help=help_text)
        sub.add_argument("id", type=client_id_arg)
        sub.add_argument("cidr", type=network_arg)
    for action, help_text in (("enable-feature", "enable a feature"), ("disable-feature", "disable a feature")):
        sub = client.add_parser(action, help=help_text)
        sub.add_argument("id", type=client_id_arg)
        sub.add_argument("feature", type=feature_arg)

    rotate = client.add_parser("rotate-secret", help="issue a new secret; the old one stops working")
    rotate.add_argument("id", type=client_id_arg)
    rotate.add_argument("--json", action="store_true", help="print JSON")

    for action, help_text in (("deactivate", "refuse the client's logins and tokens"), ("activate", "re-enable")):
        client.add_parser(action, help=help_text).add_argument("id", type=client_id_arg)
    discount = client.add_parser("set-discount", help="the client's discount (percent) on one product")
    cleared = client.add_parser("clear-discount", help="remove the client's discount on one product")
    for sub in (discount, cleared):
        sub.add_argument("id", type=client_id_arg)
        sub.add_argument("vertical", type=vertical_arg, help=", ".join(VERTICALS))
        sub.add_argument("product_id", type=product_id_arg)
    discount.add_argument("percent", type=percent_arg, help="0-100, at most 4 decimals")
    for action, help_text in (
        ("blacklist", "hide a voucher product from the client"),
        ("unblacklist", "show it again"),
    ):
        sub = client.add_parser(action, help=help_text)
        sub.add_argument("id", type=client_id_arg)
        sub.add_argument("product_id", type=product_id_arg)

    wallet = commands.add_parser("wallet", help="manage wallets and move money").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    opened = wallet.add_parser("create", help="open an empty wallet for a client (one per currency)")
    opened.add_argument("client_id", type=client_id_arg)
    opened.add_argument("currency")
    opened.add_argument("--type", type=wallet_type_arg, default="PREPAID", help="PREPAID (default) or POSTPAID")
    opened.add_argument("--json", action="store_true", help="print JSON")
    wallets = wallet.add_parser("list", help="list wallets, newest first")
    wallets.add_argument("--client", type=client_id_arg, metavar="ID")
    wallets.add_argument("--json", action="store_true", help="print JSON")
    for action, kind in (("credit", "Operator credit"), ("debit", "Operator debit")):
        move = wallet.add_parser(action, help=f"{action} a wallet: one transaction and its event")
        move.add_argument("wallet_id", type=wallet_id_arg)
        move.add_argument("amount", type=amount_arg)
        move.add_argument("--note", default=kind, help=f"ends the transaction's remarks (default {kind!r})")
        move.add_argument("--json", action="store_true", help="print the transaction as JSON")

    fx = commands.add_parser("fx", help="manage exchange rates").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    put = fx.add_parser("set", help="1 FROM = RATE TO (product currency FROM, wallet currency TO)")
    put.add_argument("source")
    put.add_argument("destination")
    put.add_argument("rate")
    removal = fx.add_parser("remove", help="remove the rate from FROM to TO")
    removal.add_argument("source")
    removal.add_argument("destination")
    fx.add_parser("list", help="list the rates").add_argument("--json", action="store_true", help="print JSON")

    order = commands.add_parser("order", help="inspect and cancel orders").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    listed = order.add_parser("list", help="list orders, newest first")
    listed.add_argument("--client", type=client_id_arg, metavar="ID")
    listed.add_argument("--vertical", type=vertical_arg)
    listed.add_argument("--status", choices=orders.STATUSES)
    listed.add_argument("--json", action="store_true", help="print JSON")
    for action, help_text in (("show", "print one order, without its codes"), ("cancel", "cancel a PENDING order")):
        sub = order.add_parser(action, help=help_text)
        sub.add_argument("vertical", type=vertical_arg)
        sub.add_argument("id", type=id_arg("order"))
        if action == "show":
            sub.add_argument("--json", action="store_true", help="print JSON")

    webhook = commands.add_parser("webhook", help="manage webhook endpoints and their deliveries").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    added = webhook.add_parser("add", help="register an endpoint for a client; prints its secret once")
    added.add_argument("client_id", type=client_id_arg)
    added.add_argument("url")
    added.add_argument("--event", action="append", type=event_type_arg, help="subscribe to this type (default: all)")
    added.add_argument("--json", action="store_true", help="print JSON")
    endpoints = webhook.add_parser("list", help="list endpoints, newest first")
    endpoints.add_argument("--client", type=client_id_arg, metavar="ID")
    endpoints.add_argument("--json", action="store_true", help="print JSON")
    for action, help_text in (
        ("remove", "delete an endpoint and its deliveries"),
        ("enable", "let an endpoint receive deliveries again"),
        ("disable", "stop attempts to an endpoint; its new deliveries are recorded as failed"),
    ):
        webhook.add_parser(action, help=help_text).add_argument("id", type=endpoint_id_arg)
    for action, help_text in (
        ("rotate-secret", "issue a new secret; the old one still signs for 24 hours"),
        ("ping", "send one webhook.ping event now and print the outcome"),
    ):
        sub = webhook.add_parser(action, help=help_text)
        sub.add_argument("id", type=endpoint_id_arg)
        sub.add_argument("--json", action="store_true", help="print JSON")
    deliveries = webhook.add_parser("deliveries", help="list deliveries, newest first")
    deliveries.add_argument("--endpoint", type=endpoint_id_arg, metavar="ID")
    deliveries.add_argument("--event", metavar="EVENT_ID")
    deliveries.add_argument("--status", choices=webhooks.DELIVERY_STATUSES)
    deliveries.add_argument("--json", action="store_true", help="print JSON")
    webhook.add_parser("redeliver", help="one more attempt of a delivery, now").add_argument(
        "delivery_id", type=delivery_id_arg
    )
    recover = webhook.add_parser("recover", help="one more attempt of every failed delivery since a time")
    recover.add_argument("endpoint_id", type=endpoint_id_arg)
    recover.add_argument("--since", type=rfc3339_arg, required=True, metavar="TIMESTAMP")

    catalog = commands.add_parser("catalog", help="validate, import and export the catalogue").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    catalog.add_parser("validate", help="check a catalogue file, changing nothing").add_argument("file")
    imported = catalog.add_parser("import", help="import a catalogue file (YAML or JSON) in one transaction")
    imported.add_argument("file")
    imported.add_argument("--deactivate-missing", action="store_true", help="deactivate what the file leaves out")
    imported.add_argument("--json", action="store_true", help="print the counts as JSON")
    catalog.add_parser("export", help="print the whole catalogue (YAML)").add_argument(
        "--json", action="store_true", help="print JSON instead"
    )
    return parser


def describe(client):
    return {
        "client_id": client.id,
        "name": client.name,
        "api_key": client.api_key,
        "ip_whitelist": client.networks(),
        "features": client.features(),
        "is_active": client.is_active,
        "default_currency": client.default_currency_code,
        "bulk_limit": client.bulk_limit,
    }


def print_client(data, as_json):
    if as_json:
        print(json.dumps(data))
    else:
        for name, value in data.items():
            print(f"{name}: {', '.join(value) if isinstance(value, list) else value}")


def print_table(clients):
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "api_key", "active", "features", "ip_whitelist", title="clients")
    for data in clients:
        table.add_row(
            str(data["client_id"]),
            data["name"],
            data["api_key"],
            "yes" if data["is_active"] else "no",
            ", ".join(data["features"]) or "-",
            ", ".join(data["ip_whitelist"]) or "any",
        )
    Console(width=160).print(table)


def run_client_action(args, settings):
    if args.action == "create":
        currency = active_currency(args.default_currency) if args.default_currency else None
        client, secret = Client.provision(
            settings.secret_pepper, args.name, args.ip, args.feature, default_currency=currency,
            bulk_limit=args.bulk_limit,
        )  # fmt: skip
        created = {"client_id": client.id, "name": client.name, "api_key": client.api_key, "api_secret": secret}
        created.update(ip_whitelist=client.networks(), features=client.features())
        created.update(default_currency=client.default_currency_code, bulk_limit=client.bulk_limit)
        print_client(created, args.json)
    elif args.action == "set":
        if args.default_currency is None and args.bulk_limit is None:
            raise CliError("client set needs --default-currency or --bulk-limit")
        client = Client.find(args.id)
        currency = active_currency(args.default_currency) if args.default_currency else None
        client.configure(currency, args.bulk_limit)
        print(f"client {client.id}: default currency {client.default_currency_code}, bulk limit {client.bulk_limit}")
    elif args.action == "list":
        clients = [describe(client) for client in Client.select().order_by(Client.id)]
        if args.json:
            print(json.dumps(clients))
        else:
            print_table(clients)
    elif args.action == "rotate-secret":
        client = Client.find(args.id)
        secret = client.rotate_secret(settings.secret_pepper)
        print_client({"client_id": client.id, "api_key": client.api_key, "api_secret": secret}, args.json)
    elif args.action == "set-discount":
        products.set_discount(args.id, args.vertical, args.product_id, args.percent)
        print(f"client {args.id}: {args.percent}% on {args.vertical} product {args.product_id}")
    elif args.action == "clear-discount":
        products.clear_discount(args.id, args.vertical, args.product_id)
        print(f"client {args.id}: no discount on {args.vertical} product {args.product_id}")
    elif args.action in ("blacklist", "unblacklist"):
        (products.blacklist if args.action == "blacklist" else products.unblacklist)(args.id, args.product_id)
        print(f"client {args.id}: voucher product {args.product_id} {args.action}ed")
    else:
        client = Client.find(args.id)
        {
            "allow-ip": lambda: client.allow_network(args.cidr),
            "remove-ip": lambda: client.remove_network(args.cidr),
            "enable-feature": lambda: client.enable_feature(args.feature),
            "disable-feature": lambda: client.disable_feature(args.feature),
            "activate": lambda: client.set_active(True),
            "deactivate": lambda: client.set_active(False),
        }[args.action]()
        print(f"client {client.id}: {args.action} done")


def run_wallet_action(args):
    if args.action == "create":
        wallet = Wallet.open(args.client_id, args.currency, args.type)
        described = Wallet.described(wallet_id=wallet.id)[0]
        print_json_or_line(described, args.json, "wallet {id}: {currency} {type}, client {client_id}")
    elif args.action == "list":
        wallets = Wallet.described(client_id=args.client)
        if args.json:
            print(dumps(wallets))
        for wallet in [] if args.json else wallets:
            print("{id}\tclient {client_id}\t{currency}\t{amount}\t{type}".format(**wallet))
    else:
        if Wallet.get_or_none(Wallet.id == args.wallet_id) is None:
            raise CliError(f"no wallet with id {args.wallet_id}")
        transaction = Wallet.post(args.wallet_id, CREDIT if args.action == "credit" else DEBIT, args.amount, args.note)
        print_json_or_line(transaction, args.json, "transaction {id}: {remarks}")


def run_fx_action(args):
    if args.action == "set":
        rate = ExchangeRate.put(args.source, args.destination, args.rate)
        print("1 {from} = {rate} {to}".format(**rate))
    elif args.action == "remove":
        ExchangeRate.remove(args.source, args.destination)
        print(f"rate from {args.source.upper()} to {args.destination.upper()} removed")
    elif args.json:
        print(dumps(ExchangeRate.listing()))
    else:
        for rate in ExchangeRate.listing():
            print("1 {from} = {rate} {to}".format(**rate))


def run_catalog_action(args):
    if args.action == "export":
        print(catalogue.dump(catalogue.export(), args.json), end="" if not args.json else "\n")
        return
    text = read_file(args.file)
    if args.action == "validate":
        document = catalogue.validate(text)
        sizes = ", ".join(f"{len(document.get(part, []))} {part}" for part in ("vouchers", "topups", "esim"))
        print(f"{args.file}: valid ({sizes})")
        return
    counts = catalogue.import_catalogue(text, args.deactivate_missing)
    if args.json:
        print(json.dumps(counts))
    else:
        for vertical in VERTICALS:
            print(f"{vertical}: {counts[vertical]['created']} created, {counts[vertical]['updated']} updated")
        print(f"deactivated: {counts['deactivated']}")


# Each vertical's orders, for the `order` commands.
ORDER_BOOKS = {"vouchers": orders, "topups": TopupOrder, "esim": EsimOrder}


def run_order_action(args):
    if args.action == "list":
        books = ORDER_BOOKS.values() if args.vertical is None else [ORDER_BOOKS[args.vertical]]
        rows = [row for book in books for row in book.operator_listing(args.client, args.status)]
        rows.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
        if args.json:
            print(dumps(rows))
        for row in [] if args.json else rows:
            print("{vertical}\t{id}\tclient {client_id}\t{status}\t{created_at}".format(**row))
        return
    book = ORDER_BOOKS[args.vertical]
    if args.action == "show":
        shown = book.operator_view(args.id)
        print(dumps(shown) if args.json else "\n".join(f"{key}: {value}" for key, value in shown.items()))
    else:
        book.cancel(args.id)
        print(f"{args.vertical} order {args.id}: CANCELLED, refunded")


def run_webhook_action(args, settings):
    endpoint_id = getattr(args, "id", None)
    if args.action == "add":
        try:
            addresses.parse_webhook_url(args.url, allow_http=settings.webhook_allow_http)
        except addresses.UnsafeUrl as exc:
            raise CliError(str(exc)) from None
        shown = WebhookEndpoint.add(args.client_id, args.url, args.event).described(with_secret=True)
        print_json_or_line(
            shown, args.json, "webhook endpoint {id}, client {client_id}: {url}\nsecret (shown once): {secret}"
        )
    elif args.action == "list":
        shown = WebhookEndpoint.listing(args.client)
        if args.json:
            print(dumps(shown))
        for endpoint in [] if args.json else shown:
            state = "active" if endpoint["is_active"] else "disabled"
            events = ",".join(endpoint["events"])
            print(f"{endpoint['id']}\tclient {endpoint['client_id']}\t{state}\t{endpoint['url']}\t{events}")
    elif args.action in ("remove", "enable", "disable"):
        if args.action == "remove":
            WebhookEndpoint.remove(endpoint_id)
        else:
            WebhookEndpoint.set_active(endpoint_id, args.action == "enable")
        print(f"webhook endpoint {endpoint_id}: {args.action}d")
    elif args.action == "rotate-secret":
        rotated = WebhookEndpoint.rotate_secret(endpoint_id)
        print_json_or_line(
            rotated, args.json, "webhook endpoint {id}: new secret {secret} (the previous one signs for 24 hours)"
        )
    elif args.action == "ping":
        from octopus_cards.http.runtime import Runtime
        from octopus_cards.openapi import load_spec
        from octopus_cards.worker import ping

        outcome = ping(webhooks.ping(endpoint_id), Runtime.build(settings, load_spec()))
        print_json_or_line(
            outcome, args.json, "{event_id}: {status} (HTTP {http_status}, {duration_ms} ms, error {error})"
        )
    elif args.action == "deliveries":
        shown = Delivery.listing(args.endpoint, args.event, args.status)
        if args.json:
            print(dumps(shown))
        for row in [] if args.json else shown:
            print(
                "{id}\t{event_id}\t{event_type}\tendpoint {endpoint_id}\t{status}\t{attempts}\t{last_error}".format(
                    **row
                )
            )
    elif args.action == "redeliver":
        Delivery.redeliver(args.delivery_id)
        print(f"delivery {args.delivery_id}: queued")
    else:
        count = Delivery.recover(args.endpoint_id, args.since)
        print(f"webhook endpoint {args.endpoint_id}: {count} failed deliveries queued")


def read_file(path):
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise CliError(
            f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8 text'}"
        ) from None


def print_json_or_line(data, as_json, line):
    print(dumps(data) if as_json else line.format(**data))


DEMO_WALLETS = ("USD", "EUR")
DEMO_BALANCE = Decimal(10_000)


def create_demo_client(settings):
    """For the quick start only: credentials go to the terminal once, never to the log."""
    with models.db.connection_context():
        if Client.select().exists():
            return
        catalogue.import_demo_if_empty()
        usd = active_currency("USD")
        client, secret = Client.provision(settings.secret_pepper, "demo", features=FEATURES, default_currency=usd)
        wallets = [Wallet.open_funded(client.id, code, DEMO_BALANCE, "Demo balance") for code in DEMO_WALLETS]
    print("Demo client created. These credentials are shown once:")
    print(f"  username (API key):    {client.api_key}")
    print(f"  password (API secret): {secret}")
    for code, wallet in zip(DEMO_WALLETS, wallets, strict=True):
        print(f"  wallet {wallet.id}: {code} {DEMO_BALANCE:,} PREPAID", flush=True)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_config():
    """uvicorn's logging, plus ours: application logs with a timestamp, audit events as bare
    JSON lines. uvicorn applies it in every worker process."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["app"] = {"format": LOG_FORMAT}
    config["formatters"]["json_line"] = {"format": "%(message)s"}
    config["handlers"]["app"] = {"class": "logging.StreamHandler", "formatter": "app", "stream": "ext://sys.stderr"}
    config["handlers"]["audit"] = {
        "class": "logging.StreamHandler",
        "formatter": "json_line",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["octopus_cards"] = {"handlers": ["app"], "level": "INFO", "propagate": False}
    config["loggers"]["octopus_cards.audit"] = {"handlers": ["audit"], "level": "INFO", "propagate": False}
    config["loggers"]["octopus_cards.access"] = {"handlers": ["audit"], "level": "INFO", "propagate": False}
    return config


def serve(args, settings):
    import uvicorn

    if settings.bootstrap_client:
        with models.db.connection_context():
            client = Client.bootstrap(settings.secret_pepper, *settings.bootstrap_client)
            for code, amount in settings.bootstrap_wallets:
                Wallet.open_funded(client.id, code, amount, "Bootstrap balance")
    if settings.catalog:
        with models.db.connection_context():
            text = catalogue.demo_text() if settings.catalog == "demo" else read_file(settings.catalog)
            counts = catalogue.import_catalogue(text)
        logger.info("catalogue %s imported: %s", settings.catalog, json.dumps(counts))
    if args.demo:
        create_demo_client(settings)
    if (args.workers > 1 or settings.background) and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = fresh_metrics_dir(args.port)
    background = BackgroundProcess() if settings.background else None
    if background:
        background.start()
        # uvicorn raises the SIGTERM it handled again once it has shut down (and one may come
        # before it starts): an exit rather than the default death lets `finally` stop the worker.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            "octopus_cards.cli:worker_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            # The app decides whom to trust with X-Forwarded-For (OCTOPUS_TRUSTED_PROXIES);
            # uvicorn's default trust of 127.0.0.1 would let any local process pick its address.
            proxy_headers=False,
            server_header=False,
            log_config=log_config(),
            access_log=False,  # ours is JSON with the request id (octopus_cards.access)
        )
    finally:
        if background:
            background.stop()


class BackgroundProcess:
    """`serve`'s background work (OCTOPUS_BACKGROUND) in a process of its own, run as `octopus-cards
    worker` runs it: deliveries and fulfilment never take the CPU or the GIL of the process that
    answers requests. (In-process, a saturating GET load left 300 webhook events a second
    delivered at a third of that rate.) One that dies is started again, one told to stop is not;
    it stops with serve, and by itself when serve's process is gone, kill -9 included."""

    RESTART_DELAY = 1.0  # seconds
    STOP_WAIT = 30.0  # seconds for the jobs it is running to finish when serve stops

    def __init__(self):
        self.context = multiprocessing.get_context("spawn")
        self.lock, self.stopping = threading.Lock(), False
        self.process = self.writer = None

    def start(self):
        threading.Thread(target=self.supervise, name="background-supervisor", daemon=True).start()

    def supervise(self):
        while True:
            with self.lock:
                if self.stopping:
                    return
                # Only this process holds the writing end: the child reads end-of-file once it is gone.
                lifeline, self.writer = self.context.Pipe(duplex=False)
                self.process = self.context.Process(
                    target=background_worker, args=(lifeline,), name="octopus-background", daemon=True
                )
                self.process.start()
                lifeline.close()
            logger.info("background worker started: pid %d", self.process.pid)
            self.process.join()
            with self.lock:
                if self.stopping:
                    return
            pid, status = self.process.pid, self.process.exitcode
            if status == 0:  # it was told to stop (SIGTERM or SIGINT to it, or to serve's whole group)
                logger.info("background worker %d stopped", pid)
                return
            logger.error("background worker %d exited (%s): another starts in %.0f s", pid, status, self.RESTART_DELAY)
            time.sleep(self.RESTART_DELAY)

    def stop(self):
        """Let the running jobs finish (up to STOP_WAIT), then end the process."""
        with self.lock:
            self.stopping = True
            process, writer = self.process, self.writer
        if process is None:
            return
        writer.close()
        process.join(self.STOP_WAIT)
        if process.is_alive():
            process.kill()


def background_worker(lifeline):
    """The process BackgroundProcess starts: `octopus-cards worker`, until `lifeline` (a pipe that
    only serve's process writes to) ends."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    threading.Thread(target=stop_at_end_of, args=(lifeline,), name="lifeline", daemon=True).start()
    settings = Settings.from_env()
    models.connect(settings.database_url)
    run_worker(settings)


def stop_at_end_of(lifeline):
    """Wait for `lifeline` to end, then stop this worker as SIGTERM does: claim nothing more, finish
    what runs."""
    try:
        lifeline.recv()
    except EOFError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def run_worker(settings):
    """`octopus-cards worker`: the background work of `serve`, without HTTP, until stopped."""
    import anyio

    from octopus_cards.http.runtime import Runtime
    from octopus_cards.openapi import load_spec
    from octopus_cards.worker import work_until_stopped

    logger.info("worker started")
    lean_log_records()
    pin_worker(settings.worker_cpus, background_worker_cpu)
    runtime = Runtime.build(settings, load_spec())
    freeze_start_up_objects()
    anyio.run(work_until_stopped, runtime)


def worker_app():
    """The app of one `serve` worker process, pinned first to its CPU if OCTOPUS_WORKER_CPUS says so.

    One process's threads (the event loop and the database threads) hand the GIL to each other
    far more cheaply on one CPU than across two: about 1.4x the logins per second here.
    """
    from octopus_cards.app import create_app

    lean_log_records()
    settings = Settings.from_env()
    pin_worker(settings.worker_cpus)
    app = create_app(settings)
    freeze_start_up_objects()
    return app


def lean_log_records():
    """No log format of ours or uvicorn's shows the caller, thread or process: the logging HOWTO's
    "Optimization" settings spare every record (one a background job, one a request) from looking
    them up."""
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def freeze_start_up_objects():
    """Take what start-up built out of the garbage collector's sight: it lives as long as the
    process. A serving process holds some 80,000 such objects (the spec, its validators, the
    models); each full collection would walk them all, some 50 ms with the GIL held, every few
    seconds under load, and every request in flight would wait it out."""
    gc.collect()  # start-up's own garbage, which would otherwise be kept for good with the rest
    gc.freeze()


def worker_cpu(cpus):
    """uvicorn numbers its worker processes (SpawnProcess-1, -2, ...): they are dealt round
    `cpus`. A single worker runs in the main process and takes the first."""
    _, _, number = multiprocessing.current_process().name.rpartition("-")
    return cpus[(int(number) - 1) % len(cpus)] if number.isdigit() else cpus[0]


def background_worker_cpu(cpus):
    """`octopus-cards worker` takes the last of `cpus`: serve's first worker takes the first, so on
    two CPUs each has its own."""
    return cpus[-1]


def pin_worker(cpus, cpu_of=worker_cpu):
    """Pin this process to its CPU of `cpus`, `cpu_of(cpus)` (none: leave it to the scheduler)."""
    if cpus:
        os.sched_setaffinity(0, {cpu_of(cpus)})


def fresh_metrics_dir(port):
    """Where every worker writes its metrics, so a scrape of any worker adds them all up.

    One per port, emptied at start: uvicorn ends a stopped server by its signal, so nothing
    after `run` may be relied on to clean up.
    """
    path = Path(tempfile.gettempdir()) / f"octopus-metrics-{port}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    return str(path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    # An operator command's stderr is its one line of refusal, if any (contract 15.1, item 38): the
    # log, migrations applied on the way included, speaks only for the server and maintenance.
    quiet = args.command in OPERATOR_COMMANDS
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format=LOG_FORMAT)
    try:
        settings = Settings.from_env()
        models.connect(settings.database_url)
        applied = models.migrate()  # every command works on a fresh database
        if applied or args.command == "migrate":
            logger.info("migrations applied: %s", ", ".join(applied) or "none")
        if args.command == "prune":
            print(models.prune())
        if args.command == "serve":
            return serve(args, settings)
        if args.command == "worker":
            return run_worker(settings)
        if args.command in OPERATOR_COMMANDS:
            with models.db.connection_context():
                if args.command == "client":
                    run_client_action(args, settings)
                elif args.command == "wallet":
                    run_wallet_action(args)
                elif args.command == "fx":
                    run_fx_action(args)
                elif args.command == "order":
                    run_order_action(args)
                elif args.command == "webhook":
                    run_webhook_action(args, settings)
                else:
                    run_catalog_action(args)
    except (CliError, SettingsError, DomainError) as exc:
        print(f"octopus-cards: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        print(f"octopus-cards: database error: {one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # an operator gets one line, never a traceback
        print(f"octopus-cards: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def one_line(exc):
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
