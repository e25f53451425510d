"""A deadline for the workers to find each other, kept by a small process of its own.

TensorFlow's multi-worker strategy waits for every worker without end, inside a native
call that holds Python's lock, so no thread of the waiting process can keep a deadline.
This watchdog (no TensorFlow: it starts in a blink) gets the deadline and the addresses;
if the worker has not said "joined" on the watchdog's stdin by then, it names the workers
that do not answer, as one line on stderr, and kills the worker. If the worker goes first,
its end of the pipe closes and the watchdog leaves quietly.

    python -m clothing.models.rendezvous PID TIMEOUT_S SELF_INDEX HOST:PORT ...
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys


def reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def missing_workers(workers: list[str], index: int) -> str:
    """The workers other than ``index`` that accept no connection, as ``worker i (host:port)``."""
    missing = [f"worker {i} ({address})" for i, address in enumerate(workers) if i != index and not reachable(address)]
    return ", ".join(missing) or "another worker (its port answers, but it did not join)"


def main(argv: list[str]) -> int:
    pid, timeout, index, workers = int(argv[0]), float(argv[1]), int(argv[2]), argv[3:]
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if ready:
        return 0  # "joined", or the worker ended (its pipe closed): nothing to do
    who = missing_workers(workers, index)
    print(f"error: train: {who} did not join within {timeout:g} s; no model written", file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)  # SIGTERM would not do: TensorFlow catches it and waits on
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
