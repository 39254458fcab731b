"""The ledger across processes (contract 6, 16.3): concurrent `octopus-cards wallet debit`
processes never overdraw a PREPAID wallet, and kill -9 in the middle of a burst of debits loses no
acknowledged debit and leaves balance = Σ transactions."""

import json
import random
import secrets
import signal
import subprocess
import time
from decimal import Decimal

import pytest

from octopus_cards import models
from octopus_cards.models import Event, Transaction, Wallet

from support.live_server import cli_json, executable, server_env

pytestmark = pytest.mark.e2e


def funded_wallet(env, amount):
    client = cli_json(env, "client", "create", "--name", f"burst-{secrets.token_hex(3)}", "--json")
    wallet = cli_json(env, "wallet", "create", str(client["client_id"]), "USD", "--json")
    cli_json(env, "wallet", "credit", str(wallet["id"]), str(amount), "--json")
    return client["client_id"], wallet["id"]


def debit_processes(env, wallet_id, amount, count):
    command = [executable(), "wallet", "debit", str(wallet_id), str(amount), "--json"]
    return [
        subprocess.Popen(command, env=server_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]


def ledger_of(client_id, wallet_id):
    with models.db.connection_context():
        debits = list(
            Transaction.select().where((Transaction.wallet == wallet_id) & (Transaction.transaction_type == "DEBIT"))
        )
        events = Event.select().where(Event.client == client_id).count()
        transactions = Transaction.select().where(Transaction.wallet == wallet_id).count()
        return (
            Wallet.get_by_id(wallet_id).amount,
            debits,
            events,
            transactions,
            Wallet.balance_matches_ledger(wallet_id),
        )


def test_concurrent_debit_processes_never_overdraw(env):
    """48 processes at once against a wallet funded for exactly 12 of them."""
    client_id, wallet_id = funded_wallet(env, Decimal("12") * Decimal("2.5"))
    processes = debit_processes(env, wallet_id, "2.5", 48)
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        outcomes.append((process.returncode, out, err))
    succeeded = [json.loads(out) for code, out, _ in outcomes if code == 0]
    refused = [err for code, _, err in outcomes if code != 0]
    assert len(succeeded) == 12, outcomes
    assert refused == ["octopus-cards: Insufficient wallet balance\n"] * 36
    balance, debits, events, transactions, consistent = ledger_of(client_id, wallet_id)
    assert balance == 0 and consistent and len(debits) == 12
    assert sorted(t["id"] for t in succeeded) == sorted(t.id for t in debits)
    assert events == transactions == 13


def test_kill_9_mid_burst_loses_no_acknowledged_debit(env):
    client_id, wallet_id = funded_wallet(env, 1000)
    processes = debit_processes(env, wallet_id, "1", 40)
    rng = random.Random(9)
    victims = rng.sample(processes, 20)
    deadline = time.monotonic() + 2.0
    for victim in victims:  # spread over the burst: before, during and after their transaction
        time.sleep(max(0.0, min(rng.uniform(0.0, 0.1), deadline - time.monotonic())))
        victim.send_signal(signal.SIGKILL)
    acknowledged = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        if process.returncode == 0:
            acknowledged.append(json.loads(out)["id"])
        else:
            assert process.returncode == -signal.SIGKILL, (process.returncode, err)
    assert len(acknowledged) >= 20  # every process that was not killed answered
    balance, debits, events, transactions, consistent = ledger_of(client_id, wallet_id)
    present = [t.id for t in debits]
    assert len(present) == len(set(present)) and set(acknowledged) <= set(present)
    assert all(t.amount == 1 for t in debits)
    assert balance == 1000 - len(debits) and consistent
    assert events == transactions  # every debit that landed has its event, and nothing else landed
