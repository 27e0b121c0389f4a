"""Run a snippet of Python inside a sandbox: used by the test suite to probe the confinement.

The code comes from the worker's own tests, never from an upload; it runs after exactly the same
rlimits, seccomp filter and output redirection as a model does. `OUT` is its output directory.
"""

from __future__ import annotations

from worker.sandbox.errors import ModelRejected
from worker.sandbox.limits import SandboxLimits
from worker.sandbox.pool import get_pool
from worker.sandbox.process import Outcome


def run_payload(code: str, limits: SandboxLimits | None = None) -> tuple[Outcome, dict[str, bytes]]:
    """The outcome and the files the payload left in its output dir (name -> bytes, ≤ 1 MiB each)."""
    limits = limits or SandboxLimits(wall_time_s=30)
    pool = get_pool()
    threads = limits.threads or 1
    box = pool.take("cpu", threads, limits.max_file_bytes)
    try:
        outcome = box.run({"python": code}, limits)
        files = {}
        for name in box.output_names():
            try:
                data = box.read_output(name, 1 << 20)
            except ModelRejected:
                continue              # replaced or grown since it was listed, or too big
            if data is not None:
                files[name] = data
    finally:
        box.close()
        pool.refill("cpu", threads, limits.max_file_bytes)
    return outcome, files
