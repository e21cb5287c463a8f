"""`routelang usage`: spend, tokens, requests, errors and latency per
workspace (and per model, key or day) from the request history, with each
budget of the deployed routers used and left in its current calendar window.

A row belongs to the workspace of its client key (the tenant key's id the
gateway records); its spend is the history's `cost`, which the gateway
computes from the answering target's `input_cost` and `output_cost`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from .. import ir
from ..registry import Store
from .ledger import next_window, window_start

BY = ("model", "key", "day")


@dataclass
class Line:
    workspace: str
    group: str
    requests: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    spend: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def to_dict(self, by: str) -> dict:
        latencies = sorted(self.latencies)
        p95 = latencies[max(0, -(-95 * len(latencies) // 100) - 1)] if latencies else None
        return {"workspace": self.workspace, by: self.group, "requests": self.requests, "errors": self.errors,
                "tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "spend_usd": round(self.spend, 9),
                "latency_p50_ms": latencies[len(latencies) // 2] if latencies else None, "latency_p95_ms": p95}


def _rows(store: Store, since: float, workspace: str | None) -> list[dict]:
    sql = ("SELECT k.workspace, r.client_key_id, r.time, r.status, r.latency_ms, r.tokens_in, r.tokens_out,"
           " r.cost, r.first_target, r.targets FROM requests r JOIN tenant_keys k ON k.id = r.client_key_id"
           " WHERE r.time >= ?")
    args: list = [since]
    if workspace is not None:
        sql += " AND k.workspace = ?"
        args.append(workspace)
    return store.query(sql + " ORDER BY r.time", args)


def usage(store: Store, since: float, by: str, workspace: str | None = None) -> list[dict]:
    lines: dict[tuple, Line] = {}
    for row in _rows(store, since, workspace):
        ws, key, when, status, latency, tokens_in, tokens_out, cost, first_target = (
            row["workspace"], row["client_key_id"], row["time"], row["status"], row["latency_ms"], row["tokens_in"],
            row["tokens_out"], row["cost"], row["first_target"])
        if by == "model":
            group = first_target or "-"
        elif by == "key":
            group = key
        else:
            group = datetime.datetime.fromtimestamp(when, datetime.UTC).date().isoformat()
        line = lines.setdefault((ws, group), Line(ws, group))
        line.requests += 1
        line.errors += status != "ok"
        line.tokens_in += tokens_in or 0
        line.tokens_out += tokens_out or 0
        line.spend += cost or 0.0
        if latency is not None:
            line.latencies.append(latency)
    return [line.to_dict(by) for _key, line in sorted(lines.items())]


def budgets(store: Store, policies: list[ir.Policy], now: float,
            workspace: str | None = None) -> list[dict]:
    """Each workspace budget: its current window, what the history says was spent in it, and what is left."""
    out = []
    for policy in policies:
        if policy.kind != "workspace" or (workspace is not None and policy.name != workspace):
            continue
        for budget in policy.budgets:
            start = window_start(budget.period, now, policy.timezone)
            end = next_window(budget.period, start, policy.timezone)
            [row] = store.query(
                "SELECT COALESCE(SUM(r.cost), 0) AS spent FROM requests r JOIN tenant_keys k ON k.id = r.client_key_id"
                " WHERE k.workspace = ? AND r.time >= ? AND r.time < ?", (policy.name, start, end))
            spent = row["spent"]
            cap = budget.micros / ir.MICROS_PER_USD
            zone = ZoneInfo(policy.timezone)
            out.append({"workspace": policy.name, "period": budget.period,
                        "from": datetime.datetime.fromtimestamp(start, zone).isoformat(),
                        "budget_usd": cap, "used_usd": round(spent, 9), "left_usd": round(max(0.0, cap - spent), 9)})
    return out
