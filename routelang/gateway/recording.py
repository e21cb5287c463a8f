"""The request history from the gateway (`serve --registry`): one row per
request a router handled, through the registry's batched writer
(`registry/history.py`). The request path reads what the row needs (`row`:
plain values, rows.GATEWAY_FACTS) while it is still in the CPU's caches, and
appends it to the writer's queue; the writer process derives the rest of the
row (rows.gateway_row), narrows, encodes and writes it.

What the handler knows beyond the Exchange (which router and version, the
decision, the client's key id, the body when capturing) is collected in a
`Routed` as the request goes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from routelang.registry import history, rows
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


class Recorder:
    """`dropped`: the metric counting rows the writer's full queue refused (the database down
    or slower than the requests for longer than the queue holds)."""

    def __init__(self, writer: history.HistoryWriter, capture: bool = False, dropped=None):
        self.writer = writer
        self.capture = capture
        self.dropped = dropped

    def record(self, ex: Exchange, routed: Routed, status: int, total_s: float, cost: float | None,
               response: web.StreamResponse | None) -> None:
        body = captured = None
        if self.capture and routed.body is not None:
            body, captured = routed.body, ex.captured
            if not captured and response is not None and isinstance(getattr(response, "body", None), bytes):
                captured = response.body
        at = time.time()
        capture = None if body is None else (ex.id, at, body, captured)
        if not self.writer.record(row(ex, routed, status, total_s, cost, at), capture) and self.dropped is not None:
            self.dropped.inc()

    def close(self) -> None:
        self.writer.close()


def row(ex: Exchange, routed: Routed, status: int, total_s: float, cost: float | None, at: float) -> tuple:
    """What the history keeps of a request the gateway finished, as read (rows.GATEWAY_FACTS);
    the writer process derives the row's other columns. (On the request path: plain reads.)"""
    decision = routed.decision
    rule = None if decision is None else decision.rule
    targets, sticky, strategy = [], None, None
    if rule is not None:
        selection = rule.selection
        strategy = selection.kind
        attempts = decision.attempts
        if attempts:   # the strategy's pick (the rest of attempts is the failover the gateway adds)
            picked = decision.picked
            if picked <= 1:   # (the usual case, without a comprehension's call)
                t = attempts[0]
                targets = [[t.model_name, t.provider, t.label, t.weight]]
            else:
                targets = [rows.target_fields(t) for t in attempts[:picked]]
            if selection.sticky_by is not None:
                sticky = rows.sticky_hash(lookup(routed.doc, selection.sticky_by))
    usage = ex.usage
    loaded = routed.loaded
    return (ex.id, at, loaded.name, loaded.version, None if rule is None else rule.name, strategy, targets,
            ex.attempts, outcome(ex, status), status, ex.error, total_s, ex.ttft_s,
            None if usage is None else usage.prompt_tokens, None if usage is None else usage.completion_tokens,
            cost, sticky, routed.client_key_id)
