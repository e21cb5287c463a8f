"""The charts of the A/B report's `html` format, as Vega-Lite specifications
rendered to static SVG by vl-convert (no script, nothing fetched: the page
holds the SVG itself).

Per experiment, two charts, the arms side by side on shared axes:
- `latency_spec`: each arm's latency histogram (bins shared by the arms) in
  one column per arm, the y axis shared, p50 and p95 marked;
- `success_spec`: each arm's first-target success rate with its confidence
  interval, one row per arm, the control's rate marked.

Why Vega-Lite through vl-convert rather than matplotlib's SVG backend
(measured by benchmarks/ab_charts.py; figures in docs/registry.md): it drew
the charts faster after the first (about 0.2 s against 0.3-0.6 s) and as
fast the first time (its JavaScript engine starts in about a second, as
matplotlib imports); its SVG keeps text as text (selectable, and checkable
for clipping in a browser) at a size between matplotlib's two ways of
writing text; it is one wheel without dependencies where matplotlib brings
numpy, pillow, fonttools and kiwisolver; and a chart is data plus a
declarative spec, not drawing code.
"""

from __future__ import annotations

from typing import Any

# Sizes in CSS pixels of the rendered SVG; the page scales it to its width.
WIDTH = 1040
COLUMN_GAP = 24
LATENCY_HEIGHT = 220
ROW_HEIGHT = 34
FONT = "DejaVu Sans, Verdana, sans-serif"
BAR = "#4c78a8"
MARKERS = {"p50": "#d6604d", "p95": "#8a5a00"}

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
CONFIG = {
    "font": FONT,
    "view": {"stroke": "#dfe4ea"},
    "axis": {"labelFontSize": 12, "titleFontSize": 12, "titleFontWeight": "normal", "labelLimit": 0},
    "header": {"labelFontSize": 13, "labelFontWeight": "bold", "labelLimit": 0, "titleFontSize": 0},
    "legend": {"labelFontSize": 12, "titleFontSize": 12, "labelLimit": 0},
}


def _ms(value: float) -> str:
    return f"{value:.4g} ms"


def latency_spec(arms: list[dict]) -> dict[str, Any]:
    """One column per arm: bars of the shared histogram bins, and a dashed rule at p50 and p95."""
    values: list[dict] = []
    for order, arm in enumerate(arms):
        latency, histogram = arm["latency_ms"], arm["latency_histogram"]
        # The column's header, one line per fact: long lines would run into the next column.
        lines = [f"{arm['label']}: {latency['count']} answered by the arm"]
        if latency["count"]:
            lines.append(f"p50 {_ms(latency['p50'])}, p95 {_ms(latency['p95'])}")
        else:
            lines.append("no latency recorded")
        if histogram["above"]:
            lines.append(f"{histogram['above']} slower than {_ms(histogram['edges_ms'][-1])} not drawn")
        header = "\n".join(lines)
        edges = histogram["edges_ms"]
        for low, high, count in zip(edges, edges[1:], histogram["counts"]):
            values.append({"header": header, "order": order, "layer": "bin", "low": low, "high": high,
                           "count": count})
        for name in ("p50", "p95"):
            if latency[name] is not None:
                values.append({"header": header, "order": order, "layer": "marker", "marker": name,
                               "value": latency[name]})
        if not latency["count"]:
            values.append({"header": header, "order": order, "layer": "empty"})   # the column, without bars
    columns = max(len(arms), 1)
    width = (WIDTH - COLUMN_GAP * (columns - 1)) / columns - 60
    x = {"type": "quantitative", "title": "latency (ms)", "scale": {"zero": False, "nice": False}}
    return {
        "$schema": SCHEMA,
        "data": {"values": values},
        "facet": {"column": {"field": "header", "type": "nominal", "title": None,
                             "sort": {"field": "order", "op": "min"},
                             "header": {"labelExpr": "split(datum.label, '\\n')"}}},
        "spacing": COLUMN_GAP,
        "resolve": {"scale": {"y": "shared", "x": "shared"}},
        "spec": {
            "width": width, "height": LATENCY_HEIGHT,
            "layer": [
                {"transform": [{"filter": "datum.layer === 'bin'"}],
                 "mark": {"type": "bar", "orient": "vertical", "color": BAR},
                 "encoding": {"x": {"field": "low", **x}, "x2": {"field": "high"},
                              "y": {"field": "count", "type": "quantitative", "title": "requests"}}},
                {"transform": [{"filter": "datum.layer === 'marker'"}],
                 "mark": {"type": "rule", "strokeDash": [4, 3], "strokeWidth": 1.5},
                 "encoding": {"x": {"field": "value", **x},
                              "color": {"field": "marker", "type": "nominal", "title": "marked",
                                        "scale": {"domain": list(MARKERS), "range": list(MARKERS.values())},
                                        "legend": {"orient": "top"}}}},
            ],
        },
        "config": CONFIG,
    }


def success_spec(arms: list[dict], level: str, control: str) -> dict[str, Any]:
    """One row per arm: its success rate (%) with the interval, and the control's rate as a rule."""
    rows = []
    for order, arm in enumerate(arms):
        low, high = arm["success_rate_ci"]
        rows.append({"arm": f"{arm['label']}: {arm['success_rate'] * 100:.2f}% [{low * 100:.2f}–{high * 100:.2f}]",
                     "order": order, "rate": arm["success_rate"] * 100, "low": low * 100, "high": high * 100,
                     "control": arm["label"] == control})
    reference = next(r["rate"] for r in rows if r["control"])
    low = min(r["low"] for r in rows)
    high = max(r["high"] for r in rows)
    pad = max((high - low) * 0.1, 0.5)
    domain = [max(0.0, low - pad), min(100.0, high + pad)]
    x = {"type": "quantitative", "scale": {"domain": domain, "nice": False},
         "title": f"first-target success rate (%), the bar: {level} confidence interval (Wilson); "
                  f"the dashed line: the control's rate"}
    y = {"field": "arm", "type": "nominal", "title": None, "sort": {"field": "order"}}
    return {
        "$schema": SCHEMA,
        "width": WIDTH - 260, "height": {"step": ROW_HEIGHT},   # the arms' labels take the rest
        "layer": [
            {"data": {"values": [{"rate": reference}]},
             "mark": {"type": "rule", "strokeDash": [3, 3], "color": "#9aa5b1"},
             "encoding": {"x": {"field": "rate", **x}}},
            {"data": {"values": rows},
             "layer": [
                 {"mark": {"type": "rule", "strokeWidth": 2, "color": "#1d2430"},
                  "encoding": {"x": {"field": "low", **x}, "x2": {"field": "high"}, "y": y}},
                 {"mark": {"type": "point", "filled": True, "size": 70, "color": BAR, "stroke": "#1d2430"},
                  "encoding": {"x": {"field": "rate", **x}, "y": {**y, "axis": {"orient": "left"}}}},
             ]},
        ],
        "config": CONFIG,
    }


def render(spec: dict[str, Any]) -> str:
    """The chart as an SVG element (vl-convert: Vega-Lite compiled and laid out in-process)."""
    import vl_convert

    return vl_convert.vegalite_to_svg(spec)
