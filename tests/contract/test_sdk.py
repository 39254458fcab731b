"""Generated SDKs against a real server: the document a live `octopus-cards serve` serves at
`GET /openapi.json` goes through two client generators, and each generated client drives
login -> GET /api/v1/currencies -> GET /api/v1/products (a search, sorted by name) -> a quote ->
an order of one code (synchronous: 201 DELIVERED) -> that order read back -> the top-ups: mobile
products (a type filter and a search), a product's variants, the lookup of a mobile number, a quote,
an order (201 PENDING: the server under test runs no background work, so it stays so), that order
read back, its receipt address set -> the eSIMs: a country's products, a product with its variants,
a quote, an order (200 DELIVERED: the create waits for the supplier, which answers at once), that
order read back, the list of orders, its receipt address set -> GET /api/v1/wallets (the three
debits) -> refresh -> logout (-> the logged-out token refused) over HTTP, against the demo catalogue
and a client of its own with a funded USD wallet.

* Python: `openapi-python-client` (the `test` extra) writes a package into a temporary directory;
  the test imports it from there and calls its operation modules.
* TypeScript: `@hey-api/openapi-ts` (package.json, installed by `npm ci`) writes a fetch client;
  `tsc` type-checks and compiles it with a small script (flow.ts) that Node 20 runs with its
  built-in `fetch`. The script prints what it saw as one JSON line; the test checks that.

Nothing here works around the generators: whatever in the document makes one stumble is fixed in
openapi/openapi.yaml. The client code calls operations by the names the generators derive from
the operationIds (`auth.login` -> `auth_login` / `authLogin`) and
does not depend on the names of generated model classes.
"""

import enum
import importlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from octopus_cards.models import catalogue

from support import REPO
from support.live_server import LiveServer, cli_json, console_script
from support.node import NODE_ENV, npx

pytestmark = pytest.mark.e2e

GENERATOR_TIMEOUT = 120  # seconds; each generator takes a few seconds here (budget: < 60 s)
NODE_TIMEOUT = 60
PY_PACKAGE = "octopus_cards_sdk"
JWT_PREFIX = "eyJhbGciOiJIUzI1NiIs"
LOGGED_OUT = "Successfully logged out"

# The operations the flow drives, by operationId (`<tag>.<function>`, see openapi.yaml).
LOGIN, REFRESH, LOGOUT, CURRENCIES = (
    "auth.login",
    "auth.refresh",
    "auth.logout",
    "reference.list_currencies",
)
PRODUCTS, QUOTE, CREATE_ORDER, GET_ORDER = (
    "vouchers.list_products",
    "vouchers.quote_charges",
    "vouchers.create_order",
    "vouchers.get_order",
)
WALLETS = "wallets.list_wallets"
TOPUP_PRODUCTS, TOPUP_VARIANTS, LOOKUP, TOPUP_QUOTE, TOPUP_CREATE_ORDER, TOPUP_GET_ORDER, TOPUP_EMAIL = (
    "topups.list_products",
    "topups.list_variants",
    "topups.lookup",
    "topups.quote_charges",
    "topups.create_order",
    "topups.get_order",
    "topups.set_notification_email",
)
ESIM_PRODUCTS, ESIM_PRODUCT, ESIM_QUOTE, ESIM_CREATE_ORDER, ESIM_GET_ORDER, ESIM_ORDERS, ESIM_EMAIL = (
    "esim.list_products",
    "esim.get_product",
    "esim.quote_charges",
    "esim.create_order",
    "esim.get_order",
    "esim.list_orders",
    "esim.set_notification_email",
)

# What the flows ask for (flow.ts spells the same requests out) in the demo catalogue
# (models/demo_catalogue.yaml), and what they must see.
FUNDS = 100
PRODUCT_QUERY = {"search": "amazon", "sort_by": "name", "sort_dir": "asc"}
AMAZON_BY_NAME = [1002, 1003, 1001]  # EUR, GBP, USD: in neither id order, so the sort was applied
AMAZON_USD = {
    "id": 1001,
    "name": "Amazon Gift Card - USD",
    "category": "Shopping",
    "sub_category": "Amazon",
    "country_code": "USA",
    "currency_code": "USD",
    "image_url": "https://cdn.example.com/products/amazon-gc.jpg",
    "delivery_mode": "Code with PIN",
    "delivery_time": "Instant",
    "validity": "No expiry",
    "available_denominations": [{"min_value": 10, "max_value": 500, "discount": 2.5}],
}
ORDER_REQUEST = {"product_id": 1001, "denomination": 50, "quantity": 1, "client_reference": "SDK_FIRST_ORDER"}
# 2.5 % of 50 off, same currency: no exchange rate, and the order debits exactly total_payable.
QUOTE_50 = {
    "non_discounted_total": 50,
    "discount": 2.5,
    "discount_amount": 1.25,
    "total_amount": 48.75,
    "gst_amount": 0,
    "net_amount": 48.75,
    "handling_fee_amount": 0,
    "total_payable": 48.75,
    "max_quantity": 100,
    "charges_details": {
        "source_currency": "USD",
        "destination_currency": "USD",
        "forex_rate": None,
        "conversion_fee": None,
    },
}
ORDER_50 = {
    "product_id": 1001,
    "product_name": "Amazon Gift Card - USD",
    "denomination": 50,
    "quantity": 1,
    "amount": 50,
    "discount": 1.25,
    "client_reference": "SDK_FIRST_ORDER",
    "status": "DELIVERED",
    "base_currency": "USD",
    "deduction_currency": "USD",
    "message": "Order delivered",
    "email": None,
}
CARD_NUMBER = re.compile(r"MOCK-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}")
# Top-ups: the mobile products whose name says "mobile", newest first (PUBG Mobile UC and Mobile
# Legends are GAMING: the type filter was applied), AT&T's variants (a range, then a fixed one), the
# lookup of a US number (AT&T first, the best guess), and a recharge of 10 with its 3 % discount.
TOPUP_PRODUCT_QUERY = {"type": "MOBILE", "search": "mobile"}
MOBILE_BY_NEWEST = [4307, 4302]


DEMO = yaml.safe_load(catalogue.demo_text())
DEMO_TOPUPS = {entry["id"] for entry in DEMO["topups"]}
DEMO_ESIMS = {entry["id"] for entry in DEMO["esim"]}


def check_mobiles(ids, total_count):
    """Of the demo's top-up products, the two the search finds, in their order (other test files'
    products may be listed too); every product listed is counted."""
    assert [id_ for id_ in ids if id_ in DEMO_TOPUPS] == MOBILE_BY_NEWEST and int(total_count) == len(ids)


USA = {"code": "USA", "name": "United States"}
ATT_VARIANTS = [
    {
        "id": 90,
        "name": "AT&T Airtime",
        "category": "Airtime",
        "currency_code": "USD",
        "min_amount": 5,
        "max_amount": 100,
        "fixed_amounts": [],
        "available_in": [USA],
        "fields": {"delivery_time": "Instant"},
    },
    {
        "id": 91,
        "name": "AT&T 5 GB Data",
        "category": "Data",
        "currency_code": "USD",
        "fixed_amounts": ["25"],
        "available_in": [USA],
        "fields": {"data": "5 GB", "validity_days": "30"},
    },
]
MOBILE_NUMBER = "+12015550123"
ATT_CANDIDATE = {"product_id": 4301, "name": "AT&T Prepaid Airtime", "country_code": "USA", "identified": True}
TOPUP_REQUEST = {
    "product_id": 4301,
    "amount": 10,
    "input_data": {"phone_number": MOBILE_NUMBER},
    "client_reference": "SDK_FIRST_TOPUP",
}
TOPUP_QUOTE_10 = {
    "non_discounted_total": 10,
    "discount": 3,
    "discount_amount": 0.3,
    "total_amount": 9.7,
    "gst_amount": 0,
    "net_amount": 9.7,
    "handling_fee_amount": 0,
    "total_payable": 9.7,
    "charges_details": {
        "source_currency": "USD",
        "destination_currency": "USD",
        "forex_rate": None,
        "conversion_fee": None,
    },
}
TOPUP_ORDER_10 = {
    "client_reference": "SDK_FIRST_TOPUP",
    "product_id": 4301,
    "product_name": "AT&T Prepaid Airtime",
    "variant_name": "AT&T Airtime",
    "country_code": "USA",
    "amount": 10,
    "currency": "USD",
    "status": "PENDING",
    "status_text": "Order submitted for fulfilment",
    "failure_code": None,
    "failure_reason": None,
    "is_user_fixable": None,
    "notification_email": None,
    "completed_at": None,
}
NOTIFICATION_EMAIL = "ops@example.com"
# eSIMs: Japan's products (one), product 712 with its variants by id, and its 1 GB plan, selected by
# its price (4.50), quoted and ordered with its 5 % discount.
ESIM_COUNTRY = "JPN"
JAPAN_ESIM = {"id": 712, "name": "Japan eSIM", "country_code": "JPN", "currency_code": "USD", "image_url": None}


def check_japan(items, total_count):
    """Of the demo's eSIM products, Japan's alone (other test files' may be listed too); every
    product listed is counted and is Japan's."""
    assert [item for item in items if item["id"] in DEMO_ESIMS] == [JAPAN_ESIM] and int(total_count) == len(items)
    assert {item["country_code"] for item in items} == {"JPN"}


JAPAN_VARIANTS = [
    {
        "id": 9001,
        "esim_product_id": 712,
        "name": "Japan 1GB 7 days",
        "description": "1 GB for 7 days",
        "currency_code": "USD",
        "amount": 4.5,
        "data_amount_gb": 1,
        "validity_days": 7,
        "client_discount": 5,
    },
    {
        "id": 9002,
        "esim_product_id": 712,
        "name": "Japan 5GB 30 days",
        "description": "5 GB for 30 days",
        "currency_code": "USD",
        "amount": 16,
        "data_amount_gb": 5,
        "validity_days": 30,
        "client_discount": 5,
    },
    {
        "id": 9003,
        "esim_product_id": 712,
        "name": "Japan Unlimited 15 days",
        "description": "Unlimited data for 15 days",
        "currency_code": "USD",
        "amount": 29.9,
        "data_amount_gb": 0,
        "validity_days": 15,
        "client_discount": 4.5,
    },
]
ESIM_REQUEST = {"product_id": 712, "amount": 4.5, "client_reference": "SDK_FIRST_ESIM"}
ESIM_QUOTE_450 = {
    "non_discounted_total": 4.5,
    "discount_amount": 0.225,
    "total_amount": 4.275,
    "discount": 5,
    "gst_amount": 0,
    "total_payable": 4.275,
    "net_amount": 4.275,
    "handling_fee_amount": 0,
    "charges_details": {
        "source_currency": "USD",
        "destination_currency": "USD",
        "forex_rate": None,
        "conversion_fee": None,
    },
}
ESIM_ORDER_450 = {
    "client_reference": "SDK_FIRST_ESIM",
    "status": "DELIVERED",
    "status_text": "eSIM delivered",
    "product_name": "Japan eSIM",
    "country_code": "JPN",
    "data_amount_gb": 1,
    "validity_days": 7,
    "amount": 4.5,
    "currency": "USD",
    "activation_status": "NOT_INSTALLED",
    "is_installed": False,
    "installed_at": None,
    "activated_at": None,
    "failure_code": None,
    "failure_reason": None,
    "is_user_fixable": None,
    "notification_email": None,
}
ACTIVATION_CODE = re.compile(r"LPA:1\$smdp\.invalid\$[0-9A-F]{32}")
ICCID = re.compile(r"89[0-9]{18}")
ESIM_CODES = ("activation_code", "iccid")  # in an order read on its own, never in a list's items
# What the wallet holds after the three orders (to 4 decimals: float subtraction is not exact, and
# the eSIM's 4.275 has three).
BALANCE = round(
    FUNDS - QUOTE_50["total_payable"] - TOPUP_QUOTE_10["total_payable"] - ESIM_QUOTE_450["total_payable"], 4
)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    settings = {**env, "OCTOPUS_CATALOG": "demo"}
    with LiveServer(settings, tmp_path_factory.mktemp("sdk-server-logs"), name="sdk") as live:
        yield live


@pytest.fixture(scope="module")
def served_document(server, tmp_path_factory):
    """The document as the server serves it, saved for the generators."""
    with server.client() as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["openapi"] == "3.0.3"
    path = tmp_path_factory.mktemp("served") / "openapi.json"
    path.write_text(json.dumps(document, indent=2))
    return path


@pytest.fixture(scope="module")
def currencies(server):
    """GET /api/v1/currencies as plain HTTP sees it, to compare the SDKs' results with."""
    key, secret, _ = provision(server)
    with server.client() as http:
        login = http.post("/auth/login", json={"username": key, "password": secret})
        assert login.status_code == 200, login.text
        token = login.json()["data"]["access_token"]
        listed = http.get("/api/v1/currencies", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
        http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert listed.json(), "the migrated database has no active currency"
    return listed.json()


def provision(server):
    """A new client through the operator CLI (every feature, empty allowlist) with a PREPAID USD
    wallet of FUNDS: (key, secret, wallet id). Its own wallet keeps each flow's balance exact."""
    created = cli_json(
        server.settings,
        "client",
        "create",
        "--name",
        f"sdk-{secrets.token_hex(4)}",
        "--json",
        "--feature",
        "vouchers",
        "--feature",
        "topups",
        "--feature",
        "esim",
    )
    wallet = cli_json(server.settings, "wallet", "create", str(created["client_id"]), "USD", "--json")
    cli_json(server.settings, "wallet", "credit", str(wallet["id"]), str(FUNDS), "--json")
    return created["api_key"], created["api_secret"], wallet["id"]


def usd_wallet(wallet_id, currencies, amount):
    currency_id = next(item["id"] for item in currencies if item["currency"] == "USD")
    return {"id": wallet_id, "currency_id": currency_id, "amount": amount, "type": "PREPAID"}


def check_order(created, fetched, wallet_id):
    """The 201 of the order and the order read back, as JSON objects."""
    assert {name: created[name] for name in ORDER_50} == ORDER_50
    assert created["wallet_id"] == wallet_id
    (voucher,) = created["vouchers"]
    assert CARD_NUMBER.fullmatch(voucher["card_number"]) and re.fullmatch(r"[0-9]{4}", voucher["pin_code"])
    assert voucher["claim_url"] is None and voucher["voucher_reference_number"] == f"VRN-{created['id']}-1"
    created_on = datetime.fromisoformat(created["created_at"]).date()
    assert datetime.fromisoformat(voucher["expires_at"]) == datetime.combine(
        created_on + timedelta(days=365), datetime.min.time(), UTC
    )
    assert fetched == created  # the same codes, read back


def check_lookup(candidates):
    """The operators of MOBILE_NUMBER: AT&T first and alone identified, the others not."""
    assert candidates[0] == ATT_CANDIDATE
    assert candidates[1:] and not any(item["identified"] for item in candidates[1:])
    assert {item["country_code"] for item in candidates} == {"USA"}


def check_topup_order(created, fetched, emailed):
    """The 201 of the top-up order, the order read back and the answer to its receipt address."""
    assert {name: created[name] for name in TOPUP_ORDER_10} == TOPUP_ORDER_10
    assert isinstance(created["id"], int) and isinstance(created["transaction_id"], int)
    assert fetched == created  # still PENDING, nothing changed
    assert emailed == {**created, "notification_email": NOTIFICATION_EMAIL}


def check_esim_order(created, fetched, listed, emailed):
    """The 200 of the eSIM order, the order read back, the list of orders and the answer to its
    receipt address."""
    assert {name: created[name] for name in ESIM_ORDER_450} == ESIM_ORDER_450
    assert isinstance(created["id"], int) and isinstance(created["transaction_id"], int)
    assert ACTIVATION_CODE.fullmatch(created["activation_code"]), created["activation_code"]
    assert ICCID.fullmatch(created["iccid"]), created["iccid"]
    assert fetched == created  # not installed: the same activation code, read back
    assert listed == [{name: value for name, value in created.items() if name not in ESIM_CODES}]
    assert emailed == {**created, "notification_email": NOTIFICATION_EMAIL}


def run_tool(args, *, cwd, timeout, env=None, what):
    started = time.monotonic()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, (
        f"{what} failed ({done.returncode}) after {elapsed:.1f} s:\n{done.stdout}\n{done.stderr}"
    )
    assert elapsed < 60, f"{what} took {elapsed:.1f} s (budget 60 s)"
    return done


# -- Python: openapi-python-client --------------------------------------------------------------


def generator_command():
    """`openapi-python-client` of the interpreter running the tests."""
    return console_script("openapi-python-client")


@pytest.fixture
def python_sdk(served_document, tmp_path):
    """The generated package, imported from a temporary directory (and forgotten afterwards)."""
    root = tmp_path / "python-sdk"
    root.mkdir()
    # The post-generation hooks run `ruff` from the same environment.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    done = run_tool(
        [
            generator_command(),
            "generate",
            "--path",
            str(served_document),
            "--output-path",
            str(root / PY_PACKAGE),
            "--meta",
            "none",
        ],
        cwd=tmp_path,
        timeout=GENERATOR_TIMEOUT,
        env=env,
        what="openapi-python-client generate",
    )
    # The generator reports what it could not generate as warnings but still succeeds.
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PY_PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == PY_PACKAGE]:
            del sys.modules[name]


def operation_module(sdk, tag, operation_id):
    """`auth.login` (tag auth) -> the module `<sdk>.api.auth.auth_login`."""
    return importlib.import_module(f"{sdk.__name__}.api.{tag}.{operation_id.replace('.', '_')}")


def body_model(module):
    """The generated model class of an operation's request body."""
    return typing.get_type_hints(module.sync_detailed)["body"]


def enum_parameter(module, name):
    """The generated enum class of an operation's optional parameter (`<Enum> | Unset`)."""
    hint = typing.get_type_hints(module.sync_detailed)[name]
    return next(arg for arg in typing.get_args(hint) if isinstance(arg, type) and issubclass(arg, enum.Enum))


def test_python_sdk_drives_login_to_an_order_and_logout(python_sdk, server, currencies):
    sdk = python_sdk
    login, refresh, logout = (operation_module(sdk, "auth", op) for op in (LOGIN, REFRESH, LOGOUT))
    list_currencies = operation_module(sdk, "reference", CURRENCIES)
    list_products, quote, create_order, get_order = (
        operation_module(sdk, "vouchers", op) for op in (PRODUCTS, QUOTE, CREATE_ORDER, GET_ORDER)
    )
    list_wallets = operation_module(sdk, "wallets", WALLETS)
    topup_operations = (TOPUP_PRODUCTS, TOPUP_VARIANTS, LOOKUP, TOPUP_QUOTE, TOPUP_CREATE_ORDER, TOPUP_GET_ORDER)
    topup_products, topup_variants, lookup, topup_quote, topup_create_order, topup_get_order, topup_email = (
        operation_module(sdk, "topups", op) for op in (*topup_operations, TOPUP_EMAIL)
    )
    esim_operations = (ESIM_PRODUCTS, ESIM_PRODUCT, ESIM_QUOTE, ESIM_CREATE_ORDER, ESIM_GET_ORDER, ESIM_ORDERS)
    esim_products, esim_product, esim_quote, esim_create_order, esim_get_order, esim_orders, esim_email = (
        operation_module(sdk, "esim", op) for op in (*esim_operations, ESIM_EMAIL)
    )
    key, secret, wallet_id = provision(server)
    # trust_env=False: the generated client must talk to 127.0.0.1, never to a proxy.
    options = {"base_url": server.base_url, "raise_on_unexpected_status": True, "httpx_args": {"trust_env": False}}

    with sdk.Client(**options) as anonymous:
        logged_in = login.sync_detailed(client=anonymous, body=body_model(login)(username=key, password=secret))
    assert logged_in.status_code == 200, logged_in.content
    assert logged_in.headers["Cache-Control"] == "no-store"
    first = logged_in.parsed.data
    assert logged_in.parsed.success is True
    assert first.access_token.startswith(JWT_PREFIX) and first.refresh_token.startswith(JWT_PREFIX)
    assert isinstance(first.access_expires_at, datetime) and isinstance(first.refresh_expires_at, datetime)
    assert first.access_expires_at < first.refresh_expires_at
    assert isinstance(first.client_id, int)

    with sdk.AuthenticatedClient(token=first.access_token, **options) as authenticated:
        listed = list_currencies.sync_detailed(client=authenticated)
        assert listed.status_code == 200, listed.content
        assert [item.to_dict() for item in listed.parsed] == currencies
        assert all(isinstance(item.precision, int) for item in listed.parsed)

        products = list_products.sync_detailed(client=authenticated, **PRODUCT_QUERY)
        assert products.status_code == 200, products.content
        assert [item.id for item in products.parsed] == AMAZON_BY_NAME
        assert products.parsed[-1].to_dict() == AMAZON_USD
        assert products.headers["X-Total-Count"] == "3"

        amounts = {name: ORDER_REQUEST[name] for name in ("denomination", "quantity")}
        quoted = quote.sync_detailed(
            ORDER_REQUEST["product_id"], client=authenticated, body=body_model(quote)(**amounts)
        )
        assert quoted.status_code == 200, quoted.content
        assert quoted.parsed.to_dict() == QUOTE_50

        order_body = body_model(create_order)(**ORDER_REQUEST, wallet_id=wallet_id)
        created = create_order.sync_detailed(client=authenticated, body=order_body)
        assert created.status_code == 201, created.content
        order = created.parsed
        assert order.status == "DELIVERED" and isinstance(order.status, enum.Enum)
        assert isinstance(order.created_at, datetime) and isinstance(order.vouchers[0].expires_at, datetime)
        fetched = get_order.sync_detailed(order.id, client=authenticated)
        assert fetched.status_code == 200, fetched.content
        check_order(order.to_dict(), fetched.parsed.to_dict(), wallet_id)

        mobile_type = enum_parameter(topup_products, "type_")(TOPUP_PRODUCT_QUERY["type"])
        mobiles = topup_products.sync_detailed(
            client=authenticated, type_=mobile_type, search=TOPUP_PRODUCT_QUERY["search"]
        )
        assert mobiles.status_code == 200, mobiles.content
        check_mobiles([item.id for item in mobiles.parsed], mobiles.headers["X-Total-Count"])
        assert {item.topup_type for item in mobiles.parsed} == {mobile_type}

        variants = topup_variants.sync_detailed(TOPUP_REQUEST["product_id"], client=authenticated)
        assert variants.status_code == 200, variants.content
        assert [item.to_dict() for item in variants.parsed] == ATT_VARIANTS

        looked_up = lookup.sync_detailed(client=authenticated, body=body_model(lookup)(mobile_number=MOBILE_NUMBER))
        assert looked_up.status_code == 200, looked_up.content
        check_lookup([item.to_dict() for item in looked_up.parsed])

        amount = {name: TOPUP_REQUEST[name] for name in ("product_id", "amount")}
        topup_quoted = topup_quote.sync_detailed(client=authenticated, body=body_model(topup_quote).from_dict(amount))
        assert topup_quoted.status_code == 200, topup_quoted.content
        assert topup_quoted.parsed.to_dict() == TOPUP_QUOTE_10

        topup_body = body_model(topup_create_order).from_dict({**TOPUP_REQUEST, "wallet_id": wallet_id})
        topup_created = topup_create_order.sync_detailed(client=authenticated, body=topup_body)
        assert topup_created.status_code == 201, topup_created.content
        topup = topup_created.parsed
        assert topup.status == "PENDING" and isinstance(topup.status, enum.Enum)
        assert isinstance(topup.created_at, datetime) and topup.completed_at is None
        topup_fetched = topup_get_order.sync_detailed(topup.id, client=authenticated)
        assert topup_fetched.status_code == 200, topup_fetched.content
        emailed = topup_email.sync_detailed(
            topup.id, client=authenticated, body=body_model(topup_email)(email=NOTIFICATION_EMAIL)
        )
        assert emailed.status_code == 200, emailed.content
        check_topup_order(topup.to_dict(), topup_fetched.parsed.to_dict(), emailed.parsed.to_dict())

        japan = esim_products.sync_detailed(client=authenticated, country_code=ESIM_COUNTRY)
        assert japan.status_code == 200, japan.content
        check_japan([item.to_dict() for item in japan.parsed], japan.headers["X-Total-Count"])

        described = esim_product.sync_detailed(ESIM_REQUEST["product_id"], client=authenticated)
        assert described.status_code == 200, described.content
        assert described.parsed.to_dict() == {**JAPAN_ESIM, "variants": JAPAN_VARIANTS}

        plan = {name: ESIM_REQUEST[name] for name in ("product_id", "amount")}
        esim_quoted = esim_quote.sync_detailed(client=authenticated, body=body_model(esim_quote).from_dict(plan))
        assert esim_quoted.status_code == 200, esim_quoted.content
        assert esim_quoted.parsed.to_dict() == ESIM_QUOTE_450

        esim_body = body_model(esim_create_order).from_dict({**ESIM_REQUEST, "wallet_id": wallet_id})
        esim_created = esim_create_order.sync_detailed(client=authenticated, body=esim_body)
        assert esim_created.status_code == 200, esim_created.content
        esim = esim_created.parsed
        assert esim.status == "DELIVERED" and isinstance(esim.status, enum.Enum)
        # `activation_status` is a nullable enum (`enum: [..., null]`): a member of a generated str
        # enum when set, None when null.
        assert esim.activation_status == "NOT_INSTALLED" and isinstance(esim.activation_status, enum.Enum)
        assert type(esim).from_dict({**esim.to_dict(), "activation_status": None}).activation_status is None
        assert isinstance(esim.created_at, datetime) and esim.installed_at is None
        esim_fetched = esim_get_order.sync_detailed(esim.id, client=authenticated)
        assert esim_fetched.status_code == 200, esim_fetched.content
        esims = esim_orders.sync_detailed(client=authenticated)
        assert esims.status_code == 200, esims.content
        esim_emailed = esim_email.sync_detailed(
            esim.id, client=authenticated, body=body_model(esim_email)(email=NOTIFICATION_EMAIL)
        )
        assert esim_emailed.status_code == 200, esim_emailed.content
        check_esim_order(
            esim.to_dict(),
            esim_fetched.parsed.to_dict(),
            [item.to_dict() for item in esims.parsed],
            esim_emailed.parsed.to_dict(),
        )

        wallets = list_wallets.sync_detailed(client=authenticated, currency="USD")
        assert wallets.status_code == 200, wallets.content
        assert [item.to_dict() for item in wallets.parsed] == [usd_wallet(wallet_id, currencies, BALANCE)]

    with sdk.Client(**options) as anonymous:
        refreshed = refresh.sync_detailed(client=anonymous, body=body_model(refresh)(refresh_token=first.refresh_token))
    assert refreshed.status_code == 200, refreshed.content
    second = refreshed.parsed.data
    assert second.client_id == first.client_id
    assert {second.access_token, second.refresh_token}.isdisjoint({first.access_token, first.refresh_token})

    with sdk.AuthenticatedClient(token=second.access_token, **options) as authenticated:
        logged_out = logout.sync_detailed(client=authenticated)
        assert logged_out.status_code == 200, logged_out.content
        assert logged_out.parsed.success is True
        assert logged_out.parsed.data.message == LOGGED_OUT  # a str enum member
        # Logout revoked every token of the client: the error envelope parses as documented.
        refused = list_currencies.sync_detailed(client=authenticated)
    assert refused.status_code == 401, refused.content
    assert refused.parsed.error.to_dict() == {
        "name": "UnauthorizedError",
        "code": "UNAUTHORIZED",
        "message": "Invalid token",
    }
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'

    # A second refresh of the first refresh token is reuse: documented 401, parsed as the envelope.
    with sdk.Client(**options) as anonymous:
        reused = refresh.sync_detailed(client=anonymous, body=body_model(refresh)(refresh_token=first.refresh_token))
    assert reused.status_code == 401
    assert reused.parsed.error.message == "Invalid refresh token"


# -- TypeScript: @hey-api/openapi-ts + tsc + node ------------------------------------------------

FLOW_TS = r"""
import { client } from './sdk/client.gen';
import {
  authLogin,
  authLogout,
  authRefresh,
  esimCreateOrder,
  esimGetOrder,
  esimGetProduct,
  esimListOrders,
  esimListProducts,
  esimQuoteCharges,
  esimSetNotificationEmail,
  referenceListCurrencies,
  topupsCreateOrder,
  topupsGetOrder,
  topupsListProducts,
  topupsListVariants,
  topupsLookup,
  topupsQuoteCharges,
  topupsSetNotificationEmail,
  vouchersCreateOrder,
  vouchersGetOrder,
  vouchersListProducts,
  vouchersQuoteCharges,
  walletsListWallets,
} from './sdk/sdk.gen';

// No @types/node here: the little of Node this script uses.
declare const process: {
  env: Record<string, string | undefined>;
  exitCode?: number;
  stdout: { write(text: string): void };
};

function check(condition: unknown, message: string): asserts condition {
  if (!condition) {
    throw new Error(message);
  }
}

async function main(): Promise<void> {
  const { OCTOPUS_BASE_URL, OCTOPUS_API_KEY, OCTOPUS_API_SECRET, OCTOPUS_WALLET_ID } = process.env;
  check(OCTOPUS_BASE_URL && OCTOPUS_API_KEY && OCTOPUS_API_SECRET && OCTOPUS_WALLET_ID, 'settings missing');
  client.setConfig({ baseUrl: OCTOPUS_BASE_URL });

  const login = await authLogin({
    body: { username: OCTOPUS_API_KEY, password: OCTOPUS_API_SECRET },
  });
  check(login.response.status === 200 && login.data, `login: ${login.response.status}`);
  const first = login.data.data;

  const listed = await referenceListCurrencies({ auth: first.access_token });
  check(listed.response.status === 200 && listed.data, `currencies: ${listed.response.status}`);
  const currencies = listed.data.map((item) => ({
    id: item.id,
    name: item.name,
    currency: item.currency,
    precision: item.precision,
  }));

  // Literal requests, so that tsc holds them to the generated types (PRODUCT_QUERY, ORDER_REQUEST).
  const products = await vouchersListProducts({
    auth: first.access_token,
    query: { search: 'amazon', sort_by: 'name', sort_dir: 'asc' },
  });
  check(products.response.status === 200 && products.data, `products: ${products.response.status}`);

  const amounts = { denomination: 50, quantity: 1 };
  const quote = await vouchersQuoteCharges({ auth: first.access_token, path: { product_id: 1001 }, body: amounts });
  check(quote.response.status === 200 && quote.data, `charges: ${quote.response.status}`);

  const created = await vouchersCreateOrder({
    auth: first.access_token,
    body: {
      product_id: 1001,
      ...amounts,
      wallet_id: Number(OCTOPUS_WALLET_ID),
      client_reference: 'SDK_FIRST_ORDER',
    },
  });
  check(created.response.status === 201 && created.data, `order: ${created.response.status}`);

  const fetched = await vouchersGetOrder({ auth: first.access_token, path: { order_id: created.data.id } });
  check(fetched.response.status === 200 && fetched.data, `order read back: ${fetched.response.status}`);

  // Top-ups (TOPUP_PRODUCT_QUERY, TOPUP_REQUEST).
  const mobiles = await topupsListProducts({ auth: first.access_token, query: { type: 'MOBILE', search: 'mobile' } });
  check(mobiles.response.status === 200 && mobiles.data, `top-up products: ${mobiles.response.status}`);

  const variants = await topupsListVariants({ auth: first.access_token, path: { product_id: 4301 } });
  check(variants.response.status === 200 && variants.data, `variants: ${variants.response.status}`);

  const lookup = await topupsLookup({ auth: first.access_token, body: { mobile_number: '+12015550123' } });
  check(lookup.response.status === 200 && lookup.data, `lookup: ${lookup.response.status}`);

  const recharge = { product_id: lookup.data[0].product_id, amount: 10 };
  const topupQuote = await topupsQuoteCharges({ auth: first.access_token, body: recharge });
  check(topupQuote.response.status === 200 && topupQuote.data, `top-up charges: ${topupQuote.response.status}`);

  const topupCreated = await topupsCreateOrder({
    auth: first.access_token,
    body: {
      ...recharge,
      input_data: { phone_number: '+12015550123' },
      wallet_id: Number(OCTOPUS_WALLET_ID),
      client_reference: 'SDK_FIRST_TOPUP',
    },
  });
  check(topupCreated.response.status === 201 && topupCreated.data, `top-up order: ${topupCreated.response.status}`);

  const topupId = { order_id: topupCreated.data.id };
  const topupFetched = await topupsGetOrder({ auth: first.access_token, path: topupId });
  check(topupFetched.response.status === 200 && topupFetched.data, `top-up read back: ${topupFetched.response.status}`);

  const emailed = await topupsSetNotificationEmail({
    auth: first.access_token,
    path: topupId,
    body: { email: 'ops@example.com' },
  });
  check(emailed.response.status === 200 && emailed.data, `notification e-mail: ${emailed.response.status}`);

  // eSIMs (ESIM_COUNTRY, ESIM_REQUEST).
  const japan = await esimListProducts({ auth: first.access_token, query: { country_code: 'JPN' } });
  check(japan.response.status === 200 && japan.data, `eSIM products: ${japan.response.status}`);

  const esimProduct = await esimGetProduct({ auth: first.access_token, path: { product_id: 712 } });
  check(esimProduct.response.status === 200 && esimProduct.data, `eSIM product: ${esimProduct.response.status}`);

  const oneGigabyte = esimProduct.data.variants[0];
  const plan = { product_id: oneGigabyte.esim_product_id, amount: oneGigabyte.amount };
  const esimQuote = await esimQuoteCharges({ auth: first.access_token, body: plan });
  check(esimQuote.response.status === 200 && esimQuote.data, `eSIM charges: ${esimQuote.response.status}`);

  const esimCreated = await esimCreateOrder({
    auth: first.access_token,
    body: { ...plan, wallet_id: Number(OCTOPUS_WALLET_ID), client_reference: 'SDK_FIRST_ESIM' },
  });
  check(esimCreated.response.status === 200 && esimCreated.data, `eSIM order: ${esimCreated.response.status}`);
  // The generated union of the nullable enum: a string of the enum or null.
  const activation: 'NOT_INSTALLED' | 'ACTIVE' | 'EXPIRED' | null = esimCreated.data.activation_status;
  check(activation === 'NOT_INSTALLED', `eSIM activation status: ${activation}`);

  const esimId = { order_id: esimCreated.data.id };
  const esimFetched = await esimGetOrder({ auth: first.access_token, path: esimId });
  check(esimFetched.response.status === 200 && esimFetched.data, `eSIM read back: ${esimFetched.response.status}`);

  const esims = await esimListOrders({ auth: first.access_token });
  check(esims.response.status === 200 && esims.data, `eSIM orders: ${esims.response.status}`);

  const esimEmailed = await esimSetNotificationEmail({
    auth: first.access_token,
    path: esimId,
    body: { email: 'ops@example.com' },
  });
  check(esimEmailed.response.status === 200 && esimEmailed.data, `eSIM e-mail: ${esimEmailed.response.status}`);

  const wallets = await walletsListWallets({ auth: first.access_token, query: { currency: 'USD' } });
  check(wallets.response.status === 200 && wallets.data, `wallets: ${wallets.response.status}`);

  const refreshed = await authRefresh({ body: { refresh_token: first.refresh_token } });
  check(refreshed.response.status === 200 && refreshed.data, `refresh: ${refreshed.response.status}`);
  const second = refreshed.data.data;

  const logout = await authLogout({ auth: second.access_token });
  check(logout.response.status === 200 && logout.data, `logout: ${logout.response.status}`);

  const refused = await referenceListCurrencies({ auth: second.access_token });
  check(refused.error, `after logout: ${refused.response.status}`);

  process.stdout.write(JSON.stringify({
    login: { status: login.response.status, success: login.data.success, data: first },
    currencies,
    products: { totalCount: products.response.headers.get('X-Total-Count'), data: products.data },
    quote: quote.data,
    created: created.data,
    fetched: fetched.data,
    topupProducts: { totalCount: mobiles.response.headers.get('X-Total-Count'), data: mobiles.data },
    topupVariants: variants.data,
    lookup: lookup.data,
    topupQuote: topupQuote.data,
    topupCreated: topupCreated.data,
    topupFetched: topupFetched.data,
    topupEmailed: emailed.data,
    esimProducts: { totalCount: japan.response.headers.get('X-Total-Count'), data: japan.data },
    esimProduct: esimProduct.data,
    esimQuote: esimQuote.data,
    esimCreated: esimCreated.data,
    esimFetched: esimFetched.data,
    esimOrders: esims.data,
    esimEmailed: esimEmailed.data,
    wallets: wallets.data,
    refresh: { status: refreshed.response.status, data: second },
    logout: { status: logout.response.status, body: logout.data },
    afterLogout: {
      status: refused.response.status,
      challenge: refused.response.headers.get('WWW-Authenticate'),
      error: refused.error.error,
    },
  }) + '\n');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
"""

TSCONFIG = {
    "compilerOptions": {
        "target": "ES2022",
        "module": "commonjs",
        "moduleResolution": "node10",
        "lib": ["ES2022", "DOM", "DOM.Iterable"],
        "types": [],
        "strict": True,
        "skipLibCheck": True,
        "rootDir": ".",
        "outDir": "out",
    },
    "include": ["flow.ts", "sdk/**/*.ts"],
}


@pytest.mark.usefixtures("require_node_tools")
def test_typescript_sdk_drives_login_to_an_order_and_logout(served_document, server, currencies, tmp_path):
    work = tmp_path / "ts-sdk"
    work.mkdir()
    run_tool(
        npx(
            "openapi-ts",
            "--input",
            str(served_document),
            "--output",
            str(work / "sdk"),
            "--client",
            "@hey-api/client-fetch",
            "--no-log-file",
        ),
        cwd=REPO,
        timeout=GENERATOR_TIMEOUT,
        env=NODE_ENV,
        what="openapi-ts",
    )
    (work / "flow.ts").write_text(FLOW_TS)
    (work / "tsconfig.json").write_text(json.dumps(TSCONFIG, indent=2))
    run_tool(
        npx("tsc", "--project", str(work / "tsconfig.json")),
        cwd=REPO,
        timeout=GENERATOR_TIMEOUT,
        env=NODE_ENV,
        what="tsc",
    )

    key, secret, wallet_id = provision(server)
    node_env = {
        **NODE_ENV,
        "OCTOPUS_BASE_URL": server.base_url,
        "OCTOPUS_API_KEY": key,
        "OCTOPUS_API_SECRET": secret,
        "OCTOPUS_WALLET_ID": str(wallet_id),
    }
    done = run_tool(
        ["node", str(work / "out" / "flow.js")], cwd=work, timeout=NODE_TIMEOUT, env=node_env, what="node flow.js"
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    login = seen["login"]
    assert login["status"] == 200 and login["success"] is True
    first = login["data"]
    assert first["access_token"].startswith(JWT_PREFIX) and first["refresh_token"].startswith(JWT_PREFIX)
    assert first["access_expires_at"] < first["refresh_expires_at"]
    assert seen["currencies"] == currencies
    products = seen["products"]
    assert [item["id"] for item in products["data"]] == AMAZON_BY_NAME
    assert products["data"][-1] == AMAZON_USD and products["totalCount"] == "3"
    assert seen["quote"] == QUOTE_50
    check_order(seen["created"], seen["fetched"], wallet_id)
    mobiles = seen["topupProducts"]
    check_mobiles([item["id"] for item in mobiles["data"]], mobiles["totalCount"])
    assert {item["topup_type"] for item in mobiles["data"]} == {"MOBILE"}
    assert seen["topupVariants"] == ATT_VARIANTS
    check_lookup(seen["lookup"])
    assert seen["topupQuote"] == TOPUP_QUOTE_10
    check_topup_order(seen["topupCreated"], seen["topupFetched"], seen["topupEmailed"])
    check_japan(seen["esimProducts"]["data"], seen["esimProducts"]["totalCount"])
    assert seen["esimProduct"] == {**JAPAN_ESIM, "variants": JAPAN_VARIANTS}
    assert seen["esimQuote"] == ESIM_QUOTE_450
    check_esim_order(seen["esimCreated"], seen["esimFetched"], seen["esimOrders"], seen["esimEmailed"])
    assert seen["wallets"] == [usd_wallet(wallet_id, currencies, BALANCE)]
    second = seen["refresh"]["data"]
    assert seen["refresh"]["status"] == 200 and second["client_id"] == first["client_id"]
    assert {second["access_token"], second["refresh_token"]}.isdisjoint({first["access_token"], first["refresh_token"]})
    assert seen["logout"] == {"status": 200, "body": {"success": True, "data": {"message": LOGGED_OUT}}}
    assert seen["afterLogout"] == {
        "status": 401,
        "challenge": 'Bearer error="invalid_token"',
        "error": {"name": "UnauthorizedError", "code": "UNAUTHORIZED", "message": "Invalid token"},
    }
