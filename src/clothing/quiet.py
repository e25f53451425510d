"""TensorFlow's and LiteRT's native start-up lines, silenced unless CLOTHING_VERBOSE is set.

Importing TensorFlow prints absl's "All log messages before absl::InitializeLog()" and
the oneDNN notice (twice, even with TF_CPP_MIN_LOG_LEVEL=2), and LiteRT prints "Created
TensorFlow Lite XNNPACK delegate" when it allocates tensors: C++ writing straight to file
descriptor 2, out of Python's reach. While they start, that descriptor points at
/dev/null; Python's own errors still reach the terminal once it is restored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

VERBOSE = "CLOTHING_VERBOSE"


@contextmanager
def native_logs_silenced() -> Iterator[None]:
    if os.environ.get(VERBOSE, "") not in ("", "0"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
