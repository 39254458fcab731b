"""Fixtures of the contract layer."""

import shutil
import subprocess

import pytest

from support import REPO
from support.node import NODE_ENV, NPM_CI_TIMEOUT, node_tools_current


@pytest.fixture(scope="session")
def require_node_tools():
    """The pinned linters and generators in node_modules: `npm ci` unless they already are."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("Node.js and npm are needed for the spec linters and the TypeScript SDK")
    if not node_tools_current():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=REPO,
            env=NODE_ENV,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        assert node_tools_current(), "npm ci did not install the versions package-lock.json pins"
