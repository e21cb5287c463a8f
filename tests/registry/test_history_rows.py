"""The history's narrow rows: a row keeps each selected target as its place among its rule's targets
in the router version (what a target is, model name, provider, label and weight, is read from the
stored version), on both backends; rows written wide before are read as they were."""

from __future__ import annotations

import json

import pytest
from conftest import write_router
from test_registry_store import push_file

import routelang
from routelang.registry import copy, history
from routelang.registry.backends import open_store
from routelang.registry.rows import COLUMNS, RequestRecord, decode_row, target_dict
from routelang.runtime.model import plan_from_config

PREMIUM, TRIAL, OTHER = {"user": {"tier": "premium"}}, {"user": {"tier": "trial", "id": "u1"}}, {}


def fields(model: str, label: str | None = None, weight: float = 1.0) -> dict:
    """A target as a row gives it."""
    return {"model_name": model, "provider": "openai", "label": label, "weight": weight}


def stored_targets(store, router: str = "chat") -> dict[str, list]:
    """rule -> the `targets` column as stored, for each row of `router`."""
    return {row["rule"]: json.loads(row["targets"])
            for row in store.query("SELECT rule, targets FROM requests WHERE router = ?", (router,))}


def rule_targets(store, rule: str, version: int = 1) -> list[dict]:
    compiled = store.version("chat", version).compiled
    return [target_dict(t) for t in next(r for r in plan_from_config(compiled).rules if r.name == rule).targets]


def test_rows_keep_targets_as_places_in_the_version_and_readers_get_them_whole(deployed, registry):
    with routelang.Router("chat", registry=str(registry)) as router:
        decided = {rule: router.route(doc) for rule, doc in (("premium", PREMIUM), ("ab", TRIAL),
                                                               ("default", OTHER))}
    split_place = [t["model_name"] for t in rule_targets(deployed, "ab")].index(
        decided["ab"].selected_targets[0].model_name)
    assert stored_targets(deployed) == {"premium": [0], "ab": [split_place], "default": [0]}
    listed = {row["rule"]: row for row in deployed.list_requests("chat", 10)}
    for rule, result in decided.items():
        expected = [{"model_name": t.model_name, "provider": t.provider, "label": t.label, "weight": t.weight}
                    for t in result.selected_targets]
        assert listed[rule]["targets"] == expected
        assert listed[rule]["selected_target"] == result.selected_targets[0].model_name
        assert deployed.get_request(listed[rule]["id"])["targets"] == expected
    assert listed["premium"]["selected_target"] == "gpt-4o" and listed["default"]["selected_target"] == "gpt-4o-mini"
    assert listed["ab"]["targets"][0]["label"] == listed["ab"]["split_label"]


def test_each_row_is_read_against_its_own_version(deployed, router_file):
    write_router(router_file.parent, premium="small")
    push_file(deployed, router_file)
    deployed.insert_requests([RequestRecord("chat", 1, "premium", "ok", targets=[fields("gpt-4o")], id="v1"),
                              RequestRecord("chat", 2, "premium", "ok", targets=[fields("gpt-4o-mini")], id="v2")])
    assert stored_targets(deployed) == {"premium": [0]}      # both rows: the rule's first target
    assert deployed.get_request("v1")["selected_target"] == "gpt-4o"
    assert deployed.get_request("v2")["selected_target"] == "gpt-4o-mini"


def test_a_target_unlike_its_versions_is_kept_whole(deployed):
    """A target whose fields are not the stored config's (a `${VAR}` filled in where the request
    was routed, a row made by hand, a version the registry does not hold) stays a dict."""
    filled = fields("gpt-4o-2026")
    partial = {"model_name": "gpt-4o"}
    deployed.insert_requests([
        RequestRecord("chat", 1, "premium", "ok", targets=[filled], id="filled"),
        RequestRecord("chat", 1, "premium", "ok", targets=[partial], id="partial"),
        RequestRecord("chat", 9, "premium", "ok", targets=[fields("gpt-4o")], id="unknown")])
    rows = {row["id"]: json.loads(row["targets"]) for row in deployed.query("SELECT id, targets FROM requests")}
    assert rows == {"filled": [filled], "partial": [partial], "unknown": [fields("gpt-4o")]}
    assert deployed.get_request("filled")["selected_target"] == "gpt-4o-2026"
    assert deployed.get_request("partial")["targets"] == [partial]


def test_rows_written_wide_before_are_read_as_they_were(deployed):
    """Rows keep being read as written: no migration rewrites them, and they go with retention."""
    wide = [fields("gpt-4o")]
    deployed.insert_rows([RequestRecord("chat", 1, "premium", "ok", targets=wide, id="old").row()], [])  # as it was
    assert stored_targets(deployed) == {"premium": wide}
    row = deployed.get_request("old")
    assert row["targets"] == wide and row["selected_target"] == "gpt-4o"
    assert [r["id"] for r in deployed.list_requests("chat")] == ["old"]


def test_a_narrow_row_is_not_decoded_without_the_versions(deployed):
    deployed.insert_requests([RequestRecord("chat", 1, "premium", "ok", targets=[fields("gpt-4o")], id="n")])
    [raw] = deployed.query("SELECT * FROM requests")
    with pytest.raises(ValueError, match="version_targets"):
        decode_row(raw)
    assert decode_row(raw, deployed.version_targets())["selected_target"] == "gpt-4o"


def test_a_router_deleted_and_pushed_again_is_read_by_its_new_version_1(deployed, router_file):
    """The writer process keeps each version's targets by content hash: a new version 1 is read again."""
    parsed: dict = {}
    big, small = fields("gpt-4o"), fields("gpt-4o-mini")
    assert deployed.version_targets(parsed).narrow("chat", 1, "premium", [big, small]) == [0, small]
    deployed.delete("chat")
    write_router(router_file.parent, premium="small")
    push_file(deployed, router_file)
    assert deployed.version_targets(parsed).narrow("chat", 1, "premium", [big, small]) == [big, 0]
    assert len(parsed) == 2


def test_the_gateway_shaped_rows_are_narrowed_by_the_writer_process(deployed, registry):
    writer = history.HistoryWriter(registry)
    try:
        row = list(RequestRecord("chat", 1, "ab", "ok", id="g").raw_row())
        row[COLUMNS.index("targets")] = [["gpt-4o", "openai", "variant", 0.5]]
        assert writer.record(tuple(row))
        writer.flush()
    finally:
        writer.close()
    assert stored_targets(deployed) == {"ab": [1]}
    assert deployed.get_request("g")["targets"] == [fields("gpt-4o", "variant", 0.5)]


def test_a_copy_keeps_rows_narrow_and_reads_the_same(deployed, tmp_path):
    with routelang.Router("chat", registry=str(deployed.location)) as router:
        router.route(PREMIUM)
        router.route(TRIAL)
    target = open_store(tmp_path / "copy.db")
    copy.copy_registry(deployed, target)
    assert stored_targets(target) == stored_targets(deployed)
    assert all(isinstance(t, int) for targets in stored_targets(target).values() for t in targets)
    assert target.list_requests("chat") == deployed.list_requests("chat")
    target.close()


def test_a_row_json_cannot_hold_is_dropped_and_counted_never_raised(deployed, registry):
    writer = history.HistoryWriter(registry)
    try:
        assert writer.record(RequestRecord("chat", 1, "premium", "ok", tokens_in=2**70, id="huge")) is False
        assert writer.dropped == 1
        assert writer.record(RequestRecord("chat", 1, "premium", "ok", tokens_in=12, id="fine"))
        writer.flush()
    finally:
        writer.close()
    assert [row["id"] for row in deployed.list_requests("chat")] == ["fine"]


def test_the_writer_process_derives_a_gateway_row_from_what_the_request_path_read():
    from routelang.registry.rows import GATEWAY_FACTS, gateway_row

    attempts = [{"target": "variant", "outcome": "http_500", "ms": 3.0, "status": 500},
                {"target": "variant", "outcome": "timeout", "ms": 9.0},
                {"target": "control", "outcome": "ok", "ms": 2.5, "status": 200}]
    facts = dict(zip(GATEWAY_FACTS, ("r1", 1.5, "chat", 2, "ab", "split", [["gpt-4o", "openai", "variant", 0.5]],
                                     attempts, "ok", 200, None, 0.25, 0.125, 10, 3, 0.002, "abcd", "team-a")))
    row = dict(zip(COLUMNS, gateway_row(tuple(facts.values()))))
    assert (row["split_label"], row["first_target"], row["first_outcome"], row["failed_over"]) == (
        "variant", "variant", "timeout", True)
    assert (row["latency_ms"], row["ttft_ms"], row["source"], row["status"], row["http_status"]) == (
        250.0, 125.0, "gateway", "ok", 200)
    unlabelled = dict(facts, targets=[["gpt-4o", "openai", None, 0.5]], attempts=[], ttft_s=None)
    row = dict(zip(COLUMNS, gateway_row(tuple(unlabelled.values()))))
    assert (row["split_label"], row["first_target"], row["failed_over"], row["ttft_ms"]) == ("gpt-4o", None, None,
                                                                                             None)
    not_split = dict(facts, strategy="fallback")
    assert dict(zip(COLUMNS, gateway_row(tuple(not_split.values()))))["split_label"] is None
