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
this process, breaks a policy's `require` leaves the request's attempts;
when none is left, the policy refuses (503 no_qualified_target) or the best
left (highest success rate, then lowest median latency) serves.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from routelang import ir
from routelang.tenancy.keys import KeyStore, TenantKey
from routelang.tenancy.ledger import Accounts, Admission, Level, Refusal, Scope

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


@dataclass
class Ticket:
    """An admitted request: what `finish` needs."""

    request_id: str
    workspace: str
    prompt_tokens: int
    admission: Admission


def _duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* spelling: `1s`, `6m0s`, `1h2m3s`, `250ms`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{s}s"


def rate_headers(levels: list[Level]) -> dict[str, str]:
    """x-ratelimit-limit-, -remaining- and -reset-requests (and -tokens) of the tightest bucket of each unit."""
    tightest: dict[str, Level] = {}
    for level in levels:
        if level.unit not in tightest or level.remaining < tightest[level.unit].remaining:
            tightest[level.unit] = level
    out = {}
    for unit, level in tightest.items():
        out[f"x-ratelimit-limit-{unit}"] = str(level.amount)
        out[f"x-ratelimit-remaining-{unit}"] = str(level.remaining)
        out[f"x-ratelimit-reset-{unit}"] = _duration(level.reset_s)
    return out


def nanos(target: plan.Target, prompt_tokens: int, completion_tokens: int) -> int:
    return prompt_tokens * (target.input_micros_per_1k or 0) + completion_tokens * (target.output_micros_per_1k or 0)


class Quality:
    """Each target's last QUALITY_WINDOW attempts in this process (success, latency):
    what the policies' `require` clauses are judged on."""

    def __init__(self):
        self.samples: dict[str, deque] = {}

    def observe(self, attempts: list[dict]) -> None:
        for attempt in attempts:
            if "ms" not in attempt or attempt.get("outcome") == "client_disconnected":
                continue   # skipped without a call, or not the target's doing
            window = self.samples.get(attempt["target"])
            if window is None:
                window = self.samples[attempt["target"]] = deque(maxlen=QUALITY_WINDOW)
            window.append((attempt["outcome"] == "ok", attempt["ms"]))

    def breaks(self, target: plan.Target, req: ir.Requirements) -> str | None:
        """Why `target` fails `req` now (None: it qualifies)."""
        price = max(target.input_micros_per_1k or 0, target.output_micros_per_1k or 0)
        if req.max_micros_per_1k is not None and price > req.max_micros_per_1k:
            return f"costs {price / 1e6:g} USD per 1k tokens"
        window = self.samples.get(plan.target_name(target))
        if window is None or len(window) < QUALITY_MIN_SAMPLES:
            return None
        if req.min_success is not None:
            rate = sum(ok for ok, _ in window) / len(window)
            if rate < req.min_success:
                return f"succeeds {rate:.0%} of the time"
        if req.max_latency_ms is not None:
            latencies = sorted(ms for ok, ms in window if ok)
            if latencies:
                value = latencies[min(len(latencies) - 1, math.ceil(req.latency_percentile / 100 * len(latencies)) - 1)]
                if value > req.max_latency_ms:
                    return f"answers in {value:g} ms at p{req.latency_percentile}"
        return None

    def score(self, target: plan.Target) -> tuple:
        """The best left first: highest success rate, then lowest median latency."""
        window = self.samples.get(plan.target_name(target)) or ()
        if not window:
            return (0.0, 0.0)
        latencies = sorted(ms for _, ms in window)
        return (-sum(ok for ok, _ in window) / len(window), latencies[len(latencies) // 2])


class Tenants:
    def __init__(self, keys: KeyStore, ledger: Accounts, metrics: Metrics):
        self.keys = keys
        self.ledger = ledger
        self.metrics = metrics
        self._policies: dict[int, tuple[plan.Loaded, dict]] = {}
        self._scopes: dict[int, tuple[ir.Policy, Scope]] = {}
        self._allowed: dict[tuple, bool] = {}   # (id(policy), target key) -> allowed; policies live per version
        self.quality = Quality()

    def identify(self, authorization: str | None) -> TenantKey:
        """The request's key; raises auth.Refused."""
        if not authorization:
            raise auth.Refused(errors.MISSING_API_KEY, "this gateway requires `Authorization: Bearer <key>`")
        scheme, _, secret = authorization.partition(" ")
        key = self.keys.find(secret.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            raise auth.Refused(errors.INVALID_API_KEY, "invalid API key (unknown, revoked or expired)")
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

    async def admit(self, request_id: str, key: TenantKey, loaded: plan.Loaded, body: dict, doc: dict,
                    decision: plan.Decision) -> Ticket | Refused:
        """Hold the decision to the key's policies (narrowing `decision` in place) and reserve."""
        policies = self.policies(loaded)
        workspace = policies.get(("workspace", key.workspace))
        if workspace is None:
            return self._refused(key, Refused(errors.UNKNOWN_WORKSPACE, f"router {loaded.name!r} declares no"
                                                                        f" workspace {key.workspace!r}"))
        held = [workspace]
        if key.agent is not None:
            agent = policies.get(("agent", key.agent))
            if agent is None:
                return self._refused(key, Refused(errors.UNKNOWN_WORKSPACE, f"router {loaded.name!r} declares no"
                                                                            f" agent {key.agent!r}"))
            held.append(agent)
        allowed = [t for t in decision.attempts if self._may_use(held, t)]
        if not allowed:
            why = "; ".join(f"{plan.target_name(t)}: {', '.join(r for p in held for r in p.refusals(t))}"
                            for t in decision.attempts)
            return self._refused(key, Refused(errors.MODEL_NOT_ALLOWED, f"no target of rule {decision.rule.name!r}"
                                                                        f" is allowed for {key.workspace}: {why}"))
        qualified, problems = allowed, []
        for policy in held:
            if policy.requirements is None:
                continue
            kept = []
            for target in qualified:
                why = self.quality.breaks(target, policy.requirements)
                (problems.append(f"{plan.target_name(target)} {why}") if why else kept.append(target))
            if not kept and policy.requirements.refuse_when_none:
                return self._refused(key, Refused(errors.NO_QUALIFIED_TARGET, f"no target meets the requirements"
                                                                              f" of {policy.kind} {policy.name}: "
                                                                              + "; ".join(problems)))
            qualified = kept or sorted(qualified, key=self.quality.score)[:1]   # else the best left serves
        if len(qualified) < len(decision.attempts):
            # The runtime's picks that are left keep their place at the front (their breakers admitted them).
            decision.picked = sum(1 for t in decision.attempts[:decision.picked] if t in qualified)
            decision.attempts = allowed = qualified
        if decision.shadows:
            decision.shadows = [t for t in decision.shadows if self._may_use(held, t)]
        prompt = doc["request"]["tokens"]
        completion = body.get("max_tokens", body.get("max_completion_tokens"))
        if not isinstance(completion, int) or isinstance(completion, bool) or completion < 0:
            completion = DEFAULT_MAX_TOKENS
        estimate = max(nanos(t, prompt, completion) for t in decision.attempts)
        scopes = tuple(self._scope(p) for p in held)
        result = await self.ledger.admit(request_id, scopes, prompt + completion, estimate)
        if isinstance(result, Refusal):
            return self._refused(key, Refused(REFUSALS[result.code], result.message, result.retry_after_s,
                                              self._rate_headers(result.scope)))
        if not result.counted:
            self.metrics.tenant_unchecked.labels(key.workspace).inc()
        return Ticket(request_id, key.workspace, prompt, result)

    def _may_use(self, held: list[ir.Policy], target: plan.Target) -> bool:
        for policy in held:
            key = (id(policy), target.key, target.name)
            allowed = self._allowed.get(key)
            if allowed is None:
                if len(self._allowed) > 100_000:
                    self._allowed.clear()
                allowed = self._allowed[key] = not policy.refusals(target)
            if not allowed:
                return False
        return True

    def admitted_headers(self, ticket: Ticket) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers of an admitted request: per unit, its tightest bucket
        (the fewest left) after the reserve."""
        return rate_headers(self.ledger.levels(ticket.admission))

    def _rate_headers(self, scope: Scope) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the scope's first request and token limits."""
        out = {}
        for unit in ("requests", "tokens"):
            limit = next((lim for lim in scope.limits if lim.unit == unit), None)
            if limit is None:
                continue
            level, reset = self.ledger.level(scope, limit)
            out[f"x-ratelimit-limit-{unit}"] = str(limit.amount)
            out[f"x-ratelimit-remaining-{unit}"] = str(max(0, int(level)))
            out[f"x-ratelimit-reset-{unit}"] = _duration(reset)
        return out

    def _refused(self, key: TenantKey, refused: Refused) -> Refused:
        self.metrics.tenant_refusals.labels(key.workspace, refused.kind.code).inc()
        return refused

    def finish(self, ticket: Ticket, target: plan.Target | None, usage, streamed_frames: int,
               attempts: list[dict]) -> None:
        """Settle to the real usage, or release: on every path a request ends by."""
        self.quality.observe(attempts)
        if target is not None and usage is not None:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
        elif target is not None and streamed_frames:
            prompt, completion = ticket.prompt_tokens, streamed_frames   # the client left mid-stream
        else:
            self.ledger.release(ticket.request_id)
            return
        cost = nanos(target, prompt, completion)
        if self.ledger.settle(ticket.request_id, prompt + completion, cost) and cost:
            self.metrics.tenant_spend.labels(ticket.workspace).inc(cost / 1e9)
