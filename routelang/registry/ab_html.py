"""The `html` format of `routelang ab`: one self-contained page (inline CSS and
SVG, no script, nothing fetched) with, per experiment, the arms' latency
histograms side by side on shared axes and their success rates with the
confidence intervals (charts: `ab_charts.py`). The page is well-formed XML.
"""

from __future__ import annotations

import re
from html import escape

from . import ab_charts
from .ab_report import arm_cells, arm_header, comparison_lines, level_of, window_of

STYLE = """
body { font: 15px/1.45 "DejaVu Sans", Verdana, sans-serif; color: #1d2430; max-width: 1100px; margin: 24px auto;
       padding: 0 16px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #c9d1dc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td { white-space: nowrap; }
code { font: 13px "DejaVu Sans Mono", monospace; background: #f1f3f6; padding: 0 3px; }
figure { margin: 12px 0; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 13px; color: #4b5563; }
.verdict-significant { color: #0b6b2e; } .verdict-not-significant-yet { color: #8a5a00; }
.verdict-not-enough-data { color: #6b7280; }
"""


def _e(text) -> str:
    return escape(str(text), quote=True)


_CODE = re.compile(r"`([^`]+)`")


def _prose(text: str) -> str:
    """Report text for the page: escaped, its `code` spans (Markdown in the text formats) as <code>."""
    return _CODE.sub(r"<code>\1</code>", _e(text))


def _figure(metric: str, caption: str, svg: str) -> str:
    svg = svg.replace("<svg ", f'<svg data-metric="{_e(metric)}" role="img" aria-label="{_e(caption)}" ', 1)
    return f'<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>'


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
    out += [f'<p class="verdict-not-enough-data">not enough data: {_prose(note)}</p>' for note in exp["notes"]]
    for comparison in exp["comparisons"]:
        out.append(f'<h3><code>{_e(comparison["arm"])}</code> vs <code>{_e(comparison["control"])}</code></h3><ul>')
        for name, figures, (verdict, *reasons) in comparison_lines(comparison, alpha):
            out.append(f'<li><strong>{_e(name)}: <span class="{_verdict_class(verdict)}">{_e(verdict)}</span>'
                       f'</strong> — {_e(figures)}<ul>' + "".join(f"<li>{_prose(r)}</li>" for r in reasons) + "</ul></li>")
        out.append("</ul>")
    arms = exp["arms"]
    out.append("<h3>Latency and success rate per arm</h3>")
    out.append(_figure("latency", "latency of the requests each arm answered itself (ms), bins shared by the arms",
                       ab_charts.render(ab_charts.latency_spec(arms))))
    out.append(_figure("success_rate", f"first-target success rate per arm, {level} confidence intervals",
                       ab_charts.render(ab_charts.success_spec(arms, level, exp["control"]))))
    out.append("</section>")
    return out


def render_html(report: dict) -> str:
    title = f"A/B report: router {report['router']}"
    window = window_of(report)
    parts = ["<!DOCTYPE html>", '<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head><meta charset="utf-8"/>',
             f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{_e(title)}</h1><p>{_e(window)}</p>",
             f"<p><strong>Success:</strong> {_prose(report['success'])}.</p>",
             f"<p><strong>Method:</strong> {_prose(report['method'])}.</p>"]
    if report["message"]:
        parts.append(f'<p class="verdict-not-enough-data">{_prose(report["message"])}</p>')
    for exp in report["experiments"]:
        parts += _experiment(exp)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
