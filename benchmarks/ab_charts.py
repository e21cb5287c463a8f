"""The A/B report's charts drawn two ways, to choose the plotting library:
Vega-Lite rendered by vl-convert (what `routelang ab --format html` uses,
routelang/registry/ab_charts.py) and matplotlib's SVG backend drawing the
same two charts (the arms' latency histograms side by side on a shared y
axis with p50/p95 marked; the success rates with their intervals).

    .venv/bin/python benchmarks/ab_charts.py [ARMS]

Prints, per library: the first report in a fresh process (import and
start-up included, the case of one `routelang ab` run), the next reports
(mean of 10), and the bytes of the two SVGs; for matplotlib both with text
drawn as paths (its default) and as <text> (`svg.fonttype: none`).
"""

from __future__ import annotations

import io
import itertools
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent


def report_arms(arms: int) -> list[dict]:
    """The `arms` of an experiment as ab_report builds them, from 800 requests per arm."""
    sys.path.insert(0, str(ROOT))
    from routelang.registry import ab_report

    rng = random.Random(1)
    rows = []
    for i in range(800 * arms):
        label = f"arm{i % arms}"
        latency = max(rng.gauss(200 - 10 * (i % arms), 30), 1)
        failed = rng.random() < 0.05 + 0.03 * (i % arms)
        rows.append({"split_label": label, "status": "ok", "first_outcome": "http_500" if failed else "ok",
                     "failed_over": failed, "latency_ms": latency, "ttft_ms": latency / 4, "tokens_in": 100,
                     "tokens_out": 200, "cost": 0.002, "version": 1, "rule": "ab", "time": i})
    edges = ab_report._histogram_edges([r["latency_ms"] for r in rows if not r["failed_over"]])
    return [ab_report._arm(f"arm{k}", [r for r in rows if r["split_label"] == f"arm{k}"], 0.05, edges)
            for k in range(arms)]


def vega(arms: list[dict]) -> list[str]:
    from routelang.registry import ab_charts

    return [ab_charts.render(ab_charts.latency_spec(arms)),
            ab_charts.render(ab_charts.success_spec(arms, "95%", arms[0]["label"]))]


def matplotlib_svgs(arms: list[dict], fonttype: str) -> list[str]:
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = fonttype
    out = []
    figure, axes = plt.subplots(1, len(arms), sharey=True, figsize=(10.4, 3.2))
    for ax, arm in zip(axes, arms):
        histogram, latency = arm["latency_histogram"], arm["latency_ms"]
        edges = histogram["edges_ms"]
        ax.bar(edges[:-1], histogram["counts"], width=[b - a for a, b in itertools.pairwise(edges)], align="edge",
               color="#4c78a8", edgecolor="white")
        for name, colour in (("p50", "#d6604d"), ("p95", "#8a5a00")):
            ax.axvline(latency[name], color=colour, linestyle="--", label=name)
        ax.set_title(f"{arm['label']}: {latency['count']} answered\np50 {latency['p50']:.4g} ms, "
                     f"p95 {latency['p95']:.4g} ms", fontsize=10)
        ax.set_xlabel("latency (ms)")
    axes[0].set_ylabel("requests")
    axes[0].legend(loc="upper left")
    figure.tight_layout()
    out.append(_svg(figure, plt))
    figure, ax = plt.subplots(figsize=(10.4, 0.5 + 0.4 * len(arms)))
    for row, arm in enumerate(arms):
        low, high = arm["success_rate_ci"]
        rate = arm["success_rate"] * 100
        ax.errorbar([rate], [row], xerr=[[rate - low * 100], [high * 100 - rate]], fmt="o", color="#4c78a8",
                    ecolor="#1d2430", capsize=3)
    ax.axvline(arms[0]["success_rate"] * 100, color="#9aa5b1", linestyle=":")
    ax.set_yticks(range(len(arms)), [f"{a['label']}: {a['success_rate'] * 100:.2f}%" for a in arms])
    ax.set_xlabel("first-target success rate (%), 95% confidence interval (Wilson)")
    figure.tight_layout()
    out.append(_svg(figure, plt))
    return out


def _svg(figure, plt) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    return buffer.getvalue()


DRAW = {"vl-convert": lambda arms: vega(arms),
        "matplotlib (text as paths)": lambda arms: matplotlib_svgs(arms, "path"),
        "matplotlib (text as <text>)": lambda arms: matplotlib_svgs(arms, "none")}


def first_in_a_fresh_process(name: str, arms: int) -> float:
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
            f"from ab_charts import DRAW, report_arms\narms = report_arms({arms})\n"
            f"start = time.perf_counter(); DRAW[{name!r}](arms); print(time.perf_counter() - start)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    return float(done.stdout)


def main() -> None:
    arms = report_arms(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    results = {}
    for name, draw in DRAW.items():
        first = first_in_a_fresh_process(name, len(arms))
        draw(arms)
        times = []
        for _ in range(10):
            start = time.perf_counter()
            svgs = draw(arms)
            times.append(time.perf_counter() - start)
        results[name] = {"first_s": round(first, 3), "next_s": round(statistics.mean(times), 4),
                         "svg_bytes": [len(s.encode()) for s in svgs],
                         "text_elements": sum(s.count("<text") for s in svgs)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
