"""The tenants' ledger on Redis (gateway/redisledger.py) against a real redis-server:
the same semantics as the in-process ledger (tests/tenancy/test_ledger.py), counted in
Redis, so several ledgers (as several processes would) share every budget and limit."""

from __future__ import annotations

import asyncio
import datetime
from zoneinfo import ZoneInfo

import pytest

from routelang import ir
from routelang.gateway.redisledger import HOLDS_KEY, TENANTS, Policies, RedisLedger
from routelang.gateway.redisstate import Link
from routelang.tenancy.ledger import Admission, Refusal, Scope

USD = 1_000_000_000   # nano-dollars


def budget(period: str, usd: float) -> ir.Budget:
    return ir.Budget(period=period, micros=round(usd * 1_000_000))


def limit(amount: int, unit: str = "requests", per: str = "minute") -> ir.RateLimit:
    return ir.RateLimit(unit=unit, amount=amount, per=per)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def ledgers(url: str, count: int = 1, **kwargs) -> list[RedisLedger]:
    made = []
    for _ in range(count):
        link = Link(url, lambda up: None)
        link.open()
        made.append(RedisLedger(link, **kwargs))
        assert await link.connect()
        await made[-1].start()
    return made


async def close(*made: RedisLedger) -> None:
    for ledger in made:
        await ledger.close()
        await ledger.link.close()


def run(coro):
    return asyncio.run(coro)


async def spent(ledger: RedisLedger, scope: Scope, period: str) -> tuple[int, int]:
    """(spent, held) of the scope's budget as Redis has it."""
    values = await ledger.link.client.hmget(f"{TENANTS}:budget:{scope.kind}:{scope.name}:{period}", "spent", "held")
    return int(values[0] or 0), int(values[1] or 0)


async def settled(ledger: RedisLedger) -> None:
    """Send what is queued now (the settler does so every SETTLE_S)."""
    await ledger._send_settles()


def test_a_reserve_across_scopes_is_all_or_nothing_and_shared_by_every_ledger(redis_server):
    workspace = Scope("workspace", "ws", budgets=(budget("day", 1),))
    agent = Scope("agent", "bot", limits=(limit(2),))

    async def scenario():
        a, b = await ledgers(redis_server.url, 2)
        assert isinstance(await a.admit(1, (workspace, agent), 10, 400_000_000), Admission)
        assert isinstance(await b.admit(2, (workspace, agent), 10, 400_000_000), Admission)
        # The agent's two requests per minute are taken (by two ledgers): the third is refused,
        # and the workspace's budget is not touched by the refused reserve.
        refused = await a.admit(3, (workspace, agent), 10, 100_000_000)
        assert isinstance(refused, Refusal) and refused.code == "rate_limited" and refused.scope == agent
        assert await spent(a, workspace, "day") == (0, 800_000_000)
        # 0.8 held of 1 USD: 0.3 more does not fit, whoever asks.
        other = Scope("agent", "other")
        refused = await b.admit(4, (workspace, other), 10, 300_000_000)
        assert refused.code == "budget_exceeded" and "0.2 USD left" in refused.message
        assert a.settle(1, 10, 123_456_789) and not a.settle(1, 10, 123_456_789)
        assert not b.settle(1, 10, 1)     # not b's hold: nothing queued
        await settled(a)
        assert await spent(a, workspace, "day") == (123_456_789, 400_000_000)
        await close(a, b)

    run(scenario())


def test_a_settle_replayed_changes_nothing_and_a_reserved_id_cannot_be_reserved_again(redis_server):
    scope = Scope("workspace", "ws", budgets=(budget("day", 1),))

    async def scenario():
        a, b = await ledgers(redis_server.url, 2)
        assert isinstance(await a.admit(1, (scope,), 10, 500_000_000), Admission)
        a.settle(1, 10, 7)
        await settled(a)
        a._mine.add(1)                    # the same settle again (as a batch sent twice would be)
        a.settle(1, 10, 999)
        await settled(a)
        assert await spent(a, scope, "day") == (7, 0)
        with pytest.raises(ValueError, match="reserved before"):
            await a.admit(1, (scope,), 10, 1)
        # Another process's hold 1 is another hold: its token is its own.
        assert isinstance(await b.admit(1, (scope,), 10, 1), Admission)
        await close(a, b)

    run(scenario())


def test_a_hold_nobody_settles_expires_and_a_late_settle_changes_nothing(redis_server):
    scope = Scope("workspace", "ws", budgets=(budget("day", 1),), limits=(limit(1000, "tokens"),))
    clock = Clock(datetime.datetime(2026, 12, 7, 12, tzinfo=datetime.UTC).timestamp())

    async def scenario():
        (a,) = await ledgers(redis_server.url, clock=clock, hold_ttl_s=60)
        assert isinstance(await a.admit(21, (scope,), 900, 900_000_000), Admission)
        assert (await a.admit(22, (scope,), 10, 200_000_000)).code == "budget_exceeded"
        clock.now += 61                      # the crashed worker's hold expires: money and tokens come back
        assert isinstance(await a.admit(22, (scope,), 900, 200_000_000), Admission)
        assert await spent(a, scope, "day") == (0, 200_000_000)
        a._mine.add(21)
        a.settle(21, 900, 900_000_000)
        await settled(a)
        assert await spent(a, scope, "day") == (0, 200_000_000)
        assert await a.link.client.zcard(HOLDS_KEY) == 1
        await close(a)

    run(scenario())


def test_token_buckets_refill_evenly_and_a_settle_gives_back_unused_tokens(redis_server):
    scope = Scope("workspace", "ws", limits=(limit(600, "tokens"),))
    clock = Clock(1_800_000_000.0)

    async def scenario():
        (a,) = await ledgers(redis_server.url, clock=clock)
        admitted = await a.admit(1, (scope,), 500, 0)
        assert a.headers(admitted) == {"x-ratelimit-limit-tokens": "600", "x-ratelimit-remaining-tokens": "100",
                                       "x-ratelimit-reset-tokens": "50s"}   # 500 tokens back at 10 per second
        refused = await a.admit(2, (scope,), 200, 0)
        assert refused.code == "rate_limited" and refused.retry_after_s == 10   # 100 tokens at 10 per second
        a.settle(1, 150, 0)               # used 150 of the 500 held
        await settled(a)
        assert isinstance(await a.admit(2, (scope,), 200, 0), Admission)
        assert (await a.admit(3, (scope,), 700, 0)).retry_after_s is None   # never fits
        clock.now += 60
        assert a.headers(await a.admit(4, (scope,), 600, 0))["x-ratelimit-remaining-tokens"] == "0"
        await close(a)

    run(scenario())


def test_a_refusal_brings_every_buckets_level_now_the_whole_fleets_takes_included(redis_server):
    # Its x-ratelimit-* headers (of requests and tokens) come from the refusal's own reply.
    requests, tokens = limit(2), limit(1000, "tokens")
    scope = Scope("workspace", "ws", limits=(requests, tokens))
    clock = Clock(1_800_000_000.0)

    async def scenario():
        a, b = await ledgers(redis_server.url, 2, clock=clock)
        assert isinstance(await a.admit(1, (scope,), 100, 0), Admission)
        assert isinstance(await b.admit(1, (scope,), 300, 0), Admission)   # a takes nothing from its reply
        refused = await a.admit(2, (scope,), 50, 0)
        assert refused.code == "rate_limited" and refused.retry_after_s == 30
        assert a.level(scope, requests) == (0, 60) and a.level(scope, tokens) == (600, 24)
        await close(a, b)

    run(scenario())


def test_a_number_beyond_what_redis_counts_exactly_is_refused_or_counted_as_the_most_it_counts(redis_server):
    # A client's max_tokens may be any integer (and an upstream's usage too): 10**30 tokens are refused as
    # never fitting, not failed; admitted where nothing limits them, their settle lands with the others.
    tokens = Scope("workspace", "ws", limits=(limit(1000, "tokens"),))
    budgeted = Scope("workspace", "rich", budgets=(budget("day", 1000),))
    requests = Scope("workspace", "free", limits=(limit(10),))

    async def scenario():
        (a,) = await ledgers(redis_server.url)
        refused = await a.admit(1, (tokens,), 10**30, 0)
        assert refused.code == "rate_limited" and refused.retry_after_s is None
        refused = await a.admit(2, (budgeted,), 1, 10**40)
        assert refused.code == "budget_exceeded" and f"up to {10**31} USD" in refused.message   # its own estimate
        assert isinstance(await a.admit(3, (requests,), 10**30, 10**40), Admission)
        assert isinstance(await a.admit(4, (budgeted,), 10, 1_000), Admission)
        assert a.settle(3, 10**30, 10**40) and a.settle(4, 10, 999)
        await settled(a)
        assert a._settles == [] and await spent(a, budgeted, "day") == (999, 0)
        await close(a)

    run(scenario())


def test_calendar_windows_roll_over_in_the_policys_zone_across_a_daylight_saving_change(redis_server):
    # New York's clocks went back on 2026-11-01: that day has 25 hours.
    zone = ZoneInfo("America/New_York")
    scope = Scope("workspace", "ny", budgets=(budget("day", 1),), timezone="America/New_York")
    day_start = datetime.datetime(2026, 11, 1, tzinfo=zone).timestamp()
    clock = Clock(day_start + 24.5 * 3600)   # 23:30 local: 24.5 hours after midnight, still Nov 1

    async def scenario():
        (a,) = await ledgers(redis_server.url, clock=clock)
        assert isinstance(await a.admit(1, (scope,), 1, 600_000_000), Admission)
        a.settle(1, 1, 600_000_000)
        await settled(a)
        refused = await a.admit(2, (scope,), 1, 600_000_000)
        assert refused.code == "budget_exceeded" and refused.retry_after_s == 1800   # to local midnight
        clock.now = day_start + 25 * 3600    # Nov 2, 00:00 local: a new day, nothing spent in it
        assert isinstance(await a.admit(3, (scope,), 1, 600_000_000), Admission)
        assert await spent(a, scope, "day") == (0, 600_000_000)
        await close(a)

    run(scenario())


def test_a_hold_settled_after_its_window_ended_is_charged_to_the_new_window(redis_server):
    scope = Scope("workspace", "ws", budgets=(budget("day", 1),))
    midnight = datetime.datetime(2026, 12, 8, tzinfo=datetime.UTC).timestamp()
    clock = Clock(midnight - 1)

    async def scenario():
        (a,) = await ledgers(redis_server.url, clock=clock)
        await a.admit(31, (scope,), 1, 300_000_000)
        await a.admit(32, (scope,), 1, 100_000_000)
        a.settle(32, 1, 100_000_000)
        await settled(a)
        clock.now = midnight + 1
        a.settle(31, 1, 250_000_001)
        await settled(a)
        assert await spent(a, scope, "day") == (250_000_001, 0)
        await close(a)

    run(scenario())


def test_a_budgets_key_lives_until_a_day_after_its_window_whoever_began_the_window(redis_server):
    """Its expiry is set once per window (not at every reserve): when the key is new, and when a new
    window begins, whether a reserve or a settle (which resets an ended window) found it ended."""
    scope = Scope("workspace", "ws", budgets=(budget("day", 1),))
    midnight = datetime.datetime(2026, 12, 8, tzinfo=datetime.UTC).timestamp()
    clock = Clock(midnight - 3600)
    key = f"{TENANTS}:budget:workspace:ws:day"

    async def hours_left(ledger: RedisLedger) -> float:
        return await ledger.link.client.pttl(key) / 3_600_000

    async def scenario():
        (a,) = await ledgers(redis_server.url, clock=clock)
        await a.admit(1, (scope,), 1, 100_000_000)
        assert await hours_left(a) == pytest.approx(25, abs=0.02)   # to midnight, and a day
        clock.now = midnight - 1800
        await a.admit(2, (scope,), 1, 100_000_000)
        assert await hours_left(a) == pytest.approx(25, abs=0.02)   # the same window: the same end
        clock.now = midnight + 3600
        a.settle(1, 1, 100_000_000)   # lands in the new day: the settle begins its window
        await settled(a)
        await a.admit(3, (scope,), 1, 100_000_000)
        assert await hours_left(a) == pytest.approx(47, abs=0.02)   # 23 hours to the next midnight, and a day
        await close(a)

    run(scenario())


def test_fractions_of_a_cent_add_up_exactly(redis_server):
    scope = Scope("workspace", "ws", budgets=(budget("month", 1),))

    async def scenario():
        a, b = await ledgers(redis_server.url, 2)
        for i in range(300):
            ledger = (a, b)[i % 2]
            await ledger.admit(i, (scope,), 3, 3_333)      # 3 tokens at 1.111 micro-dollars per 1k
            ledger.settle(i, 3, 3_333)
        await settled(a)
        await settled(b)
        assert await spent(a, scope, "month") == (999_900, 0)
        await close(a, b)

    run(scenario())


def test_redis_down_budgets_refuse_and_rate_limits_admit_by_default_and_both_are_settable(redis_server):
    budgeted = Scope("workspace", "ws", budgets=(budget("day", 1),))
    limited = Scope("workspace", "free", limits=(limit(1),))

    async def scenario():
        (a,) = await ledgers(redis_server.url)
        (b,) = await ledgers(redis_server.url, policies=Policies(budgets="admit", limits="refuse"))
        redis_server.kill()
        refused = await a.admit(1, (budgeted,), 1, 1)       # the call times out: the link goes down
        assert refused.code == "state_unavailable" and not a.link.up
        assert isinstance(await a.admit(2, (limited,), 1, 1), Admission)
        assert isinstance(await a.admit(3, (limited,), 1, 1), Admission)   # uncounted while down
        assert isinstance(await b.admit(4, (budgeted,), 1, 1), Admission)
        assert (await b.admit(5, (limited,), 1, 1)).code == "state_unavailable"
        assert a.unchecked == 2 and not a.settle(2, 1, 1)
        await close(a, b)

    run(scenario())


def test_bursts_on_both_sides_of_midnight_each_get_their_days_budget(redis_server):
    scope = Scope("workspace", "ws", budgets=(budget("day", 1),), limits=(limit(100),))
    midnight = datetime.datetime(2026, 12, 8, tzinfo=datetime.UTC).timestamp()
    clock = Clock(midnight - 0.5)

    async def burst(ledger: RedisLedger, first: int) -> list:
        return await asyncio.gather(*(ledger.admit(first + i, (scope,), 1, 300_000_000) for i in range(20)))

    async def scenario():
        a, b = await ledgers(redis_server.url, 2, clock=clock)
        before = await burst(a, 0) + await burst(b, 100)   # 40 reserves: written together per ledger
        assert sum(isinstance(r, Admission) for r in before) == 3
        for i in range(20):
            a.settle(i, 1, 300_000_000)
            b.settle(100 + i, 1, 300_000_000)
        await settled(a)
        await settled(b)
        assert await spent(a, scope, "day") == (900_000_000, 0)
        clock.now = midnight + 0.5                           # the bucket refilled 0.8 of a request meanwhile
        after = await burst(b, 200) + await burst(a, 300)
        assert sum(isinstance(r, Admission) for r in after) == 3
        assert {r.code for r in after if isinstance(r, Refusal)} == {"budget_exceeded"}
        assert await spent(a, scope, "day") == (0, 900_000_000)
        await close(a, b)

    run(scenario())


def test_a_spent_out_budget_refuses_locally_until_its_window_ends_and_nothing_else_does(redis_server):
    spent_out = Scope("workspace", "ws", budgets=(budget("day", 1),))
    held = Scope("workspace", "held", budgets=(budget("day", 1),))
    clock = Clock(datetime.datetime(2026, 12, 7, 23, 59, tzinfo=datetime.UTC).timestamp())

    async def scenario():
        (a,) = await ledgers(redis_server.url, clock=clock)
        await a.admit(1, (spent_out,), 1, 400_000_000)
        a.settle(1, 1, USD)                       # cost more than its estimate: the day is spent out
        await a.admit(41, (held,), 1, USD)         # held, not spent
        await settled(a)
        assert (await a.admit(2, (spent_out,), 1, 1)).code == "budget_exceeded"   # asked Redis, learnt it
        assert (await a.admit(42, (held,), 1, 1)).code == "budget_exceeded"
        redis_server.freeze()
        try:
            refused = await a.admit(3, (spent_out,), 1, 1)        # no Redis call: answered while it is frozen
            assert refused.code == "budget_exceeded" and refused.retry_after_s == 60 and a.link.up
            assert (await a.admit(43, (held,), 1, 1)).code == "state_unavailable"   # a hold may yet be released
        finally:
            redis_server.thaw()
        assert await a.link.connect()
        clock.now += 60                                              # tomorrow: asked again, and admitted
        assert isinstance(await a.admit(4, (spent_out,), 1, 1), Admission)
        await close(a)

    run(scenario())


def test_a_reserve_whose_request_is_cancelled_in_flight_is_released(redis_server):
    scope = Scope("workspace", "ws", budgets=(budget("day", 1),))

    async def scenario():
        (a,) = await ledgers(redis_server.url)
        waiting = asyncio.get_running_loop().create_task(a.admit(51, (scope,), 1, 500_000_000))
        await asyncio.sleep(0)           # queued and sent; the client leaves before the reply
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await settled(a)
        assert await spent(a, scope, "day") == (0, 0)
        assert isinstance(await a.admit(22, (scope,), 1, USD), Admission)
        await close(a)

    run(scenario())


def test_a_reserve_sent_after_redis_lost_its_scripts_is_sent_again_once_they_are_loaded(redis_server):
    # A Redis restarted between two reserves answers NOSCRIPT: the reserve is not refused by the
    # failure policy, the link loads the scripts and sends it again, and it counts once.
    scope = Scope("workspace", "ws", budgets=(budget("day", 1),), limits=(limit(10),))

    async def scenario():
        (a,) = await ledgers(redis_server.url)
        assert isinstance(await a.admit(61, (scope,), 1, 200_000_000), Admission)
        await a.link.client.script_flush()
        assert isinstance(await a.admit(62, (scope,), 1, 300_000_000), Admission)
        assert await spent(a, scope, "day") == (0, 500_000_000)
        assert a.link.up and a.unchecked == 0
        await close(a)

    run(scenario())
