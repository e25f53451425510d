"""What people run: ``clothing-classify`` (predict, serve) and the ``python -m clothing.commands.*`` tools."""

from __future__ import annotations

import argparse


def command_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` (a module docstring), as plain text: no ``literal`` marks."""
    return argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0].replace("``", ""))
