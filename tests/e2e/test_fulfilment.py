"""Background fulfilment across processes (contract 5.5, 12, 15.1 items 30-31): a separate
`octopus-cards worker` drains the queue a server filled, two server workers and a worker share one
queue, and kill -9 of the worker or the server in the middle loses no order, issues no code twice
and debits each order once."""

import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time

import pytest

from octopus_cards import models
from octopus_cards.models import Transaction
from octopus_cards.models.jobs import Job
from octopus_cards.models.orders import JOB_KIND, Voucher, VoucherOrder

from support.live_server import LiveServer, cli_json, executable, server_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def slow_product(env, tmp_path_factory):
    product_id = 4_000_000 + secrets.randbelow(1_000_000)
    catalogue = tmp_path_factory.mktemp("catalogue") / "slow.json"
    catalogue.write_text(json.dumps({"vouchers": [{
        "id": product_id, "name": f"Slow {product_id}", "category": "Shopping", "country": "USA", "currency": "USD",
        "denominations": [{"min": 1, "max": 100}], "mock": {"delay": 0.3}}]}))  # fmt: skip
    cli_json(env, "catalog", "import", str(catalogue), "--json")
    return product_id


def worker(settings):
    return subprocess.Popen([executable(), "worker"], env=server_env(settings), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def stop(*processes):
    """Stop the workers; their logs."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    return [process.communicate(timeout=30)[1] for process in processes]


def place_orders(server, settings, product_id, count):
    client = cli_json(settings, "client", "create", "--name", f"bulk-{secrets.token_hex(3)}", "--feature",
                      "vouchers", "--json")  # fmt: skip
    wallet = cli_json(settings, "wallet", "create", str(client["client_id"]), "USD", "--json")
    cli_json(settings, "wallet", "credit", str(wallet["id"]), "100000", "--json")
    with server.client() as http:
        login = {"username": client["api_key"], "password": client["api_secret"]}
        token = http.post("/auth/login", json=login).json()["data"]["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        ids = []
        for _ in range(count):
            created = http.post("/api/v1/orders", json={"product_id": product_id, "denomination": 5, "quantity": 6},
                                headers=headers)  # fmt: skip
            assert created.status_code == 201 and created.json()["status"] == "PENDING", created.text
            ids.append(created.json()["id"])
    return ids, wallet["id"]


def wait_settled(ids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with models.db.connection_context():
            if not VoucherOrder.select().where(VoucherOrder.id.in_(ids) & (VoucherOrder.status == "PENDING")).exists():
                return
        time.sleep(0.2)
    raise AssertionError("orders still PENDING")


def assert_fulfilled_once(ids, wallet_id):
    with models.db.connection_context():
        statuses = {o.status for o in VoucherOrder.select().where(VoucherOrder.id.in_(ids))}
        codes = Voucher.select().where(Voucher.order.in_(ids))
        debits = Transaction.select().where(
            (Transaction.order_vertical == "vouchers") & Transaction.order_id.in_(ids)
            & (Transaction.transaction_type == "DEBIT"))  # fmt: skip
        refunds = Transaction.select().where(
            (Transaction.order_vertical == "vouchers") & Transaction.order_id.in_(ids)
            & (Transaction.transaction_type == "CREDIT"))  # fmt: skip
        assert statuses == {"DELIVERED"}
        assert codes.count() == 6 * len(ids)
        assert len({code.card_number for code in codes}) == 6 * len(ids)
        assert debits.count() == len(ids) and refunds.count() == 0
        assert models.Wallet.balance_matches_ledger(wallet_id)


def test_a_separate_worker_drains_what_the_server_queued(env, slow_product, tmp_path):
    settings = dict(env, OCTOPUS_BACKGROUND="false")
    with LiveServer(settings, tmp_path / "logs", name="no-background") as server:
        ids, wallet_id = place_orders(server, settings, slow_product, 8)
        time.sleep(1)
        with models.db.connection_context():
            assert (
                VoucherOrder.select().where(VoucherOrder.id.in_(ids) & (VoucherOrder.status == "PENDING")).count() == 8
            )
        process = worker(settings)
        try:
            wait_settled(ids, timeout=60)
        finally:
            stop(process)
    assert_fulfilled_once(ids, wallet_id)


RUN = re.compile(r"job \d+ \(voucher_order (\d+)\), attempt (\d+): (\S+)")


def runs(log):
    """The (order id, attempt, status) of each fulfilment run a process logged."""
    return [(int(order), int(attempt), status) for order, attempt, status in RUN.findall(log)]


def test_two_server_workers_and_a_worker_drain_one_queue(env, slow_product, tmp_path):
    """Three processes claim from one queue at once: each order is run by exactly one of them, once."""
    settings = dict(env, OCTOPUS_BACKGROUND="true")
    with LiveServer(settings, tmp_path / "logs", workers=2, name="shared-queue") as server:
        process = worker(settings)
        try:
            ids, wallet_id = place_orders(server, settings, slow_product, 40)
            wait_settled(ids, timeout=90)
        finally:
            (worker_log,) = stop(process)
    server_runs, worker_runs = runs(server.stderr), runs(worker_log)
    assert sorted(order for order, _, _ in server_runs + worker_runs) == sorted(ids), "an order run twice, or never"
    assert {(attempt, status) for _, attempt, status in server_runs + worker_runs} == {(1, "DELIVERED")}
    assert server_runs and worker_runs, f"one side ran nothing ({len(server_runs)} vs {len(worker_runs)})"
    with models.db.connection_context():
        fulfilments = Job.select().where((Job.kind == JOB_KIND) & Job.subject_id.in_(ids))
        assert {job.attempts for job in fulfilments} == {1}
    assert "settled meanwhile" not in server.stderr + worker_log
    assert_fulfilled_once(ids, wallet_id)


def test_kill_9_of_the_worker_loses_nothing(env, slow_product, tmp_path):
    settings = dict(env, OCTOPUS_BACKGROUND="false", OCTOPUS_JOB_LEASE="2")
    with LiveServer(settings, tmp_path / "logs", name="queue") as server:
        ids, wallet_id = place_orders(server, settings, slow_product, 20)
        first = worker(settings)
        time.sleep(1.2)  # some orders done, some in the supplier's hands
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        with models.db.connection_context():
            done = VoucherOrder.select().where(VoucherOrder.id.in_(ids) & (VoucherOrder.status != "PENDING")).count()
        assert done < 20, "the worker finished everything before it was killed: nothing was tested"
        second = worker(settings)  # takes the dead worker's jobs over once their leases expire
        try:
            wait_settled(ids, timeout=90)
        finally:
            stop(second)
    assert_fulfilled_once(ids, wallet_id)


def test_a_lease_is_renewed_while_a_slow_call_runs(env, tmp_path):
    """A supplier call longer than the lease: the job stays with its worker (no second worker takes
    it over, so the supplier is called once)."""
    product_id = 5_000_000 + secrets.randbelow(1_000_000)
    catalogue = tmp_path / "slower.json"
    catalogue.write_text(json.dumps({"vouchers": [{
        "id": product_id, "name": f"Slower {product_id}", "category": "Shopping", "country": "USA", "currency": "USD",
        "denominations": [{"min": 1, "max": 100}], "mock": {"delay": 5}}]}))  # fmt: skip
    settings = dict(env, OCTOPUS_BACKGROUND="false", OCTOPUS_JOB_LEASE="2")
    cli_json(settings, "catalog", "import", str(catalogue), "--json")
    with LiveServer(settings, tmp_path / "logs", name="lease") as server:
        ids, wallet_id = place_orders(server, settings, product_id, 1)
        workers = [worker(settings), worker(settings)]
        try:
            wait_settled(ids, timeout=60)
        finally:
            stop(*workers)
    with models.db.connection_context():
        assert models.orders.VoucherOrder.get_by_id(ids[0]).status == "DELIVERED"
        job = Job.get((Job.kind == JOB_KIND) & (Job.subject_id == ids[0]))
        assert job.attempts == 1, "a second worker took the job over while its call ran"
    assert_fulfilled_once(ids, wallet_id)


def test_kill_9_of_the_server_with_orders_in_flight(env, slow_product, tmp_path):
    """50 background orders, the server and its background worker killed mid-way; after a restart
    every order ends, each debited once, with as many codes as ordered and no refund."""
    settings = dict(env, OCTOPUS_BACKGROUND="true", OCTOPUS_JOB_LEASE="2")
    server = LiveServer(settings, tmp_path / "logs", name="crash")
    with server:
        ids, wallet_id = place_orders(server, settings, slow_product, 50)
        time.sleep(0.8)
        os.killpg(server.pid, signal.SIGKILL)
        assert server.stop() == -signal.SIGKILL
        with models.db.connection_context():
            pending = VoucherOrder.select().where(VoucherOrder.id.in_(ids) & (VoucherOrder.status == "PENDING"))
            assert pending.count() > 0, "every order ended before the kill: nothing was tested"
        server.start()
        wait_settled(ids, timeout=120)
    assert_fulfilled_once(ids, wallet_id)


def test_concurrent_orders_across_two_server_workers(env, tmp_path):
    """64 orders at once, over HTTP, spread over two worker processes, against a PREPAID wallet
    funded for exactly 16: 16 are created, 48 refused, and the balance ends at exactly 0."""
    product_id = 6_000_000 + secrets.randbelow(1_000_000)
    catalogue = tmp_path / "plain.json"
    catalogue.write_text(json.dumps({"vouchers": [{
        "id": product_id, "name": f"Plain {product_id}", "category": "Shopping", "country": "USA", "currency": "USD",
        "denominations": [{"min": 1, "max": 100}]}]}))  # fmt: skip
    settings = dict(env, OCTOPUS_BACKGROUND="false")
    cli_json(settings, "catalog", "import", str(catalogue), "--json")
    client = cli_json(settings, "client", "create", "--name", f"race-{secrets.token_hex(3)}", "--feature", "vouchers",
                      "--json")  # fmt: skip
    wallet = cli_json(settings, "wallet", "create", str(client["client_id"]), "USD", "--json")
    cli_json(settings, "wallet", "credit", str(wallet["id"]), "80", "--json")  # 16 orders of 5
    with LiveServer(settings, tmp_path / "logs", workers=2, name="two-workers") as server:
        with server.client() as http:
            login = {"username": client["api_key"], "password": client["api_secret"]}
            token = http.post("/auth/login", json=login).json()["data"]["access_token"]
        barrier, answers = threading.Barrier(64), []

        def create():
            with server.client() as own:
                barrier.wait()
                body = {"product_id": product_id, "denomination": 5, "quantity": 1}
                answers.append(own.post("/api/v1/orders", json=body, headers={"Authorization": f"Bearer {token}"}))

        threads = [threading.Thread(target=create) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(r.status_code for r in answers) == [201] * 16 + [400] * 48, [r.text for r in answers][:3]
    assert {r.json()["error"]["message"] for r in answers if r.status_code == 400} == {"Insufficient wallet balance"}
    with models.db.connection_context():
        assert models.Wallet.get_by_id(wallet["id"]).amount == 0
        assert models.Wallet.balance_matches_ledger(wallet["id"])
