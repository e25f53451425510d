"""A deadline for the workers to find each other, kept by a small process of its own.

TensorFlow's multi-worker strategy waits for every worker without end, inside a native
call that holds Python's lock, so no thread of the waiting process can keep a deadline.
This watchdog (no TensorFlow: it starts in a blink) gets the deadline and the addresses;
if the worker has not said "joined" on the watchdog's stdin by then, it names the workers
that do not answer, as one line on stderr, and kills the worker. If the worker goes first,
its end of the pipe closes and the watchdog leaves quietly. A local chief also names its
own workers (``--local PID INDEX LOG``): one that ends before joining ends the wait at once.

    python -m clothing.models.rendezvous --pid PID --timeout S --index I HOST:PORT ... [--local PID INDEX LOG]
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path


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


def ended(pid: int) -> bool:
    """Has this process ended (gone, or a zombie its parent has not reaped yet)?"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in "ZX"
    except OSError:
        return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m clothing.models.rendezvous")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--local", nargs=3, action="append", default=[], metavar=("PID", "INDEX", "LOG"))
    parser.add_argument("workers", nargs="+")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sys.stdin], [], [], min(left, 0.5))[0]:
            return 0  # "joined", or the worker ended (its pipe closed): nothing to do
        for pid, index, log in args.local:
            if ended(int(pid)):
                name = f"worker {index} ({args.workers[int(index)]})"
                return give_up(args.pid, f"{name} ended before joining; no model written; its log: {log}")
    who = missing_workers(args.workers, args.index)
    return give_up(args.pid, f"{who} did not join within {args.timeout:g} s; no model written")


def give_up(pid: int, why: str) -> int:
    print(f"error: train: {why}", file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)  # SIGTERM would not do: TensorFlow catches it and waits on
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
