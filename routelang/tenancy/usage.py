"""`routelang usage` and the admin API's analytics: spend, tokens, requests,
errors and latency from the request history, per workspace (and per model,
key or day), with each budget of the deployed routers used and left in its
current calendar window.

A row belongs to the workspace (and the agent) of its client key (the tenant
key's id the gateway records); its model is the target it was sent to first
(`first_target`: a split's arm); its spend is the history's `cost`, which the
gateway computes from the answering target's `input_cost` and `output_cost`.
Every reading of the history here goes through `history_rows` and every sum
through `Totals`: the CLI and the admin API add up the same way.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from .. import ir
from ..registry import Store
from ..registry.rows import GATEWAY
from .ledger import next_window, window_start

BY = ("model", "key", "day")


@dataclass
class Totals:
    """What some rows of the history add up to."""

    requests: int = 0
    errors: int = 0            # rows whose status is not "ok"
    tokens_in: int = 0
    tokens_out: int = 0
    spend: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, rows: list[dict]) -> Totals:
        totals = cls()
        for row in rows:
            totals.add(row)
        return totals

    def add(self, row: dict) -> None:
        self.requests += 1
        self.errors += row["status"] != "ok"
        self.tokens_in += row["tokens_in"] or 0
        self.tokens_out += row["tokens_out"] or 0
        self.spend += row["cost"] or 0.0
        if row["latency_ms"] is not None:
            self.latencies.append(row["latency_ms"])

    @property
    def success_rate(self) -> float | None:
        """The share of rows answered ("ok"), 0 to 1; None without rows."""
        return (self.requests - self.errors) / self.requests if self.requests else None

    def latency_mean(self) -> float | None:
        return sum(self.latencies) / len(self.latencies) if self.latencies else None

    def latency_p50(self) -> float | None:
        latencies = sorted(self.latencies)
        return latencies[len(latencies) // 2] if latencies else None

    def latency_p95(self) -> float | None:
        """Nearest rank."""
        latencies = sorted(self.latencies)
        return latencies[max(0, -(-95 * len(latencies) // 100) - 1)] if latencies else None


@dataclass
class Line(Totals):
    workspace: str = ""
    group: str = ""

    def to_dict(self, by: str) -> dict:
        return {"workspace": self.workspace, by: self.group, "requests": self.requests, "errors": self.errors,
                "tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "spend_usd": round(self.spend, 9),
                "latency_p50_ms": self.latency_p50(), "latency_p95_ms": self.latency_p95()}


COLUMNS = ("r.id, r.time, r.router, r.version, r.rule, r.status, r.latency_ms, r.tokens_in, "
           "r.tokens_out, r.cost, r.first_target, r.client_key_id, k.workspace, k.agent")


def history_rows(store: Store, since: float | None = None, *, workspace: str | None = None,
                 targets: list[str] | None = None, tenants_only: bool = False,
                 newest: int | None = None) -> list[dict]:
    """The gateway's rows of the history from `since`, each with its key's `workspace` and `agent`
    (None without a tenant key): oldest first, or (without `workspace`) the `newest` N rows newest
    first. `workspace`: that workspace's rows only; `targets`: the rows first sent to one of them;
    `tenants_only`: the rows of tenant keys only.

    Rows are read router by router (every row is a registry router's): the history's index on
    (router, time) then serves the window, and the newest N of each router are N rows of that index,
    taken before the keys are joined (so no planner sorts the whole history for them)."""
    where, args = "r.source = ?", [GATEWAY]
    if since is not None:
        where += " AND r.time >= ?"
        args.append(since)
    if targets is not None:
        where += f" AND r.first_target IN ({', '.join('?' * len(targets))})" if targets else " AND 1 = 0"
        args += targets
    join = "JOIN" if tenants_only or workspace is not None else "LEFT JOIN"
    keys = f"{join} tenant_keys k ON k.id = r.client_key_id"
    if newest is None:
        sql = (f"SELECT {COLUMNS} FROM requests r {keys} WHERE {where} AND r.router IN (SELECT name FROM routers)")
        if workspace is not None:
            sql += " AND k.workspace = ?"
            args.append(workspace)
        return store.query(f"{sql} ORDER BY r.time, r.{store.insertion_order}", args)
    if workspace is not None:
        raise ValueError("history_rows: `newest` takes no `workspace`")
    rows: list[dict] = []
    for router in store.query("SELECT name FROM routers"):
        last = (f"SELECT r.*, r.{store.insertion_order} AS written FROM requests r WHERE {where} AND r.router = ?"
                f" ORDER BY r.time DESC, r.{store.insertion_order} DESC LIMIT ?")
        rows += store.query(f"SELECT {COLUMNS} FROM ({last}) r {keys} ORDER BY r.time DESC, r.written DESC",
                            [*args, router["name"], newest])
    rows.sort(key=lambda row: row["time"], reverse=True)   # stable: each router's equal times stay in its order
    return rows[:newest]


def key_workspaces(store: Store) -> set[str]:
    """Every workspace some tenant key was issued for (revoked and expired keys included)."""
    return {row["workspace"] for row in store.query("SELECT DISTINCT workspace FROM tenant_keys")}


def counts(rows: list[dict], column: str, missing: str) -> dict[str, int]:
    """How many rows have each value of `column` (`missing` for None), most first."""
    return dict(Counter(missing if row[column] is None else row[column] for row in rows).most_common())


def usage(store: Store, since: float, by: str, workspace: str | None = None) -> list[dict]:
    lines: dict[tuple, Line] = {}
    for row in history_rows(store, since, workspace=workspace, tenants_only=True):
        if by == "model":
            group = row["first_target"] or "-"
        elif by == "key":
            group = row["client_key_id"]
        else:
            group = datetime.datetime.fromtimestamp(row["time"], datetime.UTC).date().isoformat()
        ws = row["workspace"]
        lines.setdefault((ws, group), Line(workspace=ws, group=group)).add(row)
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
