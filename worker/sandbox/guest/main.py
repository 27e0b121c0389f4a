"""Guest entry point: import, say ready, read one job, confine, load, infer, write results, exit.

Protocol with the worker: the guest prints "ready" on stdout once torch is imported and its
seccomp filter is compiled (or "unavailable: <reason>" when it cannot confine itself, and exits),
then reads one JSON job line on stdin. Results go to files in the job's output dir (scores.npy,
result.json); stdout/stderr are redirected to size-limited log files before the upload is
touched, so nothing the model prints reaches the worker's pipes.

`serve` is that sequence with the work (load and infer a model) as its argument, so that every
entry point confines itself the same way before it does anything with the job.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from types import ModuleType

# (job, torch) -> stats: what the guest does once confined; its exceptions become the result.
Work = Callable[[dict, ModuleType], dict]


def _write_result(out_dir: str, payload: dict) -> None:
    tmp = os.path.join(out_dir, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, os.path.join(out_dir, "result.json"))


def _redirect_output(out_dir: str) -> None:
    for fd, name in ((1, "stdout.log"), (2, "stderr.log")):
        target = os.open(os.path.join(out_dir, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run(job: dict, torch: ModuleType) -> dict:
    import numpy as np

    from heldout_guest.infer import InferJob, Runner
    from heldout_guest.load import load_model

    device = torch.device(job["device"])
    t0 = time.perf_counter()
    rss_before = _peak_rss_mb()
    model = load_model(job["format"], job["model_path"], job.get("reference_model"),
                       int(job["num_classes"]), device)
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    inputs = np.load(job["inputs_path"], mmap_mode="r", allow_pickle=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runner = Runner(model, InferJob(
        inputs=inputs, layout=job["layout"], out_path=os.path.join(job["out_dir"], "scores.npy"),
        expected=job["expected"], task=job["task"], mean=job.get("mean"), std=job.get("std"),
        activation=job.get("activation"), batch_size=int(job["batch_size"]),
        autocast=job.get("autocast"), device=device))
    info = runner.run()
    n = len(inputs)
    stats = {
        "params": int(params),
        "ms_per_image": 1000.0 * info["seconds"] / max(n, 1),
        "inference_s": info["seconds"],
        "load_s": load_s,
        "batch_size": info["batch_size"],
        "channels_last": info["channels_last"],
        "host_peak_rss_mb": _peak_rss_mb(),
        "host_rss_before_load_mb": rss_before,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        stats["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        stats["peak_memory_mb"] = stats["host_peak_rss_mb"]
    return stats


def serve(work: Work) -> int:
    """Confine this process, then run `work` on the one job; the exit status."""
    import numpy  # noqa: F401  (imported before "ready": off the critical path)
    import torch

    try:
        import torchvision  # noqa: F401  (reference ResNets need it; warm it up too)
    except ImportError:
        pass
    from heldout_guest import confine

    confine.die_with_parent()
    try:
        seccomp_filter = confine.build_filter()
    except confine.SeccompUnavailable as err:
        sys.stdout.write(f"unavailable: {err}\n")
        sys.stdout.flush()
        return 4
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        return 3                          # the worker closed the pipe: a spare being discarded
    t_job = time.perf_counter()
    job = json.loads(line)
    out_dir = job["out_dir"]
    on_gpu = job["device"].startswith("cuda")
    confine.apply_rlimits(job["limits"], on_gpu)
    try:
        confine.install_seccomp(seccomp_filter)
    except confine.SeccompUnavailable as err:
        _write_result(out_dir, {"ok": False, "kind": "unconfined", "message": str(err)})
        return 4
    _redirect_output(out_dir)
    torch.set_num_threads(int(job["threads"]))
    try:
        torch.set_num_interop_threads(1)     # inference is one graph at a time
    except RuntimeError:
        pass
    from heldout_guest.errors import GuestError

    try:
        stats = work(job, torch)
    except GuestError as err:
        _write_result(out_dir, {"ok": False, "kind": err.kind, "message": str(err)})
        return 1
    except MemoryError:
        _write_result(out_dir, {"ok": False, "kind": "memory", "message": "ran out of memory"})
        return 1
    except Exception as err:
        traceback.print_exc()
        _write_result(out_dir, {"ok": False, "kind": "rejected",
                                "message": f"the model failed: {type(err).__name__}: {str(err)[:300]}"})
        return 1
    stats["seccomp"] = True
    stats["guest_s"] = time.perf_counter() - t_job
    _write_result(out_dir, {"ok": True, "stats": stats})
    return 0


def run_and_exit(work: Work = _run) -> None:
    """Serve one job, then skip interpreter teardown (hundreds of ms with torch loaded): results
    are already on disk."""
    code = serve(work)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
