"""Prometheus metrics (prometheus_client). With `--workers N` the server sets
PROMETHEUS_MULTIPROC_DIR before this module is imported, so every worker writes
its values to shared files and /metrics (served by any worker) sums them."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Seconds, up to ten minutes: long generations are normal.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("routelang_requests", "Requests answered, by rule, target and HTTP status",
                                ["endpoint", "rule", "target", "status"], registry=r)
        self.duration = Histogram("routelang_request_duration_seconds", "Time from request to the last byte",
                                  ["endpoint", "rule"], buckets=DURATION_BUCKETS, registry=r)
        self.ttft = Histogram("routelang_time_to_first_token_seconds",
                              "Time from request to the first streamed byte", ["rule", "target"],
                              buckets=DURATION_BUCKETS, registry=r)
        self.overhead = Histogram("routelang_overhead_seconds",
                                  "Time spent in the gateway (the request's time minus upstream time)",
                                  buckets=OVERHEAD_BUCKETS, registry=r)
        self.upstream = Histogram("routelang_upstream_latency_seconds", "One upstream attempt, by outcome",
                                  ["target", "outcome"], buckets=DURATION_BUCKETS, registry=r)
        self.fallbacks = Counter("routelang_fallbacks", "Moves from one target to the next", ["rule"], registry=r)
        self.retries = Counter("routelang_retries", "Retries of the same target", ["target"], registry=r)
        self.tokens = Counter("routelang_tokens", "Tokens reported by upstreams", ["target", "kind"], registry=r)
        self.cost = Counter("routelang_cost", "Cost from usage and `cost ... per 1k` (the config's unit)",
                            ["target"], registry=r)
        self.shadow = Counter("routelang_shadow_requests", "Shadow copies, by outcome", ["target", "outcome"],
                              registry=r)
        self.shadow_dropped = Counter("routelang_shadow_dropped", "Shadow copies dropped (too many in flight)",
                                      ["target"], registry=r)
        self.reloads = Counter("routelang_reloads", "Config reloads, by result", ["result"], registry=r)
        self.breaker = Gauge("routelang_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
                             ["target"], registry=r, multiprocess_mode="max")
        self.healthy = Gauge("routelang_target_healthy", "Health (probed or pushed): 1 healthy, 0 failing",
                             ["target"], registry=r, multiprocess_mode="min")
        self.drained = Gauge("routelang_target_drained", "Drained by hand through the admin API: 1 drained, 0 not",
                             ["target"], registry=r, multiprocess_mode="max")
        self.config_version = Gauge("routelang_config_version", "Version of the config being served",
                                    registry=r, multiprocess_mode="max")
        # Label lookups cost more than the updates: children are cached per label values.
        self._requests: dict[tuple, object] = {}
        self._durations: dict[tuple, object] = {}
        self._attempts: dict[tuple, object] = {}
        self._ttfts: dict[tuple, object] = {}
        self._usage: dict[str, tuple] = {}   # target -> (prompt tokens, completion tokens, cost) children
        self._breakers: dict[str, str] = {}

    def request(self, endpoint: str, rule: str, target: str, status: int, seconds: float) -> None:
        key = (endpoint, rule, target, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(endpoint, rule, target, str(status))
        child.inc()
        key = (endpoint, rule)
        hist = self._durations.get(key)
        if hist is None:
            hist = self._durations[key] = self.duration.labels(endpoint, rule)
        hist.observe(seconds)

    def attempt(self, target: str, outcome: str, seconds: float) -> None:
        key = (target, outcome)
        child = self._attempts.get(key)
        if child is None:
            child = self._attempts[key] = self.upstream.labels(target, outcome)
        child.observe(seconds)

    def first_token(self, rule: str, target: str, seconds: float) -> None:
        key = (rule, target)
        child = self._ttfts.get(key)
        if child is None:
            child = self._ttfts[key] = self.ttft.labels(rule, target)
        child.observe(seconds)

    def usage(self, target: str, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        children = self._usage.get(target)
        if children is None:
            children = self._usage[target] = (self.tokens.labels(target, "prompt"),
                                              self.tokens.labels(target, "completion"), self.cost.labels(target))
        children[0].inc(prompt_tokens)
        children[1].inc(completion_tokens)
        if cost is not None:
            children[2].inc(cost)

    def breaker_state(self, target: str, state: str | None) -> None:
        if state is not None and self._breakers.get(target) != state:
            self._breakers[target] = state
            self.breaker.labels(target).set(BREAKER_VALUES[state])

    def exposition(self) -> bytes:
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
