"""The SVG charts are well-formed XML, escape every label, and never draw an undefined value as zero."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from grader_api.web import charts

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(str(svg))
    assert root.tag == f"{NS}svg"
    return root


def test_bar_chart_scales_bars_and_marks_undefined() -> None:
    svg = charts.bar_chart(["cat", "dog<script>", "bird"], {"ap": [1.0, 0.5, None]}, title="AP & co")
    root = parse(svg)
    bars = root.findall(f".//{NS}rect[@class='bar']")
    assert len(bars) == 2                                     # None draws no bar
    widths = [float(b.get("width")) for b in bars]
    assert abs(widths[1] * 2 - widths[0]) < 0.2               # 0.5 is half of 1.0
    assert "n/a" in svg and "<script>" not in svg and "dog&lt;script&gt;" in svg


def test_bar_chart_two_series_has_legend() -> None:
    svg = charts.bar_chart(["a", "b"], {"ap": [0.2, 0.4], "iou": [0.1, None]})
    root = parse(svg)
    assert len(root.findall(f".//{NS}rect[@class='bar']")) == 3
    assert ">iou<" in svg and ">ap<" in svg


def test_line_chart_skips_missing_points_and_draws_running_best() -> None:
    svg = charts.line_chart([("1", 0.27), ("2", None), ("3", 0.29), ("4", 0.28)], title="score",
                            tooltips=["a", "b", "c", "+Dropout <x>"])
    root = parse(svg)
    assert len(root.findall(f".//{NS}circle")) == 3
    assert root.find(f".//{NS}polyline[@class='best']") is not None
    assert "+Dropout &lt;x&gt;" in svg


def test_line_chart_empty() -> None:
    assert "no scored submissions" in charts.line_chart([("1", None)])


def test_heatmap_cells_counts_and_highlight() -> None:
    classes = ["cat", "dog", "car"]
    m = [[8, 2, 0], [5, 5, 0], [0, 0, 10]]
    svg = charts.heatmap(classes, m, title="confusion", highlight=[(1, 0)])
    root = parse(svg)
    cells = root.findall(f".//{NS}rect[@class='cell']")
    assert len(cells) == 9
    hl = [c for c in cells if c.get("stroke") == "#dc2626"]
    assert [(c.get("data-true"), c.get("data-pred")) for c in hl] == [("1", "0")]
    # the diagonal cell of a perfect row is the darkest colour
    assert cells[8].get("fill") == "#1e40af"
    assert "true dog → predicted cat: 5 (50.0% of dog)" in svg


def test_heatmap_many_classes_stays_small() -> None:
    k = 100
    m = [[1 if i == j else 0 for j in range(k)] for i in range(k)]
    svg = charts.heatmap([f"c{i}" for i in range(k)], m)
    parse(svg)
    assert len(svg) < 2_000_000


def test_histogram_counts_and_ignores_nan() -> None:
    svg = charts.histogram([0.1, 0.1, 0.9, None, float("nan")], bins=4, value_range=(0.0, 1.0))
    root = parse(svg)
    bins = root.findall(f".//{NS}rect[@class='bin']")
    assert [b.find(f"{NS}title").text.split(": ")[1] for b in bins] == ["2", "0", "0", "1"]
