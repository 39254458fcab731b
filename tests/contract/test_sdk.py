"""Generated SDKs against a real server: the document a live `octopus-cards serve` serves at
`GET /openapi.json` goes through two client generators, and each generated client drives
login -> GET /api/v1/currencies -> refresh -> logout (-> the logged-out token refused) over HTTP.

* Python: `openapi-python-client` (the `test` extra) writes a package into a temporary directory;
  the test imports it from there and calls its operation modules.
* TypeScript: `@hey-api/openapi-ts` (package.json, installed by `npm ci`) writes a fetch client;
  `tsc` type-checks and compiles it with a small script (flow.ts) that Node 20 runs with its
  built-in `fetch`. The script prints what it saw as one JSON line; the test checks that.

Nothing here works around the generators: whatever in the document makes one stumble is fixed in
openapi/openapi.yaml. The client code calls operations by the names the generators derive from
the operationIds (`auth.login` -> `auth_login` / `authLogin`) and
does not depend on the names of generated model classes.
"""

import importlib
import json
import os
import secrets
import subprocess
import sys
import time
import typing
from datetime import datetime
from pathlib import Path

import pytest

from support import REPO
from support.live_server import LiveServer, cli_json, console_script
from support.node import NODE_ENV, npx

pytestmark = pytest.mark.e2e

GENERATOR_TIMEOUT = 120  # seconds; each generator takes a few seconds here (budget: < 60 s)
NODE_TIMEOUT = 60
PY_PACKAGE = "octopus_cards_sdk"
JWT_PREFIX = "eyJhbGciOiJIUzI1NiIs"
LOGGED_OUT = "Successfully logged out"

# The operations the flow drives, by operationId (`<tag>.<function>`, see openapi.yaml).
LOGIN, REFRESH, LOGOUT, CURRENCIES = (
    "auth.login",
    "auth.refresh",
    "auth.logout",
    "reference.list_currencies",
)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    with LiveServer(env, tmp_path_factory.mktemp("sdk-server-logs"), name="sdk") as live:
        yield live


@pytest.fixture(scope="module")
def served_document(server, tmp_path_factory):
    """The document as the server serves it, saved for the generators."""
    with server.client() as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["openapi"] == "3.0.3"
    path = tmp_path_factory.mktemp("served") / "openapi.json"
    path.write_text(json.dumps(document, indent=2))
    return path


@pytest.fixture(scope="module")
def currencies(server):
    """GET /api/v1/currencies as plain HTTP sees it, to compare the SDKs' results with."""
    key, secret = provision(server)
    with server.client() as http:
        login = http.post("/auth/login", json={"username": key, "password": secret})
        assert login.status_code == 200, login.text
        token = login.json()["data"]["access_token"]
        listed = http.get("/api/v1/currencies", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
        http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert listed.json(), "the migrated database has no active currency"
    return listed.json()


def provision(server):
    """A new client through the operator CLI (every feature, empty allowlist): (key, secret)."""
    created = cli_json(
        server.settings,
        "client",
        "create",
        "--name",
        f"sdk-{secrets.token_hex(4)}",
        "--json",
        "--feature",
        "vouchers",
        "--feature",
        "topups",
        "--feature",
        "esim",
    )
    return created["api_key"], created["api_secret"]


def run_tool(args, *, cwd, timeout, env=None, what):
    started = time.monotonic()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, (
        f"{what} failed ({done.returncode}) after {elapsed:.1f} s:\n{done.stdout}\n{done.stderr}"
    )
    assert elapsed < 60, f"{what} took {elapsed:.1f} s (budget 60 s)"
    return done


# -- Python: openapi-python-client --------------------------------------------------------------


def generator_command():
    """`openapi-python-client` of the interpreter running the tests."""
    return console_script("openapi-python-client")


@pytest.fixture
def python_sdk(served_document, tmp_path):
    """The generated package, imported from a temporary directory (and forgotten afterwards)."""
    root = tmp_path / "python-sdk"
    root.mkdir()
    # The post-generation hooks run `ruff` from the same environment.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    done = run_tool(
        [
            generator_command(),
            "generate",
            "--path",
            str(served_document),
            "--output-path",
            str(root / PY_PACKAGE),
            "--meta",
            "none",
        ],
        cwd=tmp_path,
        timeout=GENERATOR_TIMEOUT,
        env=env,
        what="openapi-python-client generate",
    )
    # The generator reports what it could not generate as warnings but still succeeds.
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PY_PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == PY_PACKAGE]:
            del sys.modules[name]


def operation_module(sdk, tag, operation_id):
    """`auth.login` (tag auth) -> the module `<sdk>.api.auth.auth_login`."""
    return importlib.import_module(f"{sdk.__name__}.api.{tag}.{operation_id.replace('.', '_')}")


def body_model(module):
    """The generated model class of an operation's request body."""
    return typing.get_type_hints(module.sync_detailed)["body"]


def test_python_sdk_drives_login_currencies_refresh_logout(python_sdk, server, currencies):
    sdk = python_sdk
    login, refresh, logout = (operation_module(sdk, "auth", op) for op in (LOGIN, REFRESH, LOGOUT))
    list_currencies = operation_module(sdk, "reference", CURRENCIES)
    key, secret = provision(server)
    # trust_env=False: the generated client must talk to 127.0.0.1, never to a proxy.
    options = {"base_url": server.base_url, "raise_on_unexpected_status": True, "httpx_args": {"trust_env": False}}

    with sdk.Client(**options) as anonymous:
        logged_in = login.sync_detailed(client=anonymous, body=body_model(login)(username=key, password=secret))
    assert logged_in.status_code == 200, logged_in.content
    assert logged_in.headers["Cache-Control"] == "no-store"
    first = logged_in.parsed.data
    assert logged_in.parsed.success is True
    assert first.access_token.startswith(JWT_PREFIX) and first.refresh_token.startswith(JWT_PREFIX)
    assert isinstance(first.access_expires_at, datetime) and isinstance(first.refresh_expires_at, datetime)
    assert first.access_expires_at < first.refresh_expires_at
    assert isinstance(first.client_id, int)

    with sdk.AuthenticatedClient(token=first.access_token, **options) as authenticated:
        listed = list_currencies.sync_detailed(client=authenticated)
    assert listed.status_code == 200, listed.content
    assert [item.to_dict() for item in listed.parsed] == currencies
    assert all(isinstance(item.precision, int) for item in listed.parsed)

    with sdk.Client(**options) as anonymous:
        refreshed = refresh.sync_detailed(client=anonymous, body=body_model(refresh)(refresh_token=first.refresh_token))
    assert refreshed.status_code == 200, refreshed.content
    second = refreshed.parsed.data
    assert second.client_id == first.client_id
    assert {second.access_token, second.refresh_token}.isdisjoint({first.access_token, first.refresh_token})

    with sdk.AuthenticatedClient(token=second.access_token, **options) as authenticated:
        logged_out = logout.sync_detailed(client=authenticated)
        assert logged_out.status_code == 200, logged_out.content
        assert logged_out.parsed.success is True
        assert logged_out.parsed.data.message == LOGGED_OUT  # a str enum member
        # Logout revoked every token of the client: the error envelope parses as documented.
        refused = list_currencies.sync_detailed(client=authenticated)
    assert refused.status_code == 401, refused.content
    assert refused.parsed.error.to_dict() == {
        "name": "UnauthorizedError",
        "code": "UNAUTHORIZED",
        "message": "Invalid token",
    }
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'

    # A second refresh of the first refresh token is reuse: documented 401, parsed as the envelope.
    with sdk.Client(**options) as anonymous:
        reused = refresh.sync_detailed(client=anonymous, body=body_model(refresh)(refresh_token=first.refresh_token))
    assert reused.status_code == 401
    assert reused.parsed.error.message == "Invalid refresh token"


# -- TypeScript: @hey-api/openapi-ts + tsc + node ------------------------------------------------

FLOW_TS = r"""
import { client } from './sdk/client.gen';
import {
  authLogin,
  authLogout,
  authRefresh,
  referenceListCurrencies,
} from './sdk/sdk.gen';

// No @types/node here: the little of Node this script uses.
declare const process: {
  env: Record<string, string | undefined>;
  exitCode?: number;
  stdout: { write(text: string): void };
};

function check(condition: unknown, message: string): asserts condition {
  if (!condition) {
    throw new Error(message);
  }
}

async function main(): Promise<void> {
  const { OCTOPUS_BASE_URL, OCTOPUS_API_KEY, OCTOPUS_API_SECRET } = process.env;
  check(OCTOPUS_BASE_URL && OCTOPUS_API_KEY && OCTOPUS_API_SECRET, 'settings missing');
  client.setConfig({ baseUrl: OCTOPUS_BASE_URL });

  const login = await authLogin({
    body: { username: OCTOPUS_API_KEY, password: OCTOPUS_API_SECRET },
  });
  check(login.response.status === 200 && login.data, `login: ${login.response.status}`);
  const first = login.data.data;

  const listed = await referenceListCurrencies({ auth: first.access_token });
  check(listed.response.status === 200 && listed.data, `currencies: ${listed.response.status}`);
  const currencies = listed.data.map((item) => ({
    id: item.id,
    name: item.name,
    currency: item.currency,
    precision: item.precision,
  }));

  const refreshed = await authRefresh({ body: { refresh_token: first.refresh_token } });
  check(refreshed.response.status === 200 && refreshed.data, `refresh: ${refreshed.response.status}`);
  const second = refreshed.data.data;

  const logout = await authLogout({ auth: second.access_token });
  check(logout.response.status === 200 && logout.data, `logout: ${logout.response.status}`);

  const refused = await referenceListCurrencies({ auth: second.access_token });
  check(refused.error, `after logout: ${refused.response.status}`);

  process.stdout.write(JSON.stringify({
    login: { status: login.response.status, success: login.data.success, data: first },
    currencies,
    refresh: { status: refreshed.response.status, data: second },
    logout: { status: logout.response.status, body: logout.data },
    afterLogout: {
      status: refused.response.status,
      challenge: refused.response.headers.get('WWW-Authenticate'),
      error: refused.error.error,
    },
  }) + '\n');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
"""

TSCONFIG = {
    "compilerOptions": {
        "target": "ES2022",
        "module": "commonjs",
        "moduleResolution": "node10",
        "lib": ["ES2022", "DOM", "DOM.Iterable"],
        "types": [],
        "strict": True,
        "skipLibCheck": True,
        "rootDir": ".",
        "outDir": "out",
    },
    "include": ["flow.ts", "sdk/**/*.ts"],
}


@pytest.mark.usefixtures("require_node_tools")
def test_typescript_sdk_drives_login_currencies_refresh_logout(served_document, server, currencies, tmp_path):
    work = tmp_path / "ts-sdk"
    work.mkdir()
    run_tool(
        npx(
            "openapi-ts",
            "--input",
            str(served_document),
            "--output",
            str(work / "sdk"),
            "--client",
            "@hey-api/client-fetch",
            "--no-log-file",
        ),
        cwd=REPO,
        timeout=GENERATOR_TIMEOUT,
        env=NODE_ENV,
        what="openapi-ts",
    )
    (work / "flow.ts").write_text(FLOW_TS)
    (work / "tsconfig.json").write_text(json.dumps(TSCONFIG, indent=2))
    run_tool(
        npx("tsc", "--project", str(work / "tsconfig.json")),
        cwd=REPO,
        timeout=GENERATOR_TIMEOUT,
        env=NODE_ENV,
        what="tsc",
    )

    key, secret = provision(server)
    node_env = {**NODE_ENV, "OCTOPUS_BASE_URL": server.base_url, "OCTOPUS_API_KEY": key, "OCTOPUS_API_SECRET": secret}
    done = run_tool(
        ["node", str(work / "out" / "flow.js")], cwd=work, timeout=NODE_TIMEOUT, env=node_env, what="node flow.js"
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    login = seen["login"]
    assert login["status"] == 200 and login["success"] is True
    first = login["data"]
    assert first["access_token"].startswith(JWT_PREFIX) and first["refresh_token"].startswith(JWT_PREFIX)
    assert first["access_expires_at"] < first["refresh_expires_at"]
    assert seen["currencies"] == currencies
    second = seen["refresh"]["data"]
    assert seen["refresh"]["status"] == 200 and second["client_id"] == first["client_id"]
    assert {second["access_token"], second["refresh_token"]}.isdisjoint({first["access_token"], first["refresh_token"]})
    assert seen["logout"] == {"status": 200, "body": {"success": True, "data": {"message": LOGGED_OUT}}}
    assert seen["afterLogout"] == {
        "status": 401,
        "challenge": 'Bearer error="invalid_token"',
        "error": {"name": "UnauthorizedError", "code": "UNAUTHORIZED", "message": "Invalid token"},
    }
