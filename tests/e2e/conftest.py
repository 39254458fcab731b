"""Fixtures of the e2e layer."""

import os
import uuid

import psycopg2
import pytest

from support.inprocess import POSTGRES_ADMIN_URL


@pytest.fixture
def fresh_database(tmp_path):
    """fresh_database(name) -> the URL of a new, empty database: a SQLite file in tmp_path, or a
    new PostgreSQL database when the suite runs on PostgreSQL (dropped afterwards)."""
    created = []

    def make(name):
        if os.environ.get("OCTOPUS_TEST_DATABASE", "sqlite") != "postgresql":
            return f"sqlite:///{tmp_path / (name + '.db')}"
        database = f"octopus_e2e_{name}_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(POSTGRES_ADMIN_URL)
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{database}"')
        finally:
            admin.close()
        created.append(database)
        return f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{database}"

    yield make
    if created:
        admin = psycopg2.connect(POSTGRES_ADMIN_URL)
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                for database in created:
                    cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            admin.close()
