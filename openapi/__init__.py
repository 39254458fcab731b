"""The OpenAPI document: every route, schema, error and per-operation policy of the server."""

from importlib import resources

import yaml

DOCUMENT = "openapi.yaml"


def load_spec():
    return yaml.safe_load(resources.files(__name__).joinpath(DOCUMENT).read_text(encoding="utf-8"))
