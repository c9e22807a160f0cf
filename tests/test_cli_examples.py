"""Every command's --help has an example, and every example parses against the command it shows."""

from __future__ import annotations

import shlex

import pytest

from ksef_async.cli._commands import app
from ksef_async.cli._examples import EXAMPLES, command_paths


def test_every_command_has_an_example() -> None:
    paths = command_paths(app)
    assert "send" in paths
    assert "token create" in paths
    assert sorted(set(paths) - set(EXAMPLES)) == []
    assert sorted(set(EXAMPLES) - set(paths)) == []
    for path in paths:
        command = app
        for part in path.split():
            command = command[part]
        assert command.help_epilogue is not None
        assert f"ksef-async {path}" in command.help_epilogue


@pytest.mark.parametrize(("path", "line"), [(p, line) for p, lines in EXAMPLES.items() for line in lines])
def test_example_parses(path: str, line: str) -> None:
    tokens = shlex.split(line.split("   ", maxsplit=1)[0])  # text after three spaces is a note
    assert tokens[: len(path.split())] == path.split()
    command, bound, ignored = app.parse_args(tokens, exit_on_error=False, print_error=False)
    assert command.__name__ != "help_print"
    assert bound is not None
    assert not ignored
