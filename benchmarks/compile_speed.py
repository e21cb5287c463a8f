"""How long routelang takes to compile a large router, phase by phase.

Run by hand:  python benchmarks/compile_speed.py [RULES]

Generates a RULES-rule file (default 10,000) of realistic rules (named
targets, two or three conditions, some `or`, splits and fallbacks), then
times each phase (the JSON written as `routelang compile` writes it, and
with `json.dumps(indent=2)` for comparison). Goal: under 2 s in all at
10,000 rules. The baseline, timed in the same run, is what a Mixtrain
user pays today for the same config: json.loads + Mixtrain's RoutingConfig
+ RoutingValidator on the compiled JSON.
"""

from __future__ import annotations

import json
import sys
import time

from routelang.backends.json import dumps, lower
from routelang.check import check
from routelang.compiler import compile_source, no_gc_pauses
from routelang.parser import parse
from routelang.resolve import resolve
from routelang.source import Source


def generate(rules: int) -> str:
    out = ['router big "Generated benchmark router"', "import std.providers", "import std.profiles",
           "defaults { use resilient }"]
    for i in range(50):
        out.append(f'target model_{i} = modal("model-{i}", "https://model-{i}.modal.run") {{ timeout 30s }}')
    out.append('condition premium = user.tier == "premium"')
    for i in range(rules):
        kind = i % 5
        head = f'rule r{i} priority {rules - i} "Rule {i}" {{'
        if kind == 0:
            body = f'    when premium and request.type == "t{i}" and user.credits > {i % 100}\n    route model_{i % 50}'
        elif kind == 1:
            body = (f'    when user.region in ["r{i}", "r{i + 1}"] and request.model =~ "^m{i}-"\n'
                    f'    split sticky by user.id {{\n        80% control: model_{i % 50}\n'
                    f'        20% variant: model_{(i + 1) % 50}\n    }}')
        elif kind == 2:
            body = (f'    when request.type == "a{i}" or request.type == "b{i}"\n'
                    f'    fallback model_{i % 50}, model_{(i + 7) % 50}')
        elif kind == 3:
            body = f'    when user.id starts_with "u{i}" and not user.beta exists\n    route model_{i % 50}'
        else:
            body = f'    when prompt contains "k{i}"\n    route modal("inline-{i}", "https://inline-{i}.modal.run")'
        out.append(f"{head}\n{body}\n}}")
    return "\n".join(out) + "\n"


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    rules = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    text = generate(rules)
    source = Source("big.route", text)
    parse(Source("warm.route", "router w\nrule a { route x }"))  # build the parser tables once

    with no_gc_pauses():  # as `routelang compile` does
        (_file, diags), t_parse = timed(parse, source)
        assert not diags, diags[:3]
        resolution, t_resolve = timed(resolve, source)  # parses again
        assert resolution.router is not None and not resolution.diagnostics, resolution.diagnostics[:3]
        errors, t_check = timed(check, resolution.router)
        assert not errors, errors[:3]
        (config, _notes), t_lower = timed(lower, resolution.router)
        stdlib_payload, t_stdlib_dump = timed(lambda c: json.dumps(c, indent=2, ensure_ascii=False), config)
        payload, t_dump = timed(dumps, config)  # what `routelang compile` writes
    assert payload == stdlib_payload
    total = t_resolve + t_check + t_lower + t_dump
    result, t_end_to_end = timed(compile_source, source)
    assert result.ok

    from mixtrain.routing import RoutingConfig, RoutingValidator

    def mixtrain_load(text: str):
        cfg = RoutingConfig.from_json(json.loads(text))
        return RoutingValidator.validate_config(cfg)

    _, t_baseline = timed(mixtrain_load, payload)

    print(f"routelang compile of {rules:,} rules ({len(text.splitlines()):,} lines, {len(text) / 1e6:.1f} MB)")
    print(f"  parse                {t_parse:7.3f} s")
    print(f"  resolve (incl parse) {t_resolve:7.3f} s")
    print(f"  check                {t_check:7.3f} s")
    print(f"  lower to JSON        {t_lower:7.3f} s")
    print(f"  write JSON (orjson)  {t_dump:7.3f} s   (json.dumps(indent=2): {t_stdlib_dump:.3f} s, same bytes)")
    print(f"  total                {total:7.3f} s   (with json.dumps: {total - t_dump + t_stdlib_dump:.3f} s)")
    print(f"compile_source (parse+resolve+check, what `routelang check` runs) {t_end_to_end:7.3f} s")
    print(f"baseline: Mixtrain load + validate of the same JSON {t_baseline:7.3f} s")
    print(f"ratio routelang compile / Mixtrain load+validate: {total / t_baseline:.1f}x")


if __name__ == "__main__":
    main()
