"""Admission for tenants: one reserve across every scope of a request (its
key, workspace and agent: every budget and limit at once, all or nothing)
before the upstream call, then one settle to the real usage.

Units: money in nano-dollars inside the ledger (a request's cost is
`tokens x micro-dollars per 1k tokens`, a whole number of nano-dollars, so
no fraction of a cent is ever rounded away); budgets are given in
micro-dollars. Budgets count per calendar day, week (from Monday) and month
in the policy's time zone; rates are token buckets (capacity = the limit,
refilled evenly over its period).

A reservation holds its estimate against every budget and bucket until it
is settled (charged the real cost and tokens) or released (nothing spent:
the request never reached an upstream); a hold nobody settles expires after
`hold_ttl_s` (a crashed handler), and a settle or release replayed for the
same request id changes nothing. This ledger lives in one process: every
limit is per gateway process (docs/tenants.md says so).
"""

from __future__ import annotations

import datetime
import math
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

from .. import ir

NANOS_PER_MICRO = 1000
HOLD_TTL_S = 600.0


@dataclass(frozen=True)
class Scope:
    """One thing a request is counted against: ("workspace", "ws-a"), ("agent", "creative"), ("key", id)."""

    kind: str
    name: str
    budgets: tuple[ir.Budget, ...] = ()
    limits: tuple[ir.RateLimit, ...] = ()
    timezone: str = "UTC"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Refusal:
    code: str                 # rate_limited | budget_exceeded
    message: str
    retry_after_s: int | None
    scope: Scope


@dataclass(slots=True)
class _Budget:
    """One budget of one scope, in its current calendar window (changed in place when a
    new window begins, so holds keep pointing at it)."""

    period: str
    zone: str
    cap: int                  # nano-dollars
    window: float = 0.0       # the start of the calendar period counted
    end: float = 0.0          # ... and of the next
    spent: int = 0            # nano-dollars settled in it
    held: int = 0             # nano-dollars reserved and not yet settled


@dataclass(slots=True)
class _Bucket:
    """A token bucket: `level` can be taken now (below 0 after a settle above its estimate)."""

    amount: int
    seconds: int
    tokens: bool              # counts tokens (else requests)
    level: float
    at: float


@dataclass(slots=True)
class Hold:
    request_id: str
    tokens: int               # the estimate held in every token bucket
    nanos: int                # the estimate held against every budget
    budgets: list             # the _Budget and _Bucket objects it holds from
    buckets: list
    expires: float


class Level(NamedTuple):
    """One rate limit's bucket after a reserve: what OpenAI's x-ratelimit-* headers say."""

    unit: str                 # requests | tokens
    amount: int               # the limit
    remaining: int
    reset_s: float            # until the bucket is full again


@dataclass(slots=True)
class Admission:
    hold: Hold | None         # the in-process ledger's (None on Redis, whose holds live there)
    levels: list[Level] | None = None   # on Redis: from the reserve's own reply
    counted: bool = True      # False: admitted uncounted (Redis down, and the policy admits)


class Accounts(Protocol):
    """What admission asks of a ledger: this module's `Ledger` (one process) and the
    gateway's `RedisLedger` (the fleet's, on Redis)."""

    async def admit(self, request_id: str, scopes: tuple[Scope, ...], tokens: int,
                    nanos: int) -> Admission | Refusal: ...
    def settle(self, request_id: str, tokens: int, nanos: int) -> bool: ...
    def release(self, request_id: str) -> bool: ...
    def level(self, scope: Scope, limit: ir.RateLimit) -> tuple[float, float]: ...
    def levels(self, admission: Admission) -> list[Level]: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def status(self) -> dict: ...


def window_start(period: str, now: float, zone: str) -> float:
    """The start of the calendar day, week (Monday) or month containing `now` in `zone`."""
    local = datetime.datetime.fromtimestamp(now, ZoneInfo(zone))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        day -= datetime.timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    # Midnight may not exist or exist twice on a zone's change day: resolve it as the zone does.
    return day.replace(tzinfo=None).replace(tzinfo=ZoneInfo(zone)).timestamp()


def next_window(period: str, start: float, zone: str) -> float:
    local = datetime.datetime.fromtimestamp(start, ZoneInfo(zone)).replace(tzinfo=None)
    if period == "day":
        local += datetime.timedelta(days=1)
    elif period == "week":
        local += datetime.timedelta(days=7)
    else:
        local = (local.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    return local.replace(tzinfo=ZoneInfo(zone)).timestamp()


class Ledger:
    def __init__(self, hold_ttl_s: float = HOLD_TTL_S, clock=time.time):
        self.hold_ttl_s = hold_ttl_s
        self.clock = clock
        self.lock = threading.Lock()
        self.holds: dict[str, Hold] = {}
        self.finished: dict[str, float] = {}       # request id -> when settled or released (replays are no-ops)
        self.buckets: dict[tuple, _Bucket] = {}    # (scope kind, name, unit, per) -> bucket
        self.budgets: dict[tuple, _Budget] = {}    # (scope kind, name, period) -> budget
        self.next_sweep = 0.0                      # when expired holds are looked for next

    # ---- the Accounts interface (the in-process ledger never waits) ------------------

    async def admit(self, request_id: str, scopes: tuple[Scope, ...], tokens: int, nanos: int) -> Admission | Refusal:
        return self.reserve(request_id, scopes, tokens, nanos)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def status(self) -> dict:
        """What /routing shows of the ledger."""
        with self.lock:
            return {"backend": "memory", "holds": len(self.holds)}

    def levels(self, admission: Admission) -> list[Level]:
        """The admitted request's buckets now (after its reserve took from them)."""
        with self.lock:
            now = self.clock()
            out = []
            for bucket in admission.hold.buckets:
                level = min(bucket.amount, bucket.level + max(0.0, now - bucket.at) * bucket.amount / bucket.seconds)
                out.append(Level("tokens" if bucket.tokens else "requests", bucket.amount, max(0, int(level)),
                                 (bucket.amount - level) * bucket.seconds / bucket.amount))
            return out

    # ---- reserve -----------------------------------------------------------------

    def reserve(self, request_id: str, scopes: tuple[Scope, ...], tokens: int, nanos: int) -> Admission | Refusal:
        """Hold `tokens` and `nanos` (the request's estimate) and one request in every
        scope, or nothing and the first refusal."""
        with self.lock:
            now = self.clock()
            if now >= self.next_sweep:
                self._expire(now)
            if request_id in self.holds or request_id in self.finished:
                raise ValueError(f"request id {request_id!r} was reserved before")
            budgets, buckets = [], []
            for scope in scopes:
                for budget in scope.budgets:
                    state = self._budget(scope, budget, now)
                    if state.spent + state.held + nanos > state.cap:
                        return over_budget(scope, budget.period, state.cap, state.cap - state.spent - state.held,
                                           nanos, state.end - now)
                    budgets.append(state)
                for limit in scope.limits:
                    bucket = self._bucket(scope, limit, now)
                    need = tokens if bucket.tokens else 1
                    if need > limit.amount:
                        return over_limit(scope, limit, need, None)
                    if bucket.level < need:
                        return over_limit(scope, limit, need, (need - bucket.level) * limit.seconds / limit.amount)
                    buckets.append(bucket)
            # Every check passed: take from everything at once.
            for state in budgets:
                state.held += nanos
            for bucket in buckets:
                bucket.level -= tokens if bucket.tokens else 1
            hold = self.holds[request_id] = Hold(request_id, tokens, nanos, budgets, buckets, now + self.hold_ttl_s)
            return Admission(hold)

    # ---- settle and release ------------------------------------------------------

    def settle(self, request_id: str, tokens: int, nanos: int) -> bool:
        """Charge the request's real usage in place of its hold. False when there is
        no hold (already settled or released, or expired): then nothing changes."""
        with self.lock:
            hold = self.holds.pop(request_id, None)
            if hold is None:
                return False
            now = self.finished[request_id] = self.clock()
            self._undo(hold, nanos, tokens, now)
            return True

    def release(self, request_id: str) -> bool:
        """Free the hold without charging money (no upstream answered); the request still
        counts against request limits, its tokens are given back."""
        return self.settle(request_id, 0, 0)

    def _undo(self, hold: Hold, spent: int, tokens: int, now: float) -> None:
        for state in hold.budgets:
            state.held -= hold.nanos
            if now >= state.end:
                self._roll(state, now)
            state.spent += spent     # charged to the window in which it ends
        for bucket in hold.buckets:
            if bucket.tokens:
                bucket.level += hold.tokens - tokens

    def _expire(self, now: float) -> None:
        self.next_sweep = now + 1.0   # holds live minutes: a sweep a second is plenty, and cheap per request
        for request_id in [r for r, h in self.holds.items() if h.expires <= now]:
            self._undo(self.holds.pop(request_id), 0, 0, now)
            self.finished[request_id] = now
        if len(self.finished) > 100_000:  # replays come within seconds; forget the oldest half
            for request_id in sorted(self.finished, key=self.finished.get)[:50_000]:
                del self.finished[request_id]

    # ---- state ---------------------------------------------------------------------

    def _budget(self, scope: Scope, budget: ir.Budget, now: float) -> _Budget:
        key = (scope.kind, scope.name, budget.period)
        state = self.budgets.get(key)
        if state is None:
            state = self.budgets[key] = _Budget(budget.period, scope.timezone, budget.micros * NANOS_PER_MICRO)
        if now >= state.end or now < state.window:
            self._roll(state, now)
        return state

    @staticmethod
    def _roll(state: _Budget, now: float) -> None:
        """A new calendar window begins: nothing spent in it yet; open holds still count."""
        state.window = window_start(state.period, now, state.zone)
        state.end = next_window(state.period, state.window, state.zone)
        state.spent = 0

    def _bucket(self, scope: Scope, limit: ir.RateLimit, now: float) -> _Bucket:
        key = (scope.kind, scope.name, limit.unit, limit.per)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket(limit.amount, limit.seconds, limit.unit == "tokens",
                                                 float(limit.amount), now)
        elif now > bucket.at:
            level = bucket.level + (now - bucket.at) * bucket.amount / bucket.seconds
            bucket.level = level if level < bucket.amount else float(bucket.amount)
            bucket.at = now
        return bucket

    def level(self, scope: Scope, limit: ir.RateLimit) -> tuple[float, float]:
        """What `limit`'s bucket holds now, and the seconds until it is full."""
        with self.lock:
            bucket = self._bucket(scope, limit, self.clock())
            return bucket.level, (limit.amount - bucket.level) * limit.seconds / limit.amount

    def spent(self, scope: Scope, period: str) -> tuple[int, int]:
        """(spent, held) nano-dollars in the current window of `scope`'s `period` budget."""
        budget = next(b for b in scope.budgets if b.period == period)
        with self.lock:
            state = self._budget(scope, budget, self.clock())
            return state.spent, state.held


def over_budget(scope: Scope, period: str, cap: int, left: int, nanos: int, retry_s: float) -> Refusal:
    """The refusal of a request whose estimate (`nanos`) does not fit in what `period`'s budget has left."""
    return Refusal("budget_exceeded", f"the {period}ly budget of {scope.label} ({usd(cap)}) has {usd(max(0, left))}"
                                      f" left, and this request may cost up to {usd(nanos)}",
                   max(1, math.ceil(retry_s)), scope)


def over_limit(scope: Scope, limit: ir.RateLimit, need: int, wait_s: float | None) -> Refusal:
    """The refusal of a request needing `need` of `limit`: in `wait_s`, or never (None: more than the limit)."""
    if wait_s is None:
        return Refusal("rate_limited", f"this request needs {need} {limit.unit}, more than {scope.label}'s limit"
                                       f" of {limit.amount} per {limit.per}", None, scope)
    return Refusal("rate_limited", f"{scope.label} is over its limit of {limit.amount} {limit.unit} per {limit.per}",
                   max(1, math.ceil(wait_s)), scope)


def usd(nanos: int) -> str:
    whole, frac = divmod(nanos, 1_000_000_000)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") + " USD"
