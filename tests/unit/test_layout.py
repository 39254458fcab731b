"""The shape of the code and the package: what is installed, where policy lives, and that every
"contract N.N" the repository cites is a section of docs/contract.md."""

import importlib.metadata
import importlib.util
import json
import re

import pytest

from octopus_cards.openapi import DOCUMENT, load_spec

from support import REPO

CONTRACT = REPO / "docs" / "contract.md"
SECTION = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)[ .]", re.MULTILINE)
CITATION = re.compile(
    r"contract(?:'s)?\s+(?:sections?\s+)?(\d{1,2}(?:\.\d+)?(?:\s*(?:,|-|–|and)\s*\d{1,2}(?:\.\d+)?)*)\b", re.IGNORECASE
)
CITING = ("*.py", "*.md", "*.yaml", "*.toml", "*.ini", "*.lua")


@pytest.mark.parametrize("name", ["handlers", "models", "openapi"])
def test_only_octopus_cards_is_importable_of_ours(name):
    assert importlib.util.find_spec(name) is None, f"`import {name}` must fail: it belongs under octopus_cards"


def test_the_installed_distribution_holds_nothing_else_at_the_top():
    distribution = importlib.metadata.distribution("octopus-cards")
    direct_url = json.loads(distribution.read_text("direct_url.json") or "{}")
    if direct_url.get("dir_info", {}).get("editable"):
        pytest.skip("an editable install maps the checkout; tox checks the built wheel")
    tops = {file.parts[0] for file in distribution.files if file.parts[0] != ".."}
    assert tops == {"octopus_cards", f"octopus_cards-{distribution.version}.dist-info"}


def test_the_document_is_package_data():
    assert importlib.resources.files("octopus_cards.openapi").joinpath(DOCUMENT).is_file()
    assert load_spec()["openapi"] == "3.0.3"


def test_no_handler_checks_a_feature_by_hand():
    """Feature gates come from each operation's x-octopus-feature (octopus_cards/http/connexion_hooks.py)."""
    for module in (REPO / "handlers").glob("*.py"):
        text = module.read_text()
        assert "feature" not in text, f"{module.name} checks a feature itself"


def cited_sections(text):
    for match in CITATION.finditer(text):
        yield from re.findall(r"\d+(?:\.\d+)?", match.group(1))


def test_every_cited_contract_section_exists():
    sections = set(SECTION.findall(CONTRACT.read_text()))
    cited = {}
    for pattern in CITING:
        for path in REPO.glob(f"**/{pattern}"):
            if not {"node_modules", ".tox", ".git", ".ci", "docs"} & set(path.relative_to(REPO).parts):
                for number in cited_sections(path.read_text(errors="replace")):
                    cited.setdefault(number, []).append(str(path.relative_to(REPO)))
    assert len(cited) > 20, "the citation pattern no longer finds the code's references"
    missing = {number: files for number, files in cited.items() if number not in sections}
    assert not missing, f"cited but not in docs/contract.md: {missing}"


def test_the_readme_names_nothing_outside_the_repository():
    assert "../" not in (REPO / "README.md").read_text()
