"""backends.json.dumps writes exactly what json.dumps(indent=2, ensure_ascii=False)
writes (the compiled config's bytes did not change when orjson came in): on
every example, on generated routers, and on arbitrary JSON-like values with
non-ASCII and control characters, lone surrogates, floats orjson prints
differently, NaN and infinities, integers beyond 64 bits and non-string keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routelang.backends.json import dumps, lower
from routelang.compiler import compile_path, compile_text

REPO = Path(__file__).parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from compile_speed import generate


def reference(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@pytest.mark.parametrize("path", sorted((REPO / "examples").rglob("*.route")), ids=lambda p: p.stem)
def test_every_example(path):
    result = compile_path(path)
    if result.router is None or not result.ok:
        pytest.skip("not a router that compiles")
    config, _ = lower(result.router)
    assert dumps(config) == reference(config)


def test_generated_router():
    result = compile_text(generate(300), "big.route")
    assert result.ok
    config, _ = lower(result.router)
    assert dumps(config) == reference(config)


@pytest.mark.parametrize("value", [
    {"w": 1e-05}, {"w": [0.0001, 1e-7, 5e-324]}, {"x": float("nan")}, {"x": [float("inf"), -float("inf")]},
    {"n": 2**64}, {"n": -(2**63) - 1}, {"n": 10**400}, {"n": 2**63 - 1, "m": -(2**63)},
    {"s": "\ud800"}, {"s": "é 😀 \u2028 \x00 \x1f \x7f \\ \" /"}, {1: "int key"}, {"b": True, "z": None},
    {"z": "last", "a": "first"}, [], {}, [[], {}], 1e16, 1e22, -0.0, 33.3,
])
def test_edge_values(value):
    assert dumps(value) == reference(value)


scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62, max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text() | st.text(st.characters(codec="utf-8")))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_values(value):
    assert dumps(value) == reference(value)
