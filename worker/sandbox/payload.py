"""Run a snippet of Python inside a sandbox: used by the test suite to probe the confinement.

The code comes from the worker's own tests, never from an upload; it runs after exactly the same
rlimits, seccomp filter and output redirection as a model does. `OUT` is its output directory.
"""

from __future__ import annotations

import os

from worker.sandbox.limits import SandboxLimits
from worker.sandbox.pool import get_pool
from worker.sandbox.process import Outcome


def run_payload(code: str, limits: SandboxLimits | None = None) -> tuple[Outcome, dict[str, bytes]]:
    """The outcome and the files the payload left in its output dir (name -> bytes, ≤ 1 MiB each)."""
    limits = limits or SandboxLimits(wall_time_s=30)
    pool = get_pool()
    threads = limits.threads or 1
    box = pool.take("cpu", threads)
    try:
        outcome = box.run({"python": code}, limits)
        files = {}
        for entry in os.scandir(box.dirs.outputs):
            if entry.is_file(follow_symlinks=False) and entry.stat().st_size <= 1 << 20:
                with open(entry.path, "rb") as f:
                    files[entry.name] = f.read()
    finally:
        box.close()
        pool.refill("cpu", threads)
    return outcome, files
