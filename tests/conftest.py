"""Shared fixtures: one migrated database per test session (SQLite file or a fresh PostgreSQL
database), apps built on it, and clients provisioned through the models."""

import os
import secrets
import uuid

import psycopg2
import pytest

from octopus_cards import models
from octopus_cards.app import create_app
from octopus_cards.models import Client

from support.inprocess import POSTGRES_ADMIN_URL, TEST_PEER, make_settings


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    """SQLite by default; OCTOPUS_TEST_DATABASE=postgresql runs the same suite on PostgreSQL."""
    if os.environ.get("OCTOPUS_TEST_DATABASE", "sqlite") != "postgresql":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'octopus.db'}"
        return
    name = f"octopus_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(POSTGRES_ADMIN_URL)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    if models.db.obj is not None:
        models.db.close()
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def base_env(database_url, tmp_path_factory):
    """The environment of a server under test: explicit keys, no rate limits."""
    return {
        "OCTOPUS_DATABASE_URL": database_url,
        "OCTOPUS_JWT_KEYS": "test-kid:" + "k" * 40,
        "OCTOPUS_SECRET_PEPPER": "p" * 40,
        "OCTOPUS_KEY_FILE": str(tmp_path_factory.mktemp("keys") / "octopus.keys"),
        "OCTOPUS_VALIDATE_RESPONSES": "true",
        "OCTOPUS_RATE_LIMIT_PROFILE": "off",
        # Tests change reference rows and expect to see it at once.
        "OCTOPUS_REFERENCE_CACHE_TTL": "0",
        # Background work runs where a test asks for it (tests/api/test_orders.py, e2e workers).
        "OCTOPUS_BACKGROUND": "false",
    }


@pytest.fixture(scope="session")
def migrated(base_env):
    models.connect(base_env["OCTOPUS_DATABASE_URL"])
    models.migrate()
    return base_env


@pytest.fixture(autouse=True)
def idle_connections_closed(migrated):
    """Tests that run many threads leave as many pooled connections open; PostgreSQL refuses
    connections beyond max_connections (100 here), which the process tests and live servers need."""
    yield
    models.db.obj.close_idle()


@pytest.fixture(scope="session")
def env(migrated):
    """The environment of a real `octopus-cards serve` on the session database (tests/support/live_server.py)."""
    return migrated


@pytest.fixture(scope="session")
def settings(migrated):
    return make_settings(migrated)


@pytest.fixture(scope="session")
def app(settings):
    return create_app(settings)


@pytest.fixture
def api(app):
    """An in-process HTTP client whose peer address is TEST_PEER."""
    with app.test_client(client=TEST_PEER) as client:
        yield client


@pytest.fixture
def new_client(settings):
    """Provision a client: new_client(features=..., networks=..., active=...) -> (client, key, secret)."""

    def provision(features=("vouchers", "topups", "esim"), networks=(), active=True):
        with models.db.connection_context():
            client, secret = Client.provision(
                settings.secret_pepper, f"client-{secrets.token_hex(3)}", networks, features
            )
            if not active:
                client.set_active(False)
        return client, client.api_key, secret

    return provision


@pytest.fixture
def login(api):
    """login(key, secret) -> the `data` of a successful login."""

    def do_login(key, secret):
        response = api.post("/auth/login", json={"username": key, "password": secret})
        assert response.status_code == 200, response.text
        return response.json()["data"]

    return do_login
