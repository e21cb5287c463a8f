"""The request history from the gateway (`serve --registry`): one row per
request a router handled, through the registry's batched writer
(`registry/history.py`), so the request only puts a record on a queue.

What the handler knows beyond the Exchange (which router and version, the
decision, the client's key id, the body when capturing) is collected in a
`Routed` as the request goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from routelang.registry import history
from routelang.runtime.operators import lookup

from . import errors

if TYPE_CHECKING:
    from aiohttp import web

    from . import plan
    from .exchange import Exchange


@dataclass(slots=True)
class Routed:
    loaded: plan.Loaded | None = None       # the version the request runs on
    decision: plan.Decision | None = None
    doc: dict | None = None
    body: bytes | None = None               # kept only when capturing
    client_key_id: str | None = None
    tenant_key: object | None = None        # the tenancy.keys.TenantKey, with tenants on
    ticket: object | None = None            # tenants.Ticket: the request's hold, settled by _account


def outcome(ex: Exchange, status: int) -> str:
    """The row's `status`: ok, unmatched, client_disconnected or error."""
    if ex.error is None and 200 <= status < 300:
        return "ok"
    if ex.error == errors.NO_MATCHING_RULE.code:
        return "unmatched"
    if status == 499:
        return "client_disconnected"
    return "error"


def first_target(attempts: list[dict]) -> tuple[str | None, str | None, bool | None]:
    """(the first target, its outcome, whether another target was called after it) from the
    attempts: the first target's outcome is that of its last try (its own retries included), so
    a split arm is judged by its own target, not by the arm it fell over to."""
    if not attempts:
        return None, None, None
    first = attempts[0]["target"]
    outcome = attempts[0]["outcome"]
    failed_over = False
    for attempt in attempts[1:]:
        if attempt["target"] == first:
            outcome = attempt["outcome"]
        elif "ms" in attempt:   # called (a target skipped for its open breaker was not)
            failed_over = True
    return first, outcome, failed_over


class Recorder:
    def __init__(self, writer: history.HistoryWriter, capture: bool = False):
        self.writer = writer
        self.capture = capture

    def record(self, ex: Exchange, routed: Routed, status: int, total_s: float, cost: float | None,
               response: web.StreamResponse | None) -> None:
        decision = routed.decision
        rule = None if decision is None else decision.rule
        selected, sticky = [], None
        if rule is not None and decision.attempts:
            selected = decision.attempts[:max(decision.picked, 1)]
            if rule.selection.sticky_by is not None:
                sticky = history.sticky_hash(lookup(routed.doc, rule.selection.sticky_by))
        usage = ex.usage
        first, first_outcome, failed_over = first_target(ex.attempts)
        record = history.RequestRecord(
            router=routed.loaded.name, version=routed.loaded.version, rule=None if rule is None else rule.name,
            status=outcome(ex, status), targets=selected, attempts=ex.attempts, latency_ms=total_s * 1000,
            ttft_ms=None if ex.ttft_s is None else ex.ttft_s * 1000,
            tokens_in=None if usage is None else usage.prompt_tokens,
            tokens_out=None if usage is None else usage.completion_tokens, cost=cost,
            split_label=None if decision is None else decision.split_label,
            sticky_key_hash=sticky, client_key_id=routed.client_key_id, http_status=status, error=ex.error,
            source=history.GATEWAY, first_target=first, first_outcome=first_outcome, failed_over=failed_over,
            id=ex.id)
        if self.capture and routed.body is not None:
            record.captured_request = routed.body
            if ex.captured:
                record.captured_response = ex.captured
            elif response is not None and isinstance(getattr(response, "body", None), bytes):
                record.captured_response = response.body
        self.writer.record(record)

    def close(self) -> None:
        self.writer.close()
