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
same hold changes nothing. Hold ids are the gateway's own (never a client's
`x-request-id`): unique per process, so a reserve never meets one taken.
This ledger lives in one process: every limit is per gateway process
(docs/tenants.md says so). It is used from the gateway's event loop only: a
reserve never waits, so no other request runs between its checks and its
takes (no lock).
"""

from __future__ import annotations

import datetime
import functools
import math
import operator
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

from .. import ir

NANOS_PER_MICRO = 1000
HOLD_TTL_S = 600.0
ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly"}
_LEVEL = operator.attrgetter("level")


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
    room: int                 # what may still be held: cap - spent - held (a reserve checks only this)
    window: float = 0.0       # the start of the calendar period counted
    end: float = 0.0          # ... and of the next
    spent: int = 0            # nano-dollars settled in it

    @property
    def held(self) -> int:
        """Nano-dollars reserved and not yet settled."""
        return self.cap - self.spent - self.room


class _Bucket:
    """A token bucket: `level` can be taken now (below 0 after a settle above its estimate)."""

    __slots__ = ("amount", "amount_text", "at", "full", "level", "limit", "rate", "seconds", "tokens")

    def __init__(self, limit: ir.RateLimit, now: float):
        self.tokens = limit.unit == "tokens"   # counts tokens (else requests)
        self.level, self.at = float(limit.amount), now
        self.count(limit)

    def count(self, limit: ir.RateLimit) -> None:
        """Count `limit` (its amount may be a new version's: what is taken stays taken)."""
        self.limit = limit                       # the limit it counts (its words, for a refusal)
        self.amount, self.seconds = limit.amount, limit.seconds
        self.rate = limit.amount / limit.seconds   # refilled per second
        self.full = float(limit.amount)            # the most it holds
        self.amount_text = str(limit.amount)       # the x-ratelimit-limit-* header's value


class _Across:
    """What a reserve across one tuple of scopes checks and takes from, resolved to the ledger's
    state once (the gateway keeps one tuple of scopes per key and router version)."""

    __slots__ = ("buckets", "budgets", "held", "limited", "scopes", "since", "tokens", "units", "until")

    def __init__(self, scopes: tuple[Scope, ...], budgets: tuple, buckets: tuple):
        self.scopes = scopes
        self.budgets = budgets        # (_Budget, its Scope) of every scope, in order: checked first
        self.buckets = buckets        # (_Bucket, its Scope) of every limit of every scope, in order
        self.held = tuple(state for state, _ in budgets)                          # what a hold takes from
        self.limited = tuple(state for state, _ in buckets)
        self.tokens = tuple(state for state, _ in buckets if state.tokens)        # (a request taken stays taken)
        # For the admitted answer's x-ratelimit-* headers: each unit's header names and buckets
        # (one bucket: no search for the tightest).
        self.units = tuple((*RATE_HEADERS[unit], group[0] if len(group) == 1 else None, group) for unit, group in (
            ("requests", tuple(state for state in self.limited if not state.tokens)), ("tokens", self.tokens)) if group)
        self.since, self.until = -math.inf, math.inf
        self.windows()

    def windows(self) -> None:
        """Note when the first of its budgets' calendar windows ends (and the last began): until
        then, a reserve need not look at each."""
        self.since = max((state.window for state in self.held), default=-math.inf)
        self.until = min((state.end for state in self.held), default=math.inf)


# A hold's id: the gateway's own count, never a client's (on Redis the ledger adds its process's token).
HoldId = int

# What one admitted request holds until it is settled or released: (tokens: the estimate held in
# every token bucket, nanos: the estimate held against every budget, the _Across it holds from, when
# it expires). A plain tuple: one is made per request.
Hold = tuple[int, int, _Across, float]


class Level(NamedTuple):
    """One rate limit's bucket after a reserve: what OpenAI's x-ratelimit-* headers say."""

    unit: str                 # requests | tokens
    amount: int               # the limit
    remaining: int
    reset_s: float            # until the bucket is full again


# OpenAI's x-ratelimit-* header names of each unit: (limit, remaining, reset).
RATE_HEADERS = {unit: (f"x-ratelimit-limit-{unit}", f"x-ratelimit-remaining-{unit}", f"x-ratelimit-reset-{unit}")
                for unit in ("requests", "tokens")}


def rate_headers(levels: list[Level]) -> dict[str, str]:
    """x-ratelimit-limit-, -remaining- and -reset-requests (and -tokens) of the tightest level of each unit."""
    out = {}
    seen: dict[str, int] = {}   # unit -> the fewest left of its levels so far
    for unit, amount, remaining, reset_s in levels:
        if unit in seen and seen[unit] <= remaining:
            continue
        seen[unit] = remaining
        limit, left, reset = RATE_HEADERS[unit]
        out[limit] = str(amount)
        out[left] = str(remaining)
        out[reset] = duration(reset_s)
    return out


# "0ms" to "1000ms" (a second less a rounding), spelled once: most resets of a busy bucket are under a second.
MILLISECONDS = tuple(f"{ms}ms" for ms in range(1001))


def duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* spelling: `1s`, `6m0s`, `1h2m3s`, `250ms`."""
    if seconds < 1:
        return MILLISECONDS[round(seconds * 1000)] if seconds > 0 else "0ms"
    return whole_seconds(round(seconds))


@functools.lru_cache(maxsize=4096)
def whole_seconds(whole: int) -> str:
    """`duration` of a whole number of seconds (cached: a reset is spelled on every admitted answer)."""
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{s}s"


@dataclass(slots=True)
class Admission:
    hold: Hold | None         # the in-process ledger's (None on Redis, whose holds live there)
    reply: list | None = None  # on Redis: the reserve's reply (its buckets' levels), and the plan it was of
    plan: object = None
    counted: bool = True      # False: admitted uncounted (Redis down, and the policy admits)


class Accounts(Protocol):
    """What admission asks of a ledger: this module's `Ledger` (one process) and the
    gateway's `RedisLedger` (the fleet's, on Redis)."""

    # The in-process ledger answers at once; the ledger on Redis gives an awaitable when it asks Redis.
    def reserve(self, hold_id: HoldId, scopes: tuple[Scope, ...], tokens: int,
                nanos: int) -> Admission | Refusal | Awaitable[Admission | Refusal]: ...
    def settle(self, hold_id: HoldId, tokens: int, nanos: int) -> bool: ...
    def release(self, hold_id: HoldId) -> bool: ...
    def level(self, scope: Scope, limit: ir.RateLimit) -> tuple[float, float]: ...
    def headers(self, admission: Admission) -> dict[str, str]: ...   # the admitted answer's x-ratelimit-*
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
        self.holds: dict[HoldId, Hold] = {}        # hold id -> its hold, until settled, released or expired
        self.buckets: dict[tuple, _Bucket] = {}    # (scope kind, name, unit, per) -> bucket
        self.budgets: dict[tuple, _Budget] = {}    # (scope kind, name, period) -> budget
        # id(scopes) -> what a reserve across them checks and holds: resolved once, not by
        # tuple-keyed lookups on every request.
        self.across: dict[int, _Across] = {}
        self.next_sweep = 0.0                      # when expired holds are looked for next

    # ---- the Accounts interface (the in-process ledger never waits) ------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def status(self) -> dict:
        """What /routing shows of the ledger."""
        return {"backend": "memory", "holds": len(self.holds)}

    def headers(self, admission: Admission) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers of an admitted request, read right after its reserve: per
        unit, its bucket with the fewest left. Spelled as rate_headers spells them, from what each
        bucket keeps ready (this is on every admitted answer)."""
        out = {}
        for limit, remaining, reset, tightest, buckets in admission.hold[2].units:
            if tightest is None:
                tightest = min(buckets, key=_LEVEL)
            level = tightest.level
            out[limit] = tightest.amount_text
            if level >= tightest.full:   # a settle may give back more than a full bucket holds
                out[remaining], out[reset] = tightest.amount_text, "0ms"
            else:
                out[remaining] = str(int(level)) if level > 0 else "0"
                out[reset] = duration((tightest.full - level) / tightest.rate)
        return out

    # ---- reserve -----------------------------------------------------------------

    def reserve(self, hold_id: HoldId, scopes: tuple[Scope, ...], tokens: int, nanos: int) -> Admission | Refusal:
        """Hold `tokens` and `nanos` (the request's estimate) and one request in every
        scope, or nothing and the first refusal (every budget is checked before any limit)."""
        now = self.clock()
        if now >= self.next_sweep:
            self._expire(now)
        across = self.across.get(id(scopes))
        if across is None or across.scopes is not scopes:
            across = self._resolve(scopes, now)
        if now >= across.until or now < across.since:
            self._roll_ended(across, now)
        # Each check takes as it passes (nothing runs in between: nobody sees the difference); a refusal gives
        # back what was taken before it, so a reserve still takes from everything or from nothing.
        for state in across.held:
            if state.room < nanos:
                self._give_back(across, state, tokens, nanos)
                return self._exhausted(across, state, nanos, now)
            state.room -= nanos
        for bucket in across.limited:
            level = bucket.level
            if now > bucket.at:   # refilled for the time gone by (whatever this request's fate)
                level += (now - bucket.at) * bucket.rate
                if level > bucket.full:   # noqa: PLR1730 (a comparison: min() is a call, on every reserve)
                    level = bucket.full
                bucket.at = now
            need = tokens if bucket.tokens else 1
            if level < need:
                bucket.level = level
                self._give_back(across, bucket, tokens, nanos)
                return self._over(across, bucket, need)
            bucket.level = level - need
        hold = self.holds[hold_id] = (tokens, nanos, across, now + self.hold_ttl_s)
        return Admission(hold)

    # ---- settle and release ------------------------------------------------------

    def settle(self, hold_id: HoldId, tokens: int, nanos: int) -> bool:
        """Charge the request's real usage in place of its hold. False when there is
        no hold (already settled or released, or expired): then nothing changes."""
        hold = self.holds.pop(hold_id, None)
        if hold is None:
            return False
        self._undo(hold, nanos, tokens, self.clock())
        return True

    def release(self, hold_id: HoldId) -> bool:
        """Free the hold without charging money (no upstream answered); the request still
        counts against request limits, its tokens are given back."""
        return self.settle(hold_id, 0, 0)

    def _undo(self, hold: Hold, spent: int, tokens: int, now: float) -> None:
        held_tokens, held, across, _ = hold
        if now >= across.until:
            self._roll_ended(across, now)   # charged to the window in which it ends
        back = held - spent
        for state in across.held:
            state.room += back
            state.spent += spent
        back = held_tokens - tokens
        if back:
            for bucket in across.tokens:
                bucket.level += back

    def _expire(self, now: float) -> None:
        self.next_sweep = now + 1.0   # holds live minutes: a sweep a second is plenty, and cheap per request
        for hold_id in [r for r, h in self.holds.items() if h[3] <= now]:
            self._undo(self.holds.pop(hold_id), 0, 0, now)

    # ---- state ---------------------------------------------------------------------

    def _resolve(self, scopes: tuple[Scope, ...], now: float) -> _Across:
        """What a reserve across `scopes` checks: every budget (with its scope, for the refusal),
        then every limit. The state is kept under (kind, name, period or unit and period), so a
        new version of a scope keeps what the old one spent and took; its amounts and zone are the
        new version's."""
        if len(self.across) > 10_000:   # scopes of versions no longer served
            self.across.clear()
        budgets = tuple((self._budget(scope, budget, now), scope) for scope in scopes for budget in scope.budgets)
        buckets = tuple((self._bucket(scope, limit, now), scope) for scope in scopes for limit in scope.limits)
        across = self.across[id(scopes)] = _Across(scopes, budgets, buckets)
        return across

    @staticmethod
    def _give_back(across: _Across, refused: _Budget | _Bucket, tokens: int, nanos: int) -> None:
        """Undo what a reserve took from the states checked before the one that refused."""
        for state in across.held:
            if state is refused:
                return
            state.room += nanos
        for state in across.limited:
            if state is refused:
                return
            state.level += tokens if state.tokens else 1

    @staticmethod
    def _exhausted(across: _Across, state: _Budget, nanos: int, now: float) -> Refusal:
        scope = across.budgets[across.held.index(state)][1]
        return over_budget(scope, state.period, state.cap, state.room, nanos, state.end - now)

    @staticmethod
    def _over(across: _Across, bucket: _Bucket, need: int) -> Refusal:
        scope, limit = across.buckets[across.limited.index(bucket)][1], bucket.limit
        return over_limit(scope, limit, need, None if need > limit.amount else (need - bucket.level) / bucket.rate)

    def _budget(self, scope: Scope, budget: ir.Budget, now: float) -> _Budget:
        key = (scope.kind, scope.name, budget.period)
        state = self.budgets.get(key)
        cap = budget.micros * NANOS_PER_MICRO
        if state is None:
            state = self.budgets[key] = _Budget(budget.period, scope.timezone, cap, cap)
        elif state.cap != cap or state.zone != scope.timezone:   # a new version changed it: what is spent stays
            state.room += cap - state.cap
            state.cap = cap
            if state.zone != scope.timezone:
                state.zone = scope.timezone
                state.window = window_start(state.period, now, state.zone)
                state.end = next_window(state.period, state.window, state.zone)
                self.across.clear()   # their windows' ends may be earlier now: resolved again
        if now >= state.end or now < state.window:
            self._roll(state, now)
        return state

    @staticmethod
    def _roll(state: _Budget, now: float) -> None:
        """A new calendar window begins: nothing spent in it yet; open holds still count."""
        state.window = window_start(state.period, now, state.zone)
        state.end = next_window(state.period, state.window, state.zone)
        state.room += state.spent
        state.spent = 0

    def _roll_ended(self, across: _Across, now: float) -> None:
        """Begin a new window for each of `across`'s budgets whose window `now` is not in."""
        for state in across.held:
            if now >= state.end or now < state.window:
                self._roll(state, now)
        across.windows()

    def _bucket(self, scope: Scope, limit: ir.RateLimit, now: float) -> _Bucket:
        key = (scope.kind, scope.name, limit.unit, limit.per)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket(limit, now)
        elif bucket.limit != limit:   # a new version changed the amount: what is taken stays taken
            bucket.level = min(float(limit.amount), bucket.level + limit.amount - bucket.amount)
            bucket.count(limit)
        if now > bucket.at:
            level = bucket.level + (now - bucket.at) * bucket.rate
            bucket.level = min(bucket.full, level)
            bucket.at = now
        return bucket

    def level(self, scope: Scope, limit: ir.RateLimit) -> tuple[float, float]:
        """What `limit`'s bucket holds now, and the seconds until it is full."""
        bucket = self._bucket(scope, limit, self.clock())
        return bucket.level, (limit.amount - bucket.level) * limit.seconds / limit.amount

    def spent(self, scope: Scope, period: str) -> tuple[int, int]:
        """(spent, held) nano-dollars in the current window of `scope`'s `period` budget."""
        budget = next(b for b in scope.budgets if b.period == period)
        state = self._budget(scope, budget, self.clock())
        return state.spent, state.held


def over_budget(scope: Scope, period: str, cap: int, left: int, nanos: int, retry_s: float) -> Refusal:
    """The refusal of a request whose estimate (`nanos`) does not fit in what `period`'s budget has left."""
    return Refusal("budget_exceeded", f"the {ADJECTIVE[period]} budget of {scope.label} ({usd(cap)}) has"
                                      f" {usd(max(0, left))} left, and this request may cost up to {usd(nanos)}",
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
