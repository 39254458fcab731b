"""Spec quality: openapi/openapi.yaml lints clean under Redocly CLI (.redocly.yaml) and Spectral's
OpenAPI ruleset (.spectral.yaml), and every operation is documented the way clients and SDK
generators need: operationId bound to a handler, summary, description, tags, examples for
requests and responses, and the error responses it can produce.

Both linters come from the repository's own node_modules (package.json / package-lock.json pin
them), run through `npx --no-install`, so nothing is fetched at lint time. tox installs them with
`npm ci` before the suite runs; the `require_node_tools` fixture does the same when node_modules is
missing or out of date (a plain `pytest` in a fresh clone).
"""

import copy
import importlib
import json
import re
import subprocess

import pytest
import yaml

from octopus_cards.models import FEATURES
from octopus_cards.settings import RATE_LIMIT_CLASSES

from support import REPO
from support.node import NODE_ENV, npx

SPEC_PATH = REPO / "openapi" / "openapi.yaml"
REDOCLY_CONFIG = REPO / ".redocly.yaml"
SPECTRAL_RULESET = REPO / ".spectral.yaml"
LINT_TIMEOUT = 120
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ERROR_SCHEMA = "#/components/schemas/ErrorResponse"


def run_node_tool(args):
    return subprocess.run(
        args, cwd=REPO, env=NODE_ENV, capture_output=True, text=True, timeout=LINT_TIMEOUT, check=False
    )


def redocly(spec_path=None):
    """`redocly lint` with .redocly.yaml: the list of problems it reports (any severity).

    Redocly CLI 2 looks for `redocly.yaml` only, so the config is named explicitly; without a
    path it lints the `apis` the config declares (openapi/openapi.yaml)."""
    target = [str(spec_path)] if spec_path else []
    done = run_node_tool(npx("redocly", "lint", *target, "--config", str(REDOCLY_CONFIG), "--format", "json"))
    try:
        report = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"redocly lint printed no report ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    assert "No configurations were provided" not in done.stderr, done.stderr
    assert "Unused rules" not in done.stderr + done.stdout, done.stderr
    problems = [
        f"{problem['severity']} {problem['ruleId']} at "
        f"{', '.join(location.get('pointer', '?') for location in problem.get('location', []))}: "
        f"{problem['message']}"
        for problem in report["problems"]
    ]
    if not problems:
        assert done.returncode == 0, f"redocly lint exited {done.returncode}:\n{done.stderr}"
    return problems


def spectral(spec_path, tmp_path):
    """`spectral lint` with .spectral.yaml: the list of results it reports (any severity)."""
    output = tmp_path / "spectral.json"
    done = run_node_tool(
        npx(
            "spectral",
            "lint",
            str(spec_path),
            "--ruleset",
            str(SPECTRAL_RULESET),
            "--format",
            "json",
            "--output",
            str(output),
            "--fail-severity",
            "hint",
        )
    )
    if not output.exists():
        pytest.fail(f"spectral lint wrote no report ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    results = json.loads(output.read_text() or "[]")
    severities = {0: "error", 1: "warning", 2: "info", 3: "hint"}
    problems = [
        f"{severities.get(result['severity'], result['severity'])} {result['code']} at "
        f"#/{'/'.join(str(part) for part in result['path'])}: {result['message']}"
        for result in results
    ]
    if not problems:
        assert done.returncode == 0, f"spectral lint exited {done.returncode}:\n{done.stderr}"
    return problems


# -- the linters --------------------------------------------------------------------------------


def test_redocly_lint_is_clean(require_node_tools):
    problems = redocly()
    assert not problems, "redocly lint --config .redocly.yaml:\n" + "\n".join(problems)


def test_spectral_lint_is_clean(require_node_tools, tmp_path):
    problems = spectral(SPEC_PATH, tmp_path)
    assert not problems, "spectral lint --ruleset .spectral.yaml:\n" + "\n".join(problems)


def test_linters_catch_an_undocumented_operation(require_node_tools, tmp_path):
    """The configs are really read and strict: an operation without a description, a summary
    and an example that breaks its schema is reported by both linters."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    broken = copy.deepcopy(spec)
    operation = broken["paths"]["/api/v1/currencies"]["get"]
    del operation["description"], operation["summary"]
    example = operation["responses"]["200"]["content"]["application/json"]["example"]
    example[0]["precision"] = "two"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))

    redocly_rules = {problem.split()[1] for problem in redocly(path)}
    assert {"operation-description", "operation-summary", "no-invalid-media-type-examples"} <= redocly_rules
    spectral_rules = {problem.split()[1] for problem in spectral(path, tmp_path)}
    assert {"operation-description", "oas3-valid-media-example"} <= spectral_rules


def test_lint_configs_justify_every_disabled_rule():
    """A rule may be turned off only with the reason in a comment right above it."""
    spectral_config = yaml.safe_load(SPECTRAL_RULESET.read_text())
    assert spectral_config["extends"] == ["spectral:oas"]
    assert "recommended-strict" in yaml.safe_load(REDOCLY_CONFIG.read_text())["extends"]
    for config in (REDOCLY_CONFIG, SPECTRAL_RULESET):
        lines = config.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.fullmatch(r"\s+[\w/-]+:\s*(off|false)\s*(#.*)?", line):
                comment = lines[number - 1].strip() if number else ""
                assert comment.startswith("#") and len(comment) > 20, (
                    f"{config.name}:{number + 1}: `{line.strip()}` has no justifying comment above it"
                )


# -- what every operation documents -------------------------------------------------------------


def load_spec():
    return yaml.safe_load(SPEC_PATH.read_text())


def resolve(spec, node):
    """Follow a local `$ref` (repeatedly)."""
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def operations(spec):
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                parameters = [resolve(spec, p) for p in item.get("parameters", []) + item[method].get("parameters", [])]
                yield path, method, item[method], parameters


SPEC = load_spec()
OPERATIONS = list(operations(SPEC))
IDS = [f"{method.upper()} {path}" for path, method, _, _ in OPERATIONS]


def has_example(media):
    return "example" in media or bool(media.get("examples"))


@pytest.mark.parametrize(("path", "method", "operation", "parameters"), OPERATIONS, ids=IDS)
def test_operation_is_documented(path, method, operation, parameters):
    spec = SPEC
    where = f"{method.upper()} {path}"

    # operationId: `<tag>.<function>`, bound to that function of octopus_cards.handlers.<tag>.
    operation_id = operation.get("operationId", "")
    assert re.fullmatch(r"[a-z_]+\.[a-z_]+", operation_id), f"{where}: operationId {operation_id!r}"
    module, function = operation_id.split(".")
    assert operation.get("tags") == [module], f"{where}: one tag, the handler module's name"
    handlers = importlib.import_module(f"octopus_cards.handlers.{module}")
    assert callable(getattr(handlers, function, None)), f"{where}: {operation_id} is not a handler"

    # Policy (contract 10.1, 1.10): every API operation names its rate-limit class; a feature
    # gate, where there is one, names a feature. The server refuses to start otherwise.
    if path.startswith("/api/v1/"):
        assert operation.get("x-octopus-rate-limit") in RATE_LIMIT_CLASSES, f"{where}: x-octopus-rate-limit"
    assert operation.get("x-octopus-feature", "vouchers") in FEATURES, f"{where}: x-octopus-feature"

    assert operation.get("summary", "").strip(), f"{where}: no summary"
    assert operation.get("description", "").strip(), f"{where}: no description"
    defined_tags = {tag["name"] for tag in spec["tags"]}
    assert operation.get("tags") and set(operation["tags"]) <= defined_tags, f"{where}: tags {operation.get('tags')}"

    for parameter in parameters:
        assert "example" in parameter or parameter.get("examples"), (
            f"{where}: parameter {parameter['name']} has no example"
        )
    body = resolve(spec, operation.get("requestBody"))
    if body:
        for media_type, media in body["content"].items():
            assert has_example(media), f"{where}: request body {media_type} has no example"

    responses = {status: resolve(spec, response) for status, response in operation["responses"].items()}
    assert any(str(status).startswith("2") for status in responses), f"{where}: no success response"
    for status, response in responses.items():
        assert response.get("description", "").strip(), f"{where}: response {status} has no description"
        for media_type, media in response.get("content", {}).items():
            assert has_example(media), f"{where}: response {status} {media_type} has no example"
        if status == "default" or str(status)[0] in "45":
            # Every error is the contract's envelope (2.1), described by one named schema.
            assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_SCHEMA}, (
                f"{where}: response {status} is not the error envelope"
            )

    # The errors the contract says each kind of operation can produce (1.10, 3.3-3.6, 10.2).
    documented = set(responses)
    expected = {"default"}
    security = operation.get("security", spec.get("security", []))
    if security or path.startswith("/auth/"):
        expected |= {"401", "403", "429"}  # a client is identified: credentials, token, allowlist, quota
    if body:
        expected |= {"400", "415"}  # JSON syntax and schema; Content-Type
    if any(parameter["in"] == "path" for parameter in parameters):
        expected |= {"400", "404"}  # `Invalid <thing> ID`; `<Thing> not found`
    if "feature" in operation.get("description", ""):
        expected |= {"400"}  # INVALID_FEATURE
    assert expected <= documented, f"{where}: error responses {sorted(expected - documented)} are not documented"


def test_error_examples_are_catalogue_entries():
    """Every example of the error envelope is an entry of the contract's catalogue (2.2)."""
    codes = {  # name -> code (tests/contract/test_schemathesis.py checks the messages the server sends)
        "SyntaxError": {"SYNTAX_ERROR"},
        "ValidationException": {"VALIDATION_FAILURE"},
        "BadRequestError": {"BAD_REQUEST", "INVALID_FEATURE"},
        "UnauthorizedError": {"UNAUTHORIZED"},
        "ForbiddenError": {"FORBIDDEN"},
        "NotFoundError": {"NOT_FOUND"},
        "MethodNotAllowedError": {"METHOD_NOT_ALLOWED"},
        "PayloadTooLargeError": {"PAYLOAD_TOO_LARGE"},
        "UnsupportedMediaTypeError": {"UNSUPPORTED_MEDIA_TYPE"},
        "TooManyRequestsError": {"TOO_MANY_REQUESTS"},
        "InternalServerError": {"INTERNAL_SERVER_ERROR"},
        "ServiceUnavailableError": {"SERVICE_UNAVAILABLE"},
    }
    for name, response in SPEC["components"]["responses"].items():
        media = response.get("content", {}).get("application/json", {})
        if media.get("schema") != {"$ref": ERROR_SCHEMA}:
            continue
        error = media["example"]["error"]
        assert set(error) == {"name", "code", "message"}, name
        assert error["code"] in codes.get(error["name"], ()), f"{name}: {error}"
