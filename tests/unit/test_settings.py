"""Unit: settings from the environment (contract 14) and the generated key file."""

import json
import multiprocessing
import os
import threading

import pytest

from octopus_cards.cli import worker_cpu
from octopus_cards.settings import Settings, SettingsError, default_key_file

KEY = "x" * 32


def test_defaults_generate_keys_once_into_the_key_file(tmp_path):
    env = {"OCTOPUS_KEY_FILE": str(tmp_path / "keys")}
    first, second = Settings.from_env(env), Settings.from_env(env)
    assert first.database_url == "sqlite:///octopus.db"
    assert (first.access_token_ttl, first.refresh_token_ttl, first.jwt_leeway) == (3600, 604800, 0)
    assert first.trusted_proxies == ()
    assert first.jwt_keys == second.jwt_keys and first.secret_pepper == second.secret_pepper
    assert len(first.secret_pepper) >= 32 and len(next(iter(first.jwt_keys.values()))) >= 32
    assert oct(os.stat(tmp_path / "keys").st_mode & 0o777) == "0o600"


def test_concurrent_starts_agree_on_one_key_file(tmp_path):
    env = {"OCTOPUS_KEY_FILE": str(tmp_path / "keys")}
    seen, barrier = [], threading.Barrier(8)

    def start():
        barrier.wait()
        seen.append(Settings.from_env(env).secret_pepper)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and sorted(os.listdir(tmp_path)) == ["keys"]


def test_key_file_sits_beside_a_sqlite_database():
    assert default_key_file("sqlite:////var/lib/octopus/data.db") == "/var/lib/octopus/data.db.keys"
    assert default_key_file("postgresql://db/octopus") == "octopus.keys"


def test_explicit_keys_need_no_key_file(tmp_path):
    env = {
        "OCTOPUS_JWT_KEYS": f"new:{KEY}y, old:{KEY}z",
        "OCTOPUS_SECRET_PEPPER": KEY,
        "OCTOPUS_KEY_FILE": str(tmp_path / "keys"),
        "OCTOPUS_TRUSTED_PROXIES": "10.0.0.0/8, ::ffff:192.0.2.0/120",
        "OCTOPUS_ACCESS_TOKEN_TTL": "60",
        "OCTOPUS_REFRESH_TOKEN_TTL": "120",
        "OCTOPUS_JWT_LEEWAY": "30",
    }
    settings = Settings.from_env(env)
    assert settings.jwt_keys == {"new": (KEY + "y").encode(), "old": (KEY + "z").encode()}
    assert settings.jwt_active_kid == "new"
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.0.2.0/24"]
    assert (settings.access_token_ttl, settings.refresh_token_ttl, settings.jwt_leeway) == (60, 120, 30)
    assert not (tmp_path / "keys").exists()
    assert Settings.from_env({**env, "OCTOPUS_JWT_ACTIVE_KID": "old"}).jwt_active_kid == "old"


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("OCTOPUS_JWT_KEYS", "short:abc", "at least 32 bytes"),
        ("OCTOPUS_JWT_KEYS", "nokid", "kid:secret pairs"),
        ("OCTOPUS_JWT_KEYS", f"a:{KEY},a:{KEY}", "names 'a' twice"),
        ("OCTOPUS_JWT_ACTIVE_KID", "missing", "names no key"),
        ("OCTOPUS_SECRET_PEPPER", "short", "at least 32 bytes"),
        ("OCTOPUS_ACCESS_TOKEN_TTL", "0", "between 1 and"),
        ("OCTOPUS_REFRESH_TOKEN_TTL", "1.5", "whole number"),
        ("OCTOPUS_JWT_LEEWAY", "31", "between 0 and 30"),
        ("OCTOPUS_TRUSTED_PROXIES", "10.0.0.0/33", "OCTOPUS_TRUSTED_PROXIES"),
        ("OCTOPUS_VALIDATE_RESPONSES", "maybe", "true or false"),
        ("OCTOPUS_SUPPLIER", "acme", "OCTOPUS_SUPPLIER must be one of mock"),
        ("OCTOPUS_VOUCHER_SYNC_DEADLINE", "-1", "from 0 to 3600"),
        ("OCTOPUS_VOUCHER_SYNC_DEADLINE", "soon", "from 0 to 3600"),
        ("OCTOPUS_FULFILMENT_RETRY_SCHEDULE", "1,x", "comma-separated seconds"),
        ("OCTOPUS_FULFILMENT_RETRY_SCHEDULE", "1,-2", "comma-separated seconds"),
        ("OCTOPUS_JOB_LEASE", "0", "between 1 and"),
        ("OCTOPUS_BACKGROUND", "sometimes", "true or false"),
        ("OCTOPUS_CATALOG", "/nonexistent/catalogue.yaml", "OCTOPUS_CATALOG must be demo or a readable"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(tmp_path, name, value, message):
    env = {"OCTOPUS_KEY_FILE": str(tmp_path / "keys"), "OCTOPUS_JWT_KEYS": f"k:{KEY}", name: value}
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_damaged_key_file_is_a_clear_error(tmp_path):
    (tmp_path / "keys").write_text(json.dumps({"kid": "k"}))
    with pytest.raises(SettingsError, match="unreadable or damaged"):
        Settings.from_env({"OCTOPUS_KEY_FILE": str(tmp_path / "keys")})


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_worker_cpus_are_auto_or_cpus_this_process_may_use(tmp_path):
    env = {"OCTOPUS_KEY_FILE": str(tmp_path / "keys")}
    allowed = tuple(sorted(os.sched_getaffinity(0)))
    assert Settings.from_env(env).worker_cpus == ()
    assert Settings.from_env({**env, "OCTOPUS_WORKER_CPUS": "auto"}).worker_cpus == allowed
    assert Settings.from_env({**env, "OCTOPUS_WORKER_CPUS": f" {allowed[-1]}, {allowed[0]} "}).worker_cpus == (
        allowed[-1],
        allowed[0],
    )
    for wrong in ("all", "-1", "0x1", f"{max(allowed) + 1}", "0,,1"):
        with pytest.raises(SettingsError, match="OCTOPUS_WORKER_CPUS must be auto or CPU numbers"):
            Settings.from_env({**env, "OCTOPUS_WORKER_CPUS": wrong})


@pytest.mark.parametrize(
    "process_name, cpu", [("MainProcess", 4), ("SpawnProcess-1", 4), ("SpawnProcess-2", 6), ("SpawnProcess-3", 4)]
)
def test_workers_are_dealt_round_the_cpus(monkeypatch, process_name, cpu):
    monkeypatch.setattr(multiprocessing.current_process(), "name", process_name)
    assert worker_cpu((4, 6)) == cpu


def test_fulfilment_settings(tmp_path):
    env = {"OCTOPUS_KEY_FILE": str(tmp_path / "keys"), "OCTOPUS_JWT_KEYS": f"k:{KEY}"}
    defaults = Settings.from_env(env)
    assert (defaults.voucher_sync_deadline, defaults.fulfilment_retry_schedule) == (
        10.0,
        (1.0, 5.0, 30.0, 120.0, 600.0),
    )
    assert (defaults.job_lease, defaults.background, defaults.supplier) == (30, True, "mock")
    tuned = Settings.from_env({**env, "OCTOPUS_FULFILMENT_RETRY_SCHEDULE": "0.5, 2", "OCTOPUS_BACKGROUND": "off"})
    assert (tuned.fulfilment_retry_schedule, tuned.background) == ((0.5, 2.0), False)
