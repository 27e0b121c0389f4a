"""How a sandbox process is launched on this machine: the command line and its environment.

Modes, best first (chosen once per worker process by `detect_mode`):

- "bwrap":   bubblewrap with new pid/net/ipc/uts/mount namespaces, a read-only view of the
             Python install, the venv and the guest code, the job's inputs read-only, its output
             dir writable, tmpfs /tmp. As root, bwrap runs privileged (no user namespace) and
             drops to `nobody` with setpriv inside; otherwise it uses an unprivileged user namespace.
- "fallback": root without bubblewrap: `unshare --net --ipc --uts` (no network at all) and setpriv
             to `nobody`; no mount or pid namespace (see docs/models.md for what that gives up).
- "none":    neither: model files are refused (SandboxUnavailable) rather than run unconfined.

All modes add, inside the guest before any upload is read: rlimits, a seccomp filter
(no sockets, no setsid/setpgid, no new namespaces, no ptrace), the parent-death signal.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

NOBODY_UID = 65534
NOBODY_GID = 65534
GUEST_ROOT = Path("/sandbox")            # inside bwrap: code/, in/, out/
_GUEST_DIR = Path(__file__).resolve().parent / "guest"
_REFERENCE_MODELS_DIR = Path(__file__).resolve().parents[2] / "reference_models"
_TMPFS_BYTES = 256 * 1024 * 1024         # /tmp inside bwrap is RAM: keep it small


@dataclass(frozen=True)
class JobDirs:
    """Host paths of one sandbox's private directory."""

    root: Path
    inputs: Path        # read-only to the guest: model file and inputs
    outputs: Path       # writable by the guest: scores, result, logs

    @classmethod
    def create(cls, parent: Path) -> "JobDirs":
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="job-", dir=parent))
        os.chmod(root, 0o711)                 # traversable, not listable
        inputs, outputs = root / "in", root / "out"
        inputs.mkdir(mode=0o755)
        outputs.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(outputs, NOBODY_UID, NOBODY_GID)
        return cls(root, inputs, outputs)


@dataclass(frozen=True)
class GuestPaths:
    """Where the guest sees its code, inputs and outputs."""

    code: Path
    inputs: Path
    outputs: Path


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    guest: GuestPaths


def _run_quiet(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_skip_bwrap = False


def prefer_fallback(skip_bwrap: bool) -> None:
    """Skip bubblewrap (settings `sandbox_mode=fallback`, to exercise the fallback; it never upgrades)."""
    global _skip_bwrap
    if skip_bwrap != _skip_bwrap:
        _skip_bwrap = skip_bwrap
        detect_mode.cache_clear()


@functools.cache
def detect_mode() -> str:
    """'bwrap', 'fallback' or 'none' for this machine; probed once (a few ms)."""
    root = os.geteuid() == 0
    bwrap = shutil.which("bwrap")
    if bwrap and not _skip_bwrap:
        probe = [bwrap, *_namespace_flags(root), "--ro-bind", "/", "/", "--proc", "/proc",
                 "--dev", "/dev", "true"]
        if _run_quiet(probe):
            return "bwrap"
    if root and shutil.which("unshare") and shutil.which("setpriv"):
        if _run_quiet(["unshare", "--net", "--ipc", "--uts", "true"]):
            return "fallback"
    return "none"


def _namespace_flags(root: bool) -> list[str]:
    common = ["--die-with-parent", "--new-session"]
    if root:
        # Privileged bwrap: no user namespace, so the guest's uid is really `nobody` (kernel-wide
        # RLIMIT_NPROC accounting, no root-owned file access); setpriv inside drops to it.
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", *common]
    return ["--unshare-all", "--disable-userns", *common]


def _ancestors(path: Path) -> list[Path]:
    """Parents of `path`, outermost first, without '/'."""
    return [p for p in reversed(path.parents) if p != Path("/")]


def _ro_bind_with_parents(src: Path, dest: Path, made: set[Path]) -> list[str]:
    # bwrap copies the mode of missing parents (e.g. 0700 /root); make them 0755 so `nobody`
    # can reach the bound tree.
    args: list[str] = []
    for parent in _ancestors(dest):
        if parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", str(parent)]
    return args + ["--ro-bind", str(src), str(dest)]


def _python_trees() -> list[Path]:
    """Directories the interpreter and its packages live in (venv and base install)."""
    trees = {Path(sys.prefix), Path(os.path.realpath(sys.base_prefix)),
             Path(os.path.realpath(sys.executable)).parent.parent}
    under_usr = [t for t in trees if t == Path("/usr") or Path("/usr") in t.parents]
    return sorted(t for t in trees if t not in under_usr)


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime"):
        args += ["--ro-bind-try", f, f]
    return args


def _gpu_binds(physical: str | None) -> list[str]:
    """Device nodes for one GPU (or all when the index is a UUID), plus the control nodes."""
    if physical is None:
        return []
    nodes = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
    if physical.isdigit():
        nodes.append(f"/dev/nvidia{physical}")
    else:
        nodes += [str(p) for p in Path("/dev").glob("nvidia[0-9]*")]
    args: list[str] = []
    for node in nodes:
        args += ["--dev-bind-try", node, node]
    return args + ["--ro-bind-try", "/sys", "/sys", "--ro-bind-try", "/proc/driver/nvidia", "/proc/driver/nvidia"]


def guest_env(threads: int, cuda_visible: str) -> dict[str, str]:
    """The guest's whole environment: nothing from the worker (no secrets, no settings)."""
    n = str(threads)
    return {
        "PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
        "CUDA_VISIBLE_DEVICES": cuda_visible, "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "TORCH_HOME": "/tmp/torch", "XDG_CACHE_HOME": "/tmp/cache",
    }


def _python_argv(code_dir: Path) -> list[str]:
    # -I: ignore PYTHON* variables, user site and the cwd; -B: write no .pyc into the code binds.
    bootstrap = (f"import sys; sys.path.insert(0, {str(code_dir)!r}); "
                 "from heldout_guest.main import run_and_exit; run_and_exit()")
    return [sys.executable, "-I", "-B", "-c", bootstrap]


def _setpriv_argv() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def fallback_code_dir(runtime: Path) -> Path:
    """A directory holding just the guest package and reference_models (as symlinks)."""
    code = runtime / "code"
    if not code.exists():
        code.mkdir(mode=0o755)
        (code / "heldout_guest").symlink_to(_GUEST_DIR)
        (code / "reference_models").symlink_to(_REFERENCE_MODELS_DIR)
    return code


def build_launch(mode: str, dirs: JobDirs, runtime: Path, threads: int,
                 cuda_visible: str, gpu_physical: str | None) -> Launch:
    env = guest_env(threads, cuda_visible)
    root = os.geteuid() == 0
    if mode == "bwrap":
        guest = GuestPaths(GUEST_ROOT / "code", GUEST_ROOT / "in", GUEST_ROOT / "out")
        made: set[Path] = set()
        argv = [shutil.which("bwrap") or "bwrap", *_namespace_flags(root), "--clearenv"]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv += _system_binds()
        # The private /tmp first: binds made after it land on top of it, so a venv or checkout
        # that lives under /tmp on the host is still visible (a tmpfs mounted later hid it).
        argv += ["--proc", "/proc", "--dev", "/dev",
                 "--perms", "1777", "--size", str(_TMPFS_BYTES), "--tmpfs", "/tmp",
                 "--perms", "1777", "--size", str(16 * 1024 * 1024), "--tmpfs", "/dev/shm"]
        made.update({Path("/tmp"), Path("/dev"), Path("/proc")})   # keep their own modes
        for tree in _python_trees():
            argv += _ro_bind_with_parents(tree, tree, made)
        argv += _ro_bind_with_parents(_GUEST_DIR, guest.code / "heldout_guest", made)
        argv += _ro_bind_with_parents(_REFERENCE_MODELS_DIR, guest.code / "reference_models", made)
        argv += ["--ro-bind", str(dirs.inputs), str(guest.inputs),
                 "--bind", str(dirs.outputs), str(guest.outputs),
                 *_gpu_binds(gpu_physical), "--chdir", "/tmp"]
        if root:
            argv += _setpriv_argv()
        argv += _python_argv(guest.code)
        return Launch(argv, {"PATH": "/usr/bin:/bin"}, guest)
    if mode == "fallback":
        guest = GuestPaths(fallback_code_dir(runtime), dirs.inputs, dirs.outputs)
        argv = ["unshare", "--net", "--ipc", "--uts", "--", *_setpriv_argv(), *_python_argv(guest.code)]
        return Launch(argv, env, guest)
    from worker.sandbox.errors import SandboxUnavailable

    raise SandboxUnavailable(
        "no sandbox available: install bubblewrap with user namespaces enabled, or run the worker as root")
