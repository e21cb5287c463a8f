"""The `html` format of `routelang ab`: one self-contained page (inline CSS and
SVG, no script, nothing fetched) with, per arm, its latency histogram and its
success rate with the confidence interval, on axes shared by the arms of an
experiment so they can be compared by eye. The page is well-formed XML.
"""

from __future__ import annotations

import math
from html import escape

from .ab_report import arm_cells, arm_header, comparison_lines, level_of, window_of

WIDTH = 640
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 34, 52      # the plot area's margins in the latency chart
HIST_HEIGHT = 280
RATE_HEIGHT = 130

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1d2430; max-width: 1400px; margin: 24px auto; padding: 0 16px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #c9d1dc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; border: 1px solid #dfe4ea; padding: 6px; }
.verdict-significant { color: #0b6b2e; } .verdict-not-significant-yet { color: #8a5a00; }
.verdict-not-enough-data { color: #6b7280; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2430; }
svg .title { font-weight: 600; font-size: 13px; }
svg .axis { stroke: #1d2430; stroke-width: 1; }
svg .grid { stroke: #e5e9ef; stroke-width: 1; }
svg .bar { fill: #4c78a8; }
svg .marker { stroke: #d6604d; stroke-width: 1.5; stroke-dasharray: 4 3; }
svg .ci { stroke: #1d2430; stroke-width: 2; }
svg .point { fill: #4c78a8; stroke: #1d2430; }
svg .reference { stroke: #9aa5b1; stroke-width: 1; stroke-dasharray: 3 3; }
"""


def _e(text) -> str:
    return escape(str(text), quote=True)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:.4g}"


def _svg(metric: str, arm: str, height: int, title: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-metric="{_e(metric)}" data-arm="{_e(arm)}" '
            f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{_e(title)}">'
            f'<title>{_e(title)}</title>' + "".join(body) + "</svg>")


def latency_chart(arm: dict, y_max: int) -> str:
    """The arm's latency histogram: x latency in ms (bins shared by the arms), y requests."""
    histogram, latency = arm["latency_histogram"], arm["latency_ms"]
    title = f"{arm['label']}: latency distribution (ms), {latency['count']} requests"
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HIST_HEIGHT - TOP - BOTTOM
    body = [f'<text class="title" x="{LEFT}" y="20">{_e(title)}</text>']
    edges, counts = histogram["edges_ms"], histogram["counts"]
    if not counts or latency["count"] == 0:
        body.append(f'<text x="{LEFT}" y="{TOP + plot_h / 2:.1f}">no latency recorded for this arm</text>')
        return _svg("latency", arm["label"], HIST_HEIGHT, title, body)
    x0, x1 = edges[0], edges[-1]
    y_top = max(y_max, 1)

    def x(value: float) -> float:
        return LEFT + (value - x0) / (x1 - x0) * plot_w

    def y(count: float) -> float:
        return TOP + plot_h - count / y_top * plot_h

    for tick in nice_ticks(0, y_top):
        body.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                    f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
    for low, high, count in zip(edges, edges[1:], counts):
        if count:
            body.append(f'<rect class="bar" x="{x(low):.1f}" y="{y(count):.1f}" width="{max(x(high) - x(low) - 1, 1):.1f}" '
                        f'height="{y(0) - y(count):.1f}"><title>{_label(low)}–{_label(high)} ms: {count} '
                        f'request(s)</title></rect>')
    for tick in nice_ticks(x0, x1):
        body.append(f'<line class="axis" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{y(0):.1f}" y2="{y(0) + 5:.1f}"/>'
                    f'<text x="{x(tick):.1f}" y="{y(0) + 18:.1f}" text-anchor="middle">{_label(tick)}</text>')
    for name in ("p50", "p95"):
        value = latency[name]
        if value is not None and x0 <= value <= x1:
            body.append(f'<line class="marker" x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{TOP}" y2="{y(0):.1f}"/>'
                        f'<text x="{x(value) + 3:.1f}" y="{TOP + 12 if name == "p50" else TOP + 26}">'
                        f'{name} {_label(value)} ms</text>')
    body.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(0):.1f}" y2="{y(0):.1f}"/>'
                f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{y(0):.1f}"/>'
                f'<text x="{LEFT + plot_w / 2:.1f}" y="{HIST_HEIGHT - 12}" text-anchor="middle">latency (ms)'
                + (f"; {histogram['above']} slower than {_label(x1)} ms not drawn" if histogram["above"] else "")
                + "</text>"
                f'<text x="16" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
                f'transform="rotate(-90 16 {TOP + plot_h / 2:.1f})">requests</text>')
    return _svg("latency", arm["label"], HIST_HEIGHT, title, body)


def rate_chart(arm: dict, axis: tuple[float, float], level: str, control: dict | None) -> str:
    """The arm's success rate as a point with its confidence interval, on an axis shared by the arms."""
    low_axis, high_axis = axis
    low, high = arm["success_rate_ci"]
    title = (f"{arm['label']}: success rate {arm['success_rate'] * 100:.2f}% "
             f"({arm['successes']} of {arm['requests']}), {level} CI {low * 100:.2f}–{high * 100:.2f}%")
    plot_w = WIDTH - LEFT - RIGHT
    axis_y, mid = RATE_HEIGHT - 40, RATE_HEIGHT - 60

    def x(rate: float) -> float:
        return LEFT + (rate - low_axis) / (high_axis - low_axis) * plot_w

    body = [f'<text class="title" x="{LEFT}" y="20">{_e(title)}</text>']
    for tick in nice_ticks(low_axis * 100, high_axis * 100):
        body.append(f'<line class="axis" x1="{x(tick / 100):.1f}" x2="{x(tick / 100):.1f}" y1="{axis_y}" '
                    f'y2="{axis_y + 5}"/><text x="{x(tick / 100):.1f}" y="{axis_y + 18}" text-anchor="middle">'
                    f'{_label(tick)}</text>')
    if control is not None:
        reference = x(control["success_rate"])
        body.append(f'<line class="reference" x1="{reference:.1f}" x2="{reference:.1f}" y1="{mid - 16}" '
                    f'y2="{axis_y}"/><text x="{reference:.1f}" y="{mid - 19}" text-anchor="middle">'
                    f'control {control["success_rate"] * 100:.2f}%</text>')
    body.append(f'<line class="ci" x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{mid}" y2="{mid}"/>'
                f'<line class="ci" x1="{x(low):.1f}" x2="{x(low):.1f}" y1="{mid - 6}" y2="{mid + 6}"/>'
                f'<line class="ci" x1="{x(high):.1f}" x2="{x(high):.1f}" y1="{mid - 6}" y2="{mid + 6}"/>'
                f'<circle class="point" cx="{x(arm["success_rate"]):.1f}" cy="{mid}" r="5"/>'
                f'<line class="axis" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{axis_y}" y2="{axis_y}"/>'
                f'<text x="{LEFT + plot_w / 2:.1f}" y="{RATE_HEIGHT - 8}" text-anchor="middle">'
                f'success rate (%), the bar: {level} confidence interval (Wilson)</text>')
    return _svg("success_rate", arm["label"], RATE_HEIGHT, title, body)


def _rate_axis(arms: list[dict]) -> tuple[float, float]:
    low = min(a["success_rate_ci"][0] for a in arms)
    high = max(a["success_rate_ci"][1] for a in arms)
    pad = max((high - low) * 0.15, 0.005)
    return max(0.0, low - pad), min(1.0, high + pad)


def _verdict_class(verdict: str) -> str:
    return "verdict-" + verdict.replace(" ", "-")


def _experiment(exp: dict) -> list[str]:
    alpha = exp["alpha_per_comparison"]
    level = level_of(alpha)
    out = [(f'<section><h2>rule <code>{_e(exp["rule"] or "-")}</code>: '
           f'<span class="{_verdict_class(exp["verdict"])}">{_e(exp["verdict"])}</span></h2>'),
           f'<p>Control: <code>{_e(exp["control"])}</code>; alpha per comparison {alpha:.3g}.</p>',
           "<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in arm_header(alpha)) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{_e(c)}</td>" for c in arm_cells(a)) + "</tr>" for a in exp["arms"]]
    out.append("</tbody></table>")
    out += [f'<p class="verdict-not-enough-data">not enough data: {_e(note)}</p>' for note in exp["notes"]]
    for comparison in exp["comparisons"]:
        out.append(f'<h3><code>{_e(comparison["arm"])}</code> vs <code>{_e(comparison["control"])}</code></h3><ul>')
        for name, figures, (verdict, *reasons) in comparison_lines(comparison, alpha):
            out.append(f'<li><strong>{_e(name)}: <span class="{_verdict_class(verdict)}">{_e(verdict)}</span>'
                       f'</strong> — {_e(figures)}<ul>' + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul></li>")
        out.append("</ul>")
    y_max = max((max(a["latency_histogram"]["counts"], default=0) for a in exp["arms"]), default=0)
    axis = _rate_axis(exp["arms"])
    control = exp["arms"][0]
    out.append('<h3>Latency and success rate per arm</h3><div class="charts">')
    for arm in exp["arms"]:
        out.append("<figure>" + latency_chart(arm, y_max) + "<br/>"
                   + rate_chart(arm, axis, level, None if arm is control else control) + "</figure>")
    out.append("</div></section>")
    return out


def render_html(report: dict) -> str:
    title = f"A/B report: router {report['router']}"
    window = window_of(report)
    parts = ["<!DOCTYPE html>", '<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head><meta charset="utf-8"/>',
             f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{_e(title)}</h1><p>{_e(window)}</p>",
             f"<p><strong>Success:</strong> {_e(report['success'])}.</p>",
             f"<p><strong>Method:</strong> {_e(report['method'])}.</p>"]
    if report["message"]:
        parts.append(f'<p class="verdict-not-enough-data">{_e(report["message"])}</p>')
    for exp in report["experiments"]:
        parts += _experiment(exp)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
