"""The history's reading for `routelang usage` and the admin API's analytics
(`tenancy.usage.history_rows`), on a real SQLite file and a real Postgres
database: windows, workspaces, targets, and the newest rows of several routers
merged in time order."""

from __future__ import annotations

import time

import pytest

from routelang.registry.backends import open_store
from routelang.registry.rows import SDK, RequestRecord
from routelang.tenancy import usage
from routelang.tenancy.keys import KeyStore


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "registry.db")
    return request.getfixturevalue("postgres_server").new_database()


def _row(router: str, at: float, key: str | None, target: str, status: str = "ok", source: str = "gateway"):
    return RequestRecord(router=router, version=1, rule="r", status=status, latency_ms=10.0, tokens_in=3,
                         tokens_out=2, cost=0.5, client_key_id=key, first_target=target, time=at, source=source,
                         id=f"{router}-{at:.0f}-{source}")


def test_rows_are_read_by_window_workspace_and_target_and_the_newest_merged(location):
    keys = KeyStore(location)
    marketing = keys.create("ws-marketing", "creative")[0].id
    support = keys.create("ws-support")[0].id
    keys.close()
    store = open_store(location)
    for name in ("alpha", "beta"):
        store.push(name, f"{name}.route", {f"{name}.route": ""}, {"name": name, "rules": []})
    now = time.time()
    records = [
        _row("alpha", now - 7200, marketing, "a1"),
        _row("beta", now - 3000, support, "b1", status="error"),
        _row("alpha", now - 2000, None, "a2"),
        _row("beta", now - 1000, marketing, "b1"),
        _row("alpha", now - 500, support, "a1"),
        _row("alpha", now - 100, None, "a1", source=SDK),   # a decision, not a request served
    ]
    store.insert_requests(records)
    try:
        ids = [r["id"] for r in usage.history_rows(store, now - 3600)]
        assert ids == [f"beta-{now - 3000:.0f}-gateway", f"alpha-{now - 2000:.0f}-gateway",
                       f"beta-{now - 1000:.0f}-gateway", f"alpha-{now - 500:.0f}-gateway"]
        newest = usage.history_rows(store, newest=3)
        assert [(r["router"], r["time"]) for r in newest] == [("alpha", now - 500), ("beta", now - 1000),
                                                              ("alpha", now - 2000)]
        assert [r["workspace"] for r in newest] == ["ws-support", "ws-marketing", None]
        assert [r["agent"] for r in newest] == [None, "creative", None]
        assert len(usage.history_rows(store, newest=100)) == 5
        mine = usage.history_rows(store, workspace="ws-marketing")
        assert [r["first_target"] for r in mine] == ["a1", "b1"]
        assert [r["router"] for r in usage.history_rows(store, targets=["b1"])] == ["beta", "beta"]
        assert usage.history_rows(store, targets=[]) == []
        assert len(usage.history_rows(store, tenants_only=True)) == 4
        totals = usage.Totals.of(usage.history_rows(store, now - 3600))
        assert (totals.requests, totals.errors, totals.success_rate, totals.tokens_in) == (4, 1, 0.75, 12)
        assert usage.counts(usage.history_rows(store), "first_target", "-") == {"a1": 2, "b1": 2, "a2": 1}
        assert usage.key_workspaces(store) == {"ws-marketing", "ws-support"}
        with pytest.raises(ValueError):
            usage.history_rows(store, workspace="ws-support", newest=1)
    finally:
        store.close()
