"""One client request as it goes through the gateway: what the handler, the
executor, the metrics, the log line and the history learn about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from routelang.runtime.model import Target

from .adapters import Usage
from .plan import target_name
from .tracing import Answer


@dataclass(slots=True)
class Exchange:
    """One client request as it goes through the gateway (what the log line reports)."""

    id: str
    path: str                             # the endpoint: /v1/chat/completions also for /r/NAME/v1/...
    start: float
    router: str = "-"                     # the router's name and version, once known
    version: int | None = None
    stream: bool = False
    client_wants_usage: bool = False
    rule: str = "-"
    target: Target | None = None
    attempts: list[dict] = field(default_factory=list)
    upstream_s: float = 0.0               # waiting for upstreams
    backoff_s: float = 0.0                # waiting before a retry (Retry-After, back-off)
    ttft_s: float | None = None
    usage: Usage | None = None
    status: int = 0
    error: str | None = None
    overhead_s: float | None = None
    captured: list[bytes] | None = None   # `--capture`: the SSE frames sent to the client
    span: Any = None                      # tracing: the request's span (None: tracing off)
    answer: Answer | None = None          # tracing: the current attempt's answer, when its span is sampled
    streamed_frames: int = 0              # SSE frames written to the client (billing a stream it left)
    extra_headers: dict[str, str] | None = None   # tenants: an admitted request's x-ratelimit-* headers

    def headers(self, into: dict[str, str] | None = None, running: int = 0) -> dict[str, str]:
        """The x-routelang-* headers and `extra_headers`, written into `into` (over what it has) or a
        new dict; `running`: attempts under way, not yet in `attempts` (which also lists targets
        skipped without a call: those have no "ms"). The overhead is the gateway's own time: the
        request's time so far, less the waits for upstreams and before retries."""
        overhead = perf_counter() - self.start - self.upstream_s - self.backoff_s
        self.overhead_s = overhead = max(0.0, overhead)
        tried = running
        for attempt in self.attempts:  # (a loop: cheaper than sum() of a generator for one or two)
            if "ms" in attempt:
                tried += 1
        out = {} if into is None else into
        out["x-request-id"] = self.id
        out["x-routelang-rule"] = self.rule
        out["x-routelang-attempts"] = str(tried)
        out["x-routelang-overhead-ms"] = f"{overhead * 1000:.3f}"
        if self.target is not None:
            out["x-routelang-target"] = target_name(self.target)
        if self.extra_headers:
            out.update(self.extra_headers)
        return out
