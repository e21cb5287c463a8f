"""Generated routers of realistic shapes, for comparing lint and diff output
across changes to the analysis (tests/lint/test_lint_recorded.py).

`varied(rules, seed)` draws from small pools of fields and values so that
rules cover, overlap and contradict each other: equality pins, `in` lists,
numeric bands, `not`, `or`, text tests, regexes, shared priorities,
disabled rules and sometimes no catch-all. `bench(rules)` is the generator
of benchmarks/lint_diff.py.
"""

from __future__ import annotations

import random

TIERS = ["free", "pro", "team", "enterprise", "trial"]
REGIONS = ["us", "eu", "ap", "sa"]
TYPES = ["chat", "image", "embed", "audio"]


def _compare(rng: random.Random, i: int) -> str:
    kind = rng.randrange(11)
    if kind == 0:
        return f'user.tier == "{rng.choice(TIERS)}"'
    if kind == 1:
        return f'user.region in [{", ".join(f"{chr(34)}{r}{chr(34)}" for r in rng.sample(REGIONS, rng.randint(1, 3)))}]'
    if kind == 2:
        return f"user.credits {rng.choice(['>', '>=', '<', '<='])} {rng.choice([0, 10, 50, 100, 500])}"
    if kind == 3:
        return f'request.type == "{rng.choice(TYPES)}"'
    if kind == 4:
        return f'user.id == "customer-{rng.randrange(max(i, 1) + 5)}"'
    if kind == 5:
        return f'prompt contains "{rng.choice(["code", "image", "urgent"])}"'
    if kind == 6:
        return f'request.model starts_with "{rng.choice(["gpt-", "claude-", "llama-"])}"'
    if kind == 7:
        return f'request.model =~ r"^m{rng.randrange(20)}-\\d+"'
    if kind == 8:
        return rng.choice(["user.beta exists", "not user.beta exists"])
    if kind == 9:
        return f'user.tier != "{rng.choice(TIERS)}"'
    return f"request.tokens > {rng.choice([1000, 4000, 8000])} and request.tokens <= {rng.choice([2000, 16000])}"


def _condition(rng: random.Random, i: int) -> str:
    shape = rng.randrange(6)
    if shape == 0:
        return _compare(rng, i)
    if shape in (1, 2):
        return " and ".join(_compare(rng, i) for _ in range(rng.randint(2, 3)))
    if shape == 3:
        return f"{_compare(rng, i)} or {_compare(rng, i)}"
    if shape == 4:
        return f"not ({_compare(rng, i)}) and {_compare(rng, i)}"
    return f"({_compare(rng, i)} or {_compare(rng, i)}) and {_compare(rng, i)}"


def varied(rules: int, seed: int) -> str:
    rng = random.Random(seed)
    lines = [f'router gen{seed} "generated"', "import std.providers",
             'target a = modal("a", "https://a.modal.run")', 'target b = fal("b", "https://fal.run/b")']
    for i in range(rules - 1):
        priority = rng.randrange(rules // 2 + 1)
        state = " disabled" if rng.random() < 0.03 else ""
        lines.append(f'rule r{i} priority {priority} "rule {i}"{state} {{ when {_condition(rng, i)} '
                     f'route {"a" if i % 2 else "b"} }}')
    if rng.random() < 0.7:
        lines.append('rule default priority 0 "catch-all" { fallback a, b }')
    return "\n".join(lines) + "\n"


def bench(rules: int, bump: int | None = None) -> str:
    """The router of benchmarks/lint_diff.py (one threshold changed at rule `bump`)."""
    regions = ["us", "eu", "ap", "sa", "af"]
    lines = ['router bench "generated"', "import std.providers",
             'target a = modal("a", "https://a.modal.run")', 'target b = fal("b", "https://fal.run/b")']
    for i in range(rules - 1):
        priority = rules - i
        threshold = 100_000 - i * 10 if i != bump else 100_000 - i * 10 + 7
        region = regions[i % len(regions)]
        kind = i % 4
        if kind == 0:
            when = f'user.id == "customer-{i}"'
        elif kind == 1:
            when = f'user.tier == "tier-{i % 40}" and user.region == "{region}"'
        elif kind == 2:
            when = f'user.credits > {threshold} and request.type in ["chat", "image"]'
        else:
            when = f'request.model =~ r"^m{i}-\\d+" or user.tier == "t{i}"'
        lines.append(f'rule r{i} priority {priority} "rule {i}" {{ when {when} route {"a" if i % 2 else "b"} }}')
    lines.append('rule default priority 0 "catch-all" { fallback a, b }')
    return "\n".join(lines) + "\n"
