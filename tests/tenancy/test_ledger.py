"""The ledger: one reserve across every scope, settles that replay to nothing,
holds that expire, calendar windows in a zone, token buckets, exact money."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from routelang import ir
from routelang.tenancy.ledger import Ledger, Refusal, Scope, next_window, window_start


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def at(text: str, zone: str = "UTC") -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def usd(x: str) -> int:
    """USD -> micro-dollars."""
    from routelang.policies import micros

    return micros(x)


def scope(name="ws", budgets=(), limits=(), kind="workspace", zone="UTC") -> Scope:
    return Scope(kind, name, tuple(ir.Budget(period=p, micros=usd(a)) for p, a in budgets),
                 tuple(ir.RateLimit(unit=u, amount=n, per=per) for u, n, per in limits), zone)


NANO = 1_000_000_000  # per USD


def test_a_reserve_takes_from_every_scope_or_from_none():
    ledger = Ledger(clock=Clock(at("2026-12-07T10:00:00")))
    ws = scope("ws", budgets=[("day", "1")])
    agent = scope("creative", kind="agent", limits=[("requests", 1, "minute")])
    assert not isinstance(ledger.reserve("a", (ws, agent), 10, NANO // 10), Refusal)
    refused = ledger.reserve("b", (ws, agent), 10, NANO // 10)
    assert isinstance(refused, Refusal) and refused.code == "rate_limited" and refused.scope == agent
    assert refused.retry_after_s == 60
    # The workspace's budget holds only the first request's estimate: the refusal took nothing.
    assert ledger.spent(ws, "day") == (0, NANO // 10)


def test_budget_admits_while_the_estimate_fits_and_settles_to_the_real_cost():
    ledger = Ledger(clock=Clock(at("2026-12-07T10:00:00")))
    ws = scope(budgets=[("day", "1")])
    for i in range(10):
        assert not isinstance(ledger.reserve(f"r{i}", (ws,), 0, NANO // 10), Refusal)
    refused = ledger.reserve("r10", (ws,), 0, 1)
    assert refused.code == "budget_exceeded" and "has 0 USD left" in refused.message
    assert refused.retry_after_s == 14 * 3600  # until midnight UTC
    assert ledger.settle("r0", 0, NANO // 40)    # cost less than estimated: the rest is free again
    assert ledger.spent(ws, "day") == (NANO // 40, 9 * NANO // 10)
    assert not isinstance(ledger.reserve("r11", (ws,), 0, NANO // 20), Refusal)


def test_a_replayed_settle_or_release_changes_nothing():
    ledger = Ledger(clock=Clock(at("2026-12-07T10:00:00")))
    ws = scope(budgets=[("day", "1")], limits=[("tokens", 1000, "minute")])
    ledger.reserve("r", (ws,), 300, 500)
    assert ledger.settle("r", 100, 123) is True
    assert ledger.settle("r", 100, 123) is False
    assert ledger.release("r") is False
    assert ledger.spent(ws, "day") == (123, 0)
    level, _ = ledger.level(ws, ws.limits[0])
    assert level == 900


def test_a_release_gives_the_tokens_and_money_back_but_counts_the_request():
    ledger = Ledger(clock=Clock(at("2026-12-07T10:00:00")))
    ws = scope(budgets=[("day", "1")], limits=[("tokens", 1000, "minute"), ("requests", 5, "minute")])
    ledger.reserve("r", (ws,), 400, 500)
    ledger.release("r")
    assert ledger.spent(ws, "day") == (0, 0)
    assert ledger.level(ws, ws.limits[0])[0] == 1000
    assert ledger.level(ws, ws.limits[1])[0] == 4


def test_a_hold_nobody_settles_expires():
    clock = Clock(at("2026-12-07T10:00:00"))
    ledger = Ledger(hold_ttl_s=30, clock=clock)
    ws = scope(budgets=[("day", "1")])
    ledger.reserve("crashed", (ws,), 0, NANO)
    assert isinstance(ledger.reserve("next", (ws,), 0, 1), Refusal)
    clock.t += 31
    assert not isinstance(ledger.reserve("later", (ws,), 0, 1), Refusal)
    assert ledger.settle("crashed", 0, NANO) is False  # too late: it was released, never charged


def test_token_bucket_refills_evenly_and_says_when_to_retry():
    clock = Clock(at("2026-12-07T10:00:00"))
    ledger = Ledger(clock=clock)
    ws = scope(limits=[("tokens", 600, "minute")])
    assert not isinstance(ledger.reserve("a", (ws,), 600, 0), Refusal)
    refused = ledger.reserve("b", (ws,), 100, 0)
    assert refused.code == "rate_limited" and refused.retry_after_s == 10   # 100 tokens at 10 per second
    clock.t += 10
    assert not isinstance(ledger.reserve("c", (ws,), 100, 0), Refusal)
    too_big = ledger.reserve("d", (ws,), 601, 0)
    assert too_big.retry_after_s is None and "more than" in too_big.message


def test_a_burst_never_takes_more_than_the_limit_at_a_window_edge():
    clock = Clock(at("2026-12-07T10:00:59.9"))
    ledger = Ledger(clock=clock)
    ws = scope(limits=[("requests", 10, "minute")])
    admitted = sum(not isinstance(ledger.reserve(f"a{i}", (ws,), 0, 0), Refusal) for i in range(50))
    clock.t += 0.2  # across the minute: a fixed window would let 10 more through here
    admitted += sum(not isinstance(ledger.reserve(f"b{i}", (ws,), 0, 0), Refusal) for i in range(50))
    assert admitted == 10


@pytest.mark.parametrize("zone, now, period, start, following", [
    ("UTC", "2026-12-07T23:59:59", "day", "2026-12-07T00:00:00", "2026-12-08T00:00:00"),
    ("Europe/Berlin", "2026-12-07T00:30:00", "day", "2026-12-07T00:00:00", "2026-12-08T00:00:00"),
    ("UTC", "2026-12-09T12:00:00", "week", "2026-12-07T00:00:00", "2026-12-14T00:00:00"),
    ("UTC", "2026-12-31T23:00:00", "month", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
    ("Europe/Berlin", "2026-03-29T12:00:00", "day", "2026-03-29T00:00:00", "2026-03-30T00:00:00"),  # 23 h day
])
def test_calendar_windows_in_the_policy_zone(zone, now, period, start, following):
    begun = window_start(period, at(now, zone), zone)
    assert begun == at(start, zone)
    assert next_window(period, begun, zone) == at(following, zone)


def test_a_new_day_starts_a_new_budget_and_keeps_open_holds():
    clock = Clock(at("2026-12-07T23:59:59", "Europe/Berlin"))
    ledger = Ledger(clock=clock)
    ws = scope(budgets=[("day", "1")], zone="Europe/Berlin")
    ledger.reserve("late", (ws,), 0, NANO // 2)
    ledger.reserve("spent", (ws,), 0, NANO // 2)
    ledger.settle("spent", 0, NANO // 2)
    clock.t += 2  # Berlin's midnight
    assert ledger.spent(ws, "day") == (0, NANO // 2)   # yesterday's spend is gone; the open hold still counts
    assert not isinstance(ledger.reserve("new", (ws,), 0, NANO // 2), Refusal)
    assert isinstance(ledger.reserve("over", (ws,), 0, 1), Refusal)
    ledger.release("late")
    assert ledger.spent(ws, "day") == (0, NANO // 2)


def test_fractions_of_a_cent_add_up_exactly():
    ledger = Ledger(clock=Clock(at("2026-12-07T10:00:00")))
    ws = scope(budgets=[("day", "0.01")])   # one cent = 10,000,000 nano-dollars
    # 7 tokens at 0.000143 USD per 1k tokens: 1,001 nano-dollars each, a tenth of a thousandth of a cent.
    for i in range(9990):
        assert not isinstance(ledger.reserve(f"r{i}", (ws,), 7, 1001), Refusal), i
        ledger.settle(f"r{i}", 7, 1001)
    assert ledger.spent(ws, "day") == (9990 * 1001, 0)
    assert isinstance(ledger.reserve("one-more", (ws,), 7, 1001), Refusal)   # 9,999,990 + 1,001 > 10,000,000


def test_a_new_version_of_a_scope_keeps_what_was_spent_and_taken_under_its_new_amounts():
    clock = Clock(at("2026-12-07T10:00:00"))
    ledger = Ledger(clock=clock)
    old = scope(budgets=[("day", "1")], limits=[("requests", 2, "minute")])
    assert not isinstance(ledger.reserve("a", (old,), 0, NANO), Refusal)
    ledger.settle("a", 0, NANO)
    assert ledger.reserve("b", (old,), 0, 1).code == "budget_exceeded"
    raised = scope(budgets=[("day", "2")], limits=[("requests", 3, "minute")])   # a deploy raises both
    assert not isinstance(ledger.reserve("c", (raised,), 0, NANO), Refusal)
    assert ledger.spent(raised, "day") == (NANO, NANO)
    assert not isinstance(ledger.reserve("d", (raised,), 0, 0), Refusal)
    assert ledger.reserve("e", (raised,), 0, 0).code == "rate_limited"   # a, c, d: 3 of 3 this minute


def test_a_reserve_refused_by_a_later_limit_gives_back_what_the_earlier_checks_took():
    ledger = Ledger(clock=Clock(at("2026-12-07T10:00:00")))
    ws = scope(budgets=[("day", "1")], limits=[("requests", 5, "minute"), ("tokens", 100, "minute")])
    agent = scope("creative", kind="agent", budgets=[("day", "1")])
    refused = ledger.reserve("big", (ws, agent), 101, NANO // 10)
    assert refused.code == "rate_limited" and "needs 101 tokens" in refused.message
    assert ledger.spent(ws, "day") == (0, 0) and ledger.spent(agent, "day") == (0, 0)
    assert ledger.level(ws, ws.limits[0])[0] == 5 and ledger.level(ws, ws.limits[1])[0] == 100
    ledger.reserve("spend", (agent,), 0, NANO)
    refused = ledger.reserve("late", (ws, agent), 1, 1)   # the agent's budget, checked after the workspace's
    assert refused.code == "budget_exceeded" and refused.scope == agent
    assert ledger.spent(ws, "day") == (0, 0) and ledger.level(ws, ws.limits[0])[0] == 5


def test_an_admitted_requests_rate_headers_name_each_units_tightest_bucket():
    clock = Clock(at("2026-12-07T10:00:00"))
    ledger = Ledger(clock=clock)
    ws = scope(limits=[("requests", 600, "minute"), ("tokens", 6000, "hour")])
    agent = scope("a", kind="agent", limits=[("requests", 5, "minute")])
    admitted = ledger.reserve("r1", (ws, agent), 4000, 0)
    assert ledger.headers(admitted) == {   # the agent's 5 per minute is the tighter: 12 s a request
        "x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "4", "x-ratelimit-reset-requests": "12s",
        "x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": "2000", "x-ratelimit-reset-tokens": "40m0s"}
    ledger.settle("r1", 6100, 0)   # 2100 more than its estimate: 100 below zero
    clock.t += 61
    later = ledger.reserve("r2", (ws,), 0, 0)
    assert ledger.headers(later) == {   # 599 of 600 left: 100 ms to refill; 1.67 tokens, 59m59s to refill
        "x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599",
        "x-ratelimit-reset-requests": "100ms", "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "1", "x-ratelimit-reset-tokens": "59m59s"}
    clock.t += 3600
    assert ledger.headers(ledger.reserve("r3", (ws,), 0, 0))["x-ratelimit-reset-tokens"] == "0ms"   # full
