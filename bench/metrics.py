"""Metrics benchmark: ours against reference implementations, in one run, as ratios.

Run from the repository root:  .venv/bin/python bench/metrics.py
Prints a Markdown table and writes it to bench/RESULTS.md under `## metrics` (other sections kept).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMAND = ".venv/bin/python bench/metrics.py"
SECTION = "## metrics"


def best_of(fn, repeat: int) -> tuple[float, object]:
    """Best wall time in seconds over `repeat` runs, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


# -- VOC 2007: 4,952 x 20 multilabel, float scores ------------------------------------------------


def bench_voc(rows: list[list[str]]) -> None:
    import torch
    from sklearn.metrics import average_precision_score
    from torchmetrics.functional.classification import multilabel_average_precision as tm_ap

    from scoring.metrics.average_precision import multilabel_average_precision

    rng = np.random.default_rng(0)
    n, c = 4952, 20
    y = (rng.random((n, c)) < 0.07).astype(np.uint8)
    s = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 2.0 * y)))

    t_ours, ours = best_of(lambda: multilabel_average_precision(s, y, "step"), 5)
    t_sk, sk = best_of(lambda: [average_precision_score(y[:, k], s[:, k]) for k in range(c)], 5)
    assert ours == [float(v) for v in sk], "step AP must equal sklearn's exactly"
    st, yt = torch.from_numpy(s), torch.from_numpy(y.astype(np.int64))
    t_tm, tm = best_of(lambda: tm_ap(st, yt, num_labels=c, average=None, thresholds=None), 5)
    assert np.allclose(ours, tm.double().numpy(), atol=1e-6)  # torchmetrics works in float32
    rows.append(["VOC07 mAP, 4,952 x 20 float (step AP)", ms(t_ours), f"sklearn per class {ms(t_sk)}",
                 f"{t_sk / t_ours:.1f}x", "identical values"])
    rows.append(["", "", f"torchmetrics multilabel AP {ms(t_tm)}", f"{t_tm / t_ours:.1f}x",
                 "equal to 1e-6 (float32)"])


# -- CIFAR-100: 10,000 x 100 scores CSV, parse + validate + score --------------------------------

# Students write both: fixed width (np.savetxt, f-strings) and Python's float repr (what
# pandas.DataFrame.to_csv and csv.writer produce, about twice the bytes).
CIFAR100_FORMATS = [("%.6f", lambda v: "%.6f" % v), ("repr", repr)]


def bench_cifar100(rows: list[list[str]], tmp: Path) -> None:
    from scoring.splits import load_split, write_split
    from scoring.tasks import load_task

    task = load_task(ROOT / "datasets" / "cifar100.yaml")
    rng = np.random.default_rng(1)
    n, k = 10_000, task.num_classes
    y = rng.integers(0, k, n)
    split_dir = write_split(tmp / "cifar100", y, ids=[str(i) for i in range(n)], seed=0)
    task = dataclasses.replace(task, split=str(split_dir))
    split = load_split(split_dir, task)
    scores = rng.random((n, k))
    scores[np.arange(n), y] += 0.6 * (rng.random(n) < 0.6)
    for name, fmt in CIFAR100_FORMATS:
        path = tmp / f"cifar100_scores_{name.strip('%.')}.csv"
        with open(path, "w", encoding="utf-8") as f:
            f.write("id," + ",".join(task.classes) + "\n")
            f.writelines(f"{i}," + ",".join(map(fmt, row)) + "\n"
                         for i, row in enumerate(scores.tolist()))
        bench_cifar100_file(rows, path, name, task, split, y)


def bench_cifar100_file(rows: list[list[str]], path: Path, name: str, task, split,
                        y: np.ndarray) -> None:
    from sklearn.metrics import accuracy_score

    from scoring.evaluate import evaluate
    from scoring.parsers import parse_predictions

    parse_s: list[float] = []
    score_s: list[float] = []

    def ours():
        t0 = time.perf_counter()
        preds = parse_predictions(path, task, split, filename=path.name)
        t1 = time.perf_counter()
        out = evaluate(task, split, preds)
        parse_s.append(t1 - t0)
        score_s.append(time.perf_counter() - t1)
        return out

    def reference():
        arr = np.loadtxt(path, delimiter=",", skiprows=1)
        return accuracy_score(y, np.argmax(arr[np.argsort(arr[:, 0], kind="stable"), 1:], axis=1))

    # Best of 5 also leaves out the one-time import of pyarrow by the first CSV of a process.
    t_ours, report = best_of(ours, 5)
    t_ref, acc = best_of(reference, 3)
    assert abs(report["primary"] - acc) < 1e-12
    size_mb = path.stat().st_size / 1e6
    rows.append([f"CIFAR-100 CSV end to end, 10,000 x 100 scores, {name} ({size_mb:.1f} MB)",
                 f"{ms(t_ours)} (parse {ms(min(parse_s))} + score {ms(min(score_s))})",
                 f"np.loadtxt + sklearn accuracy {ms(t_ref)}", f"{t_ref / t_ours:.1f}x",
                 f"target < 100 ms: {'met' if t_ours < 0.1 else 'NOT met'}"])


# -- segmentation: 6 x 224 x 224 uint8 -----------------------------------------------------------


def make_segmentation(n: int, k: int = 6, h: int = 224, w: int = 224, seed: int = 2,
                      out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities x 255 (uint8) correlated with the labels; background-heavy labels."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(k, size=(n, h, w), p=[0.5] + [0.5 / (k - 1)] * (k - 1)).astype(np.uint8)
    scores = out if out is not None else np.empty((n, k, h, w), np.uint8)
    for i in range(n):
        logits = rng.normal(size=(k, h, w)).astype(np.float32)
        logits[labels[i], np.arange(h)[:, None], np.arange(w)[None, :]] += 2.0
        e = np.exp(logits - logits.max(axis=0))
        scores[i] = (e / e.sum(axis=0) * 255).astype(np.uint8)
    return scores, labels


def bench_segmentation(rows: list[list[str]]) -> None:
    from sklearn.metrics import average_precision_score, confusion_matrix

    from scoring.metrics.segmentation import segmentation_metrics

    k = 6
    s, y = make_segmentation(100, k)
    t_ours, ours = best_of(lambda: segmentation_metrics(s, y, k, "step"), 3)
    t_voc, _ = best_of(lambda: segmentation_metrics(s, y, k, "voc"), 3)

    def reference():
        ap = [float(average_precision_score((y == c).ravel(), s[:, c].ravel())) for c in range(k)]
        cm = confusion_matrix(y.ravel(), np.argmax(s, axis=1).ravel(), labels=list(range(k)))
        tp = np.diag(cm)
        iou = [float(v) for v in tp / (cm.sum(0) + cm.sum(1) - tp)]
        return ap, iou

    t_ref, (ap_ref, iou_ref) = best_of(reference, 1)
    assert ours.ap == ap_ref, "step AP must equal sklearn's exactly"
    assert ours.iou == iou_ref, "IoU must equal the sklearn confusion-matrix IoU exactly"
    speedup = t_ref / t_ours
    rows.append(["Segmentation AP+IoU, 100 x 6 x 224 x 224 uint8 (step AP)", ms(t_ours),
                 f"sklearn AP per class + confusion_matrix IoU {ms(t_ref)}", f"{speedup:.0f}x",
                 f"identical values; target >= 50x: {'met' if speedup >= 50 else 'NOT met'}"])
    rows.append(["Segmentation AP+IoU, same, VOC all-point AP", ms(t_voc), "-", "-", ""])


def bench_segmentation_1000(rows: list[list[str]], tmp: Path) -> None:
    from scoring.evaluate import evaluate
    from scoring.metrics.segmentation import SegmentationAccumulator
    from scoring.parsers import parse_predictions
    from scoring.splits import load_split, write_split
    from scoring.tasks import load_task

    k, n = 6, 1000
    block_s, block_y = make_segmentation(100, k, seed=3)
    path = tmp / "seg1000.npy"
    sub = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, k, 224, 224))
    for i in range(0, n, 100):
        sub[i : i + 100] = block_s
    sub.flush()
    del sub, block_s
    labels = np.concatenate([block_y] * (n // 100))
    size = path.stat().st_size

    # (a) the submission read fully into memory, then scored: peak of everything allocated.
    tracemalloc.start()
    t0 = time.perf_counter()
    s = np.load(path)
    acc = SegmentationAccumulator(k, "voc")
    acc.update(s, labels)
    res = acc.compute()
    t_mem = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del s
    ratio = peak / size
    rows.append([f"Segmentation 1,000 images in memory ({size / 1e6:.0f} MB submission): load + score",
                 ms(t_mem), "-", "-",
                 f"peak {peak / 1e6:.0f} MB = {ratio:.2f}x submission; target < 3x: "
                 f"{'met' if ratio < 3 else 'NOT met'}"])

    # (b) the service path: parse (memory-mapped .npy) + evaluate (public/private parts).
    task = load_task(ROOT / "datasets" / "segmentation6.yaml")
    split_dir = write_split(tmp / "seg", labels, seed=0)
    task = dataclasses.replace(task, split=str(split_dir))
    split = load_split(split_dir, task)
    tracemalloc.start()
    t0 = time.perf_counter()
    report = evaluate(task, split, parse_predictions(path, task, split, filename=path.name))
    t_e2e = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report["metrics"]["mean_ap"] == res.mean_ap
    rows.append(["Segmentation 1,000 images, parse (.npy, memory-mapped) + evaluate", ms(t_e2e), "-", "-",
                 f"heap peak {peak / 1e6:.0f} MB = {peak / size:.2f}x submission"])


# -- output --------------------------------------------------------------------------------------


def table(rows: list[list[str]]) -> str:
    head = ["case", "ours", "reference", "ratio", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_results(body: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == SECTION), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + body
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        rest = [""] + lines[end:] if end < len(lines) else []
        new = "\n".join(lines[:start] + body.rstrip("\n").splitlines() + rest)
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    import sklearn
    import torchmetrics

    warnings.simplefilter("ignore")
    rows: list[list[str]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_voc(rows)
        bench_cifar100(rows, tmp)
        bench_segmentation(rows)
        bench_segmentation_1000(rows, tmp)
    env = (f"Python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
           f"torchmetrics {torchmetrics.__version__}; {os.cpu_count()} CPUs ({platform.machine()}), "
           f"1-minute load average {load_before:.1f} before the run and {os.getloadavg()[0]:.1f} after "
           "(the bench itself keeps one CPU busy). Times: best of 5 (VOC, CIFAR-100 ours), best of 3 "
           "(CIFAR-100 reference, segmentation ours), one run (sklearn segmentation reference).")
    body = f"{SECTION}\n\nCommand: `{COMMAND}`\n\n{env}\n\n{table(rows)}\n"
    print(body)
    write_results(body)


if __name__ == "__main__":
    main()
