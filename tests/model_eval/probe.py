"""Run test code inside a real sandbox to probe its confinement (namespaces, seccomp, rlimits).

The sandbox is the worker's own (same launch, same confinement); only its entry point is the
test-owned probe_guest.py, passed as `guest_script`, which production never sets.
"""

from __future__ import annotations

from pathlib import Path

from worker.sandbox.errors import ModelRejected
from worker.sandbox.limits import SandboxLimits
from worker.sandbox.pool import SandboxPool, get_pool
from worker.sandbox.process import Outcome, SandboxProcess

PROBE_GUEST = Path(__file__).resolve().with_name("probe_guest.py")


def start_probe(limits: SandboxLimits, pool: SandboxPool | None = None) -> SandboxProcess:
    """A started sandbox (in `pool`'s runtime dir and mode; default the worker's) that runs the
    probe guest: send it {"probe": code} with run()."""
    pool = pool or get_pool()
    return SandboxProcess(pool.dir, pool.mode, limits.threads or 1, "cpu", limits.max_file_bytes,
                          guest_script=PROBE_GUEST)


def run_probe(code: str, limits: SandboxLimits | None = None) -> tuple[Outcome, dict[str, bytes]]:
    """The outcome of running `code` confined, and the files it left in its output dir
    (name -> bytes, ≤ 1 MiB each)."""
    limits = limits or SandboxLimits(wall_time_s=30)
    box = start_probe(limits)
    try:
        outcome = box.run({"probe": code}, limits)
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
    return outcome, files
