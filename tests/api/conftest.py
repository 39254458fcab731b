"""Fixtures of the in-process tests of the API and the operator commands."""

import pytest

from octopus_cards import models
from octopus_cards.cli import main


@pytest.fixture
def cli(migrated, monkeypatch, capsys):
    """`octopus-cards ARGS...` in-process on the session database: (exit status, stdout, stderr)."""
    for name, value in migrated.items():
        monkeypatch.setenv(name, value)
    # The command runs in this process, already bound to the session database: binding the models to
    # a new database object, as a command's own process does, would pull the connections from under
    # the background work of the apps under test (a supplier call in flight, say).
    monkeypatch.setattr(models, "connect", lambda url: None)

    def run(*argv):
        try:
            code = main(list(argv))
        except SystemExit as exited:  # argparse refusing the arguments
            code = exited.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
