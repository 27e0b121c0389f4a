"""Resource limits of one sandbox run."""

from __future__ import annotations

from dataclasses import dataclass, replace

GiB = 1024 ** 3


@dataclass(frozen=True)
class SandboxLimits:
    wall_time_s: float = 300.0          # from job start to result; the task's model_time_limit_s
    memory_bytes: int = 4 * GiB         # anonymous memory of the whole tree (host RAM)
    cpu_time_s: float | None = None     # None: wall_time_s × threads + margin
    max_processes: int = 64             # tasks (processes + threads) the sandbox may add
    max_file_bytes: int = 4 * GiB       # per file written, and in total in the output dir
    max_open_files: int = 256
    threads: int | None = None          # torch intra-op threads; None: the CPUs we may use
    batch_size: int | None = None       # None: chosen from the input size, halved on OOM
    startup_timeout_s: float = 120.0    # cold start (interpreter + torch import), not the student's time

    def with_wall_time(self, seconds: float) -> "SandboxLimits":
        return replace(self, wall_time_s=seconds)


def format_bytes(n: int) -> str:
    """4294967296 -> '4 GiB', 1610612736 -> '1.5 GiB', 536870912 -> '512 MiB'."""
    for unit, size in (("GiB", GiB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"
