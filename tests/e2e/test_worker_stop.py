"""Stopping `octopus-cards worker` (16.1): on SIGTERM it claims nothing more, lets the supplier calls
already running finish and settle, then exits 0; a job cut off would wait for its lease to expire."""

import json
import secrets
import signal
import subprocess
import time

import pytest

from octopus_cards import models
from octopus_cards.models.jobs import Job
from octopus_cards.models.orders import JOB_KIND, VoucherOrder

from support.live_server import LiveServer, cli_json, executable, server_env

pytestmark = pytest.mark.e2e

DELAY = 2.0  # seconds each supplier call of the product takes


def test_sigterm_lets_running_jobs_finish(env, tmp_path):
    product_id = 4_000_000 + secrets.randbelow(1_000_000)
    catalogue = tmp_path / "slow.json"
    catalogue.write_text(json.dumps({"vouchers": [{
        "id": product_id, "name": f"Stopping {product_id}", "category": "Shopping", "country": "USA",
        "currency": "USD", "denominations": [{"min": 1, "max": 100}], "mock": {"delay": DELAY}}]}))  # fmt: skip
    cli_json(env, "catalog", "import", str(catalogue), "--json")
    settings = {**env, "OCTOPUS_BACKGROUND": "false", "OCTOPUS_JOB_LEASE": "60"}
    client = cli_json(settings, "client", "create", "--name", f"stop-{secrets.token_hex(3)}", "--feature",
                      "vouchers", "--json")  # fmt: skip
    wallet = cli_json(settings, "wallet", "create", str(client["client_id"]), "USD", "--json")
    cli_json(settings, "wallet", "credit", str(wallet["id"]), "1000", "--json")
    with LiveServer(settings, tmp_path) as server, server.client() as http:
        login = {"username": client["api_key"], "password": client["api_secret"]}
        headers = {"Authorization": f"Bearer {http.post('/auth/login', json=login).json()['data']['access_token']}"}
        body = {"product_id": product_id, "denomination": 5, "quantity": 6}  # in the background
        ids = [http.post("/api/v1/orders", json=body, headers=headers).json()["id"] for _ in range(2)]

    worker = subprocess.Popen([executable(), "worker"], env=server_env(settings), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    jobs = (Job.kind == JOB_KIND) & Job.subject_id.in_(ids)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # both supplier calls under way
        with models.db.connection_context():
            if Job.select().where(jobs & Job.locked_until.is_null(False)).count() == 2:
                break
        time.sleep(0.05)
    else:
        worker.kill()
        pytest.fail("the worker did not take the jobs")
    worker.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    log = worker.communicate(timeout=30)[1]
    assert worker.returncode == 0, log
    assert time.monotonic() - stopped < DELAY + 5  # it waited for the calls, not for their leases
    assert "worker stopping (SIGTERM)" in log and "worker stopped" in log
    with models.db.connection_context():
        assert {o.status for o in VoucherOrder.select().where(VoucherOrder.id.in_(ids))} == {"DELIVERED"}
        assert all(job.finished_at is not None and job.attempts == 1 for job in Job.select().where(jobs))
