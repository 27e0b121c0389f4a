"""Which sandbox a worker runs models in: `auto` is bubblewrap or nothing, the weaker fallback only
when configured, and in fallback the guest's user cannot read the labels the service wrote."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from worker.sandbox import isolation
from worker.sandbox.errors import SandboxUnavailable
from worker.sandbox.limits import SandboxLimits
from worker.sandbox.pool import SandboxPool

from .probe import start_probe

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the fallback sandbox needs root")


@pytest.fixture
def configured_mode():
    """Set the configured mode for one test; the worker's own setting comes back after."""
    yield isolation.prefer_fallback
    isolation.prefer_fallback(False)


def test_auto_never_falls_back_when_bubblewrap_is_missing(monkeypatch, configured_mode, tmp_path):
    real_which = shutil.which
    monkeypatch.setattr(isolation.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    configured_mode(False)
    isolation.sandbox_status.cache_clear()
    status = isolation.sandbox_status()
    assert status.mode == "none"
    assert "bubblewrap (bwrap) is not installed" in status.reason
    pool = SandboxPool(base_dir=tmp_path, warm_spare=False)
    try:
        with pytest.raises(SandboxUnavailable, match="model files cannot be evaluated on this worker: bubblewrap"):
            pool.take("cpu", 1, SandboxLimits().max_file_bytes)
    finally:
        pool.close()
    isolation.sandbox_status.cache_clear()


def test_auto_never_falls_back_when_the_bubblewrap_probe_fails(monkeypatch, configured_mode):
    """As root with unshare and setpriv at hand, a failing bwrap probe used to mean fallback."""
    real_probe = isolation._probe
    monkeypatch.setattr(isolation, "_probe", lambda argv: "setting up uid map: Permission denied"
                        if argv[0].endswith("bwrap") else real_probe(argv))
    configured_mode(False)
    isolation.sandbox_status.cache_clear()
    status = isolation.sandbox_status()
    assert status.mode == "none"
    assert "bubblewrap cannot create its namespaces here (setting up uid map: Permission denied)" in status.reason
    isolation.sandbox_status.cache_clear()


@root_only
def test_fallback_is_used_when_configured(configured_mode):
    configured_mode(True)
    status = isolation.sandbox_status()
    assert status.mode == "fallback"
    assert status.reason.startswith("HELDOUT_SANDBOX_MODE=fallback")


@root_only
def test_readable_by_guest_names_what_nobody_could_read(world_traversable):
    from worker.sandbox.exposure import readable_by_guest

    d = world_traversable
    (d / "open.npy").write_bytes(b"x")
    os.chmod(d / "open.npy", 0o644)
    (d / "private.npy").write_bytes(b"x")
    os.chmod(d / "private.npy", 0o600)
    (d / "hidden").mkdir()
    os.chmod(d / "hidden", 0o711)                     # not listable, but a known name opens
    (d / "hidden" / "labels.npy").write_bytes(b"x")
    os.chmod(d / "hidden" / "labels.npy", 0o644)
    (d / "closed").mkdir()
    os.chmod(d / "closed", 0o700)
    (d / "closed" / "labels.npy").write_bytes(b"x")
    os.chmod(d / "closed" / "labels.npy", 0o644)
    assert readable_by_guest([d]) == [d / "hidden" / "labels.npy", d / "open.npy"]


@root_only
def test_a_fallback_model_cannot_read_labels_the_service_wrote(configured_mode, world_traversable):
    """Splits are written owner-only: even with no mount namespace, nobody cannot open the labels."""
    from scoring.splits import write_split

    split = world_traversable / "data" / "pets" / "test"
    write_split(split, np.arange(10) % 3, seed=0)
    os.chmod(world_traversable / "data", 0o755)
    os.chmod(world_traversable / "data" / "pets", 0o755)
    configured_mode(True)
    if isolation.sandbox_status().mode != "fallback":
        pytest.skip(isolation.sandbox_status().reason)
    if not _guest_can_import_numpy():
        pytest.skip(f"the fallback guest runs as nobody, who cannot read this Python environment "
                    f"({sys.prefix}, e.g. a venv under a 0700 home directory)")
    runtime = world_traversable / "runtime"
    runtime.mkdir()
    os.chmod(runtime, 0o755)
    pool = SandboxPool(base_dir=runtime, warm_spare=False)
    limits = SandboxLimits(wall_time_s=60)
    try:
        box = start_probe(limits, pool)
        try:
            outcome = box.run({"probe": f"open({str(split / 'labels.npy')!r}, 'rb').read()\n"}, limits)
        finally:
            box.close()
    finally:
        pool.close()
    assert not outcome.ok
    assert "PermissionError" in outcome.reason


def _guest_can_import_numpy() -> bool:
    """Whether the sandbox user can load this interpreter's packages, as a fallback guest must."""
    done = subprocess.run([*isolation.setpriv_argv(), sys.executable, "-c", "import numpy"],
                          capture_output=True, timeout=60)
    return done.returncode == 0


@root_only
def test_fallback_start_up_names_a_python_the_sandbox_user_cannot_run(tmp_path):
    """A venv under a 0700 home directory: every fallback model would fail to start (and be
    retried as a server problem), so `grade serve`/`grade worker` refuse to start and say why."""
    from worker.sandbox.exposure import guest_python_problem

    hidden = tmp_path / "home"
    hidden.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o755)
    python = hidden / "python"
    python.symlink_to(sys.executable)
    problem = guest_python_problem(str(python))
    assert problem is not None  # the reason: cannot start it, or it cannot find its packages
    if _guest_can_import_numpy():
        assert guest_python_problem() is None
