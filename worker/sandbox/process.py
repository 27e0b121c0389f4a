"""One sandbox process: start it, hand it one job, watch its limits, collect its result.

Each process serves exactly one job and then dies: nothing a model does can outlive its own
evaluation or touch the next one.
"""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from worker.sandbox import outputs, proctree
from worker.sandbox.errors import ModelRejected, SandboxUnavailable
from worker.sandbox.isolation import NOBODY_UID, JobDirs, build_launch
from worker.sandbox.limits import SandboxLimits, format_bytes

_RESULT_MAX_BYTES = 1 << 20
_MAX_OUTPUT_FILES = 64    # files and directories at any depth of the output directory
_POLL_S = 0.1            # watchdog period for the first seconds; RLIMIT_DATA catches faster growth on CPU
_POLL_SLOW_S = 0.25      # afterwards: each poll reads /proc (~1–5 ms), keep it off the CPUs we measure


@dataclass
class Outcome:
    ok: bool
    reason: str | None                 # student-facing reason when not ok
    limit: str | None = None           # the resource limit that stopped it: time, memory, cpu, output
    result: dict = field(default_factory=dict)
    returncode: int | None = None
    peak_tree_memory: int = 0
    wall_s: float = 0.0


def cuda_assignment(device: str) -> tuple[str, str | None, str]:
    """(CUDA_VISIBLE_DEVICES for the guest, physical id for /dev binds, the guest's device)."""
    if not device.startswith("cuda"):
        return "", None, "cpu"
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    physical = visible[index] if index < len(visible) else str(index)
    return physical, physical, "cuda:0"


# Signals the kernel sends when a limit set on the guest is hit (SIGKILL: CPU hard limit or OOM).
_LIMIT_SIGNALS: dict[int, str] = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "output", signal.SIGKILL: "memory"}


def _signal_reason(sig: int, limits: SandboxLimits, cpu_s: float) -> str:
    if sig == signal.SIGXCPU:
        return f"used more than {cpu_s:g} s of CPU time"
    if sig == signal.SIGXFSZ:
        return f"tried to write a file larger than {format_bytes(limits.max_file_bytes)}"
    if sig == signal.SIGKILL:
        return (f"was killed by the system (CPU time over {cpu_s:g} s or memory over "
                f"{format_bytes(limits.memory_bytes)})")
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
    return f"the model process crashed ({name})"


class SandboxProcess:
    def __init__(self, runtime_dir: Path, mode: str, threads: int, device: str, output_bytes: int, *,
                 guest_script: Path | None = None):
        """`output_bytes`: what the guest may write to its output directory in all (under
        bubblewrap also the size of the tmpfs that directory is, so it holds by construction).
        `guest_script`: tests only, see isolation.build_launch; the worker never sets it."""
        self.mode, self.threads, self.device = mode, threads, device
        self.output_bytes = output_bytes
        self.dirs = JobDirs.create(runtime_dir)
        cuda_visible, physical, self.guest_device = cuda_assignment(device)
        self.launch = build_launch(mode, self.dirs, runtime_dir, threads, cuda_visible, physical,
                                   output_bytes=output_bytes, guest_script=guest_script)
        self._boot_log = self.dirs.root / "boot.log"
        # The guest's output directory, read only through this descriptor (see outputs.py), opened
        # before the guest starts so a failure here leaves no process behind. Under bubblewrap it is
        # a tmpfs inside the sandbox, reached once the guest is up.
        self._out_fd: int | None = None
        if mode != "bwrap":
            self._out_fd = os.open(self.dirs.outputs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with open(self._boot_log, "wb") as log:
                self.proc = subprocess.Popen(
                    self.launch.argv, env=self.launch.env, cwd=self.dirs.root,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                    start_new_session=True, close_fds=True)
        except BaseException:
            if self._out_fd is not None:
                os.close(self._out_fd)
            raise
        self.started = time.monotonic()
        self.ready_at: float | None = None
        self._pid_ns: int | None = None      # the guest's pid namespace (bwrap)
        self._ns_fd: int | None = None       # keeps that namespace's inode number from being reused
        self.leftover: list[int] | None = None   # processes still found after close() (should be [])
        self._pgid: int | None = self.proc.pid   # its process group (fallback: setsid is refused)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Block until the guest has imported torch; SandboxUnavailable if it cannot start."""
        if self.ready_at is not None:
            return
        deadline = self.started + timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while b"\n" not in buf:
            # Past the deadline still look once: a warm spare started long ago has been ready
            # (its line waiting in the pipe) for as long as the worker was idle.
            left = max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                self.close()
                raise SandboxUnavailable(f"sandbox did not start within {timeout:g} s")
            chunk = os.read(fd, 64)
            if not chunk:
                rc = self.proc.wait()
                tail = self._boot_log.read_text(errors="replace")[-2000:]
                self.close()
                raise SandboxUnavailable(f"sandbox failed to start (exit {rc}): {tail}")
            buf += chunk
        if buf.startswith(b"unavailable:"):
            self.close()
            reason = buf.decode(errors="replace").strip()[len("unavailable:"):].strip()
            raise SandboxUnavailable(f"the sandbox cannot confine models: {reason[:1000]}")
        if buf.strip() != b"ready":
            self.close()
            raise SandboxUnavailable(f"sandbox said {buf[:100]!r} instead of ready")
        self.ready_at = time.monotonic()
        own = proctree.pid_namespace(os.getpid())
        for pid in proctree.descendants(self.proc.pid):
            ns = proctree.pid_namespace(pid)
            if ns is not None and ns != own:
                # Namespace inode numbers are recycled once a namespace dies: hold it open so
                # matching by inode can never pick up a later sandbox's processes.
                try:
                    self._ns_fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue
                self._pid_ns = os.fstat(self._ns_fd).st_ino
                if self.mode == "bwrap":
                    self._open_guest_outputs(pid)
                break
        if self._out_fd is None:
            self.close()
            raise SandboxUnavailable("the sandbox's output directory could not be found")

    def _open_guest_outputs(self, pid: int) -> None:
        # Opened while only the guest's own code has run (the upload is not read yet). The open
        # descriptor keeps the tmpfs readable after the sandbox and its mount namespace are gone,
        # and the tmpfs is freed when it is closed.
        path = f"/proc/{pid}/root{self.launch.guest.outputs}"
        try:
            self._out_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            self.close()
            raise SandboxUnavailable(f"cannot open the sandbox's output directory: {err}") from None

    def _members(self) -> list[int]:
        return sorted(set(proctree.members(self._pid_ns, self._pgid)) | set(proctree.descendants(self.proc.pid)))

    def _terminate(self, timeout: float = 10.0) -> None:
        """SIGKILL every process of this sandbox and wait until none is left (zombies aside)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = [p for p in self._members() if p != self.proc.pid or self.proc.poll() is None]
            if not pids:
                return
            proctree.kill_all(pids)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.poll()
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)

    def _nproc_limit(self, limits: SandboxLimits) -> int:
        # RLIMIT_NPROC counts every task of the uid kernel-wide: allow what exists plus the quota.
        uid = NOBODY_UID if os.geteuid() == 0 else os.geteuid()
        return proctree.count_tasks_of_uid(uid) + limits.max_processes

    def _output_breach(self, limit: int) -> str | None:
        """The reason when the output tree, at any depth, is over its limits."""
        assert self._out_fd is not None
        used = outputs.usage(self._out_fd, _MAX_OUTPUT_FILES)
        if used.bytes > limit:
            return f"wrote more than {format_bytes(limit)} to its output directory"
        if used.entries > _MAX_OUTPUT_FILES:
            return f"created more than {_MAX_OUTPUT_FILES} files in its output directory"
        return None

    def run(self, job: dict, limits: SandboxLimits) -> Outcome:
        """Send `job` (paths as the guest sees them), enforce limits, return what happened."""
        self.wait_ready(limits.startup_timeout_s)
        cpu_s = limits.cpu_time_s if limits.cpu_time_s is not None else limits.wall_time_s * self.threads + 30
        job = {**job, "device": self.guest_device, "threads": self.threads, "out_dir": str(self.launch.guest.outputs),
               "limits": {"memory_bytes": limits.memory_bytes, "cpu_time_s": cpu_s,
                          "nproc": self._nproc_limit(limits), "max_file_bytes": limits.max_file_bytes,
                          "max_open_files": limits.max_open_files}}
        t0 = time.monotonic()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        reason, limit, peak = self._watch(t0, limits)
        rc = self.proc.returncode
        self._terminate()                       # stragglers: forked children, orphans
        outcome = Outcome(ok=False, reason=reason, limit=limit, returncode=rc, peak_tree_memory=peak,
                          wall_s=time.monotonic() - t0)
        if reason is not None:
            return outcome
        try:
            # Also after a clean exit: a guest may fill its output faster than the watchdog polls.
            outcome.reason = self._output_breach(limits.max_file_bytes)
            if outcome.reason is not None:
                outcome.limit = "output"
                return outcome
            outcome.result = self._read_result()
        except ModelRejected as exc:
            outcome.reason = str(exc)
            return outcome
        if outcome.result.get("kind") == "unconfined":
            raise SandboxUnavailable(str(outcome.result.get("message"))[:1000])
        if outcome.result.get("ok") is True and rc == 0:
            outcome.ok = True
            return outcome
        sig = -rc if rc is not None and rc < 0 else (rc - 128 if rc is not None and rc > 128 else 0)
        if not outcome.result and sig:
            outcome.reason, outcome.limit = _signal_reason(sig, limits, cpu_s), _LIMIT_SIGNALS.get(sig)
        elif outcome.result.get("kind") == "memory":
            outcome.reason, outcome.limit = f"exceeded {format_bytes(limits.memory_bytes)} of memory", "memory"
        elif outcome.result.get("message"):
            outcome.reason = str(outcome.result["message"])[:1000]
        else:
            outcome.reason = f"the model process exited with status {rc} without a result"
        return outcome

    def _watch(self, t0: float, limits: SandboxLimits) -> tuple[str | None, str | None, int]:
        deadline = t0 + limits.wall_time_s
        peak = 0
        while True:
            try:
                self.proc.wait(timeout=_POLL_S if time.monotonic() - t0 < 2.0 else _POLL_SLOW_S)
                return None, None, peak
            except subprocess.TimeoutExpired:
                pass
            reason = limit = None
            # Under a pid namespace orphans are re-parented to its init, so the tree is complete;
            # without one, the process group (which seccomp keeps them in) is.
            pids = (proctree.descendants(self.proc.pid) if self._pid_ns is not None
                    else proctree.members(None, self._pgid))
            mem = proctree.anon_memory_bytes(pids)
            peak = max(peak, mem)
            if time.monotonic() >= deadline:
                reason, limit = f"timed out after {limits.wall_time_s:g} s", "time"
            elif mem > limits.memory_bytes:
                reason, limit = f"exceeded {format_bytes(limits.memory_bytes)} of memory", "memory"
            elif (reason := self._output_breach(limits.max_file_bytes)) is not None:
                limit = "output"
            if reason is not None:
                self._terminate()
                self.proc.wait()
                return reason, limit, peak

    def _read_result(self) -> dict:
        """The guest's result.json ({} when missing or not JSON); ModelRejected when it is not a
        regular file of at most 1 MiB."""
        data = self.read_output("result.json", _RESULT_MAX_BYTES)
        if data is None:
            return {}
        try:
            result = json.loads(data)
        except (ValueError, RecursionError):  # nested thousands deep: as unreadable as bad JSON
            return {}
        return result if isinstance(result, dict) else {}

    def read_output(self, name: str, max_bytes: int) -> bytes | None:
        """A file the guest wrote (None if absent); ModelRejected if not a regular file or too big."""
        assert self._out_fd is not None
        return outputs.read_output(self._out_fd, name, max_bytes)

    def open_output(self, name: str, max_bytes: int) -> io.BufferedReader | None:
        """Like read_output, as an open file (for large outputs such as the scores)."""
        assert self._out_fd is not None
        return outputs.open_output(self._out_fd, name, max_bytes)

    def output_names(self) -> list[str]:
        """The regular files at the top of the guest's output directory."""
        assert self._out_fd is not None
        return outputs.regular_files(self._out_fd)

    def close(self) -> None:
        """Kill whatever is left and delete the private directory."""
        self._terminate()
        self.proc.wait()
        self.leftover = [p for p in self._members() if p != self.proc.pid]
        if self._ns_fd is not None:
            os.close(self._ns_fd)
            self._ns_fd = None
            self._pid_ns = None
        if self._out_fd is not None:
            os.close(self._out_fd)          # under bubblewrap this frees the output tmpfs
            self._out_fd = None
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        shutil.rmtree(self.dirs.root, ignore_errors=True)
