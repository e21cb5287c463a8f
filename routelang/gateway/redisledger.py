"""The tenants' ledger on Redis (`serve --state redis://... --tenant-keys ...`):
every budget and rate limit is counted in Redis, so it holds for the whole
fleet (every worker of every replica on that Redis), with the same semantics
and units as the in-process ledger (routelang/tenancy/ledger.py): one
reserve across every scope of a request, all or nothing; holds that expire;
settles replayed for the same hold change nothing; calendar budgets
in the policy's time zone; token buckets; nano-dollars.

One Lua script, LEDGER_LUA (loaded by its SHA as `ledger`), does all of it
on the server's clock (`TIME`):
- `reserve` first gives back the holds that expired (a crashed worker's),
  then checks every budget and bucket of the request and takes from all of
  them, or from none, and records the hold (its amounts and the keys it
  holds from) with its expiry in one sorted set;
- `settle` replaces holds by what the requests cost (a release is a settle
  of nothing); a hold already settled, released or expired changes nothing.

The calendar windows are computed here, in Python, from the policy's zone
(zoneinfo knows its daylight-saving changes): each reserve passes the
window containing this process's now and the next one, and the script takes
the one containing the server's now.

The request path: a reserve is packed from its plan's bytes (only the
clock, the hold's id, tokens and nano-dollars change: four 64-bit integers,
packed with the plan's bytes by one `struct` call) and sent on the link's
pipe, which writes the reserves of one event-loop tick together (one round
trip, one reply each); settles are queued and sent every SETTLE_S in one
script call, their numbers packed the same way (a hold keeps counting until
its settle lands, so sending it late only errs on the safe side). The one answer given
without Redis is a refusal: a budget whose window is spent out (spent, not
merely held) refuses until the window ends, as nothing else lowers it. The connection is the
shared state's `Link` (its 250 ms timeouts and its breaker): while Redis
is down or slow, budgets and limits follow their failure policies
(`Policies`: budgets refuse, rate limits admit, by default).

Keys (one hash tag, so one Redis Cluster slot holds a reserve's keys):
`routelang:v1:{tenants}:budget:KIND:NAME:PERIOD`,
`routelang:v1:{tenants}:rate:KIND:NAME:UNIT:PER`,
`routelang:v1:{tenants}:hold:TOKEN:N` and `routelang:v1:{tenants}:holds` (a hold is known by its
process's random token and the gateway's count N: unique in the fleet).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import struct
import time
import types
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from routelang.tenancy.ledger import (
    HOLD_TTL_S,
    NANOS_PER_MICRO,
    RATE_HEADERS,
    Admission,
    HoldId,
    Refusal,
    Scope,
    duration,
    next_window,
    over_budget,
    over_limit,
    window_start,
)

from .redisstate import PREFIX, Link, Op, bulk, evalsha_head

TENANTS = f"{PREFIX}:{{tenants}}"
HOLDS_KEY = f"{TENANTS}:holds"
PREFIX_ARG = f"{TENANTS}:".encode()
SERVER_CLOCK = -1        # the time a call passes to count on Redis's clock (TIME)
# The numbers of a call (ARGV[4]) travel as little-endian 64-bit integers, read in Lua by `struct`
# (Redis's scripts have it): one pack per request, where spelling each in decimal cost a format each.
NUMBERS = struct.Struct("<4q")   # a reserve's: the time, the hold's id, tokens, nano-dollars
# The most tokens or nano-dollars a call sends: Lua's numbers (doubles) count exactly up to 2^53, and a
# client's max_tokens (or an upstream's usage) may be any integer; no limit or budget holds that much.
MOST = 2**53 - 1
SETTLE_S = 0.02          # queued settles are sent this often
SETTLE_BATCH = 500       # ... at most this many per script call
MAX_SETTLES = 100_000    # settles waiting for Redis beyond this are dropped (their holds expire)
BATCH_NUMBERS, QUEUED_NUMBERS = 3 * SETTLE_BATCH, 3 * MAX_SETTLES   # (three numbers a settle in the queue)
KEEP_DONE_MS = 3_600_000  # a settled or expired hold is remembered this long (replays are no-ops)
DAY_MS = 86_400_000

# ARGV[1] op ("reserve" | "settle"), ARGV[2] the key prefix, ARGV[3] the caller's token (a hold's id is
# TOKEN:N), ARGV[4] numbers (64-bit little-endian): first the time in ms (-1: the server's clock), then
# reserve: the hold's N, tokens, nano-dollars; settle: triples N, tokens, nano-dollars.
# reserve: KEYS[1] the holds, then the budgets' keys, then the buckets' keys; ARGV[5] the hold's ms, ARGV[6]
#   the spec (one string, words apart): the number of budgets, of buckets, then per budget: cap, the
#   window containing the caller's now (start, end ms) and the end of the next; per bucket: amount,
#   period ms, 1 when it counts tokens (else requests).
#   Answers {1, level, ms to full, ...per bucket} | {0, "budget", i, nanos left, ms to the next window, spent,
#   level per bucket...} | {0, "rate", j, ms to wait (-1: never enough), level per bucket...} | {-1} (the id
#   was reserved before).
# settle: KEYS[1] the holds. Answers how many holds it settled (a replayed one is not).
LEDGER_LUA = """
local P, token, numbers = ARGV[2], ARGV[3] .. ':', ARGV[4]
local now = struct.unpack('<i8', numbers)
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local holds = KEYS[1]
local KEEP, DAY = @KEEP@, @DAY@

local function finish(rid, tokens, nanos)
  local hk = P .. 'hold:' .. rid
  local h = redis.call('HMGET', hk, 'n', 't', 'b', 'k', 'done')
  if h[5] then return 0 end
  if not h[1] then
    -- No hold (yet): a reserve that timed out may still land later; it will find the id taken.
    redis.call('HSET', hk, 'done', 1)
    redis.call('PEXPIRE', hk, KEEP)
    return 0
  end
  local held_n, held_t = tonumber(h[1]), tonumber(h[2])
  for key in string.gmatch(h[3], '%S+') do
    local e = tonumber(redis.call('HGET', key, 'end') or '0')
    if e > 0 and now >= e then redis.call('HSET', key, 'spent', 0, 'start', e, 'end', 0) end
    redis.call('HINCRBY', key, 'held', -held_n)
    if nanos > 0 then redis.call('HINCRBY', key, 'spent', nanos) end
  end
  for key in string.gmatch(h[4], '%S+') do
    if held_t ~= tokens then redis.call('HINCRBYFLOAT', key, 'level', held_t - tokens) end
  end
  redis.call('HSET', hk, 'done', 1)
  redis.call('PEXPIRE', hk, KEEP)
  redis.call('ZREM', holds, rid)
  return 1
end

local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', now, 'LIMIT', 0, 1000)
for _, rid in ipairs(expired) do
  if finish(rid, 0, 0) == 0 then redis.call('ZREM', holds, rid) end
end

if ARGV[1] == 'settle' then
  local done = 0
  for at = 9, #numbers, 24 do
    local n, tokens, nanos = struct.unpack('<i8i8i8', numbers, at)
    done = done + finish(token .. string.format('%d', n), tokens, nanos)
  end
  return done
end

local _, n, tokens, nanos = struct.unpack('<i8i8i8i8', numbers)
local rid, ttl = token .. string.format('%d', n), tonumber(ARGV[5])
local hk = P .. 'hold:' .. rid
if redis.call('EXISTS', hk) == 1 then return {-1} end
local spec = {}
for word in string.gmatch(ARGV[6], '%S+') do spec[#spec + 1] = word end
local nb, nl = tonumber(spec[1]), tonumber(spec[2])

-- A bucket's level now: refilled evenly since it was last counted, up to its amount.
local function level_of(key, amount, period)
  local h = redis.call('HMGET', key, 'level', 'at')
  if not (h[1] and h[2]) then return amount end
  return math.min(amount, tonumber(h[1]) + math.max(0, now - tonumber(h[2])) * amount / period)
end
-- A refusal, and every bucket's level now (what its x-ratelimit-* headers tell).
local function refused(reply)
  for j = 1, nl do
    local a = 3 + 4 * nb + 3 * (j - 1)
    reply[#reply + 1] = math.floor(level_of(KEYS[1 + nb + j], tonumber(spec[a]), tonumber(spec[a + 1])))
  end
  return reply
end

local a = 3
local budgets = {}
for i = 1, nb do
  local key = KEYS[1 + i]
  local cap, s, e, n = tonumber(spec[a]), tonumber(spec[a + 1]), tonumber(spec[a + 2]), tonumber(spec[a + 3])
  a = a + 4
  if now >= e then s, e = e, n end
  local h = redis.call('HMGET', key, 'start', 'spent', 'held', 'end')
  local spent = 0
  if tonumber(h[1]) == s then spent = tonumber(h[2] or '0') end
  local held = tonumber(h[3] or '0')
  if spent + held + nanos > cap then return refused({0, 'budget', i, cap - spent - held, e - now, spent}) end
  -- Its expiry (a day after the window) is set once per window: when the key or the window is new.
  budgets[i] = {key, s, e, spent, tonumber(h[1]) ~= s or tonumber(h[4]) ~= e}
end
local buckets = {}
for j = 1, nl do
  local key = KEYS[1 + nb + j]
  local amount, period, counts_tokens = tonumber(spec[a]), tonumber(spec[a + 1]), spec[a + 2] == '1'
  a = a + 3
  local level = level_of(key, amount, period)
  local need = 1
  if counts_tokens then need = tokens end
  if need > amount then return refused({0, 'rate', j, -1}) end
  if level < need then return refused({0, 'rate', j, math.ceil((need - level) * period / amount)}) end
  buckets[j] = {key, level - need, amount, period, counts_tokens}
end
local budget_keys, token_keys, reply = {}, {}, {1}
for _, b in ipairs(budgets) do
  redis.call('HSET', b[1], 'start', b[2], 'end', b[3], 'spent', b[4])
  redis.call('HINCRBY', b[1], 'held', nanos)
  if b[5] then redis.call('PEXPIRE', b[1], b[3] - now + DAY) end
  budget_keys[#budget_keys + 1] = b[1]
end
for _, b in ipairs(buckets) do
  redis.call('HSET', b[1], 'level', b[2], 'at', now)
  redis.call('PEXPIRE', b[1], 2 * b[4] + ttl)
  if b[5] then token_keys[#token_keys + 1] = b[1] end
  reply[#reply + 1] = math.floor(b[2])
  reply[#reply + 1] = math.ceil((b[3] - b[2]) * b[4] / b[3])
end
redis.call('HSET', hk, 'n', nanos, 't', tokens, 'b', table.concat(budget_keys, ' '), 'k', table.concat(token_keys, ' '))
redis.call('PEXPIRE', hk, ttl + KEEP)
redis.call('ZADD', holds, now + ttl, rid)
return reply
""".replace("@KEEP@", str(KEEP_DONE_MS)).replace("@DAY@", str(DAY_MS))

REFUSE, ADMIT = "refuse", "admit"


@dataclass(frozen=True)
class Policies:
    """What a kind of limit does while Redis is down or slow (serve's --budgets-when-down and
    --limits-when-down): `refuse` the request (503 tenant_state_unavailable) or `admit` it
    unchecked (not counted in Redis)."""

    budgets: str = REFUSE
    limits: str = ADMIT


@dataclass(slots=True)
class _Plan:
    """What every reserve of one combination of scopes sends, made once (its windows again when one ends)."""

    scopes: tuple[Scope, ...]
    keys: list[bytes]                       # the holds, the budgets', the buckets'
    budget_keys: list[str]
    bucket_keys: list[str]
    budgets: list[tuple[Scope, Any]]        # (scope, ir.Budget) in the script's order
    limits: list[tuple[Scope, Any]]         # (scope, ir.RateLimit)
    # For the admitted answer's x-ratelimit-* headers: per unit, its header names, its limit's text and
    # where its buckets' levels are in a reply (one bucket: no search for the tightest).
    units: tuple[tuple[str, str, str, tuple[tuple[int, str], ...]], ...]   # (names, ((reply index, limit text), ...))
    head: bytes                             # a reserve on the wire up to its numbers (ARGV[4])
    tail: bytes = b""                       # ... after them: the hold's ms and the spec
    pack: Any = None                        # struct.Struct(...).pack: head, NUMBERS' four, tail -> the reserve
    until: float = 0.0                      # the first end of its windows: the spec is made again then


class RedisLedger:
    """The Accounts of the whole fleet, on Redis (see the module's docstring)."""

    def __init__(self, link: Link, policies: Policies = Policies(), hold_ttl_s: float = HOLD_TTL_S,
                 clock=None):
        self.link = link
        link.scripts["ledger"] = LEDGER_LUA
        self.policies = policies
        self.hold_ttl_ms = int(hold_ttl_s * 1000)
        self.clock = clock or time.time   # given (tests): the script counts on it instead of the server's
        self._server_clock = clock is None
        self._plans: dict[int, _Plan] = {}   # id of a tuple of scopes -> its plan
        # This process's token: a hold's id in Redis is TOKEN:N, N the gateway's own count (unique in the fleet).
        self.token = os.urandom(8).hex().encode()
        self._settles: list[int] = []       # queued settles: hold id, tokens, nano-dollars, ... (flat)
        self._mine: set[HoldId] = set()     # this process's holds in Redis, not yet settled
        # bucket key -> (its level, when): as the last refusal's reply gave it (its headers: no extra call)
        self._seen: dict[str, tuple[float, float]] = {}
        self._spent_out: dict[str, tuple[float, int]] = {}   # budget key -> (its window's end, cap): spent out
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self.unchecked = 0                  # requests admitted while Redis was down (the policy)
        self.dropped = 0                    # settles dropped (queue full): their holds expire

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._settler())

    async def close(self) -> None:
        """Send the settles still queued (bounded by the link's timeout), then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._settles and self.link.up:
            await self._send_settles()

    # ---- reserve --------------------------------------------------------------------

    def reserve(self, hold_id: HoldId, scopes: tuple[Scope, ...], tokens: int,
                nanos: int) -> Admission | Refusal | Awaitable[Admission | Refusal]:
        """Send the reserve: awaiting what this gives answers it (an Admission or a Refusal). Given
        at once, without Redis: a spent-out budget's refusal, or the failure policies while Redis is down."""
        now = self.clock()
        plan = self._plans.get(id(scopes))   # (the gateway keeps one tuple of scopes per key and router version)
        if plan is None or plan.scopes is not scopes or now >= plan.until:
            plan = self._plan(scopes, now)
        if self._spent_out:
            spent_out = self._spent_out_refusal(plan, nanos, now)
            if spent_out is not None:
                return spent_out
        if not self.link.up:
            return self._down(scopes)
        sent_tokens, sent_nanos = tokens, nanos   # (the refusal's message says the request's own)
        if tokens > MOST or nanos > MOST:
            sent_tokens, sent_nanos = min(tokens, MOST), min(nanos, MOST)
        # Only the clock, the hold's id, tokens and nano-dollars change between a plan's reserves.
        packed = plan.pack(plan.head, SERVER_CLOCK if self._server_clock else int(now * 1000), hold_id, sent_tokens,
                           sent_nanos, plan.tail)
        reply = self.link.send(packed)
        if reply is None:   # the pipe is not open yet: the link opens it (a task, as a reply's future is awaited)
            reply = asyncio.ensure_future(self.link.call(Op("ledger", plan.keys, [], None, packed)))
        return self._reserving(reply, hold_id, plan, tokens, nanos, packed, now)

    @types.coroutine
    def _reserving(self, reply: asyncio.Future, hold_id: HoldId, plan: _Plan, tokens: int, nanos: int,
                   packed: bytes, now: float):
        """A reserve on the wire: awaiting it gives its Admission or Refusal. (A generator awaits the
        pipe's reply: no object or coroutine per layer, as this is on every request.)"""
        try:
            reply = yield from reply
            if type(reply) is not list:   # the connection closed, or Redis lost its scripts (a restart)
                reply = yield from self.link.checked(Op("ledger", plan.keys, [], None, packed), reply).__await__()
                if reply is None or isinstance(reply, Exception):   # no answer in time, or the script failed
                    self._settles += (hold_id, 0, 0)   # Redis may still run it (a frozen server that wakes)
                    return self._down(plan.scopes)
        except asyncio.CancelledError:   # the client left: whatever the reserve got is given back
            self._settles += (hold_id, 0, 0)
            raise
        return self._answer(reply, hold_id, plan, tokens, nanos, now)

    async def admit(self, hold_id: HoldId, scopes: tuple[Scope, ...], tokens: int,
                    nanos: int) -> Admission | Refusal:
        """`reserve`, and wait for its answer."""
        result = self.reserve(hold_id, scopes, tokens, nanos)
        return result if type(result) is Admission or type(result) is Refusal else await result

    def _answer(self, reply: list, hold_id: HoldId, plan: _Plan, tokens: int, nanos: int,
                now: float) -> Admission | Refusal:
        status = reply[0]   # (integers: hiredis gives a script's numbers as int)
        if status == 1:
            self._mine.add(hold_id)
            return Admission(None, reply, plan)
        if status == -1:
            raise ValueError(f"hold {hold_id!r} was reserved before")
        now = self.clock()
        kind, index = _text(reply[1]), int(reply[2]) - 1
        at = 6 if kind == "budget" else 4   # then each bucket's level now, in order (for the refusal's headers)
        for key in plan.bucket_keys:
            self._seen[key] = (int(reply[at]), now)
            at += 1
        if kind == "budget":
            scope, budget = plan.budgets[index]
            cap = budget.micros * NANOS_PER_MICRO
            if int(reply[5]) >= cap:   # spent it all: nothing changes that before the window ends
                self._spent_out[plan.budget_keys[index]] = (now + int(reply[4]) / 1000, cap)
            return over_budget(scope, budget.period, cap, int(reply[3]), nanos, int(reply[4]) / 1000)
        scope, limit = plan.limits[index]
        wait_ms = int(reply[3])
        need = tokens if limit.unit == "tokens" else 1
        return over_limit(scope, limit, need, None if wait_ms < 0 else wait_ms / 1000)

    def _spent_out_refusal(self, plan: _Plan, nanos: int, now: float) -> Refusal | None:
        """The one answer given without Redis: a budget whose window is spent out (spent, not held:
        only the window's end changes that) refuses until that end."""
        for (scope, budget), key in zip(plan.budgets, plan.budget_keys):
            until, cap = self._spent_out.get(key, (None, None))
            if until is None:
                continue
            if now >= until or cap != budget.micros * NANOS_PER_MICRO:   # a new window, or a new cap
                del self._spent_out[key]
                continue
            return over_budget(scope, budget.period, cap, 0, nanos, until - now)
        return None

    def _down(self, scopes: tuple[Scope, ...]) -> Admission | Refusal:
        """Redis is down or slow: each kind of limit's policy."""
        for scope in scopes:
            if scope.budgets and self.policies.budgets == REFUSE:
                return Refusal("state_unavailable", f"the budgets of {scope.label} are counted on Redis, which does"
                                                    f" not answer: refused until it does", 1, scope)
            if scope.limits and self.policies.limits == REFUSE:
                return Refusal("state_unavailable", f"the rate limits of {scope.label} are counted on Redis, which"
                                                    f" does not answer: refused until it does", 1, scope)
        if not any(scope.budgets or scope.limits for scope in scopes):
            return Admission(None)   # nothing to count
        self.unchecked += 1
        return Admission(None, counted=False)

    # ---- settle and release ------------------------------------------------------------

    def settle(self, hold_id: HoldId, tokens: int, nanos: int) -> bool:
        """Queue the settle (sent within SETTLE_S); False when this process holds nothing for
        `hold_id` (already settled or released, or admitted while Redis was down)."""
        try:
            self._mine.remove(hold_id)
        except KeyError:
            return False
        if len(self._settles) >= QUEUED_NUMBERS:
            self.dropped += 1
            return True
        self._settles += (hold_id, tokens, nanos)
        if len(self._settles) >= BATCH_NUMBERS:
            self._wake.set()
        return True

    def release(self, hold_id: HoldId) -> bool:
        return self.settle(hold_id, 0, 0)

    async def _settler(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SETTLE_S):
                    await self._wake.wait()
            self._wake.clear()
            if self._settles and self.link.up:
                await self._send_settles()

    async def _send_settles(self) -> None:
        """One script call per SETTLE_BATCH settles; those Redis did not take wait for the next round
        (a settle applies once, whenever it lands)."""
        while self._settles:
            batch, self._settles = self._settles[:BATCH_NUMBERS], self._settles[BATCH_NUMBERS:]
            if max(batch) > MOST:   # (an upstream's usage may be any integer; hold ids never come near)
                batch = [min(number, MOST) for number in batch]
            numbers = struct.pack(f"<{1 + len(batch)}q", SERVER_CLOCK if self._server_clock
                                  else int(self.clock() * 1000), *batch)
            replies = await self.link.run([Op("ledger", [HOLDS_KEY], [b"settle", PREFIX_ARG, self.token, numbers])])
            if replies is None or isinstance(replies[0], Exception):
                self._settles[:0] = batch
                return

    # ---- levels: from the replies, never an extra call ----------------------------------

    def level(self, scope: Scope, limit) -> tuple[float, float]:
        """The bucket as the last refusal's reply gave it (read right after it), refilled since at its rate."""
        seen = self._seen.get(bucket_key(scope, limit))
        if seen is None:
            return float(limit.amount), 0.0
        level, at = seen
        level = min(limit.amount, level + (self.clock() - at) * limit.amount / limit.seconds)
        return level, (limit.amount - level) * limit.seconds / limit.amount

    def headers(self, admission: Admission) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers of an admitted request: per unit, its bucket with the
        fewest left, read from the reserve's reply (as rate_headers spells them)."""
        reply = admission.reply
        out: dict[str, str] = {}
        if reply is None:
            return out
        for limit, remaining, reset, buckets in admission.plan.units:
            # (several buckets of a unit: the first with the fewest left, as rate_headers picks)
            at, amount = buckets[0] if len(buckets) == 1 else min(buckets, key=lambda b: max(0, reply[b[0]]))
            level = reply[at]
            out[limit] = amount
            out[remaining] = str(level) if level > 0 else "0"
            out[reset] = duration(reply[at + 1] / 1000)
        return out

    # ---- what a reserve sends ---------------------------------------------------------------

    def _plan(self, scopes: tuple[Scope, ...], now: float) -> _Plan:
        plan = self._plans.get(id(scopes))   # (the gateway keeps one tuple of scopes per key and router version)
        if plan is None or plan.scopes is not scopes:
            budgets = [(scope, b) for scope in scopes for b in scope.budgets]
            limits = [(scope, lim) for scope in scopes for lim in scope.limits]
            bucket_keys = [bucket_key(scope, lim) for scope, lim in limits]
            budget_keys = [budget_key(scope, b) for scope, b in budgets]
            keys = [HOLDS_KEY, *budget_keys, *bucket_keys]
            if len(self._plans) > 10_000:   # (scopes live as long as their router's version)
                self._plans.clear()
            encoded = [k.encode() for k in keys]
            units = tuple((*RATE_HEADERS[unit], buckets) for unit in ("requests", "tokens") if (buckets := tuple(
                (1 + 2 * i, str(limit.amount)) for i, (_, limit) in enumerate(limits) if limit.unit == unit)))
            head = evalsha_head(LEDGER_LUA, encoded, 6) + bulk(b"reserve", PREFIX_ARG, self.token) \
                + b"$%d\r\n" % NUMBERS.size
            plan = self._plans[id(scopes)] = _Plan(scopes, encoded, budget_keys, bucket_keys, budgets, limits, units,
                                                   head)
        if now >= plan.until:
            words, plan.until = [len(plan.budgets), len(plan.limits)], math.inf
            for scope, budget in plan.budgets:
                # The calendar window containing `now` in the policy's zone, and the next one's end.
                start = window_start(budget.period, now, scope.timezone)
                end = next_window(budget.period, start, scope.timezone)
                words += [budget.micros * NANOS_PER_MICRO, int(start * 1000), int(end * 1000),
                          int(next_window(budget.period, end, scope.timezone) * 1000)]
                plan.until = min(plan.until, end)
            for _scope, limit in plan.limits:
                words += [limit.amount, limit.seconds * 1000, 1 if limit.unit == "tokens" else 0]
            plan.tail = b"\r\n" + bulk(self.hold_ttl_ms, " ".join(map(str, words)))
            plan.pack = struct.Struct(f"<{len(plan.head)}s{NUMBERS.format[1:]}{len(plan.tail)}s").pack
        return plan

    def status(self) -> dict[str, Any]:
        return {"backend": "redis", "up": self.link.up, "budgets_when_down": self.policies.budgets, "limits_when_down": self.policies.limits,
                "admitted_unchecked": self.unchecked, "settles_queued": len(self._settles) // 3,
                "settles_dropped": self.dropped}


def budget_key(scope: Scope, budget) -> str:
    return f"{TENANTS}:budget:{scope.kind}:{scope.name}:{budget.period}"


def bucket_key(scope: Scope, limit) -> str:
    return f"{TENANTS}:rate:{scope.kind}:{scope.name}:{limit.unit}:{limit.per}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
