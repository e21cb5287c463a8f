"""Every routing strategy, defined once.

One `StrategyDef` per strategy holds every fact a phase needs: how it is
written (parser, fmt, highlighter, LSP), how many targets it takes (checker),
whether its members may themselves be strategies (split arms and
fallback steps may), how it lowers to Mixtrain JSON and what Mixtrain then does
differently (JSON backend), how the runtime selects (runtime/strategies.py
dispatches on `selector`), how explain phrases it, and which lint rules
apply. The IR has one pydantic model per entry (`ir.py`, discriminated by
`kind`); tests/test_vocab_strategies.py fails when an entry lacks a facet or
a phase misses an entry.

How to add a strategy: docs/architecture.md, "A strategy".
"""

from __future__ import annotations

from dataclasses import dataclass

# ---- the facets ------------------------------------------------------------------

# How the runtime picks targets (runtime/strategies.py has one function per selector).
SELECTORS = (
    "first",            # the one target
    "primary_shadow",   # the primary to try, the shadow to mirror to
    "in_order",         # every member, in written order: a fallback chain
    "weighted_pick",    # one member, by weight (random, or sticky by a field)
    "rotate",           # one target, a counter modulo the available targets
    "rank_by_latency",  # every target, fastest (and never measured) first
    "rank_by_cost",     # every target, cheapest first
    "rank_by_score",    # every target, best hybrid score first
)

# How `fmt` lays a strategy out (fmt.py has one printer per layout).
LAYOUTS = (
    "route",       # route T [shadow S]
    "block",       # split [sticky by F [salt "s"]] [no failover] { 80% label: T ... }
    "list",        # keyword T1, T2, ...
    "call_list",   # keyword(param value, ...) T1, T2, ...
)

# What explain says each target's share of the traffic is.
SHARES = (
    "all",           # every request goes to the first target
    "mirrored",      # the first serves, the second gets a copy
    "weighted",      # each target its weight's share
    "equal",         # each target 1/n, in turn
    "chain",         # the first serves, the rest are fallbacks in order
    "per_request",   # decided per request from live metrics
)


@dataclass(frozen=True)
class MixtrainLowering:
    """How a strategy reaches Mixtrain's JSON.

    `strategy` is what Mixtrain's `strategy` field says; `weights` is how the
    JSON targets' weights are written ("written": the targets' own, "equal":
    1/n each); `note` (None when Mixtrain has the strategy natively and
    exactly) is the RL901 note, a template with {rule} and {keyword}.
    `nested` is the note when a member is a strategy (Mixtrain cannot nest:
    it gets this strategy over every target, flattened), with {count}; and
    `nested_weights` how those flattened targets are weighted
    ("first_choice": the share of requests routelang tries each first)."""

    strategy: str
    weights: str
    note: str | None
    nested: str | None = None
    nested_weights: str | None = None


@dataclass(frozen=True)
class StrategyDef:
    kind: str                 # IR `kind`, runtime kind, x-routelang `strategy.kind`
    keyword: str              # the word that starts it in a .route file
    syntax: str               # one-line usage (LSP hover, docs)
    summary: str              # what it does, in a sentence (LSP hover)
    min_targets: int          # bounds on its members (targets or nested strategies)
    max_targets: int | None   # None: no upper bound
    json_max_targets: int | None  # most targets a JSON config may list (Mixtrain's single ignores extras)
    nests: bool               # may a member be a strategy itself (`(fallback a, b)`)?
    selector: str             # one of SELECTORS
    static: bool              # without circuit breakers its selection never changes: prebuilt once
    mixtrain_native: bool     # Mixtrain's engine has it, with the same meaning
    mixtrain: MixtrainLowering
    explain: str              # phrase template: {first} {second} {names} {numbered} {shares} {each} {weights}
    shares: str               # one of SHARES
    roles: tuple[str, str]    # explain's role of the first target, and of the others
    layout: str               # one of LAYOUTS
    score_factors: tuple[str, ...] = ()   # hybrid's `(cost W, latency W, reliability W)`: IR fields `{f}_weight`
    falls_back: bool = False  # lint: a chain whose later members back up the first (RL305, RL330, RL331)
    lint_single_member: str | None = None  # lint rule that flags a lone member ("single-target-fallback", ...)
    mirrors: bool = False     # holds a shadow target: a copy of the traffic whose response is discarded


SINGLE = StrategyDef(
    kind="single", keyword="route", syntax="route TARGET",
    summary="send matching requests to one target",
    min_targets=1, max_targets=1, json_max_targets=None, nests=False, selector="first", static=True,
    mixtrain_native=True, mixtrain=MixtrainLowering("single", "written", None),
    explain="route to {first}", shares="all", roles=("primary", "primary"), layout="route",
)
SHADOW = StrategyDef(
    kind="shadow", keyword="route", syntax="route TARGET shadow TARGET",
    summary="serve from the first target and mirror a copy of each request to the second",
    min_targets=2, max_targets=2, json_max_targets=2, nests=False, selector="primary_shadow", static=True,
    mixtrain_native=True, mixtrain=MixtrainLowering("shadow", "written", None),
    explain="shadow: primary {first}, mirror to {second}", shares="mirrored", roles=("primary", "mirror"),
    layout="route", mirrors=True,
)
SPLIT = StrategyDef(
    kind="split", keyword="split",
    syntax='split [sticky by FIELD [salt "s"]] [no failover] { 80% a: T1  20% b: (fallback T2, T3) }',
    summary="send each request to one arm, by weight (the same arm per user with `sticky by`)",
    min_targets=1, max_targets=None, json_max_targets=None, nests=True, selector="weighted_pick", static=False,
    mixtrain_native=True, mixtrain=MixtrainLowering(
        "split", "written", None,
        nested=("rule `{rule}`: Mixtrain cannot nest strategies; it gets a random split over the {count} "
                "targets, each weighted by how often routelang tries it first (weight 0: only as a fallback), "
                "and never falls back within an arm or buckets a nested split by user"),
        nested_weights="first_choice"),
    explain="split {shares}", shares="weighted", roles=("split", "split"), layout="block",
    lint_single_member="split-single-target",
)
FALLBACK = StrategyDef(
    kind="fallback", keyword="fallback", syntax="fallback T1, T2, (split { ... }), ...",
    summary="try targets in order until one answers; a step may be a strategy in parentheses",
    min_targets=1, max_targets=None, json_max_targets=None, nests=True, selector="in_order", static=True,
    mixtrain_native=True, mixtrain=MixtrainLowering(
        "fallback", "written", None,
        nested=("rule `{rule}`: Mixtrain cannot nest strategies; it gets one fallback chain of all {count} "
                "targets in written order, the same for every request, where routelang chooses within "
                "each nested step per request"),
        nested_weights="written"),
    explain="fallback: {numbered}", shares="chain", roles=("primary", "fallback"), layout="list",
    falls_back=True, lint_single_member="single-target-fallback",
)
ROUND_ROBIN = StrategyDef(
    kind="round_robin", keyword="round_robin", syntax="round_robin T1, T2, ...",
    summary="rotate between the targets, one request each",
    min_targets=1, max_targets=None, json_max_targets=None, nests=False, selector="rotate", static=False,
    mixtrain_native=False,
    mixtrain=MixtrainLowering("split", "equal", "rule `{rule}`: Mixtrain has no {keyword}; it gets an equal random split"),
    explain="round robin over {names} ({each} each)", shares="equal", roles=("in turn", "in turn"), layout="list",
)
_RANKED_NOTE = ("rule `{rule}`: Mixtrain has no {keyword}; it returns the targets in written order "
                "as a fallback chain")
LEAST_LATENCY = StrategyDef(
    kind="least_latency", keyword="least_latency", syntax="least_latency T1, T2, ...",
    summary="pick the fastest target (never-measured targets first); the rest are its fallbacks",
    min_targets=1, max_targets=None, json_max_targets=None, nests=False, selector="rank_by_latency", static=False,
    mixtrain_native=False, mixtrain=MixtrainLowering("fallback", "written", _RANKED_NOTE),
    explain="least latency among {names}", shares="per_request", roles=("candidate", "candidate"), layout="list",
)
LOWEST_COST = StrategyDef(
    kind="lowest_cost", keyword="lowest_cost", syntax="lowest_cost T1, T2, ...",
    summary="pick the cheapest target by `cost ... per 1k`; the rest are its fallbacks",
    min_targets=1, max_targets=None, json_max_targets=None, nests=False, selector="rank_by_cost", static=False,
    mixtrain_native=False, mixtrain=MixtrainLowering("fallback", "written", _RANKED_NOTE),
    explain="lowest cost among {names}", shares="per_request", roles=("candidate", "candidate"), layout="list",
)
HYBRID = StrategyDef(
    kind="hybrid", keyword="hybrid", syntax="hybrid(cost W, latency W, reliability W) T1, T2, ...",
    summary="pick the target with the best weighted score; an unwritten weight is 0",
    min_targets=1, max_targets=None, json_max_targets=None, nests=False, selector="rank_by_score", static=False,
    mixtrain_native=False, mixtrain=MixtrainLowering("fallback", "written", _RANKED_NOTE),
    explain="hybrid: {weights} among {names}", shares="per_request", roles=("candidate", "candidate"),
    layout="call_list", score_factors=("cost", "latency", "reliability"),
)

STRATEGIES: dict[str, StrategyDef] = {s.kind: s for s in (
    SINGLE, SPLIT, SHADOW, FALLBACK, ROUND_ROBIN, LEAST_LATENCY, LOWEST_COST, HYBRID,
)}
KINDS = tuple(STRATEGIES)
MIXTRAIN_KINDS = tuple(k for k, s in STRATEGIES.items() if s.mixtrain_native)
# The keywords that start a strategy (`route` starts both single and shadow).
KEYWORDS = tuple(dict.fromkeys(s.keyword for s in STRATEGIES.values()))
# Strategies written `keyword T1, T2, ...` (with or without a parameter list).
LISTED = tuple(k for k, s in STRATEGIES.items() if s.layout in ("list", "call_list"))
# Words inside hybrid's parameter list.
SCORE_FACTORS = tuple(dict.fromkeys(f for s in STRATEGIES.values() for f in s.score_factors))


def strategy(kind: str) -> StrategyDef:
    """The definition of `kind`; KeyError names the known kinds."""
    try:
        return STRATEGIES[kind]
    except KeyError:
        raise KeyError(f"unknown strategy {kind!r} (known: {', '.join(KINDS)})") from None
