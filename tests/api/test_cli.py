"""The operator CLI, run in-process against the session database."""

import datetime
import json

import pytest

from octopus_cards import models
from octopus_cards.cli import main, serve
from octopus_cards.http.jwt_codec import TokenCodec
from octopus_cards.models import Client, Token
from octopus_cards.settings import Settings


@pytest.fixture
def cli(migrated, monkeypatch, capsys):
    for name, value in migrated.items():
        monkeypatch.setenv(name, value)

    def run(*argv):
        try:
            code = main(list(argv))
        except SystemExit as exited:  # argparse refusing the arguments
            code = exited.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def create(cli, *extra):
    code, out, _ = cli("client", "create", "--name", "acme", "--json", *extra)
    assert code == 0
    return json.loads(out)


def test_create_prints_credentials_once_as_json(cli, api):
    created = create(cli, "--ip", "203.0.113.0/24", "--ip", "2001:db8::1", "--feature", "vouchers")
    assert list(created) == ["client_id", "name", "api_key", "api_secret", "ip_whitelist", "features"]
    assert created["name"] == "acme"
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
