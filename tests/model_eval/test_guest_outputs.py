"""What a hostile guest leaves in its output directory: pipes, links and directories where files
are expected, trees below the top level, more than the output limit. Each ends in a rejection with
its reason, quickly; none hangs the worker or fills its disk."""

from __future__ import annotations

import json
import time

import pytest

from worker.sandbox.errors import ModelRejected
from worker.sandbox.limits import SandboxLimits

from .helpers import make_task
from .probe import run_probe, start_probe

MiB = 1024 * 1024


def _run(code: str, limits: SandboxLimits | None = None):
    t0 = time.monotonic()
    outcome, files = run_probe(code, limits or SandboxLimits(wall_time_s=30))
    return outcome, files, time.monotonic() - t0


# --- D3: the worker reads guest outputs without blocking or following links ------------------

@pytest.mark.timeout(90)       # before the fix, reading the pipe blocked forever
def test_result_file_replaced_by_a_named_pipe_is_rejected_quickly():
    outcome, _, _ = _run("import os\nos.mkfifo(OUT + '/result.json')\nos._exit(0)\n")
    assert not outcome.ok
    assert outcome.reason == ("the model replaced its output file result.json with a named pipe; "
                              "expected a regular file")


@pytest.mark.parametrize("make, kind", [
    ("os.symlink('/etc/hostname', OUT + '/result.json')", "a symbolic link"),
    ("os.mkdir(OUT + '/result.json')", "a directory"),
])
def test_result_file_replaced_by_a_link_or_directory_is_rejected(make, kind):
    outcome, _, _ = _run(f"import os\n{make}\nos._exit(0)\n")
    assert not outcome.ok
    assert outcome.reason == (f"the model replaced its output file result.json with {kind}; "
                              "expected a regular file")


def test_result_file_nested_too_deep_for_json_is_a_rejection_not_a_server_error():
    """json.loads raises RecursionError, not ValueError, on 500,000 nested brackets: it escaped
    as an unexpected error, so the run was retried as a server problem and cost no quota."""
    outcome, _, _ = _run("import os\nopen(OUT + '/result.json', 'w').write('[' * 500000)\nos._exit(0)\n")
    assert not outcome.ok and outcome.reason


def test_oversized_result_file_is_rejected():
    outcome, _, _ = _run("import os\nopen(OUT + '/result.json', 'wb').write(b' ' * (2 << 20))\nos._exit(0)\n")
    assert not outcome.ok
    assert outcome.reason == ("the model's output file result.json has 2097152 bytes; "
                              "at most 1048576 were expected")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("make, kind", [
    ("os.mkfifo(OUT + '/scores.npy')", "a named pipe"),
    ("os.symlink('/sandbox/in/inputs.npy', OUT + '/scores.npy')", "a symbolic link"),
])
def test_scores_file_replaced_by_a_pipe_or_link_is_rejected(make, kind):
    from worker.model_eval import _read_scores

    limits = SandboxLimits(wall_time_s=30)
    box = start_probe(limits)
    try:
        outcome = box.run({"probe": f"import os\n{make}\n"}, limits)
        assert outcome.ok, outcome.reason
        with pytest.raises(ModelRejected) as err:
            _read_scores(box, [None, 10], 4, make_task(reference_model=None))
    finally:
        box.close()
    assert str(err.value) == f"the model replaced its output file scores.npy with {kind}; expected a regular file"


def test_scores_file_claiming_a_huge_shape_is_rejected_before_reading():
    from worker.model_eval import _read_scores

    limits = SandboxLimits(wall_time_s=30)
    box = start_probe(limits)
    header = ("import numpy as np\n"
              "with open(OUT + '/scores.npy', 'wb') as f:\n"
              "    np.lib.format.write_array_header_1_0(f, {'descr': '<f4', 'fortran_order': False,"
              " 'shape': (1 << 40, 10)})\n")
    try:
        assert box.run({"probe": header}, limits).ok
        with pytest.raises(ModelRejected, match=r"output shape \(1099511627776, 10\) does not fit"):
            _read_scores(box, [None, 10], 4, make_task(reference_model=None))
    finally:
        box.close()


# --- D4: the output limit holds below the top level ---------------------------------------------

def test_many_files_in_a_subdirectory_are_stopped():
    outcome, _, _ = _run(
        "import os, time\n"
        "os.mkdir(OUT + '/d')\n"
        "for i in range(200):\n"
        "    open(f'{OUT}/d/{i}', 'w').write('x')\n"
        "time.sleep(60)\n")
    assert not outcome.ok
    assert outcome.reason == "created more than 64 files in its output directory"
    assert outcome.limit == "output"  # the watchdog's reason, not the 30 s wall time's


def test_bytes_in_a_subdirectory_count_against_the_output_limit():
    outcome, _, _ = _run(
        "import os, time\n"
        "os.makedirs(OUT + '/d/e')\n"
        "for i in range(40):\n"
        "    try:\n"
        "        open(f'{OUT}/d/e/{i}', 'wb').write(os.urandom(1 << 20))\n"
        "    except OSError:\n"
        "        pass\n"             # no space left: keep the guest alive for the watchdog
        "time.sleep(60)\n",
        SandboxLimits(wall_time_s=30, max_file_bytes=4 * MiB))
    assert not outcome.ok
    assert outcome.reason == "wrote more than 4 MiB to its output directory"


def test_output_written_faster_than_the_watchdog_polls_is_still_refused():
    outcome, _, _ = _run(
        "import os\n"
        "os.mkdir(OUT + '/d')\n"
        "for i in range(40):\n"
        "    try:\n"
        "        open(f'{OUT}/d/{i}', 'wb').write(b'x' * (1 << 20))\n"
        "    except OSError:\n"
        "        break\n"
        "open(OUT + '/result.json', 'w').write('{\"ok\": true}')\n"
        "os._exit(0)\n",
        SandboxLimits(wall_time_s=30, max_file_bytes=4 * MiB))
    assert not outcome.ok
    assert outcome.reason == "wrote more than 4 MiB to its output directory"


def test_sparse_files_count_by_what_they_occupy():
    """Apparent size is not disk use: sparse files of 40 MiB in all under an 8 MiB limit are no breach."""
    outcome, _, _ = _run(
        "import os\n"
        "for i in range(10):\n"
        "    with open(f'{OUT}/sparse{i}', 'wb') as f:\n"
        "        f.truncate(4 << 20)\n",
        SandboxLimits(wall_time_s=30, max_file_bytes=8 * MiB))
    assert outcome.ok, outcome.reason


def test_under_bubblewrap_the_output_directory_is_a_tmpfs_of_the_limits_size(sandbox_mode):
    if sandbox_mode != "bwrap":
        pytest.skip("the fallback has no mount namespace: its output directory is on the host")
    outcome, files, _ = _run(
        "import os, json\n"
        "s = os.statvfs(OUT)\n"
        "open(OUT + '/fs.json', 'w').write(json.dumps({'bytes': s.f_blocks * s.f_frsize}))\n",
        SandboxLimits(wall_time_s=30, max_file_bytes=8 * MiB))
    assert outcome.ok, outcome.reason
    size = json.loads(files["fs.json"])["bytes"]
    assert 8 * MiB < size <= 9 * MiB
