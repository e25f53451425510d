"""A bounded load test of a running ``clothing-classify serve``.

    python -m clothing.commands.loadtest http://127.0.0.1:8000 PHOTO... [--clients 4] [--requests 200]

``--clients`` threads, each with its own connection, send ``--requests`` POST /predict
calls in all (one photo each, the photos in turn), then stop. It prints requests per
second, the median and 99th-percentile latency, the errors, and the CPU they ran on:
compare figures only from one machine in one run.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from clothing.commands import command_parser
from clothing.errors import PipelineError, exit_code
from clothing.system import cpu_description


def run_load(url: str, photos: list[Path], clients: int, requests: int) -> dict:
    """The load's figures, and every answer per photo (to check they all agree)."""
    payloads = [(photo.name, photo.read_bytes()) for photo in photos]
    local = threading.local()

    def one(index: int) -> tuple[str, float, int, str]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        name, data = payloads[index % len(payloads)]
        started = time.perf_counter()
        response = local.client.post("/predict", files={"files": (name, data)})
        return name, time.perf_counter() - started, response.status_code, response.text

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(requests)))
    seconds = time.perf_counter() - started
    latencies = np.array([latency for _, latency, _, _ in results]) * 1000
    answers: dict[str, set[str]] = {}
    for name, _, status, text in results:
        if status == 200:
            answers.setdefault(name, set()).add(json.dumps(json.loads(text)[0]["predictions"]))
    return {
        "requests": requests,
        "clients": clients,
        "errors": sum(status != 200 for _, _, status, _ in results),
        "seconds": round(seconds, 2),
        "requests_per_s": round(requests / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "cpu": cpu_description(),
        "answers": {name: sorted(texts) for name, texts in answers.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.loadtest", __doc__)
    parser.add_argument("url")
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)
    return exit_code(lambda: load(args.url, args.photos, args.clients, args.requests))


def load(url: str, photos: list[Path], clients: int, requests: int) -> int:
    try:
        report = run_load(url, photos, clients, requests)
    except (OSError, httpx.HTTPError) as error:
        raise PipelineError(str(error)) from None
    cpu = report["cpu"]
    print(
        f"{report['requests']} requests, {report['clients']} clients: {report['requests_per_s']} requests/s, "
        f"p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, {report['errors']} errors "
        f"({cpu['model']}, {'/'.join(cpu['extensions'])}, {cpu['usable_cores']} cores)"
    )
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
