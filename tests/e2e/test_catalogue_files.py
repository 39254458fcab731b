"""The catalogue through the operator's commands on fresh databases (contract 16.1, 16.4, 17): an
export imported into an empty database reproduces it, and OCTOPUS_CATALOG imports at every start;
and every change to it shows at once in every worker of a server (15.1, item 39)."""

import json
import secrets
from pathlib import Path

import pytest

from octopus_cards.models import catalogue

from support.live_server import LiveServer, cli_json, client_port_of, run_cli

pytestmark = pytest.mark.e2e


def test_an_export_imported_into_an_empty_database_reproduces_it(env, fresh_database, tmp_path):
    first = dict(env, OCTOPUS_DATABASE_URL=fresh_database("catalogue_a"))
    second = dict(env, OCTOPUS_DATABASE_URL=fresh_database("catalogue_b"))
    source = tmp_path / "demo.yaml"
    source.write_text(catalogue.demo_text())
    assert cli_json(first, "catalog", "import", str(source), "--json")["vouchers"] == {"created": 27, "updated": 0}
    exported = run_cli(first, "catalog", "export")
    assert exported.returncode == 0
    copy = tmp_path / "export.yaml"
    copy.write_text(exported.stdout)
    counts = cli_json(second, "catalog", "import", str(copy), "--json")
    assert counts == {"vouchers": {"created": 27, "updated": 0}, "topups": {"created": 14, "updated": 0},
                      "esim": {"created": 9, "updated": 0}, "deactivated": 0}  # fmt: skip
    assert run_cli(second, "catalog", "export").stdout == exported.stdout
    assert cli_json(second, "catalog", "export", "--json") == cli_json(first, "catalog", "export", "--json")


def test_octopus_catalog_is_imported_at_every_start(env, fresh_database, tmp_path):
    settings = dict(env, OCTOPUS_DATABASE_URL=fresh_database("catalogue_start"), OCTOPUS_CATALOG="demo")
    server = LiveServer(settings, tmp_path / "logs", name="catalogue-start")
    with server:
        assert '"vouchers": {"created": 27, "updated": 0}' in server.stderr
    with server:
        assert '"vouchers": {"created": 0, "updated": 0}' in server.stderr
    assert len(cli_json(settings, "catalog", "export", "--json")["vouchers"]) == 27


def test_a_bad_catalogue_setting_stops_the_server_with_one_line(env, tmp_path):
    done = run_cli(dict(env, OCTOPUS_CATALOG=str(tmp_path / "missing.yaml")), "serve", "--port", "1")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("OCTOPUS_CATALOG must be demo or a readable catalogue file, not "
                                        f"'{tmp_path / 'missing.yaml'}'")  # fmt: skip


def test_a_refusal_on_a_fresh_database_is_still_one_line(env, fresh_database):
    """The migrations that run first log nothing on an operator command's stderr (15.1, item 38)."""
    done = run_cli(dict(env, OCTOPUS_DATABASE_URL=fresh_database("refusal")), "client", "set", "7", "--bulk-limit", "5")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "octopus-cards: no client with id 7\n")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to tell workers apart")
def test_catalogue_changes_show_at_once_in_every_worker(env, tmp_path):
    """Each worker keeps the product lists it encoded: the operator's commands, and an order taking
    the last code, show in the very next list, whichever worker serves it."""
    base, category = 300_000_000 + secrets.randbelow(1_000_000) * 10, f"Workers {secrets.token_hex(3)}"

    def entry(offset, name, **fields):
        return {"id": base + offset, "name": name, "category": category, "country": "USA", "currency": "USD",
                "denominations": [{"min": 10, "max": 500, "discount": 2.5}], **fields}  # fmt: skip

    def load(*entries):
        path = tmp_path / f"catalogue-{secrets.token_hex(3)}.json"
        path.write_text(json.dumps({"vouchers": list(entries)}))
        return cli_json(env, "catalog", "import", str(path), "--json")

    def cli(*args):
        done = run_cli(env, *args)
        assert done.returncode == 0, done.stderr

    load(entry(1, "One"), entry(2, "Two", stock=1), entry(3, "Three"))
    client = cli_json(env, "client", "create", "--name", f"e2e-{secrets.token_hex(4)}", "--feature", "vouchers",
                      "--json")  # fmt: skip
    wallet = cli_json(env, "wallet", "create", str(client["client_id"]), "USD", "--json")
    cli("wallet", "credit", str(wallet["id"]), "1000")
    path = f"/api/v1/products?category={category}&sort_dir=asc"

    with LiveServer(env, tmp_path / "logs", workers=2, name="catalogue-workers") as server:
        workers = set(server.process_tree()) - {server.pid}
        with server.client() as http:
            login = http.post("/auth/login", json={"username": client["api_key"], "password": client["api_secret"]})
        headers = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}

        def everywhere(expected):
            """Lists over fresh connections until each worker has served two: all `expected`."""
            served = {}
            for _ in range(200):
                with server.client() as http:
                    response = http.get(path, headers=headers)
                    pid = server.serving_pid(client_port_of(response))
                assert response.status_code == 200 and pid in workers, (response.status_code, pid, workers)
                shown = {item["id"] - base: (item["name"], [d["discount"] for d in item["available_denominations"]])
                         for item in response.json()}  # fmt: skip
                assert shown == expected, (pid, served)
                served[pid] = served.get(pid, 0) + 1
                if len(served) == 2 and min(served.values()) >= 2:
                    return
            pytest.fail(f"fresh connections never reached both workers: {served}")

        everywhere({1: ("One", [2.5]), 2: ("Two", [2.5]), 3: ("Three", [2.5])})
        cli("client", "blacklist", str(client["client_id"]), str(base + 3))
        everywhere({1: ("One", [2.5]), 2: ("Two", [2.5])})
        cli("client", "set-discount", str(client["client_id"]), "vouchers", str(base + 1), "7.5")
        everywhere({1: ("One", [7.5]), 2: ("Two", [2.5])})
        load(entry(1, "One renamed"), entry(2, "Two", stock=1), entry(3, "Three", active=False))
        everywhere({1: ("One renamed", [7.5]), 2: ("Two", [2.5])})
        with server.client() as http:
            order = http.post("/api/v1/orders", json={"product_id": base + 2, "denomination": 10, "quantity": 1},
                              headers=headers)  # fmt: skip
        assert order.status_code == 201, order.text
        everywhere({1: ("One renamed", [7.5])})  # its last code is sold
        cli("client", "unblacklist", str(client["client_id"]), str(base + 3))
        load(entry(1, "One renamed"), entry(2, "Two", stock=1), entry(3, "Three"))
        everywhere({1: ("One renamed", [7.5]), 2: ("Two", [2.5]), 3: ("Three", [2.5])})
