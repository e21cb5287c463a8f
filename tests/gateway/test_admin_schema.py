"""Schemathesis over the admin API: cases generated from the served OpenAPI document
(valid and invalid ones) against a live gateway on loopback with an admin key; no
answer is a 5xx, and every answer's status, content type and body conform to the
document. Bounded: a fixed number of examples, each with a deadline."""

from __future__ import annotations

import time

import schemathesis
from gateway_fakes import http
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_admin import ADMIN, AS_ADMIN, source

from routelang.gateway import auth
from routelang.registry.artifacts import build_text
from routelang.registry.backends import open_store

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 200


def test_generated_requests_get_no_5xx_and_answers_match_the_schema(upstreams, gateway, tmp_path):
    a, b = upstreams("a"), upstreams("b")
    text = source(a, b)
    store = open_store(tmp_path / "registry.db")
    built = build_text(text, "chat.route")
    store.push("chat", built.entry, built.sources, built.compiled, "first")
    store.deploy("chat", 1)
    gw = gateway(text, admin_keys=frozenset({auth.digest(ADMIN)}), store=store)
    schema = schemathesis.openapi.from_dict(http("GET", gw.url + "/api/openapi.json").json())
    schema.validate()   # the document itself is valid OpenAPI 3.1
    routed = http("POST", gw.url + "/api/route", {"router": "chat", "data": {}}, AS_ADMIN).json()
    # Names that exist, so that generated cases reach past the 404s (DELETE keeps random names).
    known = {"name": "chat", "router": "chat", "target": "big", "version": 1, "id": routed["request_id"]}
    strategies = [schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)]
    for result in schema.get_all_operations():
        op = result.ok()
        fixed = {k: v for k, v in known.items() if "{" + k + "}" in op.path}
        if fixed and op.method.upper() != "DELETE":
            strategies.append(op.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed))
    cases = st.one_of(strategies)
    seen: dict[int, int] = {}

    @given(case=cases)
    @settings(max_examples=EXAMPLES, deadline=5000, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def exercise(case):
        response = case.call_and_validate(base_url=gw.url, headers=AS_ADMIN, checks=CHECKS, timeout=10)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    started = time.monotonic()
    exercise()
    assert time.monotonic() - started < 60
    assert sum(seen.values()) >= EXAMPLES // 2
    assert any(200 <= s < 300 for s in seen) and any(400 <= s < 500 for s in seen), seen
    assert http("GET", gw.url + "/health").status_code == 200
    assert not gw.log_lines("bug")
