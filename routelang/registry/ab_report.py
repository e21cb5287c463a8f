"""`routelang ab`: an A/B report of a router's split arms, from the request history.

`build_report` reads the history and computes (with `ab.py`) one experiment per
split rule: each arm's figures and each arm against the control. The report is a
plain dict (the `json` format); `render_text` and `render_markdown` print it,
`ab_html.render_html` draws it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..timetext import duration_s, iso, parse_iso
from . import ab

if TYPE_CHECKING:
    from .store import Store

MIN_REQUESTS = 30           # per arm, before any verdict
HISTOGRAM_BINS = 24

SUCCESS_DEFINITION = ("an arm is judged by its own target: a gateway request succeeded when its first target "
                      "answered (its outcome `ok`, its own retries included), whether or not the request then fell "
                      "over to another arm; a row without attempts succeeded when its status is `routed` (an SDK "
                      "decision) or `ok` (a 2xx answer; a status recorded as a 2xx number counts too); anything "
                      "else (`unmatched`, `error`, `client_disconnected`, 4xx, 5xx, ...) failed")
METHOD = ("fixed-horizon tests: a pooled two-proportion z-test on the success rate (Newcombe's hybrid score "
          "interval for the difference) and Welch's t-test on latency (Welch-Satterthwaite df, t interval); "
          "early-stopping guard: the mixture sequential probability ratio test (mSPRT; Johari, Koomen, Pekelis & "
          "Walsh 2017) with a normal mixture of spread 0.1 standard deviation, whose always-valid p-value and "
          "confidence interval hold however often the report is looked at; a verdict is `significant` only when "
          "the always-valid p-value is at most alpha (divided by the number of variants, Bonferroni)")

VERDICT_SIGNIFICANT = "significant"
VERDICT_NOT_YET = "not significant yet"
VERDICT_NO_DATA = "not enough data"


class ReportProblem(ValueError):
    """Bad report options (an unknown control arm, an unreadable time): exit 2."""


def arm_succeeded(row) -> bool:
    """The success of the arm the request was assigned to: its first target's outcome when the
    gateway called one, else the request's status (SDK decisions, requests no target was tried for)."""
    if row["first_outcome"] is not None:
        return row["first_outcome"] == "ok"
    return is_success(row["status"])


def is_success(status: str | None) -> bool:
    if status in ("routed", "ok", "success"):
        return True
    return status is not None and len(status) == 3 and status.isdigit() and status.startswith("2")


# ---- the window ------------------------------------------------------------------------------

def parse_time(text: str, now: float | None = None) -> float:
    """A point in time: relative to now (`90s`, `30m`, `24h`, `7d`, `2w`: that long
    ago) or an ISO 8601 date or date-time (without a zone: UTC)."""
    now = time.time() if now is None else now
    ago = duration_s(text)
    if ago is not None:
        when = now - ago
        try:
            iso(when)   # the report prints it: a time before year 1 cannot be
        except (ValueError, OverflowError, OSError):
            raise ReportProblem(f"{text!r} is too long ago to be a time") from None
        return when
    when = parse_iso(text)
    if when is None:
        raise ReportProblem(f"{text!r} is not a time: give an ISO date or date-time (2026-12-01, "
                            "2026-12-01T09:30Z) or a duration ago (30m, 24h, 7d)")
    return when


# ---- building the report ----------------------------------------------------------------------

def _per_request(rows, column: str) -> dict:
    values = [r[column] for r in rows if r[column] is not None]
    return {"count": len(values), "mean": ab.mean(values) if values else None}


def _own(rows: list) -> list:
    """The requests the arm answered itself: latency, tokens and cost of those that fell over
    to another arm are that arm's, not this one's."""
    return [r for r in rows if not r["failed_over"]]


def _arm(label: str, rows: list, alpha: float, edges: list[float]) -> dict:
    successes = sum(arm_succeeded(r) for r in rows)
    fell_over = sum(bool(r["failed_over"]) for r in rows)
    own = _own(rows)
    latencies = [r["latency_ms"] for r in own if r["latency_ms"] is not None]
    ttfts = [r["ttft_ms"] for r in own if r["ttft_ms"] is not None]
    return {
        "label": label,
        "requests": len(rows),
        "successes": successes,
        "success_rate": successes / len(rows),
        "success_rate_ci": list(ab.wilson_interval(successes, len(rows), alpha)),
        "fell_over": fell_over,
        "fall_over_rate": fell_over / len(rows),
        "latency_ms": {"count": len(latencies), "mean": ab.mean(latencies) if latencies else None,
                       **dict(zip(("p50", "p95", "p99"), ab.percentiles(latencies, (50, 95, 99))))},
        "ttft_ms": {"count": len(ttfts), **dict(zip(("p50", "p95"), ab.percentiles(ttfts, (50, 95))))},
        "tokens_in_per_request": _per_request(own, "tokens_in"),
        "tokens_out_per_request": _per_request(own, "tokens_out"),
        "cost_per_request": _per_request(own, "cost"),
        "versions": sorted({r["version"] for r in rows if r["version"] is not None}),
        "latency_histogram": _histogram(latencies, edges),
    }


def _histogram_edges(values: list[float]) -> list[float]:
    """Shared bins of every arm: from the smallest latency to the pooled 99th
    percentile (slower requests are counted as `above`), so one slow outlier
    does not squeeze every bar into one."""
    if not values:
        return []
    low, high = min(values), ab.percentile(values, 99)
    if high <= low:
        high = low + 1.0
    width = (high - low) / HISTOGRAM_BINS
    return [low + i * width for i in range(HISTOGRAM_BINS)] + [high]


def _histogram(values: list[float], edges: list[float]) -> dict:
    counts = [0] * max(len(edges) - 1, 0)
    above = 0
    for value in values:
        if value > edges[-1]:
            above += 1
            continue
        index = min(int((value - edges[0]) / (edges[1] - edges[0])), len(counts) - 1)
        counts[index] += 1
    return {"edges_ms": edges, "counts": counts, "above": above}


def _metric(verdict: str, reasons: list[str], **figures) -> dict:
    return {"verdict": verdict, "reasons": reasons, **figures}


def _judge(name: str, *, unit: Callable[[float], str], higher_is_better: bool, sizes: dict[str, int], counted: str,
           min_requests: int, alpha: float, fixed: Callable[[], ab.FixedHorizonResult],
           sequential: Callable[[], ab.AlwaysValid]) -> dict:
    """One metric of one comparison: the figures that can be computed, and the verdict with its reasons.
    `sizes`: how many values each arm has (`counted` names them); the tests run only when called."""
    reasons = [f"{label} has {n} {counted}; each arm needs at least {min_requests} before a verdict"
               for label, n in sizes.items() if n < min_requests]
    try:
        result = fixed()
    except ab.NotTestable as exc:
        return _metric(VERDICT_NO_DATA, reasons + [f"{name}: {exc}"])
    figures = {"difference": result.difference, "ci": list(result.ci), "statistic": result.statistic,
               "p_value": result.p_value}
    if result.df is not None:
        figures["df"] = result.df
    if reasons:
        return _metric(VERDICT_NO_DATA, reasons, **figures)
    try:
        guard = sequential()
    except ab.NotTestable as exc:
        return _metric(VERDICT_NO_DATA, [f"{name}: {exc}"], **figures)
    figures.update(always_valid_p=guard.p_value, always_valid_ci=list(guard.ci))
    direction = "higher" if result.difference > 0 else "lower"
    if guard.p_value <= alpha:
        better = (result.difference > 0) == higher_is_better
        found = (f"{name} of the variant is {direction} ({'better' if better else 'worse'}) by "
                 f"{unit(abs(result.difference))}: always-valid p = {guard.p_value:.3g} <= {alpha:.3g}")
        return _metric(VERDICT_SIGNIFICANT, [found], **figures)
    so_far = f"{'+' if result.difference >= 0 else '-'}{unit(abs(result.difference))}"
    reasons = [f"always-valid p = {guard.p_value:.3g} > {alpha:.3g}: the difference so far ({so_far}) may be chance"]
    if result.p_value <= alpha:
        reasons.append(f"the fixed-horizon p-value ({result.p_value:.3g}) is below {alpha:.3g}, but it holds only "
                       "for a sample size fixed in advance; stopping on it now would inflate false positives")
    return _metric(VERDICT_NOT_YET, reasons, **figures)


def _points(value: float) -> str:
    return f"{value * 100:.2f} percentage points"


def _ms(value: float) -> str:
    return f"{value:.4g} ms"


def _compare(control: dict, variant: dict, rows: list, min_requests: int, alpha: float) -> dict:
    """`rows`: the experiment's, in time order (the mSPRT looks after every request, as a live dashboard would)."""
    merged = [(r["split_label"] == variant["label"], r) for r in rows
              if r["split_label"] in (control["label"], variant["label"])]
    outcomes = [(is_variant, float(arm_succeeded(r))) for is_variant, r in merged]
    latencies = [(is_variant, r["latency_ms"]) for is_variant, r in merged
                 if r["latency_ms"] is not None and not r["failed_over"]]
    success = _judge(
        "the success rate", unit=_points, higher_is_better=True, counted="request(s)",
        sizes={control["label"]: control["requests"], variant["label"]: variant["requests"]},
        min_requests=min_requests, alpha=alpha,
        fixed=lambda: ab.two_proportion_z_test(control["successes"], control["requests"], variant["successes"],
                                               variant["requests"], alpha),
        sequential=lambda: ab.always_valid(outcomes, alpha, min_requests, binary=True))
    latency = _judge(
        "the mean latency", unit=_ms, higher_is_better=False, counted="latency value(s)",
        sizes={control["label"]: control["latency_ms"]["count"], variant["label"]: variant["latency_ms"]["count"]},
        min_requests=min_requests, alpha=alpha,
        fixed=lambda: ab.welch_t_test([v for is_variant, v in latencies if not is_variant],
                                      [v for is_variant, v in latencies if is_variant], alpha),
        sequential=lambda: ab.always_valid(latencies, alpha, min_requests))
    return {"arm": variant["label"], "control": control["label"], "success_rate": success, "latency_ms": latency}


def _experiment(rule: str | None, rows: list, control: str | None, min_requests: int, alpha: float) -> dict:
    by_arm: dict[str, list] = {}
    for row in rows:
        by_arm.setdefault(row["split_label"], []).append(row)
    labels = sorted(by_arm)
    if control is None:
        control = labels[0]
    elif control not in by_arm:
        raise ReportProblem(f"rule {rule!r} has no arm {control!r} in this window (arms: {', '.join(labels)})")
    labels.remove(control)
    labels.insert(0, control)
    variants = labels[1:]
    per_test_alpha = alpha / max(len(variants), 1)
    edges = _histogram_edges([r["latency_ms"] for r in _own(rows) if r["latency_ms"] is not None])
    arms = {label: _arm(label, by_arm[label], per_test_alpha, edges) for label in labels}
    comparisons = [_compare(arms[control], arms[label], rows, min_requests, per_test_alpha)
                   for label in variants]
    notes = []
    if not variants:
        notes.append(f"only one arm ({control}) has requests in this window: a comparison needs two")
    verdicts = [c[m]["verdict"] for c in comparisons for m in ("success_rate", "latency_ms")]
    if VERDICT_SIGNIFICANT in verdicts:
        verdict = VERDICT_SIGNIFICANT
    elif verdicts and any(v == VERDICT_NOT_YET for v in verdicts):
        verdict = VERDICT_NOT_YET
    else:
        verdict = VERDICT_NO_DATA
    return {"rule": rule, "control": control, "alpha_per_comparison": per_test_alpha, "verdict": verdict,
            "arms": [arms[label] for label in labels], "comparisons": comparisons, "notes": notes}


def build_report(store: Store, router: str, rule: str | None = None, since: float | None = None,
                 until: float | None = None, control: str | None = None, alpha: float = 0.05,
                 min_requests: int = MIN_REQUESTS, source: str | None = "gateway") -> dict:
    """The report of router `router`'s split arms in [since, until): one experiment per
    split rule (only `rule` if given), from the rows of `source` (gateway: requests served;
    sdk: decisions; None: both). A JSON-ready dict; no NaN anywhere."""
    if rule is not None and rule not in (known := store.rule_names(router)):
        raise ReportProblem(f"router {router!r} has no rule {rule!r}, in any version or request "
                            f"(rules: {', '.join(sorted(known)) or 'none'})")
    rows = store.split_rows(router, rule, since, until, source)
    by_rule: dict[str | None, list] = {}
    for row in rows:
        by_rule.setdefault(row["rule"], []).append(row)
    experiments = [_experiment(name, by_rule[name], control, min_requests, alpha)
                   for name in sorted(by_rule, key=lambda n: (n is None, n or ""))]
    message = None
    if not experiments:
        which = f"rule {rule!r} of router {router!r}" if rule else f"router {router!r}"
        window = "" if since is None and until is None else " in this window"
        among = "" if source is None else f" among the rows of the {source} (--source)"
        message = (f"not enough data: no request of {which} has a split label{window}{among} (a request "
                   "routed by a `split` rule is recorded with its arm's label)")
    return {"router": router, "source": source, "since": iso(since), "until": iso(until), "alpha": alpha,
            "min_requests_per_arm": min_requests, "success": SUCCESS_DEFINITION, "method": METHOD,
            "experiments": experiments, "message": message}


# ---- text and markdown ------------------------------------------------------------------------------

def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def level_of(alpha: float) -> str:
    return f"{(1 - alpha) * 100:.4g}%"


def arm_header(alpha: float) -> tuple[str, ...]:
    return ("arm", "requests", "success", f"{level_of(alpha)} CI", "fell over", "latency ms p50 / p95 / p99",
            "ttft ms p50 / p95", "tokens in / out", "cost / req", "versions")


def arm_cells(arm: dict) -> tuple[str, ...]:
    low, high = arm["success_rate_ci"]
    latency, ttft = arm["latency_ms"], arm["ttft_ms"]
    return (arm["label"], str(arm["requests"]), _pct(arm["success_rate"]), f"[{_pct(low)}, {_pct(high)}]",
            _pct(arm["fall_over_rate"]), f"{_num(latency['p50'])} / {_num(latency['p95'])} / {_num(latency['p99'])}",
            f"{_num(ttft['p50'])} / {_num(ttft['p95'])}",
            f"{_num(arm['tokens_in_per_request']['mean'])} / {_num(arm['tokens_out_per_request']['mean'])}",
            _num(arm["cost_per_request"]["mean"]), ", ".join(map(str, arm["versions"])) or "-")


def comparison_lines(comparison: dict, alpha: float) -> list[tuple[str, str, list[str]]]:
    """(metric, figures, [verdict line, reasons...]) per metric of a comparison."""
    level = level_of(alpha)
    out = []
    for key, name, fmt, stat in (("success_rate", "success rate", lambda v: f"{v * 100:+.2f} points", "z"),
                                 ("latency_ms", "mean latency", lambda v: f"{v:+.2f} ms", "Welch t")):
        m = comparison[key]
        if "difference" in m:
            figures = (f"{fmt(m['difference'])}, {level} CI [{fmt(m['ci'][0])}, {fmt(m['ci'][1])}]; "
                       f"{stat} = {m['statistic']:.3f}" + (f", df = {m['df']:.1f}" if "df" in m else "")
                       + f", p = {m['p_value']:.3g}")
            if "always_valid_p" in m:
                figures += (f"; always-valid p = {m['always_valid_p']:.3g}, CI [{fmt(m['always_valid_ci'][0])}, "
                            f"{fmt(m['always_valid_ci'][1])}]")
        else:
            figures = "no figures"
        out.append((name, figures, [m["verdict"], *m["reasons"]]))
    return out


def window_of(report: dict) -> str:
    """Which rows the report counts, in words: the time window and the source."""
    window = "all recorded requests"
    if report["since"] or report["until"]:
        window = f"from {report['since'] or 'the first request'} until {report['until'] or 'now'}"
    source = {"gateway": "requests served by the gateway", "sdk": "decisions of the SDK"}.get(report["source"],
                                                                                           "every source")
    return f"{window}; {source}"


def _header_lines(report: dict) -> list[str]:
    return [f"A/B report for router {report['router']} ({window_of(report)})",
            f"success: {report['success']}", f"method: {report['method']}"]


def render_text(report: dict) -> str:
    lines = _header_lines(report)
    if report["message"]:
        lines += ["", report["message"]]
    for exp in report["experiments"]:
        alpha = exp["alpha_per_comparison"]
        title = (f"rule {exp['rule'] or '-'}: {exp['verdict']} (control: {exp['control']}, "
                 f"alpha per comparison {alpha:.3g})")
        lines += ["", title, ""]
        table = [arm_header(alpha)] + [arm_cells(a) for a in exp["arms"]]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
        for note in exp["notes"]:
            lines += ["", f"not enough data: {note}"]
        for comparison in exp["comparisons"]:
            lines += ["", f"{comparison['arm']} vs {comparison['control']}:"]
            for name, figures, (verdict, *reasons) in comparison_lines(comparison, alpha):
                lines.append(f"  {name}: {verdict}")
                lines.append(f"    {figures}")
                lines += [f"    - {reason}" for reason in reasons]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: dict) -> str:
    head = _header_lines(report)
    lines = [f"# {head[0]}", "", f"- {head[1]}", f"- {head[2]}"]
    if report["message"]:
        lines += ["", report["message"]]
    for exp in report["experiments"]:
        alpha = exp["alpha_per_comparison"]
        lines += ["", f"## rule `{exp['rule'] or '-'}`: {exp['verdict']}", "",
                  f"Control: `{exp['control']}`; alpha per comparison {alpha:.3g}.", ""]
        header = arm_header(alpha)
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md(c) for c in arm_cells(a)) + " |" for a in exp["arms"]]
        for note in exp["notes"]:
            lines += ["", f"**not enough data**: {_md(note)}"]
        for comparison in exp["comparisons"]:
            lines += ["", f"### `{comparison['arm']}` vs `{comparison['control']}`", ""]
            for name, figures, (verdict, *reasons) in comparison_lines(comparison, alpha):
                lines.append(f"- **{name}: {verdict}** — {_md(figures)}")
                lines += [f"  - {_md(reason)}" for reason in reasons]
    return "\n".join(lines) + "\n"
