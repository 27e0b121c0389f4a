"""The guest's seccomp filter: compiled by libseccomp for every architecture a worker runs on,
effective here, and no model runs without it."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pyseccomp
import pytest

from worker.sandbox.guest import confine

from .probe import start_probe

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sandbox_mode() -> str:
    """Overrides the directory's: most tests here need libseccomp, not a working sandbox."""
    from worker.sandbox.isolation import sandbox_status

    return sandbox_status().mode


def _export(arch: int, kind: str) -> bytes:
    flt = confine.build_filter(arch)
    with tempfile.TemporaryFile() as f:
        getattr(flt, f"export_{kind}")(f)
        f.seek(0)
        return f.read()


def test_the_rule_set_compiles_for_x86_64_and_aarch64():
    """Each architecture gets its own program, with that architecture's syscall numbers."""
    programs = {arch: _export(arch, "bpf") for arch in (pyseccomp.Arch.X86_64, pyseccomp.Arch.AARCH64)}
    assert all(len(p) >= 8 * len(confine.DENIED_SYSCALLS) for p in programs.values())
    assert programs[pyseccomp.Arch.X86_64] != programs[pyseccomp.Arch.AARCH64]
    for arch in programs:
        text = _export(arch, "pfc").decode()
        for name in (*confine.DENIED_SYSCALLS, "clone", "clone3"):
            number = pyseccomp.resolve_syscall(arch, name)
            assert number >= 0, (arch, name)
            assert f'"{name}" ({number})' in text, (arch, name)
    # socket() is 41 on x86-64 and 198 on aarch64: the names were resolved per architecture.
    assert '"socket" (41)' in _export(pyseccomp.Arch.X86_64, "pfc").decode()
    assert '"socket" (198)' in _export(pyseccomp.Arch.AARCH64, "pfc").decode()


_PROBE = """
import ctypes, errno, os, socket, sys
sys.path.insert(0, {repo!r})
from worker.sandbox.guest import confine
before = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)   # allowed before the filter
before.close()
confine.install_seccomp(confine.build_filter())
refused = []
for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_NETLINK):
    try:
        socket.socket(family, socket.SOCK_DGRAM).close()
    except PermissionError:
        refused.append(family)
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER = 0x10000000
unshare_rc, unshare_errno = libc.unshare(CLONE_NEWUSER), ctypes.get_errno()
try:
    os.setsid()
    setsid = "allowed"
except PermissionError:
    setsid = "refused"
print(len(refused), unshare_rc, unshare_errno == errno.EPERM, setsid)
"""


def test_socket_is_refused_once_the_filter_is_loaded():
    # In a child: the filter cannot be removed from a process once loaded.
    done = subprocess.run([sys.executable, "-c", _PROBE.format(repo=str(REPO_ROOT))], capture_output=True,
                          text=True, timeout=60, start_new_session=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "-1", "True", "refused"]


def test_without_libseccomp_the_guest_refuses_to_run(tmp_path):
    """Fail closed: a guest that cannot load libseccomp says so instead of "ready"."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "heldout_guest").symlink_to(REPO_ROOT / "worker" / "sandbox" / "guest")
    boot = ("import sys; sys.modules['pyseccomp'] = None; "     # import pyseccomp -> ImportError
            f"sys.path.insert(0, {str(code)!r}); from heldout_guest.main import run_and_exit; run_and_exit()")
    done = subprocess.run([sys.executable, "-I", "-B", "-c", boot], input="", capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 4, done.stderr
    assert done.stdout.startswith("unavailable: libseccomp is not usable"), done.stdout
    assert "ready" not in done.stdout


def test_a_sandbox_without_libseccomp_is_unavailable_not_unconfined(monkeypatch, tmp_path, sandbox_mode):
    """The worker turns that into SandboxUnavailable (an operator problem): no model runs."""
    if sandbox_mode == "none":
        pytest.skip("no sandbox on this machine")
    from worker.sandbox import isolation
    from worker.sandbox.errors import SandboxUnavailable
    from worker.sandbox.limits import SandboxLimits
    from worker.sandbox.pool import SandboxPool

    real = isolation._python_argv

    def without_libseccomp(code_dir: Path, guest_script: Path | None = None) -> list[str]:
        argv = real(code_dir, guest_script)
        return [*argv[:-1], "import sys; sys.modules['pyseccomp'] = None; " + argv[-1]]

    monkeypatch.setattr(isolation, "_python_argv", without_libseccomp)
    pool = SandboxPool(base_dir=tmp_path, warm_spare=False)
    try:
        limits = SandboxLimits(wall_time_s=30)
        box = start_probe(limits, pool)
        with pytest.raises(SandboxUnavailable, match="cannot confine models: libseccomp is not usable"):
            box.run({"probe": "open(OUT + '/ran', 'w').write('unconfined')"}, limits)
    finally:
        pool.close()
