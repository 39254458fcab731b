"""The OpenAPI document, read from openapi/openapi.yaml (installed beside this package)."""
from pathlib import Path

import yaml

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.yaml"


def load_spec():
    return yaml.safe_load(SPEC_PATH.read_text())
