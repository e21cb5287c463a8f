"""A compiled LiteLLM config in LiteLLM's own Router: the PyPI package
`litellm`, in a venv of its own (it would move packages the test suite
shares, such as httpx and jsonschema), loads the config the way the proxy
does (`yaml.safe_load`, then `Router(model_list=..., **router_settings)`),
and routes one mocked completion per model name a client may ask for
(`mock_response`: no network); the deployment it picks must be one of the
targets routelang's rule for that name can select.

Cost, measured here: the install takes about 70 s and 360 MB (litellm pulls
tiktoken, tokenizers, huggingface_hub, boto3), importing litellm about 9 s."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from routelang import ir
from routelang.backends.litellm import lower
from routelang.compiler import compile_text

LITELLM = "litellm==1.110.2"
TIMEOUT = 600  # seconds: the install

ROUTER = """router peers
import std.providers
target a = openai("gpt-4o") { retries 2 timeout 30s headers { "Authorization": "Bearer ${OPENAI_API_KEY}" } }
target b = { provider "openai" model "llama" endpoint "http://127.0.0.1:9/v1" }
target c = anthropic("claude-sonnet") { circuit_breaker { failures 3 cooldown 30s } }
rule chat priority 30 { when model in ["chat", "chat-latest"] split { 70% a  30% b } }
rule safe priority 20 { when model == "safe" fallback (split { 50% a  50% b }), c }
rule solo priority 10 { when request.model == "solo" route c }
"""

# Runs inside the litellm venv: the config on stdin; for each model name, the api_base of the
# deployments 60 mocked completions picked, on stdout.
PROBE = textwrap.dedent("""
    import json, os, sys
    os.environ.setdefault("OPENAI_API_KEY", "sk-test")
    from litellm import Router
    config, models = json.load(sys.stdin)
    router = Router(model_list=config["model_list"], **config["router_settings"])
    picked = {}
    for model in models:
        bases = set()
        for _ in range(60):
            answer = router.completion(model=model, messages=[{"role": "user", "content": "hi"}],
                                       mock_response="ok")
            bases.add(answer._hidden_params.get("api_base"))
        picked[model] = sorted(bases)
    print(json.dumps({"picked": picked, "groups": sorted(router.model_names),
                      "fallbacks": router.fallbacks, "num_retries": router.num_retries}))
""")


@pytest.fixture(scope="module")
def litellm_python(tmp_path_factory) -> str:
    venv = tmp_path_factory.mktemp("litellm-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
                           "--disable-pip-version-check", LITELLM], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python


def test_litellms_router_loads_the_compiled_config_and_picks_the_rules_targets(litellm_python):
    compiled = compile_text(ROUTER, "peers.route")
    assert compiled.ok, compiled.render()
    config, notes = lower(compiled.router)
    assert [n for n in notes if n.code.code == "RL911"] == []
    loaded = yaml.safe_load(yaml.safe_dump(config, sort_keys=False))   # as the proxy reads config.yaml
    models = ["chat", "chat-latest", "safe", "solo"]
    proc = subprocess.run([litellm_python, "-c", PROBE], input=json.dumps([loaded, models]), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rules = {r.name: r for r in compiled.router.rules}

    def endpoints(member) -> set[str]:
        if isinstance(member, ir.Fallback):     # LiteLLM's first pick is in the rule's own group
            return endpoints(member.candidates[0])
        return {t.endpoint for t in member.targets} if not isinstance(member, ir.Target) else {member.endpoint}

    for model, rule in (("chat", "chat"), ("chat-latest", "chat"), ("safe", "safe"), ("solo", "solo")):
        picked = {base.rstrip("/") for base in result["picked"][model]}
        assert picked <= endpoints(rules[rule].strategy), (model, picked)
    assert result["picked"]["chat"] and len(result["picked"]["chat"]) == 2   # 60 draws of a 70/30 split
    assert {"chat", "safe", "safe-fallback-1", "solo"} <= set(result["groups"])
    assert result["fallbacks"] == [{"safe": ["safe-fallback-1"]}]
    assert result["num_retries"] == 2
