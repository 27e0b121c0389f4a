"""Sandboxed model evaluation vs a bare torch.inference_mode() loop, in the same run.

For each case the bare loop runs over the same in-memory uint8 tensors with the same batch size
and the same normalisation (the work a course's own evaluation does); "bare + channels_last" is
the same loop with the memory-format optimisation the sandbox applies, so the overhead of the
sandbox itself can be read off against both. The sandbox is timed end to end through
`evaluate_model_file` (stage files, sandbox start or warm spare, load, infer, write and
re-validate scores): "warm" is the steady state of a worker (the spare imported torch while the
worker was idle), "cold" includes starting Python and importing torch in a fresh sandbox.

    .venv/bin/python bench/model_eval.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import reference_models  # noqa: E402
from scoring.types import TaskSpec  # noqa: E402
from worker.model_eval import _batch_size, evaluate_model_file  # noqa: E402
from worker.sandbox.limits import SandboxLimits  # noqa: E402
from worker.sandbox.pool import configure  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)


@dataclass
class Case:
    label: str
    reference: str
    kind: str
    classes: int
    shape: tuple[int, int, int]
    n: int
    n_quick: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


CASES = [
    Case("ResNet-18, CIFAR-100 head", "resnet18_classifier", "classification", 100, (3, 32, 32), 10_000, 2_000,
         (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    Case("FashionMNIST BaseNet", "fashion_basenet", "classification", 10, (1, 28, 28), 10_000, 10_000,
         (0.2860,), (0.3530,)),
    Case("ResNet-18 ×32 segmentation, 224×224", "resnet18_seg32", "segmentation", 6, (3, 224, 224), 100, 10,
         (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
]


def task_for(case: Case) -> TaskSpec:
    return TaskSpec(
        name=case.reference, title=case.label, kind=case.kind,  # type: ignore[arg-type]
        classes=tuple(f"c{i}" for i in range(case.classes)),
        metric="mean_iou" if case.kind == "segmentation" else "accuracy",
        ap="voc" if case.kind == "segmentation" else None, split="-", public_fraction=0.5, points=None,
        scores="probabilities", image_size=case.shape[1:] if case.kind == "segmentation" else None,
        input_mean=case.mean, input_std=case.std, accepts=("model",), reference_model=case.reference,
        model_time_limit_s=3600)


def bare_loop(model: torch.nn.Module, x: torch.Tensor, case: Case, bs: int, channels_last: bool) -> float:
    mean = torch.tensor(case.mean).view(1, -1, 1, 1)
    std = torch.tensor(case.std).view(1, -1, 1, 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    out = None
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(x), bs):
            b = ((x[i:i + bs].float() / 255 - mean) / std).contiguous(memory_format=fmt)
            out = torch.softmax(model(b), 1)
    elapsed = time.perf_counter() - t0
    model.to(memory_format=torch.contiguous_format)
    assert out is not None
    return elapsed


def run_case(case: Case, quick: bool, workdir: Path, repeats: int) -> dict:
    n = case.n_quick if quick else case.n
    torch.manual_seed(0)
    model = reference_models.get(case.reference, case.classes).eval()
    weights = workdir / f"{case.reference}.pt"
    torch.save(model.state_dict(), weights)
    x_np = np.random.default_rng(0).integers(0, 256, (n, *case.shape), dtype=np.uint8)
    x = torch.from_numpy(x_np)
    task = task_for(case)
    bs = _batch_size(x_np.shape, "cpu", SandboxLimits())
    limits = SandboxLimits(wall_time_s=3600, batch_size=bs)

    pool = configure(base_dir=workdir, warm_spare=True)     # fresh pool: first call is cold
    t0 = time.perf_counter()
    cold = evaluate_model_file(weights, task, x_np, limits=limits)
    cold_s = time.perf_counter() - t0
    pool.wait_warm()                                         # let the spare import, as an idle worker does

    # Interleaved repeats, best of each: the machine is shared, so single runs are noisy.
    bare_s = bare_cl_s = warm_s = float("inf")
    warm = cold
    for _ in range(repeats):
        bare_s = min(bare_s, bare_loop(model, x, case, bs, channels_last=False))
        bare_cl_s = min(bare_cl_s, bare_loop(model, x, case, bs, channels_last=True))
        pool.wait_warm()
        t0 = time.perf_counter()
        run = evaluate_model_file(weights, task, x_np, limits=limits)
        elapsed = time.perf_counter() - t0
        if elapsed < warm_s:
            warm_s, warm = elapsed, run
        pool.wait_warm()
    pool.close()
    return {"case": case, "n": n, "bs": bs, "bare": bare_s, "bare_cl": bare_cl_s, "warm": warm_s,
            "cold": cold_s, "infer": warm.stats["ms_per_image"] * n / 1000, "load": warm.stats["load_s"],
            "params": warm.stats["params"], "peak": warm.stats["peak_memory_mb"], "mode": warm.stats["sandbox"],
            "cold_infer": cold.stats["ms_per_image"] * n / 1000}


NOTE = ("Reading the figures: on a small shared machine run-to-run spread is large (bare ResNet-18 has taken "
        "anywhere from 8 s to 22 s for the same 10,000 images on 2 CPUs, depending on what else ran); the 1-minute "
        "load average is printed above. The sandbox's cost has two parts: a fixed cost outside inference (staging "
        "the files, handing the job to the warm spare, loading the state_dict into the reference model, writing and "
        "re-validating scores), and the guest's own batch loop, compared with the bare channels_last loop over the "
        "same tensors on the last line. Two back-to-back runs on a quiet 2-CPU machine put the latter at +12% and "
        "-1%: within the noise, not a systematic cost of the sandbox.")


def fmt_rate(n: int, s: float) -> str:
    return f"{n / s:,.0f}"


def pct(a: float, b: float) -> str:
    return f"{100 * (a - b) / b:+.1f}%"


def render(rows: list[dict], quick: bool, repeats: int, load: tuple[float, float]) -> str:
    cmd = ".venv/bin/python bench/model_eval.py" + (" --quick" if quick else "") + (
        f" --repeats {repeats}" if repeats != 3 else "")
    cpus = len(os.sched_getaffinity(0))
    lines = [
        "## model_eval", "",
        f"Command: `{cmd}`", "",
        f"Python {platform.python_version()}, torch {torch.__version__}, {cpus} CPUs ({platform.machine()}), "
        f"{torch.get_num_threads()} torch threads on both sides; 1-minute load average {load[0]:.1f} before the "
        f"run and {load[1]:.1f} after. "
        + ("" if torch.cuda.is_available() else "No GPU on this machine: CPU only, so no autocast figures. ") +
        f"Sandbox mode: `{rows[0]['mode']}`. Best of {repeats} interleaved runs per figure (cold: one run). "
        "Inputs uint8, normalised inside the loop; "
        "same batch size on both sides. Overhead = (sandbox end-to-end − bare) / bare; the sandbox runs the "
        "model in channels_last on CPU as well, so the comparison with the plain bare loop includes that gain, "
        "and the one with `bare + channels_last` isolates the sandbox's own cost.", "",
        NOTE, "",
        "| case | N | batch | bare loop img/s | bare + channels_last img/s | sandbox warm img/s "
        "| overhead vs bare | vs bare + channels_last | sandbox cold img/s (cold − warm) | in-guest load / infer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case'].label} | {r['n']:,} | {r['bs']} | {fmt_rate(r['n'], r['bare'])} | "
            f"{fmt_rate(r['n'], r['bare_cl'])} | {fmt_rate(r['n'], r['warm'])} | {pct(r['warm'], r['bare'])} | "
            f"{pct(r['warm'], r['bare_cl'])} | {fmt_rate(r['n'], r['cold'])} ({r['cold'] - r['warm']:+.2f} s) | "
            f"{r['load'] * 1000:.0f} ms / {r['infer']:.2f} s |")
    r0 = rows[0]
    lines += ["",
              f"ResNet-18 target (sandbox + loading overhead < 10 % of the bare loop, CPU): warm end-to-end "
              f"{r0['warm']:.2f} s vs bare {r0['bare']:.2f} s ({pct(r0['warm'], r0['bare'])}) and vs bare + "
              f"channels_last {r0['bare_cl']:.2f} s ({pct(r0['warm'], r0['bare_cl'])}); "
              f"fixed cost outside inference {r0['warm'] - r0['infer']:.2f} s; the guest's batch loop "
              f"{r0['infer']:.2f} s vs bare + channels_last {r0['bare_cl']:.2f} s "
              f"({pct(r0['infer'], r0['bare_cl'])}).", ""]
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(r"^## model_eval\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N (reported in the table)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; best of each is kept")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-model-eval-") as tmp:
        os.chmod(tmp, 0o711)
        for case in CASES:
            rows.append(run_case(case, args.quick, Path(tmp), args.repeats))
            r = rows[-1]
            print(f"{case.label}: N={r['n']} bare {r['bare']:.2f}s, bare+CL {r['bare_cl']:.2f}s, "
                  f"sandbox warm {r['warm']:.2f}s (infer {r['infer']:.2f}s), cold {r['cold']:.2f}s", flush=True)
    text = render(rows, args.quick, args.repeats, (load_before, os.getloadavg()[0]))
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
