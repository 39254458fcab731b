"""Helpers for tests that drive the app in-process."""

import os

from octopus_cards.settings import Settings

POSTGRES_ADMIN_URL = os.environ.get("OCTOPUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# An address inside the documentation range: the in-process client's peer.
TEST_PEER = ("203.0.113.5", 50000)


def make_settings(env, **overrides):
    return Settings.from_env({**env, **{k: str(v) for k, v in overrides.items()}})


def bearer(access_token):
    return {"Authorization": f"Bearer {access_token}"}


def log_in(http, key, secret):
    """The auth headers of the client `key` logged in through the in-process client `http`."""
    token = http.post("/auth/login", json={"username": key, "password": secret}).json()["data"]["access_token"]
    return bearer(token)
