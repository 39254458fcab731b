"""The catalogue through the operator's commands on fresh databases (contract 16.1, 16.4, 17): an
export imported into an empty database reproduces it, and OCTOPUS_CATALOG imports at every start."""

import pytest

from octopus_cards.models import catalogue

from support.live_server import LiveServer, cli_json, run_cli

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
