"""The quality windows: a target's success rate and latency percentile over its last
QUALITY_WINDOW attempts, kept as attempts come and go, equal what sorting the window says."""

from __future__ import annotations

import math
import random

import orjson

from routelang import ir
from routelang.gateway import plan
from routelang.gateway.tenants import QUALITY_MIN_SAMPLES, QUALITY_WINDOW, Quality


def _target() -> plan.Target:
    loaded = plan.from_config({"name": "q", "rules": [{"name": "all", "targets": [
        {"provider": "openai", "model_name": "m", "endpoint": "http://127.0.0.1:9/v1"}]}]}, "q.json", "0")
    return next(iter(loaded.targets.values()))


def test_success_rate_and_percentile_follow_the_last_attempts_exactly():
    rng = random.Random(7)
    target, quality, seen = _target(), Quality(), []
    name = plan.target_name(target)
    for i in range(700):
        ok, ms = rng.random() < 0.9, float(rng.randint(1, 60))
        quality.observe([{"target": name, "outcome": "ok" if ok else "error", "ms": ms}])
        seen.append((ok, ms))
        window = seen[-QUALITY_WINDOW:]
        rate = sum(o for o, _ in window) / len(window)
        latencies = sorted(m for o, m in window if o)
        p95 = latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)]
        judged = len(window) >= QUALITY_MIN_SAMPLES
        assert (quality.breaks(target, ir.Requirements(min_success=rate + 1e-9)) is not None) == judged, i
        assert quality.breaks(target, ir.Requirements(min_success=rate)) is None
        assert (quality.breaks(target, ir.Requirements(max_latency_ms=p95 - 1, latency_percentile=95))
                is not None) == judged, i
        assert quality.breaks(target, ir.Requirements(max_latency_ms=p95, latency_percentile=95)) is None


def test_the_fleets_windows_are_judged_as_one_window_of_their_attempts():
    from routelang.gateway.redisquality import merged, summary

    rng = random.Random(11)
    target, name = _target(), plan.target_name(_target())
    processes = [Quality() for _ in range(3)]
    union = []
    for process in processes:
        for _ in range(rng.randint(20, 130)):
            ok, ms = rng.random() < 0.8, float(rng.randint(1, 500))
            process.observe([{"target": name, "outcome": "ok" if ok else "error", "ms": ms}])
        union += list(process.windows[name].attempts)
    judged = Quality()   # the first process, judging on its window and the others' summaries
    judged.judged = {name: merged(processes[0].windows[name],
                                  [orjson.loads(summary(p.windows[name])) for p in processes[1:]])}
    rate = sum(ok for ok, _ in union) / len(union)
    latencies = sorted(ms for ok, ms in union if ok)
    p90 = latencies[math.ceil(0.9 * len(latencies)) - 1]
    assert judged.breaks(target, ir.Requirements(min_success=rate)) is None
    assert judged.breaks(target, ir.Requirements(min_success=rate + 1e-9)) is not None
    assert judged.breaks(target, ir.Requirements(max_latency_ms=p90, latency_percentile=90)) is None
    assert judged.breaks(target, ir.Requirements(max_latency_ms=p90 - 1, latency_percentile=90)) is not None
    everything = sorted(ms for _, ms in union)
    assert judged.score(target) == (-rate, everything[len(everything) // 2])
