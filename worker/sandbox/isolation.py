"""How a sandbox process is launched on this machine: the command line and its environment.

Modes (chosen once per worker process by `sandbox_status`, from the setting `sandbox_mode`):

- "bwrap":   (`auto`) bubblewrap with new pid/net/ipc/uts/mount namespaces, a read-only view of
             the Python install, the venv and the guest code, the job's inputs read-only, its
             output dir a size-limited tmpfs, tmpfs /tmp. As root, bwrap runs privileged (no user
             namespace) and drops to `nobody` with setpriv inside; otherwise it uses an
             unprivileged user namespace.
- "fallback": (`fallback`, only when configured: never picked on its own) root without bubblewrap:
             `unshare --net --ipc --uts` (no network at all) and setpriv to `nobody`; no mount or
             pid namespace (see docs/models.md for what that gives up).
- "none":    the configured mode cannot work here: model files are refused (SandboxUnavailable,
             with the reason) rather than run with less confinement than configured.

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

from worker.sandbox.limits import SandboxLimits

NOBODY_UID = 65534
NOBODY_GID = 65534
GUEST_ROOT = Path("/sandbox")            # inside bwrap: code/, in/, out/
_GUEST_DIR = Path(__file__).resolve().parent / "guest"
_REFERENCE_MODELS_DIR = Path(__file__).resolve().parents[2] / "reference_models"
_TMPFS_BYTES = 256 * 1024 * 1024         # /tmp inside bwrap is RAM: keep it small
# The output tmpfs is this much larger than the output limit, so that going over the limit is
# seen (and reported as such) before the guest meets "no space left".
_OUTPUT_TMPFS_SLACK = 1024 * 1024


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
        # Explicit modes: the service runs with umask 077, and the guest's uid must read its inputs.
        inputs.mkdir()
        os.chmod(inputs, 0o755)
        outputs.mkdir()
        os.chmod(outputs, 0o700)
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


def _probe(argv: list[str]) -> str | None:
    """None when `argv` succeeds, else what went wrong (its last line of stderr)."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    if done.returncode == 0:
        return None
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return (lines[-1][:300] if lines else "") or f"exit status {done.returncode}"


@dataclass(frozen=True)
class SandboxStatus:
    mode: str           # "bwrap", "fallback" or "none"
    reason: str         # for operators: what this mode is, or why models cannot run


_fallback_configured = False


def prefer_fallback(skip_bwrap: bool) -> None:
    """Whether the fallback was configured (settings `sandbox_mode=fallback`); `auto` never picks it."""
    global _fallback_configured
    if skip_bwrap != _fallback_configured:
        _fallback_configured = skip_bwrap
        sandbox_status.cache_clear()


@functools.cache
def sandbox_status() -> SandboxStatus:
    """The mode this worker process runs models in, and why; probed once (a few ms)."""
    return _probe_fallback() if _fallback_configured else _probe_bwrap()


def _probe_bwrap() -> SandboxStatus:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return SandboxStatus("none", "bubblewrap (bwrap) is not installed; install it "
                                     "(HELDOUT_SANDBOX_MODE=fallback is a weaker choice for root, see docs/models.md)")
    root = os.geteuid() == 0
    failure = _probe([bwrap, *_namespace_flags(root), "--ro-bind", "/", "/", "--proc", "/proc",
                      "--dev", "/dev", "true"])
    if failure is not None:
        return SandboxStatus("none", f"bubblewrap cannot create its namespaces here ({failure}); allow "
                                     "user namespaces, or in Docker see Dockerfile.gpu; "
                                     "HELDOUT_SANDBOX_MODE=fallback is a weaker choice for root, see docs/models.md")
    who = "as root, models run as nobody" if root else "in a user namespace"
    return SandboxStatus("bwrap", f"bubblewrap {who}")


def _probe_fallback() -> SandboxStatus:
    if os.geteuid() != 0:
        return SandboxStatus("none", "HELDOUT_SANDBOX_MODE=fallback needs the worker to run as root")
    missing = [tool for tool in ("unshare", "setpriv") if shutil.which(tool) is None]
    if missing:
        return SandboxStatus("none", f"HELDOUT_SANDBOX_MODE=fallback needs {' and '.join(missing)} (util-linux)")
    failure = _probe(["unshare", "--net", "--ipc", "--uts", "true"])
    if failure is not None:
        return SandboxStatus("none", f"HELDOUT_SANDBOX_MODE=fallback: unshare failed ({failure})")
    return SandboxStatus("fallback", "HELDOUT_SANDBOX_MODE=fallback: unshare + setpriv to nobody, "
                                     "no mount or pid namespace (see docs/models.md)")


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
    # bwrap would create /etc 0700 for these binds: the guest (nobody) needs ld.so.cache to find
    # libseccomp by name.
    args += ["--perms", "0755", "--dir", "/etc"]
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


def _python_argv(code_dir: Path, guest_script: Path | None = None) -> list[str]:
    """The guest's command line: heldout_guest.main, or `guest_script` (its path as the guest sees it)."""
    # -I: ignore PYTHON* variables, user site and the cwd; -B: write no .pyc into the code binds.
    bootstrap = f"import sys; sys.path.insert(0, {str(code_dir)!r}); "
    if guest_script is None:
        bootstrap += "from heldout_guest.main import run_and_exit; run_and_exit()"
    else:
        bootstrap += f"import runpy; runpy.run_path({str(guest_script)!r}, run_name='__main__')"
    return [sys.executable, "-I", "-B", "-c", bootstrap]


def setpriv_argv() -> list[str]:
    """The command prefix that drops root to the guest's user (nobody), as the fallback does."""
    return ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def fallback_code_dir(runtime: Path) -> Path:
    """A directory holding just the guest package and reference_models (as symlinks)."""
    code = runtime / "code"
    if not code.exists():
        code.mkdir()
        os.chmod(code, 0o755)                 # explicit: the service's umask is 077
        (code / "heldout_guest").symlink_to(_GUEST_DIR)
        (code / "reference_models").symlink_to(_REFERENCE_MODELS_DIR)
    return code


def build_launch(mode: str, dirs: JobDirs, runtime: Path, threads: int, cuda_visible: str,
                 gpu_physical: str | None, *, output_bytes: int = SandboxLimits.max_file_bytes,
                 guest_script: Path | None = None) -> Launch:
    """`guest_script`: a host Python file the sandbox runs instead of heldout_guest.main, in the
    same sandbox (tests only: their confinement probe, which confines itself through
    heldout_guest.main.serve as the real guest does). The worker never sets it."""
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
        script = None
        if guest_script is not None:
            script = GUEST_ROOT / "entry.py"
            argv += ["--ro-bind", str(guest_script.resolve()), str(script)]
        # The output dir is a tmpfs of its own, not a bind of a host directory: what the guest
        # writes is bounded by its size whatever the watchdog sees, and never reaches the disk.
        argv += ["--ro-bind", str(dirs.inputs), str(guest.inputs),
                 "--perms", "1777", "--size", str(output_bytes + _OUTPUT_TMPFS_SLACK),
                 "--tmpfs", str(guest.outputs),
                 *_gpu_binds(gpu_physical), "--chdir", "/tmp"]
        if root:
            argv += setpriv_argv()
        argv += _python_argv(guest.code, script)
        return Launch(argv, {"PATH": "/usr/bin:/bin"}, guest)
    if mode == "fallback":
        guest = GuestPaths(fallback_code_dir(runtime), dirs.inputs, dirs.outputs)
        script = None if guest_script is None else guest_script.resolve()
        argv = ["unshare", "--net", "--ipc", "--uts", "--", *setpriv_argv(), *_python_argv(guest.code, script)]
        return Launch(argv, env, guest)
    from worker.sandbox.errors import SandboxUnavailable

    raise SandboxUnavailable(f"model files cannot be evaluated on this worker: {sandbox_status().reason}")
