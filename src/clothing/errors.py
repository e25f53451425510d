"""One-line errors for the pipeline's stages and commands."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """Bad input, params or environment: shown to the user as one line, exit code 1."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; turn expected failures into one line and a non-zero exit."""
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
