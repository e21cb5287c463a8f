"""`routelang ab`: reports from a real SQLite history, their edge cases, the formats, the SDK end to end."""

from __future__ import annotations

import datetime
import json
import math
import random
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner
from statsmodels.stats.proportion import proportions_ztest

from routelang.cli import Exit, main
from routelang.registry import ab_report
from routelang.registry.history import RequestRecord, insert

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC).timestamp()


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def gateway_rows(arms: dict[str, tuple[int, float, float, float]], seed: int = 1, rule: str = "ab",
                 start: float = T0) -> list[RequestRecord]:
    """Requests as the gateway records them: per arm (n, success rate, mean latency ms,
    latency sd), status `ok` or `error`, ttft, tokens and cost; the arms interleaved in time."""
    rng = random.Random(seed)
    plan = [label for label, (n, *_) in arms.items() for _ in range(n)]
    rng.shuffle(plan)
    rows = []
    for i, label in enumerate(plan):
        _, success, mean, sd = arms[label]
        latency = max(rng.gauss(mean, sd), 1.0)
        rows.append(RequestRecord(
            router="chat", version=1, rule=rule, status="ok" if rng.random() < success else "error",
            latency_ms=latency, ttft_ms=latency / 4, tokens_in=rng.randint(20, 200), tokens_out=rng.randint(50, 400),
            cost=0.002 if label == "control" else 0.003, split_label=label, time=start + i))
    return rows


def report_of(store, **options) -> dict:
    report = ab_report.build_report(store.conn, "chat", **options)
    json.dumps(report, allow_nan=False)   # never a NaN or an infinity
    return report


def svg_words(chart) -> str:
    """The text an SVG chart shows (its <text> elements, their lines joined by spaces)."""
    return " ".join(" ".join(t.itertext()) for t in chart.iter(f"{SVG}text"))


def _values(rows, label, column):
    return [getattr(r, column) for r in rows if r.split_label == label and getattr(r, column) is not None]


def test_two_arms_with_known_distributions_match_the_references(deployed):
    rows = gateway_rows({"control": (500, 0.95, 200, 30), "variant": (500, 0.85, 170, 30)})
    insert(deployed.conn, rows)
    report = report_of(deployed)
    [exp] = report["experiments"]
    assert exp["rule"] == "ab" and exp["control"] == "control" and exp["verdict"] == "significant"
    control, variant = exp["arms"]
    for arm in (control, variant):
        latencies = _values(rows, arm["label"], "latency_ms")
        assert arm["requests"] == len(latencies)
        for q in (50, 95, 99):
            assert math.isclose(arm["latency_ms"][f"p{q}"], np.percentile(latencies, q), rel_tol=1e-12)
        ttfts = _values(rows, arm["label"], "ttft_ms")
        assert math.isclose(arm["ttft_ms"]["p95"], np.percentile(ttfts, 95), rel_tol=1e-12)
        assert math.isclose(arm["tokens_out_per_request"]["mean"], np.mean(_values(rows, arm["label"], "tokens_out")))
        assert arm["successes"] == sum(r.status == "ok" for r in rows if r.split_label == arm["label"])
        assert sum(arm["latency_histogram"]["counts"]) + arm["latency_histogram"]["above"] == arm["requests"]
    assert control["cost_per_request"]["mean"] == pytest.approx(0.002)
    [comparison] = exp["comparisons"]
    welch = scipy.stats.ttest_ind(_values(rows, "variant", "latency_ms"), _values(rows, "control", "latency_ms"),
                                  equal_var=False)
    latency = comparison["latency_ms"]
    assert latency["statistic"] == pytest.approx(welch.statistic, rel=1e-9)
    assert latency["df"] == pytest.approx(welch.df, rel=1e-9)
    assert latency["p_value"] == pytest.approx(welch.pvalue, rel=1e-7)
    z, p = proportions_ztest([variant["successes"], control["successes"]], [variant["requests"], control["requests"]])
    assert comparison["success_rate"]["statistic"] == pytest.approx(z, rel=1e-9)
    assert comparison["success_rate"]["p_value"] == pytest.approx(p, rel=1e-7)
    for metric in ("success_rate", "latency_ms"):
        assert comparison[metric]["verdict"] == "significant"
        assert comparison[metric]["always_valid_p"] >= comparison[metric]["p_value"]
        low, high = comparison[metric]["always_valid_ci"]
        assert low <= comparison[metric]["difference"] <= high < 0
    assert "lower (worse)" in comparison["success_rate"]["reasons"][0]
    assert "lower (better)" in comparison["latency_ms"]["reasons"][0]


def test_no_difference_is_not_significant_yet_and_says_why(deployed):
    insert(deployed.conn, gateway_rows({"control": (300, 0.9, 200, 40), "variant": (300, 0.9, 200, 40)}, seed=5))
    [comparison] = report_of(deployed)["experiments"][0]["comparisons"]
    for metric in ("success_rate", "latency_ms"):
        assert comparison[metric]["verdict"] == "not significant yet"
        assert comparison[metric]["reasons"][0].startswith("always-valid p = ")


def test_a_lucky_fixed_horizon_p_value_is_not_a_verdict(deployed):
    """A small effect whose fixed-horizon p is below alpha while the always-valid one is not."""
    insert(deployed.conn, gateway_rows({"control": (400, 1.0, 200, 40), "variant": (400, 1.0, 207, 40)}, seed=11))
    latency = report_of(deployed)["experiments"][0]["comparisons"][0]["latency_ms"]
    assert latency["p_value"] <= 0.05 < latency["always_valid_p"], latency
    assert latency["verdict"] == "not significant yet"
    assert any("holds only for a sample size fixed in advance" in r for r in latency["reasons"])


def test_few_requests_is_not_enough_data(deployed):
    insert(deployed.conn, gateway_rows({"control": (12, 0.5, 200, 40), "variant": (40, 0.5, 150, 40)}))
    exp = report_of(deployed)["experiments"][0]
    assert exp["verdict"] == "not enough data"
    success = exp["comparisons"][0]["success_rate"]
    assert success["verdict"] == "not enough data"
    assert success["reasons"] == ["control has 12 request(s); each arm needs at least 30 before a verdict"]
    assert "p_value" in success   # the figures are still shown


def test_all_successes_and_no_latency_variance_say_so(deployed):
    rows = gateway_rows({"control": (50, 1.0, 200, 0), "variant": (50, 1.0, 200, 0)})
    insert(deployed.conn, rows)
    [comparison] = report_of(deployed)["experiments"][0]["comparisons"]
    assert comparison["success_rate"] == {"verdict": "not enough data", "reasons": [
        "the success rate: every request of both arms succeeded: the rates do not vary yet"]}
    assert comparison["latency_ms"]["reasons"] == [
        "the mean latency: no variance: every value of both arms is the same"]
    text = run("ab", "chat").output
    assert "every request of both arms succeeded" in text and "nan" not in text.lower()


def test_an_arm_of_one_request_and_a_single_arm(deployed):
    insert(deployed.conn, gateway_rows({"control": (40, 0.9, 200, 30), "variant": (1, 1.0, 150, 30)}))
    latency = report_of(deployed)["experiments"][0]["comparisons"][0]["latency_ms"]
    assert latency["verdict"] == "not enough data"
    assert "the mean latency: each arm needs at least 2 values" in latency["reasons"]
    [arm] = report_of(deployed, rule="ab", until=T0 + 1)["experiments"][0]["arms"]  # the first request only
    assert arm["requests"] == 1 and arm["latency_ms"]["p99"] == arm["latency_ms"]["p50"]


def test_single_arm_is_not_enough_data(deployed):
    insert(deployed.conn, gateway_rows({"control": (60, 0.9, 200, 30)}))
    exp = report_of(deployed)["experiments"][0]
    assert exp["verdict"] == "not enough data" and exp["comparisons"] == []
    assert exp["notes"] == ["only one arm (control) has requests in this window: a comparison needs two"]
    result = run("ab", "chat")
    assert result.exit_code == Exit.OK and "not enough data: only one arm (control)" in result.output


def test_no_split_rule_gives_a_clear_message(deployed):
    insert(deployed.conn, [RequestRecord(router="chat", version=1, rule="default", status="routed", latency_ms=1.0,
                                      time=T0)])
    result = run("ab", "chat")
    assert result.exit_code == Exit.OK
    assert "not enough data: no request of router 'chat' has a split label" in result.output
    typo = run("ab", "chat", "--rule", "nope")   # was "not enough data", exit 0: a typo looked like no data
    assert typo.exit_code == Exit.USAGE and "router 'chat' has no rule 'nope'" in typo.output
    assert "(rules: ab, default, premium)" in typo.output
    no_split = run("ab", "chat", "--rule", "default")
    assert no_split.exit_code == Exit.OK and "no request of rule 'default' of router 'chat' has a split" in no_split.output


def test_several_split_rules_are_separate_experiments_and_rule_selects_one(deployed):
    insert(deployed.conn, gateway_rows({"control": (40, 0.9, 200, 30), "variant": (40, 0.9, 200, 30)}, rule="ab"))
    insert(deployed.conn, gateway_rows({"a": (40, 0.9, 200, 30), "b": (40, 0.9, 200, 30)}, rule="other", seed=2))
    assert [e["rule"] for e in report_of(deployed)["experiments"]] == ["ab", "other"]
    [only] = report_of(deployed, rule="other")["experiments"]
    assert [a["label"] for a in only["arms"]] == ["a", "b"]


def test_control_option_and_three_arms_share_alpha(deployed):
    insert(deployed.conn, gateway_rows({"a": (60, 0.9, 200, 30), "b": (60, 0.9, 200, 30), "c": (60, 0.9, 200, 30)}))
    exp = report_of(deployed, control="b")
    [exp] = exp["experiments"]
    assert exp["control"] == "b" and [c["arm"] for c in exp["comparisons"]] == ["a", "c"]
    assert exp["alpha_per_comparison"] == pytest.approx(0.025)
    result = run("ab", "chat", "--control", "zzz")
    assert result.exit_code == Exit.USAGE and "has no arm 'zzz'" in result.output and "a, b, c" in result.output


def test_since_and_until_accept_iso_and_durations(deployed):
    insert(deployed.conn, gateway_rows({"control": (50, 0.9, 200, 30), "variant": (50, 0.9, 200, 30)}))
    assert ab_report.parse_time("24h", now=1000.0 + 86400) == 1000.0
    assert ab_report.parse_time("7d", now=7 * 86400.0) == 0.0
    assert ab_report.parse_time("2026-11-01") == T0
    assert ab_report.parse_time("2026-11-01T00:00:30Z") == T0 + 30
    assert ab_report.parse_time("2026-11-01T01:00:30+01:00") == T0 + 30
    window = report_of(deployed, since=ab_report.parse_time("2026-11-01T00:00:30"), until=T0 + 40)
    assert sum(a["requests"] for a in window["experiments"][0]["arms"]) == 10
    assert window["since"] == "2026-11-01T00:00:30Z"
    recent = json.loads(run("ab", "chat", "--since", "1h", "--format", "json").output)  # T0 is long ago
    assert recent["experiments"] == [] and "in this window" in recent["message"]
    far = run("ab", "chat", "--since", "99999999d")     # before year 1: was an internal error (exit 3)
    assert far.exit_code == Exit.USAGE and "too long ago" in far.output
    backwards = run("ab", "chat", "--since", "1d", "--until", "7d")
    assert backwards.exit_code == Exit.USAGE and "is not after --since" in backwards.output
    bad = run("ab", "chat", "--since", "yesterday")
    assert bad.exit_code == Exit.USAGE and "'yesterday' is not a time" in bad.output


def test_unknown_router_and_missing_registry_exit_2(deployed, tmp_path):
    assert run("ab", "nope").exit_code == Exit.USAGE
    missing = run("ab", "chat", "--registry", tmp_path / "none.db")
    assert missing.exit_code == Exit.USAGE and "no registry" in missing.output


def test_formats_and_output_file(deployed, tmp_path):
    insert(deployed.conn, gateway_rows({"control": (200, 0.95, 200, 30), "variant": (200, 0.85, 170, 30)}))
    table = run("ab", "chat")
    assert table.exit_code == Exit.OK
    assert "rule ab: significant (control: control" in table.output
    assert "variant vs control:" in table.output and "always-valid p = " in table.output
    markdown = run("ab", "chat", "--format", "markdown").output
    assert "| arm | requests | success | 95% CI |" in markdown and "### `variant` vs `control`" in markdown
    out = tmp_path / "report.json"
    assert run("ab", "chat", "--format", "json", "--output", out).output == ""
    assert json.loads(out.read_text())["experiments"][0]["verdict"] == "significant"


def test_html_is_well_formed_self_contained_and_has_both_charts_with_every_arm(deployed, tmp_path):
    insert(deployed.conn, gateway_rows({"control": (200, 0.95, 200, 30), 'new <b>&"x"': (200, 0.85, 170, 30),
                                     "third": (100, 0.9, 190, 30)}))
    out = tmp_path / "report.html"
    assert run("ab", "chat", "--format", "html", "-o", out).exit_code == Exit.OK
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    root = ET.fromstring(text)          # well-formed XML (labels are escaped)
    charts = root.findall(f".//{SVG}svg")
    assert [c.get("data-metric") for c in charts] == ["latency", "success_rate"]
    labels = ["control", 'new <b>&"x"', "third"]
    latency, success = (svg_words(c) for c in charts)
    assert "latency (ms)" in latency and "requests" in latency and "first-target success rate (%)" in success
    assert all(f"{label}: " in latency and f"{label}: " in success for label in labels)
    assert len(re.findall(r"p50 [\d.]+ ms, p95 [\d.]+ ms", latency)) == 3   # every arm's p95 has its value
    assert len(charts[0].findall(f".//{SVG}path[@aria-roledescription='bar']")) >= 30   # the bars
    assert "<script" not in text and "src=" not in text and "href=" not in text
    assert "http" not in re.sub(r'xmlns(:\w+)?="http://www.w3.org/[^"]*"', "", text)
    assert "`" not in "".join(root.itertext())     # Markdown's code spans are <code> on the page
    assert root.find(".//{http://www.w3.org/1999/xhtml}code") is not None


def test_html_without_latency_still_draws_every_arm(deployed, tmp_path):
    insert(deployed.conn, [RequestRecord(router="chat", version=1, rule="ab", status="routed", split_label=label,
                                      time=T0 + i) for i, label in enumerate(["control", "variant"] * 3)])
    root = ET.fromstring(run("ab", "chat", "--format", "html").output)
    latency, success = (svg_words(c) for c in root.findall(f".//{SVG}svg"))
    assert latency.count("no latency recorded") == 2 and "variant: 0 answered" in latency
    assert "variant: 100.00%" in success


def test_sdk_and_gateway_recorded_history_end_to_end(deployed, open_router):
    """Router.route records each trial user's arm, decided in this process (local) or by a
    live gateway's admin API (remote, the gateway records); `routelang ab` reports the two arms."""
    router = open_router("chat")
    try:
        for i in range(400):
            router.route({"user": {"tier": "trial", "id": f"u-{i}"}})
        router.route({"user": {"tier": "premium", "id": "p"}})   # not a split: not in the report
        router.list_requests(limit=1)                           # waits until the history is written
    finally:
        router.close()
    gateway_only = json.loads(run("ab", "chat", "--format", "json").output)   # the default: gateway rows
    assert gateway_only["experiments"] == [] and "among the rows of the gateway" in gateway_only["message"]
    report = json.loads(run("ab", "chat", "--source", "sdk", "--format", "json").output)
    assert report["source"] == "sdk"
    [exp] = report["experiments"]
    assert exp["rule"] == "ab" and [a["label"] for a in exp["arms"]] == ["control", "variant"]
    assert sum(a["requests"] for a in exp["arms"]) == 400
    assert 120 < exp["arms"][0]["requests"] < 280          # a 50/50 sticky split of 400 users
    assert all(a["success_rate"] == 1.0 for a in exp["arms"])   # every decision was `routed`
    [comparison] = exp["comparisons"]
    assert comparison["success_rate"]["verdict"] == "not enough data"
    assert "p_value" in comparison["latency_ms"]              # the SDK's decision time is compared


def test_a_variant_whose_every_request_fell_over_is_reported_failing_and_significant(deployed):
    """The variant's target answered 500 to all 40 of its requests, each answered by the control:
    0 % first-target success, 100 % fell over, no latency or cost of its own, and a significant verdict
    (neither arm varies; the guard uses the pooled rate's variance)."""
    rows = []
    for i in range(80):
        variant = i % 2 == 1
        rows.append(RequestRecord(router="chat", version=1, rule="ab", status="ok", http_status=200,
                                  latency_ms=250.0 + i if variant else 200.0 + i, cost=0.002,
                                  split_label="variant" if variant else "control",
                                  first_target="b" if variant else "a", first_outcome="http_500" if variant else "ok",
                                  failed_over=variant, time=T0 + i))
    insert(deployed.conn, rows)
    [exp] = report_of(deployed)["experiments"]
    control, variant = exp["arms"]
    assert (control["success_rate"], control["fall_over_rate"]) == (1.0, 0.0)
    assert (variant["success_rate"], variant["fall_over_rate"], variant["fell_over"]) == (0.0, 1.0, 40)
    assert variant["latency_ms"]["count"] == 0 and variant["cost_per_request"]["mean"] is None
    [comparison] = exp["comparisons"]
    assert comparison["success_rate"]["verdict"] == "significant"
    assert comparison["success_rate"]["difference"] == -1.0
    assert comparison["latency_ms"]["verdict"] == "not enough data"   # the variant answered nothing itself


def test_sdk_decisions_are_not_counted_beside_gateway_requests(deployed):
    """SDK rows (decision time, ~0.01 ms) once pulled the control's p50 down: `ab` counts the
    gateway's rows by default, `--source sdk` the decisions, `--source all` both."""
    served = gateway_rows({"control": (100, 1.0, 200, 30), "variant": (100, 1.0, 200, 30)})
    decided = [RequestRecord(router="chat", version=1, rule="ab", status="routed", latency_ms=0.01, source="sdk",
                             split_label="control", time=T0 + 1000 + i) for i in range(200)]
    insert(deployed.conn, served + decided)
    p50 = np.percentile(_values(served, "control", "latency_ms"), 50)

    def control(*options):
        report = json.loads(run("ab", "chat", "--format", "json", *options).output)
        return report["experiments"][0]["arms"][0]

    assert control()["requests"] == 100 and control()["latency_ms"]["p50"] == pytest.approx(p50)
    assert control("--source", "gateway") == control()
    assert control("--source", "sdk")["requests"] == 200
    assert control("--source", "all")["requests"] == 300
    assert run("ab", "chat", "--source", "both").exit_code == Exit.USAGE
    listed = json.loads(run("requests", "chat", "--source", "sdk", "--limit", "1000", "--format", "json").output)
    assert len(listed) == 200 and {r["source"] for r in listed} == {"sdk"}
    assert len(json.loads(run("requests", "chat", "--limit", "1000", "--format", "json").output)) == 400
    assert " sdk " in run("requests", "chat", "--limit", "1").output


@pytest.mark.parametrize(("status", "success"), [
    ("routed", True), ("ok", True), ("200", True), ("204", True), ("unmatched", False), ("error", False),
    ("client_disconnected", False), ("503", False), ("404", False), ("2000", False), (None, False)])
def test_what_counts_as_success(status, success):
    assert ab_report.is_success(status) is success
