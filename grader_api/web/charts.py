"""Server-side SVG charts: no JavaScript, no CDN, readable at phone width.

Each function returns one `<svg>` element as `markupsafe.Markup` (safe to drop into a
template). Every label is escaped here, since class names and notes come from task files
and students. Sizes are in viewBox units and the SVG scales to its container.
Undefined values (None) are drawn as "n/a", never as zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6")
AXIS = "#6b7280"
GRID = "#e5e7eb"
FONT = 'font-family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif"'


def _svg(width: float, height: float, body: list[str], label: str, css_class: str) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="100%" preserveAspectRatio="xMinYMin meet" role="img" aria-label="{escape(label)}" {FONT}>'
            f"<title>{escape(label)}</title>")
    return Markup(head + "".join(body) + "</svg>")


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _finite(v: float | None) -> float | None:
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def bar_chart(
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    title: str = "",
    max_value: float | None = 1.0,
    width: int = 480,
) -> Markup:
    """Horizontal bars, one row per label, one bar per series (e.g. AP and IoU per class).

    Horizontal so long class names stay readable on a phone. `max_value=None` scales to the data.
    """
    names = list(series)
    vals = {k: [_finite(v) for v in series[k]] for k in names}
    top = max_value if max_value is not None else max([v for s in vals.values() for v in s if v is not None] or [1.0])
    top = top or 1.0
    label_w = min(200, 16 + 7.2 * max((len(str(lb)) for lb in labels), default=4))
    value_w = 52
    plot_w = width - label_w - value_w - 10
    bar_h, gap = 16, 6
    row_h = bar_h * len(names) + gap
    legend_h = 22 if len(names) > 1 else 0
    title_h = 24 if title else 0
    height = title_h + legend_h + row_h * len(labels) + 26
    body: list[str] = []
    y0 = title_h + legend_h
    if title:
        body.append(f'<text x="0" y="16" font-size="14" font-weight="600">{escape(title)}</text>')
    for i, name in enumerate(names if len(names) > 1 else []):
        x = label_w + i * 110
        body.append(f'<rect x="{x}" y="{title_h + 4}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>'
                    f'<text x="{x + 16}" y="{title_h + 14}" font-size="12">{escape(name)}</text>')
    # grid lines at 0, 25, 50, 75, 100 % of the scale
    for q in range(5):
        x = label_w + plot_w * q / 4
        body.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + row_h * len(labels)}" stroke="{GRID}"/>'
                    f'<text x="{x:.1f}" y="{y0 + row_h * len(labels) + 16}" font-size="11" fill="{AXIS}" '
                    f'text-anchor="middle">{top * q / 4:.2g}</text>')
    for r, lb in enumerate(labels):
        y = y0 + r * row_h + gap / 2
        body.append(f'<text x="{label_w - 6}" y="{y + row_h / 2 + 1}" font-size="12" text-anchor="end" '
                    f'dominant-baseline="middle">{escape(str(lb))}</text>')
        for i, name in enumerate(names):
            v = vals[name][r] if r < len(vals[name]) else None
            by = y + i * bar_h
            tip = f"{lb} · {name}: {_fmt(v, 4)}"
            if v is None:
                body.append(f'<text x="{label_w + 4}" y="{by + bar_h - 3}" font-size="11" fill="{AXIS}">n/a'
                            f"<title>{escape(tip)} (undefined)</title></text>")
                continue
            w = max(0.0, min(1.0, v / top)) * plot_w
            body.append(f'<rect class="bar" x="{label_w}" y="{by}" width="{w:.1f}" height="{bar_h - 2}" '
                        f'fill="{PALETTE[i % len(PALETTE)]}" rx="2"><title>{escape(tip)}</title></rect>'
                        f'<text x="{label_w + plot_w + 6}" y="{by + bar_h - 3}" font-size="11">{_fmt(v)}</text>')
    return _svg(width, height, body, title or "bar chart", "bar-chart")


def line_chart(
    points: Sequence[tuple[str, float | None]],
    *,
    title: str = "",
    tooltips: Sequence[str] | None = None,
    higher_is_better: bool = True,
    width: int = 900,
    height: int = 300,
) -> Markup:
    """Score over a student's submissions, in order (x = submission number, labelled below).

    Points with no score (failed, pending) are skipped; the line joins the scored ones.
    The running best is drawn dashed, because that is what the leaderboard shows.
    """
    left, right, top_pad, bottom = 48, 16, 28 if title else 10, 42
    pw, ph = width - left - right, height - top_pad - bottom
    ys = [_finite(v) for _, v in points]
    known = [v for v in ys if v is not None]
    body: list[str] = []
    if title:
        body.append(f'<text x="0" y="16" font-size="14" font-weight="600">{escape(title)}</text>')
    if not known:
        body.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{AXIS}" font-size="13">'
                    "no scored submissions yet</text>")
        return _svg(width, height, body, title or "line chart", "line-chart")
    lo, hi = min(known), max(known)
    pad = (hi - lo) * 0.1 or 0.05
    lo, hi = max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad
    n = len(points)

    def px(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def py(v: float) -> float:
        return top_pad + ph * (1 - (v - lo) / (hi - lo))

    for q in range(5):
        v = lo + (hi - lo) * q / 4
        y = py(v)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" fill="{AXIS}" '
                    f'text-anchor="end">{v:.3f}</text>')
    step = max(1, math.ceil(n / 12))  # at most ~12 x labels
    for i, (lb, _) in enumerate(points):
        if i % step == 0 or i == n - 1:
            body.append(f'<text x="{px(i):.1f}" y="{height - bottom + 16}" font-size="11" fill="{AXIS}" '
                        f'text-anchor="middle">{escape(str(lb))}</text>')
    body.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" fill="{AXIS}" text-anchor="middle">'
                "submission</text>")
    scored = [(i, v) for i, v in enumerate(ys) if v is not None]
    best: list[tuple[int, float]] = []
    for i, v in scored:
        b = v if not best else (max if higher_is_better else min)(best[-1][1], v)
        best.append((i, b))
    if len(best) > 1:
        body.append('<polyline class="best" fill="none" stroke="#9ca3af" stroke-dasharray="4 3" stroke-width="1.5" '
                    'points="' + " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in best) + '"/>')
    if len(scored) > 1:
        body.append(f'<polyline class="line" fill="none" stroke="{PALETTE[0]}" stroke-width="2" points="'
                    + " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in scored) + '"/>')
    for i, v in scored:
        tip = tooltips[i] if tooltips and i < len(tooltips) else f"{points[i][0]}: {v:.4f}"
        body.append(f'<circle class="point" cx="{px(i):.1f}" cy="{py(v):.1f}" r="4" fill="{PALETTE[0]}">'
                    f"<title>{escape(tip)}</title></circle>")
    return _svg(width, height, body, title or "line chart", "line-chart")


def _blue(t: float) -> str:
    """White → deep blue for t in [0, 1]."""
    t = max(0.0, min(1.0, t)) ** 0.6  # lift small rates so off-diagonal confusions are visible
    r = round(255 + (30 - 255) * t)
    g = round(255 + (64 - 255) * t)
    b = round(255 + (175 - 255) * t)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    classes: Sequence[str],
    matrix: Sequence[Sequence[float]],
    *,
    title: str = "",
    highlight: Sequence[tuple[int, int]] = (),
    width: int = 640,
) -> Markup:
    """Confusion matrix: rows are true classes, columns predicted; colour is the row-normalised rate.

    Counts are written in the cells when there are few classes; with many (CIFAR-100)
    only colour and tooltips remain. `highlight` outlines cells (the most-confused pairs).
    """
    k = len(classes)
    title_h = 24 if title else 0
    label_w = min(140, 14 + 7 * max((len(c) for c in classes), default=3))
    top_h = label_w  # column labels are rotated, same room as row labels
    cell = max(4.0, min(44.0, (width - label_w - 8) / max(k, 1)))
    size = cell * k
    w, h = label_w + size + 8, title_h + top_h + size + 8
    show_text = k <= 12
    show_labels = k <= 40
    fs = max(8, min(12, cell * 0.32))
    body: list[str] = []
    if title:
        body.append(f'<text x="0" y="16" font-size="14" font-weight="600">{escape(title)}</text>')
    x0, y0 = label_w, title_h + top_h
    hl = {(int(a), int(b)) for a, b in highlight}
    # Background grid once; with many classes, empty cells are not drawn (100x100 would be megabytes).
    body.append(f'<rect x="{x0}" y="{y0}" width="{size:.1f}" height="{size:.1f}" fill="#ffffff" stroke="{GRID}"/>')
    for i in range(k):
        row = [float(v) for v in matrix[i]] if i < len(matrix) else [0.0] * k
        total = sum(row) or 1.0
        for j in range(k):
            c = row[j] if j < len(row) else 0.0
            rate = c / total
            x, y = x0 + j * cell, y0 + i * cell
            if not c and k > 12 and (i, j) not in hl:
                continue
            tip = f"true {classes[i]} → predicted {classes[j]}: {c:g} ({rate:.1%} of {classes[i]})"
            if (i, j) in hl:
                stroke = ' stroke="#dc2626" stroke-width="2.5"'
            else:
                stroke = f' stroke="#ffffff" stroke-width="{0.5 if k > 40 else 1}"'
            body.append(f'<rect class="cell" data-true="{i}" data-pred="{j}" x="{x:.1f}" y="{y:.1f}" '
                        f'width="{cell:.1f}" height="{cell:.1f}" fill="{_blue(rate)}"{stroke}>'
                        f'<title>{escape(tip)}</title></rect>')
            if show_text and c:
                fill = "#ffffff" if rate > 0.45 else "#111827"
                body.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + fs / 3:.1f}" font-size="{fs:.0f}" '
                            f'text-anchor="middle" fill="{fill}" pointer-events="none">{c:g}</text>')
    if show_labels:
        for i, name in enumerate(classes):
            cy = y0 + i * cell + cell / 2
            body.append(f'<text x="{x0 - 5}" y="{cy + 4:.1f}" font-size="{min(12, cell * 0.8):.0f}" '
                        f'text-anchor="end">{escape(name)}</text>')
            cx = x0 + i * cell + cell / 2
            body.append(f'<text transform="translate({cx + 4:.1f},{y0 - 5}) rotate(-60)" '
                        f'font-size="{min(12, cell * 0.8):.0f}">{escape(name)}</text>')
    return _svg(w, h, body, title or "confusion matrix", "heatmap")


def histogram(
    values: Sequence[float | None],
    *,
    bins: int = 20,
    title: str = "",
    value_range: tuple[float, float] | None = None,
    width: int = 520,
    height: int = 220,
) -> Markup:
    """Distribution of scores (instructor page). None/NaN values are left out and counted in the title."""
    vals = [v for v in (_finite(x) for x in values) if v is not None]
    left, right, top_pad, bottom = 36, 12, 28 if title else 10, 30
    pw, ph = width - left - right, height - top_pad - bottom
    body: list[str] = []
    if title:
        body.append(f'<text x="0" y="16" font-size="14" font-weight="600">{escape(title)}</text>')
    if not vals:
        body.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{AXIS}" font-size="13">'
                    "no scores yet</text>")
        return _svg(width, height, body, title or "histogram", "histogram")
    lo, hi = value_range if value_range else (min(vals), max(vals))
    if hi <= lo:
        lo, hi = lo - 0.5 / bins, hi + 0.5 / bins
    counts = [0] * bins
    for v in vals:
        counts[min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))] += 1
    top = max(counts)
    bw = pw / bins
    for c in sorted({0, top // 2, top}):  # whole counts only: "0, 0, 1" ticks read as a bug
        y = top_pad + ph * (1 - c / top)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>'
                    f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" fill="{AXIS}" text-anchor="end">{c}</text>')
    for b, c in enumerate(counts):
        a0, a1 = lo + (hi - lo) * b / bins, lo + (hi - lo) * (b + 1) / bins
        bh = ph * c / top
        body.append(f'<rect class="bin" x="{left + b * bw + 1:.1f}" y="{top_pad + ph - bh:.1f}" width="{bw - 2:.1f}" '
                    f'height="{bh:.1f}" fill="{PALETTE[0]}"><title>{a0:.3f}–{a1:.3f}: {c}</title></rect>')
    for q in range(5):
        x = left + pw * q / 4
        body.append(f'<text x="{x:.1f}" y="{height - 12}" font-size="10" fill="{AXIS}" text-anchor="middle">'
                    f"{lo + (hi - lo) * q / 4:.3g}</text>")
    return _svg(width, height, body, title or "histogram", "histogram")
