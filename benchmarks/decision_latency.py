"""Decision latency: routelang's generated Python vs Mixtrain's RoutingEngine
vs a hand-written indexed matcher, side by side in one process.

    .venv/bin/python benchmarks/decision_latency.py [--quick]

For 10, 50, 200 and 1,000 rules, every engine routes the same requests (the
rules are spread over `user.tier` values, each with two more conditions, and
a catch-all at the end; requests hit rules everywhere in the order, fail a
late condition, or match nothing but the catch-all). The table gives the
mean microseconds per request (best of several runs) and the ratios; the
targets are >= 15x Mixtrain at 10 rules, >= 400x at 1,000, and within 3x of
the hand-written matcher. Nothing is asserted: read the table.
"""

from __future__ import annotations

import argparse
import random
import time

from mixtrain.routing.engine import RoutingEngine as MixtrainEngine
from mixtrain.routing.models import RoutingConfig

from routelang.loader import make_router
from routelang.runtime.model import plan_from_config

SIZES = (10, 50, 200, 1000)


def make_config(rules: int) -> dict:
    out = []
    for i in range(rules - 1):
        out.append({
            "name": f"rule_{i}",
            "priority": rules - i,
            "conditions": [
                {"field": "user.tier", "operator": "equals", "value": f"tier-{i}"},
                {"field": "request.type", "operator": "in", "value": ["chat", "image"]},
                {"field": "user.credits", "operator": "greater_than", "value": i % 100},
            ],
            "strategy": "single",
            "targets": [{"provider": "modal", "model_name": f"model-{i}", "endpoint": f"https://m{i}.modal.run"}],
        })
    out.append({"name": "default", "priority": 0, "conditions": [], "strategy": "single",
                "targets": [{"provider": "custom", "model_name": "default", "endpoint": "https://default.run"}]})
    return {"name": f"bench-{rules}", "rules": out}


def make_requests(rules: int, count: int = 200) -> list[dict]:
    rng = random.Random(rules)
    out = []
    for _ in range(count):
        kind = rng.random()
        tier = f"tier-{rng.randrange(rules - 1)}"
        if kind < 0.7:    # matches its tier's rule
            out.append({"user": {"tier": tier, "credits": 500, "id": "u1"}, "request": {"type": "chat"}})
        elif kind < 0.9:  # its tier's rule fails on the last condition: falls to the catch-all
            out.append({"user": {"tier": tier, "credits": -1}, "request": {"type": "image"}})
        else:             # an unknown tier
            out.append({"user": {"tier": "unknown", "credits": 500}, "request": {"type": "video"}})
    return out


class HandIndexed:
    """What a careful engineer writes by hand for exactly this config shape:
    rules grouped by tier, conditions inlined, Mixtrain's float() coercion."""

    def __init__(self, config: dict):
        self.by_tier: dict = {}
        self.default = None
        ordered = sorted(config["rules"], key=lambda r: -r.get("priority", 0))
        for rule in ordered:
            targets = rule["targets"]
            if not rule["conditions"]:
                self.default = (rule["name"], targets)
                continue
            tier, types, credits = (c["value"] for c in rule["conditions"])
            self.by_tier.setdefault(tier, []).append((tuple(types), float(credits), rule["name"], targets))

    def route(self, request: dict):
        user = request.get("user")
        tier = user.get("tier") if isinstance(user, dict) else None
        for types, min_credits, name, targets in self.by_tier.get(tier, ()):
            kind = request.get("request")
            kind = kind.get("type") if isinstance(kind, dict) else None
            if kind in types:
                try:
                    if float(user.get("credits")) > min_credits:
                        return name, list(targets)
                except (TypeError, ValueError, OverflowError):
                    pass
        return self.default[0], list(self.default[1])


def per_request_us(fn, requests: list[dict], budget_s: float) -> float:
    """Mean microseconds per call, best of 5 runs of `rounds` passes over the requests."""
    start = time.perf_counter()
    for r in requests:
        fn(r)
    once = max(time.perf_counter() - start, 1e-6)
    rounds = max(1, int(budget_s / 5 / once))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            for r in requests:
                fn(r)
        best = min(best, (time.perf_counter() - start) / (rounds * len(requests)))
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a shorter time budget per measurement")
    budget = 0.3 if parser.parse_args().quick else 1.5
    header = (f"{'rules':>6} | {'mixtrain us':>11} | {'routelang us':>12} | {'decide us':>9} | {'hand us':>8} | "
              f"{'vs mixtrain':>11} | {'vs hand':>7}")
    print(header)
    print("-" * len(header))
    for size in SIZES:
        config = make_config(size)
        requests = make_requests(size)
        mixtrain = MixtrainEngine(RoutingConfig.from_json(config))
        router = make_router(plan_from_config(config), backend="python")
        hand = HandIndexed(config)
        for r in requests:  # the three agree before they are timed
            want = mixtrain.route_request(r).matched_rule.name
            assert router.route(r).matched_rule.name == want == hand.route(r)[0]
        t_mixtrain = per_request_us(mixtrain.route_request, requests, budget)
        t_route = per_request_us(router.route, requests, budget)
        t_decide = per_request_us(router.decide, requests, budget)
        t_hand = per_request_us(hand.route, requests, budget)
        print(f"{size:>6} | {t_mixtrain:>11.2f} | {t_route:>12.3f} | {t_decide:>9.3f} | {t_hand:>8.3f} | "
              f"{t_mixtrain / t_route:>10.0f}x | {t_route / t_hand:>6.2f}x")
    print("\nroutelang us: Router.route (decision + target selection + RouteResult); decide us: the generated\n"
          "decide() alone. vs mixtrain: Mixtrain time / routelang time. vs hand: routelang time / hand time.")


if __name__ == "__main__":
    main()
