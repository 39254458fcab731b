"""Helpers for tests that drive the app in-process."""

import contextlib
import os

from anyio.from_thread import start_blocking_portal

from octopus_cards.http.runtime import Runtime
from octopus_cards.openapi import load_spec
from octopus_cards.settings import Settings
from octopus_cards.worker import work_forever

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


@contextlib.contextmanager
def background_work(settings):
    """The background work `serve` runs in a process of its own (OCTOPUS_BACKGROUND), run meanwhile
    in a thread of this one, with `settings`."""
    with start_blocking_portal() as portal:
        running = portal.start_task_soon(work_forever, Runtime.build(settings, load_spec()))
        try:
            yield
        finally:
            running.cancel()
