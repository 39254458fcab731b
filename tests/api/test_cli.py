"""The operator CLI, run in-process against the session database."""

import dataclasses
import datetime
import gc
import json
import logging
from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.cli import run_worker, serve, worker_app
from octopus_cards.http.jwt_codec import TokenCodec
from octopus_cards.models import (
    Client,
    ClientBlacklist,
    ClientDiscount,
    Currency,
    Event,
    ExchangeRate,
    Token,
    Wallet,
    catalogue,
)
from octopus_cards.settings import Settings, SettingsError


def create(cli, *extra):
    code, out, _ = cli("client", "create", "--name", "acme", "--json", *extra)
    assert code == 0
    return json.loads(out)


def test_create_prints_credentials_once_as_json(cli, api):
    created = create(cli, "--ip", "203.0.113.0/24", "--ip", "2001:db8::1", "--feature", "vouchers")
    assert list(created) == [
        "client_id", "name", "api_key", "api_secret", "ip_whitelist", "features", "default_currency", "bulk_limit"
    ]  # fmt: skip
    assert created["name"] == "acme"
    assert (created["default_currency"], created["bulk_limit"]) == (None, 100)
    assert created["ip_whitelist"] == ["203.0.113.0/24", "2001:db8::1/128"]
    assert created["features"] == ["vouchers"]
    assert len(created["api_secret"]) >= 43  # 256 bits, base64url
    response = api.post("/auth/login", json={"username": created["api_key"], "password": created["api_secret"]})
    assert response.status_code == 200
    code, out, _ = cli("client", "list", "--json")
    listed = next(c for c in json.loads(out) if c["client_id"] == created["client_id"])
    assert "api_secret" not in listed and listed["is_active"] is True
    assert created["api_secret"] not in out


def test_rotate_secret_replaces_the_old_one(cli, api):
    created = create(cli)
    code, out, _ = cli("client", "rotate-secret", str(created["client_id"]), "--json")
    rotated = json.loads(out)
    assert code == 0 and list(rotated) == ["client_id", "api_key", "api_secret"]
    assert rotated["api_key"] == created["api_key"] and rotated["api_secret"] != created["api_secret"]
    old = api.post("/auth/login", json={"username": created["api_key"], "password": created["api_secret"]})
    assert old.status_code == 401
    new = api.post("/auth/login", json={"username": created["api_key"], "password": rotated["api_secret"]})
    assert new.status_code == 200


def test_allowlist_features_and_activation(cli, api):
    created = create(cli)
    client_id = str(created["client_id"])
    body = {"username": created["api_key"], "password": created["api_secret"]}
    assert cli("client", "allow-ip", client_id, "198.51.100.0/24")[0] == 0
    assert api.post("/auth/login", json=body).status_code == 403
    assert cli("client", "remove-ip", client_id, "198.51.100.0/24")[0] == 0
    token = api.post("/auth/login", json=body).json()["data"]["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/categories", headers=auth).status_code == 400
    assert cli("client", "enable-feature", client_id, "vouchers")[0] == 0
    assert api.get("/api/v1/categories", headers=auth).status_code == 200
    assert cli("client", "disable-feature", client_id, "vouchers")[0] == 0
    assert api.get("/api/v1/categories", headers=auth).status_code == 400
    assert cli("client", "deactivate", client_id)[0] == 0
    assert api.get("/api/v1/countries", headers=auth).status_code == 401
    assert api.post("/auth/login", json=body).status_code == 401
    assert cli("client", "activate", client_id)[0] == 0
    assert api.post("/auth/login", json=body).status_code == 200


@pytest.mark.parametrize(
    "argv, message",
    [
        (("client", "create", "--name", "x", "--ip", "300.1.1.1"), "invalid CIDR or IP address: '300.1.1.1'"),
        (("client", "create", "--name", "x", "--feature", "gold"), "unknown feature 'gold'"),
        (("client", "allow-ip", "abc", "10.0.0.0/8"), "invalid client id: 'abc'"),
        (("client", "allow-ip", "1", "10.0.0.0/99"), "invalid CIDR or IP address"),
        (("client", "frobnicate"), "invalid choice"),
        (("serve", "--port", "http"), "invalid int value"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_clear_message(cli, argv, message):
    code, _, err = cli(*argv)
    assert code == 2
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "action", ["allow-ip", "remove-ip", "enable-feature", "disable-feature", "rotate-secret", "deactivate", "activate"]
)
def test_unknown_client(cli, action):
    extra = {
        "allow-ip": ["10.0.0.0/8"],
        "remove-ip": ["10.0.0.0/8"],
        "enable-feature": ["esim"],
        "disable-feature": ["esim"],
    }.get(action, [])
    code, out, err = cli("client", action, "2147483647", *extra)
    assert code == 2
    assert err == "octopus-cards: no client with id 2147483647\n"


def test_bad_settings_are_one_clear_line(cli, monkeypatch):
    monkeypatch.setenv("OCTOPUS_ACCESS_TOKEN_TTL", "soon")
    code, _, err = cli("client", "list")
    assert code == 2 and err == "octopus-cards: OCTOPUS_ACCESS_TOKEN_TTL must be a whole number\n"


def test_migrate_is_idempotent(cli):
    code, _, _ = cli("migrate")
    assert code == 0


def test_table_lists_clients_readably(cli):
    created = create(cli, "--ip", "203.0.113.0/24")
    code, out, _ = cli("client", "list")
    assert code == 0
    row = next(line for line in out.splitlines() if created["api_key"] in line)
    assert str(created["client_id"]) in row and "203.0.113.0/24" in row and "yes" in row


def test_prune_forgets_long_expired_tokens_only(cli, settings, new_client):
    client, _, _ = new_client()
    old = TokenCodec(settings.jwt_keys, settings.jwt_active_kid, 60, 120, clock=lambda: 1_000_000_000)
    current = TokenCodec(settings.jwt_keys, settings.jwt_active_kid, 60, 120)
    with models.db.connection_context():
        Token.record_login(client.id, old.issue_pair(client.id))
        Token.record_login(client.id, current.issue_pair(client.id))
    code, out, _ = cli("prune")
    assert code == 0 and out.startswith("pruned ")
    with models.db.connection_context():
        left = Token.select().where(Token.client == client.id)
        assert left.count() == 2
        assert all(t.expires_at > datetime.datetime(2020, 1, 1) for t in left)


def test_bootstrap_client_from_the_environment(migrated, monkeypatch):
    secret = "s" * 40
    env = {**migrated, "OCTOPUS_BOOTSTRAP_CLIENT": f"ci-sandbox:{secret}"}
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)
    args = type("Args", (), {"demo": False, "host": "127.0.0.1", "port": 0, "workers": 1})()
    serve(args, Settings.from_env(env))
    with models.db.connection_context():
        created = Client.get(Client.api_key == "ci-sandbox")
        created.allow_network("10.0.0.0/8")
        created.set_active(False)
        created.disable_feature("esim")
    serve(args, Settings.from_env(env))  # the environment wins again
    with models.db.connection_context():
        client_id, networks = Client.authenticate(Settings.from_env(env).secret_pepper, "ci-sandbox", secret)
        assert networks == ()
        assert Client.get_by_id(client_id).features() == ["esim", "topups", "vouchers"]
        assert Client.select().where(Client.api_key == "ci-sandbox").count() == 1


def test_bootstrap_wallets_are_opened_and_funded_once(migrated, monkeypatch):
    env = {
        **migrated,
        "OCTOPUS_BOOTSTRAP_CLIENT": f"ci-wallets:{'w' * 40}",
        "OCTOPUS_BOOTSTRAP_WALLETS": "usd:250.5,JPY:0",
    }
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)
    args = type("Args", (), {"demo": False, "host": "127.0.0.1", "port": 0, "workers": 1})()
    serve(args, Settings.from_env(env))
    serve(args, Settings.from_env(env))  # a restart changes nothing
    with models.db.connection_context():
        client = Client.get(Client.api_key == "ci-wallets")
        wallets = {w["currency"]: w for w in Wallet.described(client_id=client.id)}
    assert {code: (w["amount"], w["type"]) for code, w in wallets.items()} == {
        "USD": (Decimal("250.50"), "PREPAID"), "JPY": (Decimal("0"), "PREPAID")
    }  # fmt: skip


@pytest.fixture
def process_start_up(monkeypatch):
    """Undoes, after the test, what a serving process's start-up sets for the whole process: the
    logging settings and the objects frozen out of the garbage collector's sight."""
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_served_app_is_out_of_the_garbage_collectors_sight(migrated, monkeypatch, process_start_up):
    for name, value in migrated.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(models, "connect", lambda url: None)  # as the cli fixture: keep the session's binding
    worker_app()
    assert gc.get_freeze_count() > 20_000  # the spec, its validators, the models


def test_the_background_worker_takes_the_last_of_the_worker_cpus(migrated, monkeypatch, process_start_up):
    pinned, ran = [], []
    monkeypatch.setattr("os.sched_setaffinity", lambda pid, cpus: pinned.append((pid, cpus)))
    monkeypatch.setattr("anyio.run", lambda function, runtime: ran.append(function.__name__))
    run_worker(Settings.from_env(migrated))
    assert (pinned, ran) == ([], ["work_until_stopped"])  # unset: the scheduler's to place
    run_worker(dataclasses.replace(Settings.from_env(migrated), worker_cpus=(0, 1)))
    assert pinned == [(0, {1})]  # serve's single worker runs on 0


@pytest.mark.parametrize(
    "value, message",
    [("USD", "must be comma-separated CUR:AMOUNT pairs"), ("USD:1,usd:2", "one per currency"),
     ("USD:1.00001", "at most 4 decimals"), ("USD:-1", "CUR:AMOUNT")],
)  # fmt: skip
def test_bad_bootstrap_wallets_are_refused(migrated, value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(
            {**migrated, "OCTOPUS_BOOTSTRAP_CLIENT": f"ci-x:{'x' * 40}", "OCTOPUS_BOOTSTRAP_WALLETS": value}
        )
    with pytest.raises(SettingsError, match="needs OCTOPUS_BOOTSTRAP_CLIENT"):
        Settings.from_env({**migrated, "OCTOPUS_BOOTSTRAP_WALLETS": "USD:1"})


# -- clients: default currency and bulk limit (contract 16.2) ------------------------------------


def test_default_currency_and_bulk_limit(cli):
    created = create(cli, "--default-currency", "eur", "--bulk-limit", "5000")
    assert (created["default_currency"], created["bulk_limit"]) == ("EUR", 5000)
    client_id = str(created["client_id"])
    assert cli("client", "set", client_id, "--bulk-limit", "1")[0] == 0
    assert cli("client", "set", client_id, "--default-currency", "JPY")[0] == 0
    listed = next(c for c in json.loads(cli("client", "list", "--json")[1]) if c["client_id"] == created["client_id"])
    assert (listed["default_currency"], listed["bulk_limit"]) == ("JPY", 1)


@pytest.mark.parametrize(
    "argv, message",
    [(("client", "create", "--name", "x", "--bulk-limit", "0"), "invalid bulk limit '0': a whole number from 1 to"),
     (("client", "create", "--name", "x", "--bulk-limit", "5001"), "invalid bulk limit '5001'"),
     (("client", "create", "--name", "x", "--default-currency", "ZZZ"), "unknown currency 'ZZZ'"),
     (("client", "set", "2147483647", "--bulk-limit", "5"), "no client with id 2147483647"),
     (("client", "set", "1"), "client set needs --default-currency or --bulk-limit")],
)  # fmt: skip
def test_client_refusals_are_one_line(cli, argv, message):
    before = json.loads(cli("client", "list", "--json")[1])
    code, out, err = cli(*argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert json.loads(cli("client", "list", "--json")[1]) == before


# -- wallets (contract 16.3) ----------------------------------------------------------------------


def wallet_of(cli, client_id, currency, *extra):
    code, out, err = cli("wallet", "create", str(client_id), currency, "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_wallet_create_list_credit_debit(cli):
    client_id = create(cli)["client_id"]
    usd = wallet_of(cli, client_id, "usd")
    assert usd == {"id": usd["id"], "client_id": client_id, "currency": "USD", "currency_id": 1, "amount": 0,
                   "type": "PREPAID"}  # fmt: skip
    jpy = wallet_of(cli, client_id, "JPY", "--type", "POSTPAID")
    assert jpy["type"] == "POSTPAID"
    code, out, _ = cli("wallet", "credit", str(usd["id"]), "100.5", "--json")
    credited = json.loads(out)
    assert code == 0 and list(credited) == [
        "id", "wallet_id", "currency_id", "amount", "transaction_type", "status", "source_currency",
        "destination_currency", "forex_rate", "conversion_charges", "remarks", "created_at",
    ]  # fmt: skip
    assert credited["remarks"] == "USD Wallet credited by amount 100.50 - Operator credit"
    assert '"amount":100.50' in out
    code, out, _ = cli("wallet", "debit", str(usd["id"]), "0.225", "--note", "Correction 42", "--json")
    assert json.loads(out)["remarks"] == "USD Wallet debited by amount 0.225 - Correction 42"
    code, out, _ = cli("wallet", "debit", str(jpy["id"]), "5000", "--json")
    assert json.loads(out)["remarks"] == "JPY Wallet debited by amount 5000 - Operator debit"
    listed = json.loads(cli("wallet", "list", "--client", str(client_id), "--json")[1])
    assert [(w["id"], w["amount"]) for w in listed] == [(jpy["id"], -5000), (usd["id"], 100.275)]
    code, out, _ = cli("wallet", "list", "--client", str(client_id))
    assert code == 0 and f"{usd['id']}\tclient {client_id}\tUSD\t100.275\tPREPAID" in out
    with models.db.connection_context():
        assert Wallet.balance_matches_ledger(usd["id"]) and Wallet.balance_matches_ledger(jpy["id"])
        types = [e.type for e in Event.select().where(Event.client == client_id).order_by(Event.created_at)]
    assert types == ["wallet.credited", "wallet.debited", "wallet.debited"]


@pytest.mark.parametrize(
    "argv, message",
    [(("wallet", "create", "{client}", "USD"), "client {client} already has a USD wallet"),
     (("wallet", "create", "{client}", "XYZ"), "unknown currency 'XYZ'"),
     (("wallet", "create", "2147483647", "EUR"), "no client with id 2147483647"),
     (("wallet", "create", "{client}", "EUR", "--type", "CREDIT"), "invalid wallet type 'CREDIT'"),
     (("wallet", "debit", "{wallet}", "10.01"), "Insufficient wallet balance"),
     (("wallet", "credit", "{wallet}", "0"), "invalid amount '0'"),
     (("wallet", "credit", "{wallet}", "-5"), "invalid amount '-5'"),
     (("wallet", "credit", "{wallet}", "1.00001"), "invalid amount '1.00001'"),
     (("wallet", "credit", "{wallet}", "NaN"), "invalid amount 'NaN'"),
     (("wallet", "credit", "{wallet}", "1e400"), "the amount must not exceed"),
     (("wallet", "credit", "{wallet}", "100000000000001"), "the amount must not exceed"),
     (("wallet", "credit", "2147483647", "1"), "no wallet with id 2147483647"),
     (("wallet", "credit", "0", "1"), "invalid wallet id: '0'"),
     (("wallet", "list", "--client", "x"), "invalid client id: 'x'")],
)  # fmt: skip
def test_wallet_refusals_are_one_line_and_change_nothing(cli, argv, message):
    client_id = create(cli)["client_id"]
    wallet = wallet_of(cli, client_id, "USD")
    assert cli("wallet", "credit", str(wallet["id"]), "10")[0] == 0
    before = cli("wallet", "list", "--json")[1]
    argv = [arg.format(client=client_id, wallet=wallet["id"]) for arg in argv]
    code, out, err = cli(*argv)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert message.format(client=client_id) in err
    assert cli("wallet", "list", "--json")[1] == before


# -- exchange rates (contract 16.4) ---------------------------------------------------------------


def test_fx_set_list_remove(cli):
    assert cli("fx", "set", "usd", "GBP", "0.79")[:2] == (0, "1 USD = 0.79 GBP\n")
    assert cli("fx", "set", "USD", "GBP", "0.7912345678")[0] == 0  # a second set replaces the rate
    assert cli("fx", "set", "GBP", "USD", "1.2640")[0] == 0  # the reverse is a rate of its own
    listed = json.loads(cli("fx", "list", "--json")[1])
    assert {"from": "USD", "to": "GBP", "rate": 0.7912345678} in listed
    assert {"from": "GBP", "to": "USD", "rate": 1.264} in listed
    assert listed.index({"from": "GBP", "to": "USD", "rate": 1.264}) < listed.index(
        {"from": "USD", "to": "GBP", "rate": 0.7912345678}
    )
    assert cli("fx", "remove", "usd", "gbp")[0] == 0
    assert {"from": "USD", "to": "GBP", "rate": 0.7912345678} not in json.loads(cli("fx", "list", "--json")[1])
    with models.db.connection_context():
        usd, gbp = (Currency.get(Currency.currency == code).id for code in ("USD", "GBP"))
        assert ExchangeRate.lookup(gbp, usd) == Decimal("1.2640") and ExchangeRate.lookup(usd, gbp) is None


@pytest.mark.parametrize(
    "argv, message",
    [(("fx", "set", "USD", "USD", "1"), "FROM and TO must be different currencies"),
     (("fx", "set", "USD", "EUR", "0"), "invalid rate '0'"),
     (("fx", "set", "USD", "EUR", "-0.5"), "invalid rate '-0.5'"),
     (("fx", "set", "USD", "EUR", "abc"), "invalid rate 'abc'"),
     (("fx", "set", "USD", "EUR", "Infinity"), "invalid rate 'Infinity'"),
     (("fx", "set", "USD", "EUR", "0.12345678901"), "at most 10 decimals"),
     (("fx", "set", "USD", "ZZZ", "1"), "unknown currency 'ZZZ'"),
     (("fx", "remove", "EUR", "JPY"), "no rate from EUR to JPY")],
)  # fmt: skip
def test_fx_refusals_are_one_line_and_change_nothing(cli, argv, message):
    before = cli("fx", "list", "--json")[1]
    code, out, err = cli(*argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert cli("fx", "list", "--json")[1] == before


# -- catalogue (contract 16.4, 17) ------------------------------------------------------------------


def test_catalog_validate_import_export(cli, tmp_path):
    source = tmp_path / "catalogue.yaml"
    source.write_text(catalogue.demo_text())
    code, out, err = cli("catalog", "validate", str(source))
    assert (code, out, err) == (0, f"{source}: valid (27 vouchers, 14 topups, 9 esim)\n", "")
    code, out, _ = cli("catalog", "import", str(source), "--json")
    counts = json.loads(out)
    assert code == 0 and list(counts) == ["vouchers", "topups", "esim", "deactivated"]
    assert list(counts["vouchers"]) == ["created", "updated"]
    code, out, _ = cli("catalog", "import", str(source), "--json")  # the second import changes nothing
    assert json.loads(out) == {"vouchers": {"created": 0, "updated": 0}, "topups": {"created": 0, "updated": 0},
                               "esim": {"created": 0, "updated": 0}, "deactivated": 0}  # fmt: skip
    code, out, _ = cli("catalog", "import", str(source))
    assert code == 0 and out.splitlines()[0] == "vouchers: 0 created, 0 updated"
    code, yaml_out, _ = cli("catalog", "export")
    code, json_out, _ = cli("catalog", "export", "--json")
    assert code == 0 and 1001 in [product["id"] for product in json.loads(json_out)["vouchers"]]
    exported = tmp_path / "exported.yaml"
    exported.write_text(yaml_out)
    assert json.loads(cli("catalog", "import", str(exported), "--json")[1])["vouchers"] == {"created": 0, "updated": 0}


@pytest.mark.parametrize(
    "content, message",
    [("vouchers:\n  - {name: x}\n", "vouchers[0]: 'category' is a required property"),
     ("vouchers: [", "not YAML or JSON"),
     (None, "cannot read"),
     ("exchange_rates:\n  - {from: USD, to: EUR, rate: -1}\n", "exchange_rates[0].rate")],
)  # fmt: skip
def test_catalog_refusals_are_one_line_and_change_nothing(cli, tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    before = cli("catalog", "export", "--json")[1]
    for action in ("validate", "import"):
        code, out, err = cli("catalog", action, str(path))
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert cli("catalog", "export", "--json")[1] == before


# -- discounts and blacklists (contract 16.2) -------------------------------------------------------


def test_discounts_and_blacklist(cli):
    with models.db.connection_context():
        catalogue.import_catalogue(catalogue.demo_text())
    client_id = str(create(cli)["client_id"])
    assert cli("client", "set-discount", client_id, "vouchers", "1001", "7.5")[:2] == (
        0, f"client {client_id}: 7.5% on vouchers product 1001\n"
    )  # fmt: skip
    assert cli("client", "set-discount", client_id, "vouchers", "1001", "8.25")[0] == 0  # replaces it
    assert cli("client", "set-discount", client_id, "esim", "712", "0.225")[0] == 0
    assert cli("client", "set-discount", client_id, "topups", "4218", "100")[0] == 0
    with models.db.connection_context():
        discounts = {(d.vertical, d.product_id): d.discount for d in ClientDiscount.select().where(
            ClientDiscount.client == int(client_id))}  # fmt: skip
    assert discounts == {("vouchers", 1001): Decimal("8.25"), ("esim", 712): Decimal("0.225"),
                         ("topups", 4218): Decimal(100)}  # fmt: skip
    assert cli("client", "clear-discount", client_id, "topups", "4218")[0] == 0
    assert cli("client", "blacklist", client_id, "1002")[:2] == (
        0,
        f"client {client_id}: voucher product 1002 blacklisted\n",
    )
    assert cli("client", "blacklist", client_id, "1002")[0] == 0  # already: nothing to add
    with models.db.connection_context():
        assert ClientBlacklist.select().where(ClientBlacklist.client == int(client_id)).count() == 1
    assert cli("client", "unblacklist", client_id, "1002")[0] == 0


@pytest.mark.parametrize(
    "argv, message",
    [(("client", "set-discount", "{client}", "vouchers", "1001", "100.5"), "invalid percentage '100.5'"),
     (("client", "set-discount", "{client}", "vouchers", "1001", "-1"), "invalid percentage '-1'"),
     (("client", "set-discount", "{client}", "vouchers", "1001", "1.00001"), "invalid percentage '1.00001'"),
     (("client", "set-discount", "{client}", "vouchers", "1001", "NaN"), "invalid percentage 'NaN'"),
     (("client", "set-discount", "{client}", "books", "1001", "5"), "unknown vertical 'books'"),
     (("client", "set-discount", "{client}", "vouchers", "712", "5"), "no vouchers product with id 712"),
     (("client", "set-discount", "{client}", "esim", "999999", "5"), "no esim product with id 999999"),
     (("client", "set-discount", "2147483647", "vouchers", "1001", "5"), "no client with id 2147483647"),
     (("client", "clear-discount", "{client}", "vouchers", "1001"), "has no discount on vouchers product 1001"),
     (("client", "blacklist", "{client}", "4218"), "no vouchers product with id 4218"),
     (("client", "unblacklist", "{client}", "1001"), "voucher product 1001 is not blacklisted"),
     (("client", "blacklist", "{client}", "0"), "invalid product id: '0'")],
)  # fmt: skip
def test_discount_and_blacklist_refusals(cli, argv, message):
    with models.db.connection_context():
        catalogue.import_catalogue(catalogue.demo_text())
    client_id = create(cli)["client_id"]
    code, out, err = cli(*[arg.format(client=client_id) for arg in argv])
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    with models.db.connection_context():
        assert not ClientDiscount.select().where(ClientDiscount.client == client_id).exists()
        assert not ClientBlacklist.select().where(ClientBlacklist.client == client_id).exists()
