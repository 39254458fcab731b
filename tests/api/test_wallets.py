"""API: wallets and transactions (contract 6, 1.6): fields, order, pagination headers, filters,
visibility, remarks, and every error string of the section."""

from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.models import Wallet
from octopus_cards.models.wallets import CREDIT, DEBIT, POSTPAID

from support.inprocess import bearer

PAGINATION = ("x-page", "x-per-page", "x-total-count", "x-total-pages", "x-page-size", "x-has-more")


def error(name, code, message):
    return {"error": {"name": name, "code": code, "message": message}}


def invalid(field):
    return error("ValidationException", "VALIDATION_FAILURE", f"{field} is invalid")


@pytest.fixture
def funded(new_client, login):
    """A client with USD (PREPAID, 3 transactions), JPY (POSTPAID) and EUR wallets, and its auth headers."""
    client, key, secret = new_client(features=())
    with models.db.connection_context():
        usd = Wallet.open(client.id, "USD")
        jpy = Wallet.open(client.id, "JPY", POSTPAID)
        eur = Wallet.open(client.id, "EUR")
        Wallet.post(usd.id, CREDIT, Decimal("100"), "Operator credit")
        Wallet.post(usd.id, DEBIT, Decimal("50"), "Order #12345")
        Wallet.post(usd.id, DEBIT, Decimal("4.275"), "Topup Order #7")
        Wallet.post(jpy.id, DEBIT, Decimal("5000"), "eSIM Order #3")
        Wallet.post(eur.id, CREDIT, Decimal("97.5"), "Refund for Order #12")
    headers = bearer(login(key, secret)["access_token"])
    return {"usd": usd.id, "jpy": jpy.id, "eur": eur.id}, headers


def pages(response):
    return {name: response.headers[name] for name in PAGINATION}


def test_wallets_newest_first_with_their_fields(api, funded):
    ids, auth = funded
    response = api.get("/api/v1/wallets", headers=auth)
    assert response.status_code == 200
    assert response.json() == [
        {"id": ids["eur"], "currency_id": 2, "amount": 97.5, "type": "PREPAID"},
        {"id": ids["jpy"], "currency_id": jpy_id(api, auth), "amount": -5000, "type": "POSTPAID"},
        {"id": ids["usd"], "currency_id": 1, "amount": 45.725, "type": "PREPAID"},
    ]
    assert pages(response) == {"x-page": "1", "x-per-page": "50", "x-total-count": "3", "x-total-pages": "1",
                               "x-page-size": "3", "x-has-more": "false"}  # fmt: skip
    # Amounts carry at least their currency's precision: 97.50, not 97.5.
    assert '"amount":97.50' in response.text and '"amount":-5000,' in response.text


def jpy_id(api, auth):
    return next(c["id"] for c in api.get("/api/v1/currencies", headers=auth).json() if c["currency"] == "JPY")


def test_wallet_pages_and_the_currency_filter(api, funded):
    ids, auth = funded
    second = api.get("/api/v1/wallets?page=2&limit=2", headers=auth)
    assert [w["id"] for w in second.json()] == [ids["usd"]]
    assert pages(second) == {"x-page": "2", "x-per-page": "2", "x-total-count": "3", "x-total-pages": "2",
                             "x-page-size": "1", "x-has-more": "false"}  # fmt: skip
    first = api.get("/api/v1/wallets?limit=2", headers=auth)
    assert first.headers["x-has-more"] == "true" and first.headers["x-page-size"] == "2"
    past = api.get("/api/v1/wallets?page=9", headers=auth)
    assert past.json() == [] and past.headers["x-page-size"] == "0" and past.headers["x-total-pages"] == "1"
    assert [w["id"] for w in api.get("/api/v1/wallets?currency=eUr", headers=auth).json()] == [ids["eur"]]
    unmatched = api.get("/api/v1/wallets?currency=GBP", headers=auth)
    assert unmatched.json() == [] and unmatched.headers["x-total-pages"] == "0"


@pytest.mark.parametrize(
    "query, field",
    [("limit=0", "limit"), ("limit=10001", "limit"), ("limit=abc", "limit"), ("limit=NaN", "limit"),
     ("limit=1.5", "limit"), ("page=0", "page"), ("page=-1", "page"), ("page=2147483648", "page"),
     ("currency=US", "currency"), ("currency=USDX", "currency"), ("currency=U5D", "currency"),
     ("currency=", "currency")],
)  # fmt: skip
def test_wallet_query_errors(api, funded, query, field):
    response = api.get(f"/api/v1/wallets?{query}", headers=funded[1])
    assert response.status_code == 400 and response.json() == invalid(field)


def test_transactions_newest_first_with_remarks(api, funded):
    ids, auth = funded
    response = api.get("/api/v1/transactions", headers=auth)
    listed = response.json()
    assert [t["remarks"] for t in listed] == [
        "EUR Wallet credited by amount 97.50 - Refund for Order #12",
        "JPY Wallet debited by amount 5000 - eSIM Order #3",
        "USD Wallet debited by amount 4.275 - Topup Order #7",
        "USD Wallet debited by amount 50.00 - Order #12345",
        "USD Wallet credited by amount 100.00 - Operator credit",
    ]
    assert pages(response)["x-total-count"] == "5"
    order_debit = listed[3]
    assert set(order_debit) == {"id", "wallet_id", "currency_id", "amount", "transaction_type", "status",
                                "source_currency", "destination_currency", "forex_rate", "conversion_charges",
                                "remarks", "created_at"}  # fmt: skip
    assert order_debit["wallet_id"] == ids["usd"] and order_debit["amount"] == 50
    assert (order_debit["transaction_type"], order_debit["status"]) == ("DEBIT", "COMPLETED")
    assert order_debit["source_currency"] is None and order_debit["forex_rate"] is None
    assert order_debit["created_at"].endswith("Z") and len(order_debit["created_at"]) == 20
    one = api.get(f"/api/v1/transactions/{order_debit['id']}", headers=auth)
    assert one.status_code == 200 and one.json() == order_debit
    assert "x-page" not in one.headers


def test_transactions_of_one_wallet(api, funded):
    ids, auth = funded
    usd = api.get(f"/api/v1/transactions?wallet_id={ids['usd']}&limit=2", headers=auth)
    assert [t["wallet_id"] for t in usd.json()] == [ids["usd"]] * 2
    assert pages(usd) == {"x-page": "1", "x-per-page": "2", "x-total-count": "3", "x-total-pages": "2",
                          "x-page-size": "2", "x-has-more": "true"}  # fmt: skip


def test_only_the_clients_own_wallets_and_transactions(api, funded, new_client, login):
    ids, auth = funded
    _, key, secret = new_client()
    other = bearer(login(key, secret)["access_token"])
    assert api.get("/api/v1/wallets", headers=other).json() == []
    assert api.get("/api/v1/transactions", headers=other).json() == []
    theirs = api.get("/api/v1/transactions", headers=auth).json()[0]["id"]
    missing = error("NotFoundError", "NOT_FOUND", "Transaction not found")
    assert api.get(f"/api/v1/transactions/{theirs}", headers=other).json() == missing
    wallet_missing = error("NotFoundError", "NOT_FOUND", "Wallet not found")
    response = api.get(f"/api/v1/transactions?wallet_id={ids['usd']}", headers=other)
    assert response.status_code == 404 and response.json() == wallet_missing
    assert api.get("/api/v1/transactions?wallet_id=2147483647", headers=auth).json() == wallet_missing
    assert api.get("/api/v1/transactions/2147483647", headers=auth).json() == missing


@pytest.mark.parametrize("query", ["wallet_id=0", "wallet_id=-1", "wallet_id=abc", "wallet_id=2147483648",
                                   "wallet_id=1e3", "wallet_id=99999999999999999999999"])  # fmt: skip
def test_transaction_filter_errors(api, funded, query):
    response = api.get(f"/api/v1/transactions?{query}", headers=funded[1])
    assert response.status_code == 400 and response.json() == invalid("wallet_id")


@pytest.mark.parametrize("bad_id", ["abc", "0", "-1", "2147483648", "1.5", "NaN", "-0", "%20"])
def test_invalid_transaction_ids(api, funded, bad_id):
    response = api.get(f"/api/v1/transactions/{bad_id}", headers=funded[1])
    assert response.status_code == 400
    assert response.json() == error("BadRequestError", "BAD_REQUEST", "Invalid transaction ID")


def test_no_feature_is_needed_and_bearer_comes_first(api, funded):
    assert api.get("/api/v1/wallets").json()["error"]["message"] == "Authorization header required"
    assert api.get("/api/v1/transactions/abc").status_code == 401
    assert api.get("/api/v1/wallets", headers=funded[1]).status_code == 200  # a client with no feature
