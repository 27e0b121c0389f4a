"""Hostile model files and confinement probes: each fails with the right reason, the worker stays healthy.

TorchScript cannot import Python modules, but its op set still reaches files (torch.from_file,
torch.save), memory and CPU. The sandbox primitives are also probed directly with Python code,
run by the test-only probe guest (probe.py) under the same confinement as a model.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.model_eval import ModelRejected, SandboxLimits, evaluate_model_file
from worker.sandbox import proctree
from worker.sandbox.isolation import NOBODY_UID
from worker.sandbox.limits import GiB
from worker.sandbox.pool import get_pool

from .helpers import Drop, Loop, Peek, images, make_task, save_torchscript
from .probe import run_probe

pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:FutureWarning")


_BOXES: list = []


@pytest.fixture(autouse=True)
def _record_sandboxes(monkeypatch):
    """Remember every sandbox this test starts (models and probes), to find anything of theirs left running."""
    from worker.sandbox.process import SandboxProcess

    started = SandboxProcess.__init__

    def recorded(self, *args, **kwargs):
        started(self, *args, **kwargs)
        _BOXES.append(self)

    monkeypatch.setattr(SandboxProcess, "__init__", recorded)
    yield


def _leftovers() -> list[int]:
    """Processes of sandboxes this test started that outlived them (warm spares aside).

    Other sandboxes may run on the machine at the same time (other workers): only ours count.
    A closed sandbox records what it still found after killing (its pid namespace is pinned
    until then, so the match is exact); a live one is asked now.
    """
    pool = get_pool()
    pool.wait_warm()     # the next job's spare is starting: let its tree settle first
    spares = {id(box) for box in pool._spares.values()}
    left: set[int] = set()
    for box in _BOXES:
        if id(box) in spares:
            continue
        if box.leftover is not None:
            left |= set(box.leftover)
        else:
            left |= {p for p in proctree.descendants(box.proc.pid) if p != box.proc.pid}
    return sorted(left)


def _assert_healthy(tmp_path: Path) -> None:
    """After a breach: nothing left behind, and the next evaluation works."""
    left = _leftovers()
    assert left == [], [(p, open(f"/proc/{p}/cmdline").read()[:80], open(f"/proc/{p}/stat").read()[:80]) for p in left]

    class Ok(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :10]

    run = evaluate_model_file(save_torchscript(Ok(), tmp_path / "ok.pt"), make_task(reference_model=None),
                              images(8, 1, 28, 28))
    assert run.predictions.scores.shape == (8, 10)


def _script(tmp_path: Path, module: torch.nn.Module) -> Path:
    return save_torchscript(module, tmp_path / "m.pt")


def test_infinite_loop_times_out(tmp_path):
    with pytest.raises(ModelRejected, match=r"^timed out after 3 s$"):
        evaluate_model_file(_script(tmp_path, Loop()), make_task(reference_model=None, time_limit=3),
                            images(4, 1, 28, 28))
    _assert_healthy(tmp_path)


@pytest.mark.slow
def test_huge_allocation_hits_memory_limit(tmp_path):
    class Hog(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            grow = torch.ones(1 << 20)
            for _ in range(40):                   # doubles until something gives
                grow = torch.cat([grow, grow + 1])
            return x.flatten(1)[:, :10].float() + grow[-1]

    with pytest.raises(ModelRejected, match=r"^exceeded 1.5 GiB of memory$"):
        evaluate_model_file(_script(tmp_path, Hog()), make_task(reference_model=None),
                            images(1, 1, 28, 28), limits=SandboxLimits(wall_time_s=60, memory_bytes=int(1.5 * GiB)))
    _assert_healthy(tmp_path)


def test_torchscript_cannot_read_labels(tmp_path):
    """torch.from_file is scriptable: the labels next to the split must simply not exist in the sandbox."""
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(10, dtype=np.int64))
    os.chmod(tmp_path, 0o755)
    os.chmod(labels, 0o644)          # even world-readable: not mounted

    with pytest.raises(ModelRejected, match="the model failed on images"):
        evaluate_model_file(_script(tmp_path, Peek(str(labels))), make_task(reference_model=None),
                            images(4, 1, 28, 28))
    _assert_healthy(tmp_path)


def test_torchscript_cannot_write_outside(tmp_path):
    marker = tmp_path / "written.pt"
    os.chmod(tmp_path, 0o777)        # writable by anyone on the host: still not reachable
    try:
        evaluate_model_file(_script(tmp_path, Drop(str(marker))), make_task(reference_model=None),
                            images(4, 1, 28, 28))
    except ModelRejected:
        pass
    assert not marker.exists()


@pytest.mark.slow
def test_torchscript_cannot_tamper_with_cached_inputs(tmp_path, sandbox_mode):
    """The split inputs are shared by every later job (hard links): they are read-only to the guest."""
    if sandbox_mode != "bwrap":
        pytest.skip("guest path of the inputs is fixed only under bubblewrap")
    x = images(8, 1, 28, 28)
    split = tmp_path / "inputs.npy"
    np.save(split, x)
    task = make_task(reference_model=None)
    evaluate_model_file(_script(tmp_path, Drop("/sandbox/in/inputs.npy")), task, split)
    prepared = get_pool().inputs.prepare(split)
    np.testing.assert_array_equal(np.load(prepared.path), x)


# --- sandbox primitives, probed with Python code run by the probe guest ---------------------------

def test_probe_runs_confined(sandbox_mode):
    project_file = str(Path(__file__).resolve().parents[2] / "pyproject.toml")
    outcome, files = run_probe(
        "import os, json\n"
        "s = open('/proc/self/status').read()\n"
        "paths = ['/etc/passwd', '/etc/hostname', '/root', '/home', " + repr(project_file) + "]\n"
        "open(OUT + '/probe.json', 'w').write(json.dumps({'uid': os.getuid(), 'env': dict(os.environ),"
        " 'seccomp': 'Seccomp:\\t2' in s, 'visible': [p for p in paths if os.path.exists(p)],"
        " 'pids': [p for p in os.listdir('/proc') if p.isdigit()]}))\n")
    assert outcome.ok, outcome.reason
    import json

    probe = json.loads(files["probe.json"])
    assert probe["seccomp"]
    if os.geteuid() == 0:
        assert probe["uid"] == NOBODY_UID
    assert not any(k.startswith(("HELDOUT", "DATABASE", "REDIS", "AWS", "SECRET")) for k in probe["env"])
    if sandbox_mode == "bwrap":
        assert probe["visible"] == ["/root"] or probe["visible"] == []   # /root only as a bind parent
        assert len(probe["pids"]) <= 3                                   # own pid namespace


def test_probe_cannot_connect_to_localhost():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []

    def accept() -> None:
        for _ in range(40):
            try:
                accepted.append(server.accept()[0])
                return
            except socket.timeout:
                continue

    t = threading.Thread(target=accept)
    t.start()
    outcome, _ = run_probe(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
    t.join()
    server.close()
    assert not outcome.ok
    assert "PermissionError" in outcome.reason or "refused" in outcome.reason.lower()
    assert accepted == []


def test_probe_cannot_read_files_outside(tmp_path):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(5))
    os.chmod(tmp_path, 0o755)
    os.chmod(labels, 0o644)
    outcome, _ = run_probe(f"open({str(labels)!r}, 'rb').read()\n")
    assert not outcome.ok
    assert "FileNotFoundError" in outcome.reason or "PermissionError" in outcome.reason


def test_probe_fork_bomb_is_capped(tmp_path):
    outcome, files = run_probe(
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(600)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "finally:\n"
        "    open(OUT + '/forks', 'w').write(str(n))\n",
        SandboxLimits(wall_time_s=30, max_processes=16))
    assert not outcome.ok
    assert "BlockingIOError" in outcome.reason
    assert int(files["forks"]) <= 16
    _assert_healthy(tmp_path)


@pytest.mark.slow
def test_probe_unbounded_allocation(tmp_path):
    outcome, _ = run_probe("keep = []\nwhile True:\n    keep.append(bytearray(64 << 20))\n",
                             SandboxLimits(wall_time_s=60, memory_bytes=int(1.5 * GiB)))
    assert not outcome.ok
    assert outcome.reason == "exceeded 1.5 GiB of memory"
    _assert_healthy(tmp_path)


def test_probe_infinite_loop_and_escape_attempt(tmp_path):
    """A child that tries to leave the process group (setsid) and loops: refused, then killed."""
    outcome, files = run_probe(
        "import os\n"
        "try:\n"
        "    os.setsid()\n"
        "    open(OUT + '/setsid', 'w').write('ok')\n"
        "except OSError as e:\n"
        "    open(OUT + '/setsid', 'w').write(type(e).__name__)\n"
        "if os.fork() == 0:\n"
        "    while True: pass\n"
        "while True: pass\n",
        SandboxLimits(wall_time_s=2))
    assert outcome.reason == "timed out after 2 s"
    assert files["setsid"] == b"PermissionError"
    _assert_healthy(tmp_path)


def test_the_model_guest_runs_no_code_sent_in_a_job():
    """Only the tests' probe guest executes code from its job; the guest the worker runs has no such path."""
    pool = get_pool()
    limits = SandboxLimits(wall_time_s=30)
    box = pool.take("cpu", 1, limits.max_file_bytes)
    code = "open(OUT + '/ran', 'w').write('ran')\n"
    try:
        outcome = box.run({"python": code, "probe": code}, limits)
        names = box.output_names()
    finally:
        box.close()
        pool.refill("cpu", 1, limits.max_file_bytes)
    assert not outcome.ok
    assert "ran" not in names
