"""routelang.Router, the Router SDK: the same cases against a local registry file and a live gateway
(`Router(name, url=..., api_key=...)` over its admin API); what only a local file has, locally."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ADMIN_KEY, write_router
from test_registry_store import push_file

import routelang
from routelang.registry import sdk
from routelang.registry.store import RegistryError, Store

PREMIUM = {"user": {"tier": "premium", "id": "u-1"}}
TRIAL = {"user": {"tier": "trial", "id": "u-42"}}


def test_router_is_lazy_and_the_runtime_class_keeps_a_name(tmp_path):
    path = tmp_path / "none" / "registry.db"
    router = routelang.Router("chat", registry=path)
    assert router.name == "chat" and not path.exists()   # nothing opened yet
    with pytest.raises(RegistryError, match="no registry at"):
        _ = router.active_version
    assert not path.exists()
    loaded = routelang.load("examples/user_tiering.route")
    assert isinstance(loaded, routelang.LoadedRouter)
    assert isinstance(routelang.Router(loaded.plan), routelang.LoadedRouter)   # the old constructor still works


def test_properties(deployed, open_router):
    router = open_router("chat")
    assert router.active_version == 1
    assert [r["name"] for r in router.rules] == ["premium", "ab", "default"]
    assert router.config["rules"] == router.rules
    assert router.versions[0]["version"] == 1 and router.versions[0]["active"] is True


def test_route_decides_with_the_active_version_and_records_it(deployed, open_router):
    with open_router("chat") as router:
        result = router.route(PREMIUM)
        assert result.matched_rule.name == "premium" and result.matched_rule.priority == 100
        assert result.selected_targets[0].model_name == "gpt-4o"
        split = router.route(TRIAL)
        assert split.matched_rule.name == "ab"
        listed = router.list_requests(limit=10)
        assert [r["matched_rule"] for r in listed] == ["ab", "premium"]   # newest first
        assert listed[1]["selected_target"] == "gpt-4o" and listed[1]["version"] == 1
        trial = router.get_request(listed[0]["id"])
        assert trial["split_label"] in ("control", "variant")
        assert trial["sticky_key_hash"] and "u-42" not in str(trial)    # a hash, never the key
        assert trial["latency_ms"] >= 0
        with pytest.raises(RegistryError, match="no request"):
            router.get_request("nope")


def test_recorded_latency_is_the_decision_not_compiling_the_version(deployed, open_router, monkeypatch):
    # The first request of a version compiles it; an A/B report's latency must not count that in one arm.
    import time

    from routelang import loader

    compile_router = loader.make_router

    def slow_compile(*args, **kwargs):
        time.sleep(0.3)
        return compile_router(*args, **kwargs)

    monkeypatch.setattr(loader, "make_router", slow_compile)
    with open_router("chat") as router:
        router.route(PREMIUM)
        (row,) = router.list_requests(limit=10)
    assert 0 <= row["latency_ms"] < 100


def test_update_that_changes_nothing_returns_the_pushed_version(deployed, open_router):
    # Version 1 was pushed from a file; the text imported from its config differs, its compiled config not.
    router = open_router("chat", record=False)
    assert router.update(rules=router.rules) == 1
    assert router.update() == 1
    assert [v["version"] for v in router.versions] == [1]


@pytest.mark.parametrize("limit", [0, -1, 10_001, 2.5, True])
def test_a_limit_out_of_range_is_refused_alike_locally_and_remotely(deployed, open_router, limit):
    # SQLite reads LIMIT -1 as no limit: a local file returned every row where the gateway said 400.
    with open_router("chat") as router:
        router.route(PREMIUM)
        with pytest.raises(ValueError, match="limit must be an int from 1 to 10000"):
            router.list_requests(limit=limit)
        assert len(router.list_requests(limit=1)) == 1


def test_rows_say_their_source_and_list_requests_filters_by_it(deployed, open_router):
    """Decisions (local, or by the admin API for a remote SDK) are `sdk` rows; rows the gateway
    served (inserted here as it writes them) are `gateway` rows; `source` lists one kind."""
    from routelang.registry.history import RequestRecord, insert

    insert(deployed.conn, [RequestRecord(router="chat", version=1, rule="default", status="ok", id="served")])
    with open_router("chat") as router:
        decided = router.route(PREMIUM)
        assert decided.matched_rule.name == "premium"
        every = router.list_requests(limit=10)
        assert sorted(r["source"] for r in every) == ["gateway", "sdk"]
        assert [r["id"] for r in router.list_requests(source="gateway")] == ["served"]
        assert [r["rule"] for r in router.list_requests(source="sdk")] == ["premium"]
        with pytest.raises(ValueError, match="source must be one of gateway, sdk"):
            router.list_requests(source="both")


def test_editing_the_returned_rules_does_not_edit_the_router(deployed, open_router):
    # An edit that was never passed to update() must not reach the next update(description=...).
    router = open_router("chat", record=False)
    router.rules[0]["priority"] = 1
    router.config["rules"][0]["targets"].clear()
    assert router.rules[0]["priority"] == 100 and router.rules[0]["targets"]
    version = router.update(description="same rules")
    assert open_router("chat").versions[-1]["version"] == version
    assert Store(deployed.path).version("chat", version).compiled["rules"][0]["priority"] == 100


def test_update_makes_a_checked_version_and_deploy_switches_to_it(deployed, open_router):
    router = open_router("chat", record=False)
    rules = router.rules
    rules[0]["targets"] = [dict(rules[0]["targets"][0], model_name="gpt-4.1")]
    version = router.update(rules=rules)
    assert version == 2 and router.active_version == 1
    assert router.route(PREMIUM).selected_targets[0].model_name == "gpt-4o"
    router.deploy(version=2)
    assert router.route(PREMIUM).selected_targets[0].model_name == "gpt-4.1"
    assert router.update(rules=router.rules) == 2     # nothing changed: no new version
    bad = [dict(rules[0], strategy="no-such-strategy")]
    with pytest.raises(RegistryError, match="not a valid config"):
        router.update(rules=bad)
    with pytest.raises(RegistryError, match="does not check clean"):
        router.update(rules=[rules[1], dict(rules[2], name=rules[1]["name"])])   # two rules of one name
    assert [v["version"] for v in router.versions] == [1, 2]


def test_update_needs_no_mixtrain_package(deployed, registry, monkeypatch):
    # The importer reads configs with routelang's own copy of Mixtrain's models (a plain install works).
    monkeypatch.setitem(sys.modules, "mixtrain", None)    # `import mixtrain` now fails
    with routelang.Router("chat", registry=registry) as router:
        version = router.update(rules=router.rules[:1])
        assert version == 2 and [r["name"] for r in Store(registry).version("chat", 2).compiled["rules"]] == ["premium"]


def test_a_deploy_from_another_process_is_picked_up_within_a_second(deployed, registry, router_file, monkeypatch):
    router = routelang.Router("chat", registry=registry, record=False)
    assert router.route(PREMIUM).selected_targets[0].model_name == "gpt-4o"
    write_router(router_file.parent, premium="small")
    push_file(deployed, router_file)
    deployed.deploy("chat", 2)
    clock = [1000.0]
    monkeypatch.setattr(sdk.time, "monotonic", lambda: clock[0])
    router.refresh()
    router.route(PREMIUM)
    deployed.deploy("chat", 1)
    clock[0] += 0.5
    assert router.route(PREMIUM).selected_targets[0].model_name == "gpt-4o-mini"  # still cached
    clock[0] += sdk.RECHECK_ACTIVE_S
    assert router.route(PREMIUM).selected_targets[0].model_name == "gpt-4o"


def test_delete_and_errors(deployed, registry, open_router):
    router = open_router("chat")
    router.delete()
    with pytest.raises(RegistryError, match="no router called 'chat'"):
        _ = router.active_version
    undeployed = Store(registry)
    undeployed.push("fresh", "x.route", {"x.route": ""}, {"rules": []})
    with pytest.raises(RegistryError, match="no deployed version"):
        open_router("fresh").route(PREMIUM)


def test_routers_of_one_registry_share_one_writer_and_rows_are_written_at_exit(deployed, registry):
    a, b = routelang.Router("chat", registry=registry), routelang.Router("chat", registry=registry)
    a.route(PREMIUM)
    b.route(TRIAL)
    assert a._transport._writer is b._transport._writer
    a.close()
    b.close()
    code = ("import sys, routelang; routelang.Router('chat', registry=sys.argv[1]).route("
            "{'user': {'tier': 'basic'}})")   # no close(): the rows are written at exit
    subprocess.run([sys.executable, "-c", code, str(registry)], check=True, timeout=60)
    assert [r["rule"] for r in routelang.Router("chat", registry=registry).list_requests()] == \
        ["default", "ab", "premium"]


def test_local_and_remote_give_the_same_results(deployed, registry, live_gateway):
    local = routelang.Router("chat", registry=registry)
    remote = routelang.Router("chat", url=live_gateway, api_key=ADMIN_KEY)
    assert remote.config == local.config and remote.versions == local.versions and remote.rules == local.rules
    requests = [PREMIUM, TRIAL, {"user": {"tier": "basic"}}, {}] + \
        [{"user": {"tier": "trial", "id": f"u-{i}"}} for i in range(30)]

    def seen(result):
        rule = result.matched_rule
        return ((rule.name, rule.priority, rule.strategy),
                [(t.model_name, t.provider, t.endpoint, t.weight, t.label, t.is_shadow) for t in result.selected_targets],
                result.explanation)

    assert [seen(remote.route(r)) for r in requests] == [seen(local.route(r)) for r in requests]
    rows = remote.list_requests(limit=200)   # one registry, newest first: the local routes, then the remote ones
    assert rows == local.list_requests(limit=200) and len(rows) == 2 * len(requests)
    keep = ("router", "version", "rule", "targets", "status", "split_label", "sticky_key_hash")
    local_rows, remote_rows = rows[:len(requests)], rows[len(requests):]
    assert [{k: r[k] for k in keep} for r in remote_rows] == [{k: r[k] for k in keep} for r in local_rows]
    assert {r["split_label"] for r in remote_rows} == {"control", "variant", None}   # None: not a split
    assert remote.get_request(remote_rows[0]["id"]) == local.get_request(remote_rows[0]["id"])


@pytest.mark.parametrize("url", ["not a url", "localhost:8080", "file:///etc", "http://"])
def test_a_remote_url_that_is_not_an_http_address_is_refused_at_once(url):
    with pytest.raises(ValueError, match=r"the gateway's address, http\(s\)://host:port"):
        routelang.Router("chat", url=url, api_key="k")


def test_deciding_needs_no_upstream_secret_locally_or_remotely(registry, tmp_path, open_router, monkeypatch):
    """A version whose endpoint and key come from unset variables still decides (it raised
    "does not load here"); a variable that is set is filled in; the gateway that sends still needs them."""
    monkeypatch.delenv("ROUTELANG_TEST_UNSET", raising=False)
    monkeypatch.delenv("ROUTELANG_TEST_KEY", raising=False)
    monkeypatch.setenv("ROUTELANG_TEST_SET", "from-env")
    path = tmp_path / "envy.route"
    path.write_text('router envy\nimport std.providers\n'
                    'target t = openai("m", "${ROUTELANG_TEST_UNSET}") {\n'
                    '    headers { "Authorization": "Bearer ${ROUTELANG_TEST_KEY}", "X-Team": "${ROUTELANG_TEST_SET}" }\n'
                    '}\n'
                    'rule all priority 1 { route t }\n')
    store = Store(registry)
    push_file(store, path, name="envy")
    store.deploy("envy", 1)
    [target] = open_router("envy", record=False).route({}).selected_targets
    assert (target.model_name, target.endpoint) == ("m", "${ROUTELANG_TEST_UNSET}")
    if target.headers is not None:   # a remote decision never carries header values
        assert target.headers == {"Authorization": "Bearer ${ROUTELANG_TEST_KEY}", "X-Team": "from-env"}
    from routelang.gateway.plan import LoadError, from_config

    with pytest.raises(LoadError, match="ROUTELANG_TEST_UNSET"):   # serving (sending) needs them
        from_config(store.version("envy").compiled, "envy", "sha256")


def test_a_remote_error_does_not_show_the_servers_registry_path(live_gateway, registry):
    with pytest.raises(RegistryError) as remote:
        _ = routelang.Router("nope", url=live_gateway, api_key=ADMIN_KEY).active_version
    assert str(remote.value) == "no router called 'nope'"
    assert str(registry.parent) not in str(remote.value)
    with pytest.raises(RegistryError) as local:     # on one's own machine the file is worth naming
        _ = routelang.Router("nope", registry=registry).active_version
    assert str(local.value) == f"no router called 'nope' in the registry {registry}"


def test_remote_errors_are_registry_errors(live_gateway):
    with pytest.raises(RegistryError, match="invalid API key"):
        _ = routelang.Router("chat", url=live_gateway, api_key="wrong").active_version
    with pytest.raises(RegistryError, match="invalid API key"):   # not "no such request"
        routelang.Router("chat", url=live_gateway, api_key="wrong").get_request("0" * 32)
    with pytest.raises(RegistryError, match="cannot reach the gateway"):
        _ = routelang.Router("chat", url="http://127.0.0.1:9", api_key="k", timeout_s=2).active_version
    with pytest.raises(TypeError, match="not both"):
        routelang.Router("chat", url=live_gateway, registry="x.db")


def test_a_router_deleted_and_pushed_again_elsewhere_is_not_decided_by_its_old_rules(deployed, registry,
                                                                                     router_file, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(sdk.time, "monotonic", lambda: clock[0])
    router = routelang.Router("chat", registry=registry, record=False)
    assert router.route(PREMIUM).selected_targets[0].model_name == "gpt-4o"
    deployed.delete("chat")              # another process: delete, push other content, deploy: version 1 again
    write_router(router_file.parent, premium="small")
    push_file(deployed, router_file)
    deployed.deploy("chat", 1)
    clock[0] += sdk.RECHECK_ACTIVE_S
    assert router.route(PREMIUM).selected_targets[0].model_name == "gpt-4o-mini"
