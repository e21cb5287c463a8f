"""Prometheus metrics (prometheus_client). With `--workers N` the server sets
PROMETHEUS_MULTIPROC_DIR before this module is imported, so every worker writes
its values to shared files and /metrics (served by any worker) sums them.

In one process, the counters and histograms every request updates are this
module's `LocalCounter` / `LocalHistogram`: plain numbers the event loop updates
and a collector that exposes them exactly as prometheus_client would (its own
children take a lock per value and walk the bucket bounds per observation)."""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Callable
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# Seconds, up to ten minutes: long generations are normal.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _Count:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class _Buckets:
    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)   # the last: above every bound (+Inf)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1   # the first bound >= amount, as prometheus_client
        self.sum += amount


class _Local:
    """A counter or histogram of this process that one event loop updates (no lock:
    updates and the exposition run on that loop). `labels(...)` gives the child to
    `inc` / `observe`, as prometheus_client's metrics do."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry,
                 child: Callable[[], _Count | _Buckets]):
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._child = child
        self._children: dict[tuple[str, ...], _Count | _Buckets] = {}
        if not self.labelnames:
            self.labels()  # an unlabelled metric is exposed from the start, as prometheus_client's
        registry.register(self)

    def labels(self, *values: str):
        values = tuple(str(v) for v in values)
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._child()
        return child


class LocalCounter(_Local):
    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry):
        super().__init__(name, documentation, labelnames, registry, _Count)

    def inc(self, amount: float = 1) -> None:
        self._children[()].inc(amount)

    def collect(self):
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self._children.items():
            family.add_metric(values, child.value, created=child.created)
        yield family

    describe = collect


class LocalHistogram(_Local):
    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry,
                 buckets: tuple[float, ...]):
        self.bounds = tuple(float(b) for b in buckets)
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        super().__init__(name, documentation, labelnames, registry, lambda: _Buckets(self.bounds))

    def observe(self, amount: float) -> None:
        self._children[()].observe(amount)

    def collect(self):
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self._children.items():
            family.add_metric(values, list(zip(self._le, accumulate(child.counts))), child.sum)
            family.samples.append(Sample(self.name + "_created", dict(zip(self.labelnames, values)), child.created,
                                         None))
        yield family

    describe = collect


def _cached_child(cache: dict[tuple, object], metric, key: tuple):
    """The child of `metric` for the label values `key`, from `cache` (label lookups cost more
    than the updates; prometheus_client and the local metrics alike turn values into str)."""
    child = cache.get(key)
    if child is None:
        child = cache[key] = metric.labels(*key)
    return child


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # What every request updates: this process's own numbers, unless workers share files
        # (measured in a loop, a request's four hot calls: 11.3 us with prometheus_client's, 2.3 us local).
        if multiprocess_mode():
            def counter(name, doc, labels):
                return Counter(name, doc, labels, registry=r)

            def histogram(name, doc, labels, buckets):
                return Histogram(name, doc, labels, buckets=buckets, registry=r)
        else:
            def counter(name, doc, labels):
                return LocalCounter(name, doc, labels, r)

            def histogram(name, doc, labels, buckets):
                return LocalHistogram(name, doc, labels, r, buckets)
        # Every series about a router's requests and targets has a `router` label (a registry gateway
        # serves several, whose rules and targets may have the same names); health and drains are the
        # upstream's, shared by the routers that use it.
        self.requests = counter("routelang_requests", "Requests answered, by router, rule, target and HTTP status",
                                ("router", "endpoint", "rule", "target", "status"))
        self.duration = histogram("routelang_request_duration_seconds", "Time from request to the last byte",
                                  ("router", "endpoint", "rule"), DURATION_BUCKETS)
        self.ttft = histogram("routelang_time_to_first_token_seconds",
                              "Time from request to the first streamed byte", ("router", "rule", "target"),
                              DURATION_BUCKETS)
        self.overhead = histogram("routelang_overhead_seconds",
                                  "Time spent in the gateway (the request's time minus upstream and retry waits)", (),
                                  OVERHEAD_BUCKETS)
        self.upstream = histogram("routelang_upstream_latency_seconds", "One upstream attempt, by outcome",
                                  ("router", "target", "outcome"), DURATION_BUCKETS)
        self.fallbacks = Counter("routelang_fallbacks", "Moves from one target to the next", ["router", "rule"],
                                 registry=r)
        self.retries = Counter("routelang_retries", "Retries of the same target", ["router", "target"], registry=r)
        self.tokens = counter("routelang_tokens", "Tokens reported by upstreams", ("router", "target", "kind"))
        self.cost = counter("routelang_cost", "Cost from usage and `cost ... per 1k` (the config's unit)",
                            ("router", "target"))
        self.shadow = Counter("routelang_shadow_requests", "Shadow copies, by outcome",
                              ["router", "target", "outcome"], registry=r)
        self.shadow_dropped = Counter("routelang_shadow_dropped", "Shadow copies dropped (too many in flight)",
                                      ["router", "target"], registry=r)
        self.history_dropped = Counter("routelang_history_dropped",
                                       "History rows dropped: the writer's queue was full (the database down or slow)",
                                       registry=r)
        self.reloads = Counter("routelang_reloads", "Config reloads, by result", ["result"], registry=r)
        self.tenant_refusals = Counter("routelang_tenant_refusals", "Requests refused by a workspace's or agent's"
                                       " limits, budgets or restrictions, by workspace and code",
                                       ["workspace", "code"], registry=r)
        self.tenant_spend = counter("routelang_tenant_spend_usd", "Spend settled, by workspace (USD)",
                                    ("workspace",))
        self.tenant_unchecked = Counter("routelang_tenant_unchecked", "Requests admitted without counting them: the"
                                        " Redis ledger was down and their limits' policy admits", ["workspace"],
                                        registry=r)
        self.breaker = Gauge("routelang_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
                             ["router", "target"], registry=r, multiprocess_mode="max")
        self.healthy = Gauge("routelang_target_healthy", "Health (probed or pushed): 1 healthy, 0 failing",
                             ["target"], registry=r, multiprocess_mode="min")
        self.drained = Gauge("routelang_target_drained", "Drained by hand through the admin API: 1 drained, 0 not",
                             ["target"], registry=r, multiprocess_mode="max")
        self.state_backend_up = Gauge("routelang_state_backend_up",
                                      "Shared state (--state): 1 the store answers, 0 degraded to this process's",
                                      registry=r, multiprocess_mode="min")
        self.config_version = Gauge("routelang_config_version", "Version of the config being served",
                                    registry=r, multiprocess_mode="max")
        # Children cached per label values (see _cached_child).
        self._requests: dict[tuple, object] = {}
        self._durations: dict[tuple, object] = {}
        self._attempts: dict[tuple, object] = {}
        self._ttfts: dict[tuple, object] = {}
        self._usage: dict[tuple, tuple] = {}   # (router, target) -> (prompt tokens, completion tokens, cost)
        self._breakers: dict[tuple, str] = {}   # (router, target) -> the state last set

    def request(self, router: str, endpoint: str, rule: str, target: str, status: int, seconds: float) -> None:
        _cached_child(self._requests, self.requests, (router, endpoint, rule, target, status)).inc()
        _cached_child(self._durations, self.duration, (router, endpoint, rule)).observe(seconds)

    def attempt(self, router: str, target: str, outcome: str, seconds: float) -> None:
        _cached_child(self._attempts, self.upstream, (router, target, outcome)).observe(seconds)

    def first_token(self, router: str, rule: str, target: str, seconds: float) -> None:
        _cached_child(self._ttfts, self.ttft, (router, rule, target)).observe(seconds)

    def usage(self, router: str, target: str, prompt_tokens: int, completion_tokens: int,
              cost: float | None) -> None:
        key = (router, target)
        children = self._usage.get(key)
        if children is None:
            children = self._usage[key] = (self.tokens.labels(router, target, "prompt"),
                                           self.tokens.labels(router, target, "completion"),
                                           self.cost.labels(router, target))
        children[0].inc(prompt_tokens)
        children[1].inc(completion_tokens)
        if cost is not None:
            children[2].inc(cost)

    def breaker_state(self, router: str, target: str, state: str | None) -> None:
        key = (router, target)
        if state is not None and self._breakers.get(key) != state:
            self._breakers[key] = state
            self.breaker.labels(router, target).set(BREAKER_VALUES[state])

    def exposition(self) -> bytes:
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
