"""Try multi-worker training on one machine: run a command whose train stage starts N workers.

    python -m clothing.commands.workers 2 -- dvc repro train
    python -m clothing.commands.workers 2 --cores-per-worker 1 -- python stages/train.py
    python -m clothing.commands.workers 1 --cores-per-worker 1 -- python stages/train.py  # one core, for timing

The command runs as it would alone, with CLOTHING_LOCAL_WORKERS set: when train runs, it
becomes worker 0 (the chief, the only one that writes) and starts workers 1..N-1 on
127.0.0.1 ports, each pinned to its own cores, and stops them all when one fails
(clothing.models.distributed). On several machines, set TF_CONFIG on each instead
(docs/several-machines.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from clothing.errors import PipelineError, exit_code
from clothing.models.distributed import CORES_PER_WORKER, LOCAL_WORKERS, TIMEOUT, cores_per_worker


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m clothing.commands.workers", description=__doc__.splitlines()[0])
    parser.add_argument("workers", type=int, help="how many workers train runs as")
    parser.add_argument("--cores-per-worker", type=int, help="cores each worker is pinned to (default: shared out)")
    parser.add_argument("--timeout", type=float, help="seconds the workers may take to find each other (default 300)")
    parser.epilog = "then -- and the command, e.g. -- dvc repro train"
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args, command = parse_args(argv[:cut]), argv[cut + 1 :]
    if not command:
        raise PipelineError("workers: give the command after --, e.g. -- dvc repro train")
    each = cores_per_worker(args.workers, args.cores_per_worker)  # checked here, before the command's other stages run
    env = os.environ | {LOCAL_WORKERS: str(args.workers), CORES_PER_WORKER: str(each)}
    if args.timeout:
        env[TIMEOUT] = str(args.timeout)
    print(f"workers: {args.workers} x {each} cores: {' '.join(command)}", file=sys.stderr)
    try:
        return subprocess.run(command, env=env).returncode
    except FileNotFoundError:
        raise PipelineError(f"workers: no such command: {command[0]}") from None


if __name__ == "__main__":
    sys.exit(exit_code(main))
