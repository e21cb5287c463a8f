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


@dataclass
class Hold:
    request_id: str
    scopes: tuple[Scope, ...]
    tokens: int               # the estimate held in every token bucket
    nanos: int                # the estimate held against every budget
    windows: dict             # (scope key, period) -> the window start the hold counts in
    expires: float


@dataclass
class _Bucket:
    level: float              # what can be taken now (may go below 0 after a settle above its estimate)
    at: float                 # when `level` was computed


@dataclass
class _Budget:
    window: float             # the start of the calendar period counted
    spent: int = 0            # nano-dollars settled in it
    held: int = 0             # nano-dollars reserved and not yet settled


@dataclass
class Admission:
    hold: Hold


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
        self.budgets: dict[tuple, _Budget] = {}    # (scope kind, name, period) -> the current window

    # ---- reserve -----------------------------------------------------------------

    def reserve(self, request_id: str, scopes: tuple[Scope, ...], tokens: int, nanos: int) -> Admission | Refusal:
        """Hold `tokens` and `nanos` (the request's estimate) and one request in every
        scope, or nothing and the first refusal."""
        with self.lock:
            now = self.clock()
            self._expire(now)
            if request_id in self.holds or request_id in self.finished:
                raise ValueError(f"request id {request_id!r} was reserved before")
            windows: dict = {}
            for scope in scopes:
                for budget in scope.budgets:
                    state = self._budget(scope, budget.period, now)
                    cap = budget.micros * NANOS_PER_MICRO
                    if state.spent + state.held + nanos > cap:
                        left = max(0, cap - state.spent - state.held)
                        reset = next_window(budget.period, state.window, scope.timezone)
                        return Refusal("budget_exceeded",
                                       f"the {budget.period}ly budget of {scope.label} ({_usd(cap)}) has"
                                       f" {_usd(left)} left, and this request may cost up to {_usd(nanos)}",
                                       max(1, math.ceil(reset - now)), scope)
                    windows[(scope.kind, scope.name, budget.period)] = state.window
                for limit in scope.limits:
                    need = 1 if limit.unit == "requests" else tokens
                    bucket = self._bucket(scope, limit, now)
                    if need > limit.amount:
                        return Refusal("rate_limited", f"this request needs {need} {limit.unit}, more than"
                                                       f" {scope.label}'s limit of {limit.amount} per {limit.per}",
                                       None, scope)
                    if bucket.level < need:
                        wait = (need - bucket.level) * limit.seconds / limit.amount
                        return Refusal("rate_limited", f"{scope.label} is over its limit of {limit.amount}"
                                                       f" {limit.unit} per {limit.per}",
                                       max(1, math.ceil(wait)), scope)
            # Every check passed: take from everything at once.
            for scope in scopes:
                for budget in scope.budgets:
                    self.budgets[(scope.kind, scope.name, budget.period)].held += nanos
                for limit in scope.limits:
                    self.buckets[(scope.kind, scope.name, limit.unit, limit.per)].level -= (
                        1 if limit.unit == "requests" else tokens)
            hold = Hold(request_id, scopes, tokens, nanos, windows, now + self.hold_ttl_s)
            self.holds[request_id] = hold
            return Admission(hold)

    # ---- settle and release ------------------------------------------------------

    def settle(self, request_id: str, tokens: int, nanos: int) -> bool:
        """Charge the request's real usage in place of its hold. False when there is
        no hold (already settled or released, or expired): then nothing changes."""
        with self.lock:
            hold = self.holds.pop(request_id, None)
            if hold is None:
                return False
            self.finished[request_id] = self.clock()
            self._undo(hold, spent=nanos, tokens=tokens)
            return True

    def release(self, request_id: str) -> bool:
        """Free the hold without charging money (no upstream answered); the request still
        counts against request limits, its tokens are given back."""
        return self.settle(request_id, 0, 0)

    def _undo(self, hold: Hold, spent: int, tokens: int) -> None:
        for scope in hold.scopes:
            for budget in scope.budgets:
                state = self.budgets.get((scope.kind, scope.name, budget.period))
                if state is None:
                    continue
                if state.window == hold.windows.get((scope.kind, scope.name, budget.period)):
                    state.held -= hold.nanos
                state.spent += spent  # charged to the window current now (a request crossing midnight)
            for limit in scope.limits:
                if limit.unit == "tokens":
                    bucket = self.buckets.get((scope.kind, scope.name, limit.unit, limit.per))
                    if bucket is not None:
                        bucket.level += hold.tokens - tokens

    def _expire(self, now: float) -> None:
        for request_id in [r for r, h in self.holds.items() if h.expires <= now]:
            self._undo(self.holds.pop(request_id), spent=0, tokens=0)
            self.finished[request_id] = now
        if len(self.finished) > 100_000:  # replays come within seconds; forget the oldest half
            for request_id in sorted(self.finished, key=self.finished.get)[:50_000]:
                del self.finished[request_id]

    # ---- state ---------------------------------------------------------------------

    def _budget(self, scope: Scope, period: str, now: float) -> _Budget:
        key = (scope.kind, scope.name, period)
        start = window_start(period, now, scope.timezone)
        state = self.budgets.get(key)
        if state is None or state.window != start:
            held = state.held if state is not None else 0  # holds taken in the last window still count
            state = self.budgets[key] = _Budget(start, 0, held)
            for hold in self.holds.values():
                if key in hold.windows:
                    hold.windows[key] = start
        return state

    def _bucket(self, scope: Scope, limit: ir.RateLimit, now: float) -> _Bucket:
        key = (scope.kind, scope.name, limit.unit, limit.per)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket(float(limit.amount), now)
        elif now > bucket.at:
            bucket.level = min(float(limit.amount), bucket.level + (now - bucket.at) * limit.amount / limit.seconds)
            bucket.at = now
        return bucket

    def level(self, scope: Scope, limit: ir.RateLimit) -> tuple[float, float]:
        """What `limit`'s bucket holds now, and the seconds until it is full."""
        with self.lock:
            bucket = self._bucket(scope, limit, self.clock())
            return bucket.level, (limit.amount - bucket.level) * limit.seconds / limit.amount

    def spent(self, scope: Scope, period: str) -> tuple[int, int]:
        """(spent, held) nano-dollars in the current window of `scope`'s `period` budget."""
        with self.lock:
            state = self._budget(scope, period, self.clock())
            return state.spent, state.held


def _usd(nanos: int) -> str:
    whole, frac = divmod(nanos, 1_000_000_000)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") + " USD"
