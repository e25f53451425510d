"""What this machine offers a timing: the cores this process may use, and which CPU it is.

Timings differ 2-3x between CPU kinds (AVX2 only; AVX-512 with VNNI), so every timing the
pipeline writes carries :func:`cpu_description` beside it.
"""

from __future__ import annotations

import math
import os
import platform
import resource
from pathlib import Path

# Vector extensions that change which kernels oneDNN and XNNPACK pick.
VECTOR_FLAGS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "VNNI", "avx_vnni": "AVX-VNNI"}


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def cpu_description() -> dict[str, object]:
    """The CPU's model name, its vector extensions, and the cores this process may use."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    extensions = [name for flag, name in VECTOR_FLAGS.items() if flag in flags]
    return {"model": model, "extensions": extensions, "usable_cores": usable_cores()}


def peak_memory_mb() -> float:
    """The most resident memory this process has used so far (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
