"""Peak Python heap of a call, for tests that bound what hostile input may cost."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable


def peak_bytes_of(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
