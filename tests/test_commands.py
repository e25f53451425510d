"""Every command a person runs says what it does in plain text and exits 0 on --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Every module of clothing/commands that a person runs (it has a main), found, not listed.
COMMANDS = sorted(
    path.stem
    for path in (Path(__file__).resolve().parents[1] / "src/clothing/commands").glob("*.py")
    if "\ndef main(" in path.read_text()
)


def test_the_commands_are_found() -> None:
    assert {"cli", "compare", "crossval", "frontier", "loadtest", "params_doc", "preflight", "remote"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_plain_text(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"clothing.commands.{command}", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout and ":mod:" not in result.stdout
    description = result.stdout.split("\n\n")[1]  # argparse: usage, a blank line, the description
    assert len(description) > 20
