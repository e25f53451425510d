"""One-line errors for the pipeline's stages and commands."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """Bad input, params or environment: shown to the user as one line, exit code 1."""


def exit_code(command: Callable[[], int | None]) -> int:
    """Run ``command``; an expected failure is one line on stderr and exit code 1 (130 for Ctrl-C)."""
    try:
        return command() or 0
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` as a script: a failure ends the process with :func:`exit_code`'s code."""
    if code := exit_code(main):
        sys.exit(code)
