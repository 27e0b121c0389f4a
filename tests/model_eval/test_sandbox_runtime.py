"""The sandbox's runtime on the host: how it is launched and what it leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

from worker.sandbox import isolation


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
