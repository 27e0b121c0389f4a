"""The sandbox's runtime on the host: how it is launched and what it leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.sandbox import isolation

from .probe import PROBE_GUEST


def test_runtime_dirs_of_dead_workers_are_removed_when_a_pool_starts(tmp_path):
    import subprocess
    import sys

    from worker.sandbox.pool import SandboxPool

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    left = tmp_path / f"heldout-sandbox-{dead}-abc123"
    (left / "inputs").mkdir(parents=True)
    (left / "inputs" / "x.npy").write_bytes(b"0" * 100)
    alive = tmp_path / f"heldout-sandbox-{os.getpid()}-def456"   # this process: alive
    alive.mkdir()
    other = tmp_path / "heldout-sandbox-notapid"
    other.mkdir()
    pool = SandboxPool(base_dir=tmp_path, warm_spare=False)
    try:
        assert not left.exists()
        assert alive.exists() and other.exists()
        assert pool.dir.name.startswith(f"heldout-sandbox-{os.getpid()}-") and pool.dir.exists()
    finally:
        pool.close()


def test_a_python_install_under_tmp_stays_visible_over_the_private_tmp(tmp_path, monkeypatch):
    """bwrap applies its arguments in order: the guest's private /tmp must be mounted before the
    interpreter's trees are bound, or a venv (or checkout) under /tmp on the host is hidden and
    the guest cannot start ("failed to execute .../python3.11")."""
    venv = Path("/tmp/some-checkout/.venv")
    monkeypatch.setattr(isolation, "_python_trees", lambda: [venv])
    dirs = isolation.JobDirs.create(tmp_path)
    argv = isolation.build_launch("bwrap", dirs, tmp_path, 1, "", None).argv

    def at(*seq: str) -> int:
        for i in range(len(argv) - len(seq) + 1):
            if argv[i:i + len(seq)] == list(seq):
                return i
        raise AssertionError(f"{seq} not in {argv}")

    tmpfs = at("--tmpfs", "/tmp")
    assert tmpfs < at("--ro-bind", str(venv), str(venv))
    assert tmpfs < at("--dir", "/tmp/some-checkout")
    # /tmp keeps the tmpfs's own mode (writable by the guest), not 0755 from the parent rule
    assert ["--perms", "0755", "--dir", "/tmp"] not in [argv[i:i + 4] for i in range(len(argv))]


@pytest.mark.parametrize("mode", ["bwrap", "fallback"])
def test_the_probe_guest_runs_in_the_same_sandbox_as_a_model(tmp_path, mode):
    """The tests probe the confinement with their own entry (probe_guest.py, which confines itself
    through heldout_guest.main.serve): its launch is a model's, plus that one file read-only and
    the bootstrap that runs it, so what the probes prove holds for models."""
    dirs = isolation.JobDirs.create(tmp_path)
    model = isolation.build_launch(mode, dirs, tmp_path, 1, "", None)
    probe = isolation.build_launch(mode, dirs, tmp_path, 1, "", None, guest_script=PROBE_GUEST)
    assert (probe.env, probe.guest) == (model.env, model.guest)
    seen = "/sandbox/entry.py" if mode == "bwrap" else str(PROBE_GUEST)
    argv = probe.argv[:-1]
    if mode == "bwrap":
        bind = ["--ro-bind", str(PROBE_GUEST), seen]
        at = next(i for i in range(len(argv)) if argv[i:i + 3] == bind)
        argv = argv[:at] + argv[at + 3:]
    assert argv == model.argv[:-1]
    path_setup = model.argv[-1].split("from heldout_guest.main")[0]
    assert probe.argv[-1] == path_setup + f"import runpy; runpy.run_path({seen!r}, run_name='__main__')"
