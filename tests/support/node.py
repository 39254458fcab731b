"""The repository's pinned node tools (package.json, package-lock.json): the spec linters and the
TypeScript SDK generator, run from ./node_modules and never downloaded at run time."""

import json
import os

from support import REPO

NPM_CI_TIMEOUT = 600

# Quiet, offline-friendly node tools: no telemetry, no update checks, no colours in the output.
NODE_ENV = {
    **os.environ,
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    "NO_COLOR": "1",
    "FORCE_COLOR": "0",
    "npm_config_update_notifier": "false",
    "npm_config_fund": "false",
    "npm_config_audit": "false",
}


def npx(*args):
    """A command running a tool from the repository's node_modules, never downloading one."""
    return ["npx", "--no-install", *args]


def node_tools_current():
    """Whether node_modules holds exactly the versions package-lock.json pins."""
    lock = json.loads((REPO / "package-lock.json").read_text())
    for name in lock["packages"][""]["devDependencies"]:
        installed = REPO / "node_modules" / name / "package.json"
        pinned = lock["packages"].get(f"node_modules/{name}", {}).get("version")
        if not installed.exists() or json.loads(installed.read_text()).get("version") != pinned:
            return False
    return True
