"""Workspaces and agents in the language: syntax, IR, checks, fmt, explain,
JSON, and the static proof that rules keep each one inside its restrictions."""

from __future__ import annotations

import json

import pytest

from routelang.analysis.restrictions import prove
from routelang.backends.json import lower
from routelang.compiler import compile_text
from routelang.explain import explain, explain_data
from routelang.fmt import format_text
from routelang.ir import condition_tree
from routelang.runtime.operators import evaluate

HEADER = '''router tenants
import std.providers
target gpt4 = openai("gpt-4") { input_cost 0.03 per 1k output_cost 0.06 per 1k compliance ["gdpr"] tags ["us"]
    capabilities ["text-generation"] }
target claude = anthropic("claude-3-sonnet") { input_cost 0.003 per 1k compliance ["gdpr", "ccpa"] tags ["eu"]
    capabilities ["text-generation", "vision"] }
target azure_gpt4 = { provider "azure" model "gpt-4" endpoint "https://h.openai.azure.com"
    compliance ["gdpr", "ccpa", "hipaa"] capabilities ["text-generation"] }
'''

MARKETING = '''
workspace ws-marketing-001 "Marketing" {
    budget 100 USD per day, 500 per week, 2000 per month
    limit 600 requests per minute, 200k tokens per minute
    allow targets [gpt4, claude]
    compliance ["gdpr"]
    require success >= 95%, latency p95 <= 5s, cost per 1k tokens <= 0.01 otherwise refuse
    timezone "Europe/Berlin"
}

agent creative {
    prefer claude, gpt4
    fallback azure_gpt4
    capabilities ["text-generation"]
    require latency p99 <= 800ms
}
'''

RULES = '''
rule health priority 100 { when workspace.id == "ws-health" route azure_gpt4 }
rule marketing priority 50 { when workspace.id == "ws-marketing-001" fallback claude, gpt4 }
rule rest { fallback azure_gpt4, claude }
'''


def compiled(text: str):
    return compile_text(text, "t.route")


def codes(result) -> list[str]:
    return [d.code.code for d in result.diagnostics if (d.severity or d.code.severity).value == "error"]


def test_workspaces_and_agents_become_policies_with_money_in_micro_dollars():
    result = compiled(HEADER + MARKETING + RULES)
    assert result.ok, result.render()
    marketing, creative = result.router.policies
    assert marketing.kind == "workspace" and marketing.name == "ws-marketing-001"
    assert [(b.period, b.micros) for b in marketing.budgets] == [
        ("day", 100_000_000), ("week", 500_000_000), ("month", 2_000_000_000)]
    assert [(lim.unit, lim.amount, lim.per, lim.seconds) for lim in marketing.limits] == [
        ("requests", 600, "minute", 60), ("tokens", 200_000, "minute", 60)]
    assert marketing.allow_targets == ("gpt4", "claude")
    req = marketing.requirements
    assert (req.min_success, req.max_latency_ms, req.latency_percentile, req.max_micros_per_1k,
            req.refuse_when_none) == (0.95, 5000, 95, 10_000, True)
    assert marketing.timezone == "Europe/Berlin"
    assert creative.prefer == ("claude", "gpt4") and creative.fallback == ("azure_gpt4",)
    assert creative.requirements.refuse_when_none is False  # `otherwise serve best` is the default
    gpt4 = next(t for r in result.router.rules for t in r.strategy.targets if t.name == "gpt4")
    assert (gpt4.input_micros_per_1k, gpt4.output_micros_per_1k) == (30_000, 60_000)
    assert gpt4.compliance == ("gdpr",) and gpt4.tags == ("us",)


def test_refusals_name_every_reason():
    result = compiled(HEADER + MARKETING + RULES)
    marketing, creative = result.router.policies
    targets = {t.name: t for r in result.router.rules for t in r.strategy.targets}
    assert marketing.refusals(targets["claude"]) == []
    assert marketing.refusals(targets["azure_gpt4"]) == ["it is not one of the allowed targets (gpt4, claude)"]
    assert creative.refusals(targets["gpt4"]) == []
    assert creative.refusals(targets["claude"].model_copy(update={"capabilities": ("vision",)})) == [
        "it lacks the capabilities text-generation"]


@pytest.mark.parametrize("body, message", [
    ("budget 0.0000001 USD per day", "finer than a micro-dollar"),
    ("budget 0 USD per day", "a budget must be more than 0"),
    ("budget 5 USD per day, 6 per day", "two budgets per day"),
    ("limit 10 requests per minute, 20 requests per minute", "limits requests per minute twice"),
    ("limit 0 tokens per second", "a limit must be at least 1 token"),
    ("require success <= 95%", "written with `>=`"),
    ("require success >= 120%", "not within 0%..100%"),
    ("require latency p97 <= 5s", "`p97` is not a latency percentile"),
    ("require cost per 1k tokens >= 0.01", "written with `<=`"),
    ('timezone "Mars/Olympus"', "unknown time zone `Mars/Olympus`"),
    ("prefer gpt4", "`prefer` belongs to an agent"),
])
def test_invalid_policies_are_rl240_errors_at_the_value(body, message):
    result = compiled(HEADER + f"workspace w {{ {body} }}\n" + RULES)
    errors = [d for d in result.diagnostics if d.code.code in ("RL240", "RL213")]
    assert errors and message in errors[0].message, result.render()
    assert errors[0].span.line == HEADER.count("\n") + 1


def test_an_unknown_target_in_a_restriction_is_an_unknown_name():
    result = compiled(HEADER + "workspace w { allow targets [gtp4] }\n" + RULES)
    [error] = [d for d in result.diagnostics if d.code.code == "RL101"]
    assert "unknown target `gtp4`" in error.message and error.help == "did you mean `gpt4`?"


def test_a_price_finer_than_a_micro_dollar_is_refused():
    text = HEADER.replace("input_cost 0.003 per 1k", "input_cost 0.0000001 per 1k") + RULES
    result = compiled(text)
    assert "RL240" in codes(result)


def test_a_workspace_defined_twice_is_an_error():
    result = compiled(HEADER + "workspace w { }\nworkspace w { }\n" + RULES)
    assert "RL103" in codes(result)


def test_fmt_is_canonical_and_keeps_the_meaning():
    messy = HEADER + MARKETING.replace("    ", "  ").replace(", 500", ",500   ") + RULES
    formatted = format_text(messy)
    assert format_text(formatted) == formatted
    assert "    budget 100 USD per day, 500 per week, 2000 per month\n" in formatted
    assert "    require success >= 95%, latency p95 <= 5s, cost per 1k tokens <= 0.01 otherwise refuse\n" \
        in formatted
    assert compiled(formatted).router == compiled(messy).router


def test_explain_shows_limits_and_the_targets_a_workspace_may_use():
    result = compiled(HEADER + MARKETING + RULES)
    text = explain(result)
    assert "workspace ws-marketing-001: Marketing" in text
    assert "budgets: 100 USD per day, 500 USD per week, 2000 USD per month (calendar, Europe/Berlin)" in text
    assert "may use: claude, gpt4" in text
    assert "may not use azure_gpt4: it is not one of the allowed targets (gpt4, claude)" in text
    data = explain_data(result)
    creative = data["policies"][1]
    assert creative["requirements"] == ["latency p99 <= 800ms"]
    assert creative["may_use"] == ["azure_gpt4", "claude", "gpt4"] and creative["may_not_use"] == []
    assert "policies" not in explain_data(compiled(HEADER + RULES))  # routers without tenants explain as before


def test_json_carries_policies_and_target_prices_as_extensions():
    result = compiled(HEADER + MARKETING + RULES)
    config, _ = lower(result.router)
    policies = config["x-routelang"]["policies"]
    assert policies[0]["budgets"][0] == {"period": "day", "micros": 100_000_000}
    assert policies[0]["requirements"]["refuse_when_none"] is True
    assert policies[1]["prefer"] == ["claude", "gpt4"]
    gpt4 = next(t for r in config["rules"] for t in r["targets"] if t["x-routelang"]["name"] == "gpt4")
    assert gpt4["x-routelang"]["input_micros_per_1k"] == 30_000
    assert gpt4["x-routelang"]["compliance"] == ["gdpr"]
    from mixtrain.routing import RoutingConfig  # Mixtrain still loads it (it ignores the extensions)

    assert RoutingConfig.from_json(json.loads(json.dumps(config))).rules


# ---- the static proof ------------------------------------------------------------

def _violations(result):
    return [d for d in result.diagnostics if d.code.code == "RL241"]


def test_rules_that_keep_every_workspace_inside_prove_clean():
    result = compiled(HEADER + MARKETING + RULES)
    assert _violations(result) == [], result.render()


def _routes(router, request) -> str:
    for rule in router.evaluation_order():
        if rule.when is None or evaluate(condition_tree(rule.when), request):
            return rule.name
    return ""


def test_a_catch_all_rule_to_a_forbidden_target_is_reported_with_a_witness():
    text = HEADER + MARKETING + '''
rule marketing_long priority 60 { when workspace.id == "ws-marketing-001" and prompt_length > 2000 route azure_gpt4 }
rule marketing priority 50 { when workspace.id == "ws-marketing-001" fallback claude, gpt4 }
rule rest { fallback azure_gpt4, claude }
'''
    result = compiled(text)
    [violation] = _violations(result)
    assert violation.rule == "marketing_long"
    assert "workspace `ws-marketing-001` to target `azure_gpt4`" in violation.message
    assert "not one of the allowed targets" in violation.message
    witness = json.loads(violation.help.split("for example ")[1].split("; exclude")[0])
    assert witness["workspace"]["id"] == "ws-marketing-001"
    assert _routes(result.router, witness) == "marketing_long"


def test_a_planted_compliance_violation_behind_a_shadow_is_found():
    text = HEADER + '''
workspace ws-health { compliance ["hipaa"] }
rule health priority 100 { when workspace.id == "ws-health" and region == "eu" route azure_gpt4 shadow claude }
rule health_rest priority 90 { when workspace.id == "ws-health" route azure_gpt4 }
rule rest { fallback gpt4, claude }
'''
    result = compiled(text)
    [violation] = _violations(result)
    assert violation.rule == "health" and "target `claude`: it lacks compliance hipaa" in violation.message
    witness = json.loads(violation.help.split("for example ")[1].split("; exclude")[0])
    assert witness == {"region": "eu", "workspace": {"id": "ws-health"}}


def test_a_rule_whose_requests_of_the_workspace_are_all_taken_earlier_is_proven_safe():
    text = HEADER + '''
workspace ws-health { compliance ["hipaa"] }
rule health priority 100 { when workspace.id == "ws-health" route azure_gpt4 }
rule big priority 50 { when prompt_length > 1000 route gpt4 }
rule rest { fallback gpt4, claude }
'''
    assert _violations(compiled(text)) == []


def test_an_agent_is_held_to_its_preferred_and_fallback_targets():
    text = HEADER + '''
agent support { prefer claude fallback azure_gpt4 }
rule creative priority 10 { when agent.id == "creative" route gpt4 }
rule cheap priority 5 { when tier == "free" route gpt4 }
rule rest { fallback claude, azure_gpt4 }
'''
    [violation] = _violations(compiled(text))
    assert violation.rule == "cheap" and "agent `support` to target `gpt4`" in violation.message


def test_what_the_analysis_cannot_decide_is_not_claimed_safe():
    # A regex over the workspace id: the candidates cannot prove the rule misses ws-health.
    text = HEADER + '''
workspace ws-health { compliance ["hipaa"] }
rule health priority 100 { when workspace.id == "ws-health" route azure_gpt4 }
rule odd priority 50 { when workspace.id matches "^ws-(a|b)+$" route gpt4 }
rule rest { route azure_gpt4 }
'''
    [violation] = _violations(compiled(text))
    assert violation.rule == "odd" and violation.message.startswith("cannot prove that rule `odd` keeps")
    # A prefix is decided exactly: all of ws-health's requests are taken by `health` first.
    assert _violations(compiled(text.replace('matches "^ws-(a|b)+$"', 'starts_with "ws-h"'))) == []


def test_the_proof_is_silent_without_policies():
    assert prove(compiled(HEADER + RULES).router) == []


def test_the_semantic_diff_shows_a_raised_budget_and_a_new_workspace():
    from routelang.diff import diff, render_json, render_text

    old = compiled(HEADER + MARKETING + RULES).router
    new = compiled(HEADER + MARKETING.replace("budget 100 USD per day", "budget 150 USD per day")
                   + "workspace ws-new { }\n" + RULES).router
    result = diff(old, new)
    assert result.changes == []
    assert result.policies == [
        ("workspace ws-marketing-001: budgets: 100 USD per day, 500 USD per week, 2000 USD per month"
         " -> 150 USD per day, 500 USD per week, 2000 USD per month"),
        "workspace ws-new: added"]
    assert render_text(result).splitlines()[0] == "no request changes route"
    assert json.loads(render_json(result))["policy_changes"] == result.policies
    assert diff(old, old).policies == []


def test_the_generated_python_carries_the_policies():
    from routelang.backends.python import generate

    source, _ = generate(compiled(HEADER + MARKETING + RULES).router)
    namespace: dict = {}
    exec(compile(source, "<generated>", "exec"), namespace)  # noqa: S102 (our own generated module)
    policies = namespace["POLICIES"]
    assert policies[0]["name"] == "ws-marketing-001" and policies[0]["budgets"][0]["micros"] == 100_000_000
    assert namespace["decide"]({"workspace": {"id": "ws-health"}}) == 0   # the rule order is unchanged
    assert "POLICIES" not in generate(compiled(HEADER + RULES).router)[0]
