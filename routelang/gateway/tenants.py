"""Tenants on the request path (docs/tenants.md): the key gives a request its
workspace and agent; before the upstream call the decision's targets are
held to their restrictions (403 model_not_allowed when none is left) and
the request is admitted by one reserve across every scope (429
rate_limited / budget_exceeded); when the request ends, by whatever path,
`finish` settles the hold to the real usage or releases it.

The estimate: prompt tokens (`request.tokens`, characters / 4) plus the
body's `max_tokens` (or `max_completion_tokens`), or DEFAULT_MAX_TOKENS
when it has neither, priced at the dearest target the decision may call.
A stream the client leaves is billed for its prompt and one token per
content frame sent (an OpenAI stream sends about one per frame).

Quality requirements act on selection: a target whose price, or whose
success rate or latency percentile over its last QUALITY_WINDOW attempts in
this process (on Redis: in every live process of the fleet, redisquality.py),
breaks a policy's `require` leaves the request's attempts; when none is left,
the policy refuses (503 no_qualified_target) or the best left (highest success
rate, then lowest median latency) serves.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass

from routelang import ir
from routelang.registry import RegistryError
from routelang.tenancy.keys import KeyCache, KeyStore, TenantKey
from routelang.tenancy.ledger import Accounts, Admission, HoldId, Level, Refusal, Scope, rate_headers

from . import auth, errors, plan
from .metrics import Metrics

DEFAULT_MAX_TOKENS = 4096
REFUSALS = {"rate_limited": errors.RATE_LIMITED, "budget_exceeded": errors.BUDGET_EXCEEDED,
            "state_unavailable": errors.TENANT_STATE_UNAVAILABLE}   # a ledger's Refusal.code -> the answer
QUALITY_WINDOW = 100     # the last N attempts of a target measure its success rate and latency
QUALITY_MIN_SAMPLES = 20  # below this many, a target is not judged (it qualifies)


@dataclass
class Refused:
    kind: errors.Kind
    message: str
    retry_after_s: int | None = None
    headers: dict[str, str] | None = None


@dataclass(slots=True)
class Ticket:
    """An admitted request: its answer's headers, and what `finish` needs."""

    hold_id: HoldId
    prompt_tokens: int
    headers: dict[str, str] | None   # OpenAI's x-ratelimit-* headers: per unit, the tightest bucket after the reserve
    spend: object             # the workspace's routelang_tenant_spend_usd_total child


def nanos(target: plan.Target, prompt_tokens: int, completion_tokens: int) -> int:
    return prompt_tokens * (target.input_micros_per_1k or 0) + completion_tokens * (target.output_micros_per_1k or 0)


class _Window:
    """A target's last QUALITY_WINDOW attempts, with their count of successes and the sorted
    latencies of the successful ones kept as attempts come and go (a percentile is then one
    index, not a sort per request)."""

    __slots__ = ("attempts", "ok", "ok_latencies")

    def __init__(self):
        self.attempts: deque[tuple[bool, float]] = deque()
        self.ok = 0
        self.ok_latencies: list[float] = []

    def add(self, ok: bool, ms: float) -> None:
        if len(self.attempts) == QUALITY_WINDOW:
            old_ok, old_ms = self.attempts.popleft()
            if old_ok:
                self.ok -= 1
                del self.ok_latencies[bisect_left(self.ok_latencies, old_ms)]
        self.attempts.append((ok, ms))
        if ok:
            self.ok += 1
            insort(self.ok_latencies, ms)


class Quality:
    """Each target's last QUALITY_WINDOW attempts in this process (success, latency):
    what the policies' `require` clauses are judged on."""

    def __init__(self):
        self.windows: dict[str, _Window] = {}   # this process's, by target name
        # What `breaks` and `score` judge each target on: this process's windows (on Redis, a
        # subclass puts the fleet's in their place).
        self.judged: dict[str, _Window] = self.windows

    async def start(self) -> None:
        """Nothing to start: this process's windows are kept as attempts end (see SharedQuality)."""

    async def close(self) -> None:
        """Nothing to stop."""

    def observe(self, attempts: list[dict]) -> None:
        for attempt in attempts:
            if "ms" not in attempt or attempt.get("outcome") == "client_disconnected":
                continue   # skipped without a call, or not the target's doing
            window = self.windows.get(attempt["target"])
            if window is None:
                window = self.windows[attempt["target"]] = _Window()
            window.add(attempt["outcome"] == "ok", attempt["ms"])

    def breaks(self, target: plan.Target, req: ir.Requirements) -> str | None:
        """Why `target` fails `req` now (None: it qualifies)."""
        price = max(target.input_micros_per_1k or 0, target.output_micros_per_1k or 0)
        if req.max_micros_per_1k is not None and price > req.max_micros_per_1k:
            return f"costs {price / 1e6:g} USD per 1k tokens"
        window = self.judged.get(plan.target_name(target))
        if window is None or len(window.attempts) < QUALITY_MIN_SAMPLES:
            return None
        if req.min_success is not None:
            rate = window.ok / len(window.attempts)
            if rate < req.min_success:
                return f"succeeds {rate:.0%} of the time"
        latencies = window.ok_latencies
        if req.max_latency_ms is not None and latencies:
            value = latencies[min(len(latencies) - 1, math.ceil(req.latency_percentile / 100 * len(latencies)) - 1)]
            if value > req.max_latency_ms:
                return f"answers in {value:g} ms at p{req.latency_percentile}"
        return None

    def score(self, target: plan.Target) -> tuple:
        """The best left first: highest success rate, then lowest median latency."""
        window = self.judged.get(plan.target_name(target))
        if window is None or not window.attempts:
            return (0.0, 0.0)
        latencies = sorted(ms for _, ms in window.attempts)
        return (-window.ok / len(window.attempts), latencies[len(latencies) // 2])


@dataclass(slots=True)
class _Admitting:
    """What admitting one key's requests on one router version needs, worked out once."""

    loaded: plan.Loaded
    refused: Refused | None             # the router declares no such workspace or agent
    held: tuple[ir.Policy, ...]         # the workspace, then the agent
    scopes: tuple[Scope, ...]          # the key's own (when it has limits or budgets), then those of `held`
    required: tuple[ir.Policy, ...]     # those of `held` with a `require`
    # id(target) -> its input and output micro-dollars per 1k tokens when it is inside every
    # restriction of `held`, None when it is not (known once the target is first seen)
    prices: dict[int, tuple[int, int] | None]
    spend: object                       # the workspace's spend counter


class Tenants:
    def __init__(self, keys: KeyStore, ledger: Accounts, metrics: Metrics, key_cache: KeyCache | None = None,
                 quality: Quality | None = None, admitted_rate_headers: bool = False):
        self.keys = keys
        self.key_cache = key_cache or KeyCache(keys)
        self.ledger = ledger
        self.metrics = metrics
        # An admitted answer's OpenAI x-ratelimit-* headers (as OpenAI sends them), or none (on 429s only).
        self._admitted_headers = ledger.headers if admitted_rate_headers else _no_headers
        self._policies: dict[int, tuple[plan.Loaded, dict]] = {}
        self._scopes: dict[int, tuple[ir.Policy, Scope]] = {}
        self._admitting: dict[tuple[int, str], _Admitting] = {}   # (id(router version), key id) -> ...
        self._latest: dict[str, _Admitting] = {}   # key id -> its last (a request finds it without a tuple)
        # Hold ids are this gateway's own, never a client's x-request-id (which may repeat): a count (on
        # Redis, where the fleet's holds meet, the ledger adds this process's random token).
        self._next_id = itertools.count(1).__next__
        self.quality = quality or Quality()
        # Attempts are measured for quality from the first request of a version that requires any
        # (before that nothing reads them, and recording them is most of what `finish` costs).
        self.judging = False

    def identify(self, authorization: str | None) -> TenantKey:
        """The request's key, from what this gateway knows of keys; raises auth.Refused, or
        keys.NotCached when only the registry can tell (then await `look_up`)."""
        if not authorization:
            raise auth.Refused(errors.MISSING_API_KEY, "this gateway requires `Authorization: Bearer <key>`")
        key = self.key_cache.get(authorization)
        if key is None:
            raise _invalid_key()
        return key

    async def look_up(self, authorization: str) -> TenantKey:
        """The request's key, asked of the registry off the event loop; raises auth.Refused."""
        try:
            key = await self.key_cache.look_up(authorization, _secret(authorization))
        except RegistryError as exc:   # the store says what failed (StorageError)
            raise auth.Refused(errors.REGISTRY_UNAVAILABLE, f"the tenant keys cannot be read now: {exc}") from None
        if key is None:
            raise _invalid_key()
        return key

    def _scope(self, policy: ir.Policy) -> Scope:
        scope = self._scopes.get(id(policy))
        if scope is None or scope[0] is not policy:
            scope = self._scopes[id(policy)] = (policy, Scope(policy.kind, policy.name, policy.budgets,
                                                             policy.limits, policy.timezone))
        return scope[1]

    def policies(self, loaded: plan.Loaded) -> dict[tuple[str, str], ir.Policy]:
        """The router version's workspaces and agents, read once per version."""
        cached = self._policies.get(id(loaded))
        if cached is None or cached[0] is not loaded:
            policies = loaded.router.plan.policies
            cached = (loaded, {(p["kind"], p["name"]): ir.Policy.model_validate(p) for p in policies})
            self._policies[id(loaded)] = cached
        return cached[1]

    def _admitting_for(self, loaded: plan.Loaded, key: TenantKey) -> _Admitting:
        cache_key = (id(loaded), key.id)
        admitting = self._admitting.get(cache_key)
        if admitting is not None and admitting.loaded is loaded:
            self._latest[key.id] = admitting   # (a key sending to two routers, or across a reload)
            return admitting
        if len(self._admitting) > 10_000:   # keys and versions no longer served
            self._admitting.clear()
            self._latest.clear()
        policies = self.policies(loaded)
        held, refused = [], None
        for kind, name in (("workspace", key.workspace), ("agent", key.agent)):
            if name is None:
                continue
            policy = policies.get((kind, name))
            if policy is None:
                refused = Refused(errors.UNKNOWN_WORKSPACE, f"router {loaded.name!r} declares no {kind} {name!r}")
                break
            held.append(policy)
        scopes = tuple(self._scope(p) for p in held)
        if held and (key.budgets or key.limits):   # the key's own, in its workspace's time zone
            scopes = (Scope("key", key.id, key.budgets, key.limits, held[0].timezone), *scopes)
        admitting = self._admitting[cache_key] = self._latest[key.id] = _Admitting(
            loaded, refused, tuple(held), scopes,
            tuple(p for p in held if p.requirements is not None), {},
            self.metrics.tenant_spend.labels(key.workspace))
        self.judging = self.judging or any(p.requirements is not None for p in policies.values())
        return admitting

    def admit(self, key: TenantKey, loaded: plan.Loaded, body: dict, doc: dict,
              decision: plan.Decision) -> Ticket | Refused | Awaitable[Ticket | Refused]:
        """Hold the decision to the key's policies (narrowing `decision` in place) and reserve: the
        in-process ledger answers at once (no coroutine per request), the ledger on Redis when Redis
        answers (an awaitable)."""
        admitting = self._latest.get(key.id)
        if admitting is None or admitting.loaded is not loaded:
            admitting = self._admitting_for(loaded, key)
        if admitting.refused is not None:
            return self._refused(key, admitting.refused)
        prompt = doc["request"]["tokens"]
        completion = body.get("max_tokens", body.get("max_completion_tokens"))
        if type(completion) is not int or completion < 0:   # absent, or not a count (a bool is not one)
            completion = DEFAULT_MAX_TOKENS
        # The common case: each target known to be inside every restriction, and no requirement
        # (nothing to narrow).
        estimate = _dearest(admitting.prices, decision.attempts, prompt, completion)
        if estimate is None or admitting.required:
            refused = self._narrow_to_policies(key, admitting, decision)
            if refused is not None:
                return refused
            estimate = _dearest(admitting.prices, decision.attempts, prompt, completion)
        if decision.shadows:
            decision.shadows = [t for t in decision.shadows if self._prices(admitting, t) is not None]
        hold_id = self._next_id()
        result = self.ledger.reserve(hold_id, admitting.scopes, prompt + completion, estimate)
        if type(result) is Admission or type(result) is Refusal:
            return self._admitted(key, admitting, hold_id, prompt, result)
        return self._admitted_later(key, admitting, hold_id, prompt, result)   # Redis answers later

    async def _admitted_later(self, key: TenantKey, admitting: _Admitting, hold_id: HoldId, prompt: int,
                              reserving: Awaitable[Admission | Refusal]) -> Ticket | Refused:
        return self._admitted(key, admitting, hold_id, prompt, await reserving)

    def _admitted(self, key: TenantKey, admitting: _Admitting, hold_id: HoldId, prompt: int,
                  result: Admission | Refusal) -> Ticket | Refused:
        """The request's ticket, or its refusal, from the ledger's answer."""
        if type(result) is Refusal:
            return self._refused(key, Refused(REFUSALS[result.code], result.message, result.retry_after_s,
                                              self._rate_headers(result.scope)))
        if not result.counted:
            self.metrics.tenant_unchecked.labels(key.workspace).inc()
        return Ticket(hold_id, prompt, self._admitted_headers(result), admitting.spend)

    def _narrow_to_policies(self, key: TenantKey, admitting: _Admitting, decision: plan.Decision) -> Refused | None:
        """Narrow the attempts to the targets inside every restriction, then to those meeting every
        requirement (refused when none is left)."""
        for target in decision.attempts:
            if self._prices(admitting, target) is None:
                refused = self._restrict(key, admitting, decision)
                if refused is not None:
                    return refused
                break
        if admitting.required:
            return self._qualify(key, admitting.required, decision)
        return None

    def _restrict(self, key: TenantKey, admitting: _Admitting, decision: plan.Decision) -> Refused | None:
        """Narrow the attempts to the targets inside every restriction (refused when none is)."""
        kept = [t for t in decision.attempts if self._prices(admitting, t) is not None]
        if not kept:
            why = "; ".join(f"{plan.target_name(t)}: {', '.join(r for p in admitting.held for r in p.refusals(t))}"
                            for t in decision.attempts)
            return self._refused(key, Refused(errors.MODEL_NOT_ALLOWED, f"no target of rule"
                                              f" {decision.rule.name!r} is allowed for {key.workspace}: {why}"))
        self._narrow(decision, kept)
        return None

    @staticmethod
    def _narrow(decision: plan.Decision, kept: list[plan.Target]) -> None:
        """The runtime's picks that are left keep their place at the front (their breakers admitted them)."""
        if len(kept) < len(decision.attempts):
            decision.picked = sum(1 for t in decision.attempts[:decision.picked] if t in kept)
            decision.attempts = kept

    def _qualify(self, key: TenantKey, required: tuple[ir.Policy, ...], decision: plan.Decision) -> Refused | None:
        """Narrow the attempts to the targets that meet every requirement (or the best left)."""
        qualified, problems = decision.attempts, []
        for policy in required:
            kept = []
            for target in qualified:
                why = self.quality.breaks(target, policy.requirements)
                (problems.append(f"{plan.target_name(target)} {why}") if why else kept.append(target))
            if not kept and policy.requirements.refuse_when_none:
                return self._refused(key, Refused(errors.NO_QUALIFIED_TARGET, f"no target meets the requirements"
                                                                              f" of {policy.kind} {policy.name}: "
                                                                              + "; ".join(problems)))
            qualified = kept or sorted(qualified, key=self.quality.score)[:1]   # else the best left serves
        self._narrow(decision, qualified)
        return None

    @staticmethod
    def _prices(admitting: _Admitting, target: plan.Target) -> tuple[int, int] | None:
        """The target's prices when it is inside every restriction of the key's policies (else None)."""
        key = id(target)   # the version's targets live as long as `admitting` does: ids are theirs
        if key not in admitting.prices:
            admitting.prices[key] = (None if any(p.refusals(target) for p in admitting.held)
                                     else (target.input_micros_per_1k or 0, target.output_micros_per_1k or 0))
        return admitting.prices[key]

    def _rate_headers(self, scope: Scope) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the scope's first request and token limits."""
        levels = []
        for unit in ("requests", "tokens"):
            limit = next((lim for lim in scope.limits if lim.unit == unit), None)
            if limit is not None:
                level, reset = self.ledger.level(scope, limit)
                levels.append(Level(unit, limit.amount, max(0, int(level)), reset))
        return rate_headers(levels)

    def _refused(self, key: TenantKey, refused: Refused) -> Refused:
        self.metrics.tenant_refusals.labels(key.workspace, refused.kind.code).inc()
        return refused

    def finish(self, ticket: Ticket, target: plan.Target | None, usage, streamed_frames: int,
               attempts: list[dict]) -> int | None:
        """Settle to the real usage, or release: on every path a request ends by. Returns the
        usage's cost in nano-dollars when an upstream reported it (what the request's metrics
        count: priced once), else None."""
        if self.judging:
            self.quality.observe(attempts)
        if target is not None and usage is not None:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
        elif target is not None and streamed_frames:
            prompt, completion = ticket.prompt_tokens, streamed_frames   # the client left mid-stream
        else:
            self.ledger.release(ticket.hold_id)
            return None
        cost = nanos(target, prompt, completion)
        if self.ledger.settle(ticket.hold_id, prompt + completion, cost) and cost:
            ticket.spend.inc(cost / 1e9)
        return cost if usage is not None else None


def _dearest(prices: dict[int, tuple[int, int] | None], attempts: list[plan.Target], prompt: int,
             completion: int) -> int | None:
    """A request's estimate in nano-dollars: priced at the dearest target it may call (None: a
    target not priced yet, or outside a restriction)."""
    estimate = 0
    for target in attempts:
        price = prices.get(id(target))
        if price is None:
            return None
        estimate = max(estimate, prompt * price[0] + completion * price[1])
    return estimate


def _no_headers(_admission) -> None:
    """An admitted answer's rate headers with `serve --rate-limit-headers refusals`: none."""


def _invalid_key() -> auth.Refused:
    return auth.Refused(errors.INVALID_API_KEY, "invalid API key (unknown, revoked or expired)")


def _secret(authorization: str) -> str:
    """The key of `Bearer <key>` (any other scheme: no key, refused as unknown)."""
    scheme, _, secret = authorization.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""
