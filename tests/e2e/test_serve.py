"""End to end: a real `octopus-cards serve` subprocess driven over HTTP on 127.0.0.1
(contract sections 1-3, 14, 15). Clients are provisioned with the operator CLI, as in production.

Runs on SQLite by default and on PostgreSQL with OCTOPUS_TEST_DATABASE=postgresql.
"""

import calendar
import json
import os
import re
import secrets
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.live_server import LiveServer, cli_json, client_port_of

pytestmark = pytest.mark.e2e

KSUID = re.compile(r"[0-9A-Za-z]{27}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
JWT_PREFIX = "eyJhbGciOiJIUzI1NiIs"
INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'
REFERENCE_CACHE = "private, max-age=86400, stale-while-revalidate=600"
ALL_FEATURES = ["esim", "topups", "vouchers"]
DEMO_BANNER = "Demo client created. These credentials are shown once:"
DEMO_KEY_LINE = re.compile(r"^  username \(API key\):    (ock_[0-9a-f]{32})$", re.M)
DEMO_SECRET_LINE = re.compile(r"^  password \(API secret\): (\S+)$", re.M)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="module")
def server(env, logs):
    """One server with the default settings, shared by the tests that need nothing special."""
    with LiveServer(env, logs, name="default") as live:
        yield live


# -- helpers ----------------------------------------------------------------------------------


def create_client(env, ips=(), features=ALL_FEATURES):
    """`octopus-cards client create --json`: client_id, name, api_key, api_secret, ip_whitelist, features."""
    name = f"e2e-{secrets.token_hex(4)}"
    args = ["client", "create", "--name", name, "--json"]
    for cidr in ips:
        args += ["--ip", cidr]
    for feature in features:
        args += ["--feature", feature]
    created = cli_json(env, *args)
    assert created["name"] == name
    assert created["api_key"].startswith("ock_")
    assert created["ip_whitelist"] == list(ips)
    assert created["features"] == sorted(features)
    assert isinstance(created["client_id"], int) and len(created["api_secret"]) >= 43
    return created


def bearer(access_token):
    return {"Authorization": f"Bearer {access_token}"}


def checked(response):
    """What every response carries (contract 1.2-1.5, 2.1)."""
    assert response.headers["content-type"].split(";")[0] == "application/json", response.headers
    request_id = response.headers.get("x-request-id")
    assert request_id, "X-Request-Id missing"
    sent = response.request.headers.get("x-request-id")
    if sent is not None and re.fullmatch(r"[0-9A-Za-z_-]{1,63}", sent):
        assert request_id == sent
    else:
        assert KSUID.fullmatch(request_id), request_id
    if response.request.url.path.startswith("/auth/"):
        assert response.headers.get("cache-control") == "no-store"
    return response


def assert_error(response, status, name, code, message):
    checked(response)
    assert response.status_code == status, response.text[:500]
    assert response.json() == {"error": {"name": name, "code": code, "message": message}}
    if status == 401:
        challenge = INVALID_TOKEN_CHALLENGE if message in ("Invalid token", "Token expired") else "Bearer"
        assert response.headers.get("www-authenticate") == challenge


def assert_unauthorized(response, message):
    assert_error(response, 401, "UnauthorizedError", "UNAUTHORIZED", message)


def assert_forbidden(response):
    assert_error(response, 403, "ForbiddenError", "FORBIDDEN", "IP address not authorized")


def assert_token_pair(response, client_id):
    """A 200 from login or refresh (contract 3.3); returns `data`."""
    checked(response)
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"access_token", "refresh_token", "access_expires_at", "refresh_expires_at", "client_id"}
    if client_id is None:
        assert isinstance(data["client_id"], int) and data["client_id"] >= 1
    else:
        assert data["client_id"] == client_id
    assert data["access_token"].startswith(JWT_PREFIX) and data["refresh_token"].startswith(JWT_PREFIX)
    assert data["access_token"] != data["refresh_token"]
    assert TIMESTAMP.fullmatch(data["access_expires_at"]) and TIMESTAMP.fullmatch(data["refresh_expires_at"])
    return data


def epoch(timestamp):
    return calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))


def login(http, key, secret, headers=None):
    return checked(http.post("/auth/login", json={"username": key, "password": secret}, headers=headers))


def refresh(http, refresh_token, headers=None):
    return checked(http.post("/auth/refresh", json={"refresh_token": refresh_token}, headers=headers))


def logout(http, access_token):
    return checked(http.post("/auth/logout", headers=bearer(access_token)))


def currencies(http, access_token, headers=None):
    return checked(http.get("/api/v1/currencies", headers={**bearer(access_token), **(headers or {})}))


def logged_in(http, client, headers=None):
    return assert_token_pair(login(http, client["api_key"], client["api_secret"], headers), client["client_id"])


def assert_currencies_ok(response):
    checked(response)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["cache-control"] == REFERENCE_CACHE
    rows = response.json()
    assert isinstance(rows, list) and rows, "the reference data should list currencies"
    assert set(rows[0]) == {"id", "name", "currency", "precision"}
    assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)


def assert_logged_out(response):
    checked(response)
    assert response.status_code == 200, response.text[:500]
    assert response.json() == {"success": True, "data": {"message": "Successfully logged out"}}


# -- 1. the full flow -------------------------------------------------------------------------


def test_full_token_lifecycle(server, env):
    client = create_client(env)
    bystander = create_client(env, features=[])
    with server.client() as http:
        # Login (contract 3.3) and an authenticated read (4.2), with a caller-chosen request id.
        first = logged_in(http, client, headers={"X-Request-Id": "e2e-login_1"})
        assert_currencies_ok(currencies(http, first["access_token"], {"X-Request-Id": "e2e-read-1"}))
        # An unusable X-Request-Id is replaced by a KSUID, never an error (1.4).
        assert_currencies_ok(currencies(http, first["access_token"], {"X-Request-Id": "not valid!"}))
        other = logged_in(http, bystander)

        # No or a malformed Authorization header (3.5, 15.1).
        assert_unauthorized(checked(http.get("/api/v1/currencies")), "Authorization header required")
        assert_unauthorized(
            checked(http.get("/api/v1/currencies", headers={"Authorization": "Basic abc"})), "Invalid token"
        )
        # Token types never cross (3.5 check 5, 3.4).
        assert_unauthorized(currencies(http, first["refresh_token"]), "Invalid token")
        assert_unauthorized(refresh(http, first["access_token"]), "Invalid refresh token")

        # Refresh rotates; the access token issued with the rotated refresh token stays valid (3.4).
        second = assert_token_pair(refresh(http, first["refresh_token"]), client["client_id"])
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        assert_currencies_ok(currencies(http, second["access_token"]))
        assert_currencies_ok(currencies(http, first["access_token"]))

        # Reuse of the rotated refresh token: 401, and the whole family is revoked, newest pair included.
        assert_unauthorized(refresh(http, first["refresh_token"]), "Invalid refresh token")
        assert_unauthorized(currencies(http, second["access_token"]), "Invalid token")
        assert_unauthorized(currencies(http, first["access_token"]), "Invalid token")
        assert_unauthorized(refresh(http, second["refresh_token"]), "Invalid refresh token")

        # A new login starts a new, unaffected family.
        third = logged_in(http, client)
        assert_currencies_ok(currencies(http, third["access_token"]))

        # Logout revokes every token of the client, including the one used to log out (3.6).
        assert_logged_out(logout(http, third["access_token"]))
        assert_unauthorized(currencies(http, third["access_token"]), "Invalid token")
        assert_unauthorized(logout(http, third["access_token"]), "Invalid token")
        assert_unauthorized(refresh(http, third["refresh_token"]), "Invalid refresh token")

        # Another client's tokens are never affected.
        assert_currencies_ok(currencies(http, other["access_token"]))

        # A login after the logout (even within the same second) works.
        fourth = logged_in(http, client)
        assert_currencies_ok(currencies(http, fourth["access_token"]))

        # Wrong secret and unknown key are indistinguishable (3.3).
        assert_unauthorized(login(http, client["api_key"], client["api_secret"] + "x"), "Invalid credentials")
        assert_unauthorized(login(http, "ock_" + "0" * 32, client["api_secret"]), "Invalid credentials")


# -- 2. serve --demo on an empty database -------------------------------------------------------


def demo_credentials(stdout):
    assert stdout.count(DEMO_BANNER) == 1, stdout
    lines = stdout.splitlines()
    start = lines.index(DEMO_BANNER)
    key, secret = DEMO_KEY_LINE.search(stdout), DEMO_SECRET_LINE.search(stdout)
    assert key and secret, stdout
    assert lines[start + 1] == key.group(0) and lines[start + 2] == secret.group(0)
    return key.group(1), secret.group(1)


def generated_key_file(database_url, cwd):
    prefix = "sqlite:///"
    if database_url.startswith(prefix):
        return Path(database_url[len(prefix) :] + ".keys")
    return Path(cwd) / "octopus.keys"


def test_serve_demo_on_empty_database(env, fresh_database, tmp_path):
    # No keys and no pepper: both are generated into a key file on first start (contract 14).
    demo_env = dict(
        env,
        OCTOPUS_DATABASE_URL=fresh_database("demo"),
        OCTOPUS_JWT_KEYS=None,
        OCTOPUS_SECRET_PEPPER=None,
        OCTOPUS_KEY_FILE=None,
    )
    work = tmp_path / "cwd"
    work.mkdir()
    server = LiveServer(demo_env, tmp_path / "logs", "--demo", cwd=work, name="demo")

    with server:
        key, secret = demo_credentials(server.stdout)
        with server.client() as http:
            tokens = assert_token_pair(login(http, key, secret), client_id=None)
            demo = {"api_key": key, "api_secret": secret, "client_id": tokens["client_id"]}
            assert_currencies_ok(currencies(http, tokens["access_token"]))
            # Default currency USD, and PREPAID wallets USD 10,000 and EUR 10,000 (contract 16.1).
            wallets = http.get("/api/v1/wallets", headers={"Authorization": f"Bearer {tokens['access_token']}"})
            assert [(w["currency_id"], w["amount"], w["type"]) for w in wallets.json()] == [
                (2, 10000, "PREPAID"),
                (1, 10000, "PREPAID"),
            ]
            for wallet, code in zip(wallets.json(), ("EUR", "USD"), strict=True):
                assert f"  wallet {wallet['id']}: {code} 10,000 PREPAID" in server.stdout.splitlines()
            rotated = assert_token_pair(refresh(http, tokens["refresh_token"]), demo["client_id"])
            assert_currencies_ok(currencies(http, rotated["access_token"]))
            assert_logged_out(logout(http, rotated["access_token"]))
            assert_unauthorized(currencies(http, rotated["access_token"]), "Invalid token")
            assert_unauthorized(refresh(http, rotated["refresh_token"]), "Invalid refresh token")
            # Kept across the restart below: the generated keys must be reused, not regenerated.
            survivor = logged_in(http, demo)
    first_stdout, first_stderr = server.stdout, server.stderr

    key_file = generated_key_file(demo_env["OCTOPUS_DATABASE_URL"], work)
    assert key_file.is_file(), "the generated keys were not persisted"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_material = json.loads(key_file.read_text())

    # A second start on the same database creates nobody and prints no credentials.
    with server:
        assert DEMO_BANNER not in server.stdout
        with server.client() as http:
            assert_currencies_ok(currencies(http, survivor["access_token"]))
            again = logged_in(http, demo)
            assert_logged_out(logout(http, again["access_token"]))
    second_stdout, second_stderr = server.stdout, server.stderr

    assert cli_json(demo_env, "client", "list", "--json", cwd=work) == [
        {
            "client_id": demo["client_id"],
            "name": "demo",
            "api_key": key,
            "ip_whitelist": [],
            "features": ALL_FEATURES,
            "is_active": True,
            "default_currency": "USD",
            "bulk_limit": 100,
        }
    ]
    # The demo catalogue came with it (contract 16.1, 17.3).
    assert len(cli_json(demo_env, "catalog", "export", "--json", cwd=work)["vouchers"]) == 27

    # The secret is shown once, on stdout, and never logged; generated keys are never shown at all.
    assert first_stdout.count(secret) == 1
    assert not DEMO_KEY_LINE.search(second_stdout) and not DEMO_SECRET_LINE.search(second_stdout)
    for text in (first_stderr, second_stdout, second_stderr):
        assert secret not in text
    for text in (first_stdout, first_stderr, second_stdout, second_stderr):
        assert key_material["jwt_secret"] not in text
        assert key_material["pepper"] not in text


def test_plain_serve_creates_no_client(env, fresh_database, tmp_path):
    plain_env = dict(
        env,
        OCTOPUS_DATABASE_URL=fresh_database("plain"),
        OCTOPUS_JWT_KEYS=None,
        OCTOPUS_SECRET_PEPPER=None,
        OCTOPUS_KEY_FILE=None,
    )
    work = tmp_path / "cwd"
    work.mkdir()
    with LiveServer(plain_env, tmp_path / "logs", cwd=work, name="plain") as server:
        assert DEMO_BANNER not in server.stdout
        with server.client() as http:
            # Migrated: reference data exists, but nobody can log in.
            assert_unauthorized(login(http, "ock_" + "0" * 32, "x" * 43), "Invalid credentials")
    assert cli_json(plain_env, "client", "list", "--json", cwd=work) == []


# -- 3. access token expiry ---------------------------------------------------------------------


def test_expired_access_token(env, logs):
    with LiveServer(dict(env, OCTOPUS_ACCESS_TOKEN_TTL="2"), logs, name="short-ttl") as server:
        client = create_client(env)
        with server.client() as http:
            tokens = logged_in(http, client)
            expires_at = epoch(tokens["access_expires_at"])
            assert expires_at - epoch(tokens["refresh_expires_at"]) < 0
            assert_currencies_ok(currencies(http, tokens["access_token"]))

            # Leeway 0: the token is expired from its `exp` second on (3.5 check 6).
            time.sleep(max(0.0, expires_at - time.time()) + 0.2)
            expired = currencies(http, tokens["access_token"])
            assert_unauthorized(expired, "Token expired")
            assert expired.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE
            assert_unauthorized(logout(http, tokens["access_token"]), "Token expired")

            # The refresh token outlives it and yields a fresh, working access token.
            renewed = assert_token_pair(refresh(http, tokens["refresh_token"]), client["client_id"])
            assert epoch(renewed["access_expires_at"]) > expires_at
            assert_currencies_ok(currencies(http, renewed["access_token"]))


# -- 4. concurrent refreshes of one token --------------------------------------------------------


def refresh_race(server, refresh_tokens, racers):
    """Present each refresh token in turn from `racers` threads at once: each thread keeps its own
    connection, opened beforehand, and a barrier releases the requests of a round together.
    Returns, per token, the list of its `racers` responses."""
    barrier = threading.Barrier(racers)

    def racer(_):
        responses = []
        try:
            with server.client() as http:
                assert http.get("/auth/login").status_code == 405  # connected before the race
                for token in refresh_tokens:
                    barrier.wait(timeout=30)
                    responses.append(http.post("/auth/refresh", json={"refresh_token": token}))
        except BaseException:
            barrier.abort()
            raise
        return responses

    with ThreadPoolExecutor(max_workers=racers) as pool:
        per_racer = list(pool.map(racer, range(racers)))
    return [[responses[index] for responses in per_racer] for index in range(len(refresh_tokens))]


@pytest.mark.parametrize(
    "racers, rounds",
    [
        # The case. A single race rarely overlaps two handlers, so it is run repeatedly.
        (32, 12),
        # Two racers overlap most often, and then the loser is the only one who can revoke the
        # winner's new pair (with more racers, a later one sees the token used anyway).
        (2, 12),
    ],
)
def test_concurrent_refreshes_have_one_winner_and_revoke_the_family(server, env, racers, rounds):
    client = create_client(env)
    with server.client() as http:
        families = [logged_in(http, client) for _ in range(rounds)]
    races = refresh_race(server, [family["refresh_token"] for family in families], racers)

    winners = []
    for responses in races:
        statuses = sorted(checked(response).status_code for response in responses)
        assert statuses == [200] + [401] * (racers - 1), statuses
        winner = next(response for response in responses if response.status_code == 200)
        winners.append(assert_token_pair(winner, client["client_id"]))
        for response in responses:
            if response is not winner:
                assert_unauthorized(response, "Invalid refresh token")

    # A concurrent duplicate counts as reuse (3.4): each family is revoked, the winner's new pair too.
    with server.client() as http:
        for family, new in zip(families, winners, strict=True):
            assert_unauthorized(currencies(http, new["access_token"]), "Invalid token")
            assert_unauthorized(refresh(http, new["refresh_token"]), "Invalid refresh token")
            assert_unauthorized(currencies(http, family["access_token"]), "Invalid token")
        # Only those families: the client can log in again.
        assert_currencies_ok(currencies(http, logged_in(http, client)["access_token"]))


# -- 5. restart ---------------------------------------------------------------------------------


def test_token_state_survives_a_restart(env, logs):
    kept, revoked = create_client(env), create_client(env)
    server = LiveServer(env, logs, name="restart")
    with server:
        with server.client() as http:
            live = logged_in(http, kept)
            gone = logged_in(http, revoked)
            assert_logged_out(logout(http, gone["access_token"]))
            rotated_from = logged_in(http, kept)
            rotated = assert_token_pair(refresh(http, rotated_from["refresh_token"]), kept["client_id"])
        first_pid = server.pid

    with server:
        assert server.pid != first_pid
        with server.client() as http:
            # Issued before the restart: still accepted.
            assert_currencies_ok(currencies(http, live["access_token"]))
            assert_currencies_ok(currencies(http, rotated["access_token"]))
            # Revoked before the restart: still rejected.
            assert_unauthorized(currencies(http, gone["access_token"]), "Invalid token")
            assert_unauthorized(refresh(http, gone["refresh_token"]), "Invalid refresh token")
            # Refreshes and rotations recorded before the restart still count.
            assert_token_pair(refresh(http, live["refresh_token"]), kept["client_id"])
            assert_unauthorized(refresh(http, rotated_from["refresh_token"]), "Invalid refresh token")
            assert_unauthorized(currencies(http, rotated["access_token"]), "Invalid token")
            # ...and that reuse revoked only its own family.
            assert_currencies_ok(currencies(http, live["access_token"]))


# -- 6. X-Forwarded-For ---------------------------------------------------------------------------


def test_spoofed_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(env, logs):
    client = create_client(env, ips=["203.0.113.0/24"])
    untrusted = LiveServer(env, logs, name="no-proxies")
    trusted = LiveServer(dict(env, OCTOPUS_TRUSTED_PROXIES="127.0.0.1/32"), logs, name="proxy")
    spoof = {"X-Forwarded-For": "203.0.113.7"}
    try:
        for live in (untrusted.launch(), trusted.launch()):
            live.wait_ready()

        with untrusted.client() as http:
            # The peer is 127.0.0.1 and no proxy is trusted: the header changes nothing (3.7).
            assert_forbidden(login(http, client["api_key"], client["api_secret"], spoof))
            assert_forbidden(login(http, client["api_key"], client["api_secret"]))
            # Identification comes first: a wrong secret is 401, not 403.
            assert_unauthorized(login(http, client["api_key"], "wrong", spoof), "Invalid credentials")

        with trusted.client() as http:
            # 127.0.0.1 is a trusted proxy: the right-most untrusted hop is the caller.
            tokens = logged_in(http, client, spoof)
            assert_currencies_ok(currencies(http, tokens["access_token"], spoof))
            chained = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7, 127.0.0.1"}
            assert_currencies_ok(currencies(http, tokens["access_token"], chained))
            # A left-most (client-written) entry never wins over the right-most untrusted hop.
            assert_forbidden(currencies(http, tokens["access_token"], {"X-Forwarded-For": "203.0.113.7, 198.51.100.9"}))
            assert_forbidden(currencies(http, tokens["access_token"], {"X-Forwarded-For": "not-an-ip"}))
            assert_forbidden(currencies(http, tokens["access_token"]))

        with untrusted.client() as http:
            # The same valid tokens, spoofed through the server that trusts nobody.
            assert_forbidden(currencies(http, tokens["access_token"], spoof))
            # A 403 on refresh consumes nothing (3.4)...
            assert_forbidden(refresh(http, tokens["refresh_token"], spoof))

        with trusted.client() as http:
            # ...so the refresh token still rotates, and its family was not revoked.
            assert_token_pair(refresh(http, tokens["refresh_token"], spoof), client["client_id"])
            assert_currencies_ok(currencies(http, tokens["access_token"], spoof))
    finally:
        untrusted.stop()
        trusted.stop()


# -- 7. several worker processes ------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to tell workers apart")
def test_logout_is_effective_in_every_worker(env, logs):
    client = create_client(env)
    with LiveServer(env, logs, workers=2, name="workers") as server:
        workers = set(server.process_tree()) - {server.pid}

        def fresh_request(send):
            """Send one request over a new connection; (response, pid of the worker that served it)."""
            with server.client() as http:
                response = send(http)
                return response, server.serving_pid(client_port_of(response))

        def over_fresh_connections(send, minimum=8, attempts=200):
            """Repeat `send` on new connections until each worker has served at least two."""
            served, responses = {}, []
            for _ in range(attempts):
                response, pid = fresh_request(send)
                assert pid in workers, (pid, workers)
                served[pid] = served.get(pid, 0) + 1
                responses.append(response)
                if len(responses) >= minimum and len(served) == 2 and min(served.values()) >= 2:
                    return responses
            pytest.fail(f"fresh connections never reached both workers: {served}")

        tokens = assert_token_pair(
            fresh_request(lambda http: login(http, client["api_key"], client["api_secret"]))[0], client["client_id"]
        )
        # Both workers accept the token (and would have cached it, if they cached).
        for response in over_fresh_connections(lambda http: currencies(http, tokens["access_token"])):
            assert_currencies_ok(response)

        response, logout_worker = fresh_request(lambda http: logout(http, tokens["access_token"]))
        assert_logged_out(response)

        # Immediately, on whichever worker: the token is dead.
        for response in over_fresh_connections(lambda http: currencies(http, tokens["access_token"])):
            assert_unauthorized(response, "Invalid token")
        for response in over_fresh_connections(lambda http: refresh(http, tokens["refresh_token"]), minimum=4):
            assert_unauthorized(response, "Invalid refresh token")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to tell workers apart")
def test_rate_limits_are_shared_by_every_worker(env, logs):
    """Counters live in the database: two workers enforce one limit, not one each (contract 10)."""
    client = create_client(env)
    limited = dict(env, OCTOPUS_RATE_LIMIT_PROFILE="sandbox", OCTOPUS_RATE_LIMITS="login=5")
    with LiveServer(limited, logs, workers=2, name="shared-limits") as server:
        statuses, served_by = [], set()
        # The kernel deals new connections to the workers as it likes: keep asking (the limit only
        # grows the run of 429s) until both have answered.
        while len(statuses) < 12 or (len(served_by) < 2 and len(statuses) < 200):
            with server.client() as http:
                response = login(http, client["api_key"], "wrong-secret")
                statuses.append(response.status_code)
                served_by.add(server.serving_pid(client_port_of(response)))
        assert len(served_by) == 2, "both workers must have answered for this test to mean anything"
        assert statuses == [401] * 5 + [429] * (len(statuses) - 5), statuses
        assert_error(
            response,
            429,
            "TooManyRequestsError",
            "TOO_MANY_REQUESTS",
            f"Rate limit exceeded. Retry after {response.headers['retry-after']} seconds.",
        )


def test_oversized_headers_never_become_a_server_error(server):
    """uvicorn refuses what it cannot parse; the app refuses the rest; neither answers 5xx."""
    with server.client() as http:
        for headers in (
            {"X-Padding": "a" * 200_000},
            {"Authorization": "Bearer " + "a" * 60_000},
            {f"X-H{n}": "v" for n in range(500)},
        ):
            try:
                response = http.get("/api/v1/currencies", headers=headers)
            except httpx.HTTPError:
                continue  # the server closed the connection: refused, not failed
            assert response.status_code < 500, (response.status_code, response.text[:200])


@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda pid: ())(0)) < 2, reason="needs Linux and two CPUs")
@pytest.mark.parametrize("workers", [1, 2])
def test_workers_are_pinned_to_cpus_of_their_own(env, logs, workers):
    client = create_client(env)
    cpus = sorted(os.sched_getaffinity(0))
    with LiveServer({**env, "OCTOPUS_WORKER_CPUS": "auto"}, logs, workers=workers, name=f"pinned-{workers}") as server:
        pinned = sorted(
            cpu
            for pid in server.process_tree()
            for cpu in os.sched_getaffinity(pid)
            if len(os.sched_getaffinity(pid)) == 1
        )
        assert pinned == cpus[:workers]
        with server.client() as http:
            assert_token_pair(login(http, client["api_key"], client["api_secret"]), client["client_id"])
