"""The registry commands: push, versions, show, deploy, rollback, delete, diff NAME@N, requests, request."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import write_router

import routelang
from routelang.cli import Exit, main


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_push_then_identical_push_then_a_change(registry, router_file):
    first = run("push", router_file, "-m", "first")
    assert first.exit_code == Exit.OK, first.output
    assert "pushed chat version 1" in first.output
    same = run("push", router_file)
    assert same.exit_code == Exit.OK and "identical to chat version 1" in same.output
    write_router(router_file.parent, premium="small")
    assert "pushed chat version 2" in run("push", router_file, "--router", "chat").output
    listed = json.loads(run("versions", "chat", "--format", "json").output)
    assert [v["version"] for v in listed["versions"]] == [1, 2] and listed["versions"][0]["message"] == "first"


def test_a_file_with_errors_is_not_pushed_and_warnings_do_not_stop_a_push(registry, tmp_path):
    broken = tmp_path / "broken.route"
    broken.write_text('router broken\n\nrule a {\n    route nowhere\n}\n')
    result = run("push", broken)
    assert result.exit_code == Exit.FINDINGS and "not pushed" in result.output and "error[" in result.output
    warned = tmp_path / "warned.route"
    warned.write_text('router warned\n\nimport std.providers\n\ntarget unused = openai("a", "https://x")\n\n'
                      'rule a {\n    route openai("b", "https://y")\n}\n')
    result = run("push", warned)
    assert result.exit_code == Exit.OK and "warning[" in result.output and "pushed warned version 1" in result.output
    assert run("push", tmp_path / "missing.route").exit_code == Exit.USAGE


def test_deploy_shows_the_semantic_diff_and_asks(registry, router_file):
    run("push", router_file)
    assert run("deploy", "chat", "1", "--yes").exit_code == Exit.OK
    write_router(router_file.parent, premium="small")
    run("push", router_file)
    declined = run("deploy", "chat", "2", input="n\n")
    assert declined.exit_code == Exit.FINDINGS
    assert 'requests like {"user": {"tier": "premium"}}' in declined.output and "gpt-4o-mini" in declined.output
    assert routelang.Router("chat", registry=registry).active_version == 1
    accepted = run("deploy", "chat", "2", input="y\n")
    assert accepted.exit_code == Exit.OK and "deployed chat version 2" in accepted.output
    assert "* " in next(line for line in run("versions", "chat").output.splitlines() if "   2  " in line)
    rolled = run("rollback", "chat")
    assert rolled.exit_code == Exit.OK and "from version 2 to version 1" in rolled.output
    assert run("rollback", "chat").exit_code == Exit.USAGE
    assert run("deploy", "chat", "9", "--yes").exit_code == Exit.USAGE


def test_diff_of_stored_versions_and_files(registry, router_file, tmp_path):
    run("push", router_file)
    old_copy = tmp_path / "old.route"
    old_copy.write_text(router_file.read_text())
    write_router(router_file.parent, premium="small")
    run("push", router_file)
    stored = run("diff", "chat@1", "chat@2", "--format", "json")
    assert stored.exit_code == Exit.FINDINGS
    change = json.loads(stored.output)["changes"][0]
    assert change["witness"] == {"user": {"tier": "premium"}}
    assert run("diff", "chat@1", "chat@1").exit_code == Exit.OK
    assert run("diff", old_copy, router_file).exit_code == Exit.FINDINGS   # plain paths keep working
    assert run("diff", "chat@1", "chat@7").exit_code == Exit.USAGE


def test_show_prints_a_version_and_its_files(registry, router_file):
    run("push", router_file, "-m", "hello")
    text = run("show", "chat")
    assert text.exit_code == Exit.OK
    assert "router chat version 1 (not active)" in text.output and "message: hello" in text.output
    assert "--- chat.route (entry)" in text.output and "--- targets.route" in text.output
    data = json.loads(run("show", "chat@1", "--format", "json").output)
    assert data["compiled"]["rules"][0]["name"] == "premium" and "<std.providers>" in data["sources"]
    assert run("show", "chat@x").exit_code == Exit.USAGE
    assert run("show", "nope").exit_code == Exit.USAGE


def test_requests_and_request(registry, router_file):
    run("push", router_file)
    run("deploy", "chat", "1", "--yes")
    with routelang.Router("chat", registry=registry) as router:
        router.route({"user": {"tier": "premium"}})
        router.route({"user": {"tier": "basic"}})
    rows = json.loads(run("requests", "chat", "--format", "json").output)
    assert [r["rule"] for r in rows] == ["default", "premium"]
    table = run("requests", "chat", "--limit", "1")
    assert table.exit_code == Exit.OK and len(table.output.splitlines()) == 1 and "default" in table.output
    one = json.loads(run("request", rows[1]["id"]).output)
    assert one["selected_target"] == "gpt-4o" and one["version"] == 1
    assert run("request", "nope").exit_code == Exit.USAGE
    assert run("requests", "nope").exit_code == Exit.USAGE


def test_delete_asks_unless_yes(registry, router_file):
    run("push", router_file)
    assert run("delete", "chat", input="n\n").exit_code == Exit.FINDINGS
    assert run("delete", "chat", "--yes").exit_code == Exit.OK
    assert run("versions", "chat").exit_code == Exit.USAGE


def test_no_terminal_input_is_a_no_that_says_what_was_not_done(registry, router_file):
    run("push", router_file)
    deploy = run("deploy", "chat", "1", input="")      # end of file at the prompt, as `< /dev/null`
    assert deploy.exit_code == Exit.FINDINGS and "not deployed" in deploy.output and "Aborted" not in deploy.output
    delete = run("delete", "chat", input="")
    assert delete.exit_code == Exit.FINDINGS and "not deleted" in delete.output and "Aborted" not in delete.output
    assert run("versions", "chat").exit_code == Exit.OK


def test_registry_option_beats_the_environment(sqlite_registry, router_file, tmp_path):
    other = tmp_path / "other.db"
    assert run("push", router_file, "--registry", other).exit_code == Exit.OK
    assert other.exists() and not sqlite_registry.exists()


def test_a_file_that_is_not_a_registry_is_a_usage_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite " * 100)
    result = run("versions", "chat", "--registry", junk)
    assert result.exit_code == Exit.USAGE and "Traceback" not in result.output


def test_reading_commands_never_create_a_registry(tmp_path):
    missing = tmp_path / "missing.db"
    for args in (["versions", "chat"], ["show", "chat"], ["requests", "chat"], ["request", "x"],
                 ["rollback", "chat"], ["deploy", "chat", "1", "--yes"], ["diff", "chat@1", "chat@2"]):
        result = run(*args, "--registry", missing)
        assert result.exit_code == Exit.USAGE and "no registry at" in result.output, (args, result.output)
    assert not missing.exists()


def test_a_router_name_must_be_usable_in_name_at_version(registry, router_file):
    for bad in ("a@b", "a/b", "-x", ""):
        result = run("push", router_file, "--router", bad)
        assert result.exit_code == Exit.USAGE and "is not a router name" in result.output, (bad, result.output)
    assert run("push", router_file, "--router", "team.chat-v2_b").exit_code == Exit.OK


def test_history_prune_applies_the_retention_now(registry, router_file, monkeypatch):
    import time

    from routelang.registry.backends import open_store
    from routelang.registry.rows import RequestRecord

    assert run("push", router_file).exit_code == Exit.OK
    store = open_store(registry)
    now = time.time()
    store.insert_requests([RequestRecord("chat", 1, "default", "routed", id=f"r{age}",
                                                      time=now - age * 86400) for age in (10, 5, 3, 2, 1)])
    pruned = run("history", "prune", "--max-days", "4")
    assert pruned.exit_code == Exit.OK, pruned.output
    assert pruned.output.startswith("deleted 2 request(s)")
    monkeypatch.setenv("ROUTELANG_HISTORY_MAX_ROWS", "1")       # the environment, as the writers read it
    assert run("history", "prune").output.startswith("deleted 2 request(s)")
    assert [r["id"] for r in store.query("SELECT id FROM requests")] == ["r1"]
    assert run("history", "prune", "--max-rows", "0").exit_code == Exit.USAGE


def test_a_postgres_url_is_a_database_not_a_file_name(postgres_registry, router_file, tmp_path, monkeypatch):
    # A URL in ROUTELANG_REGISTRY was taken as a path: push exited 0 and made a folder `postgresql:`.
    monkeypatch.chdir(tmp_path)
    pushed = run("push", router_file)
    assert pushed.exit_code == Exit.OK, pushed.output
    assert not (tmp_path / "postgresql:").exists()
    from routelang.registry.backends import open_store

    assert [r["name"] for r in open_store(postgres_registry).routers()] == ["chat"]


def test_an_unreachable_postgres_registry_is_a_usage_error(router_file, tmp_path, monkeypatch, postgres_server):
    from services import free_port

    monkeypatch.chdir(tmp_path)
    url = f"postgresql://nobody:secret@127.0.0.1:{free_port()}/nothing"
    for args in (("push", router_file), ("versions", "chat"), ("requests", "chat"), ("ab", "chat")):
        result = run(*args, "--registry", url)
        assert result.exit_code == Exit.USAGE, result.output
        assert "Traceback" not in result.output and "127.0.0.1" in result.output
        assert "secret" not in result.output      # the password is never shown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.route", "targets.route"]   # no folder made


def _contents(location) -> dict:
    from routelang.registry.backends import open_store

    store = open_store(location)
    out = {"routers": store.routers(), "history": {}}
    for r in store.routers():
        out[r["name"]] = (store.versions(r["name"]), [store.version(r["name"], v["version"]) for v in
                                                        store.versions(r["name"])], store.deployments(r["name"]))
        out["history"][r["name"]] = [store.get_request(row["id"]) for row in store.list_requests(r["name"], 100)]
    store.close()
    return out


def test_registry_copy_from_sqlite_to_postgres_and_back(sqlite_registry, postgres_server, router_file, tmp_path):
    from routelang.registry.backends import open_store
    from routelang.registry.rows import RequestRecord

    assert run("push", router_file, "-m", "one").exit_code == Exit.OK
    write_router(router_file.parent, premium="small")
    assert run("push", router_file, "--router", "other").exit_code == Exit.OK
    assert run("push", router_file).exit_code == Exit.OK
    for args in (("deploy", "chat", "1", "--yes"), ("deploy", "chat", "2", "--yes"), ("rollback", "chat")):
        assert run(*args).exit_code == Exit.OK
    store = open_store(sqlite_registry)
    rows = [RequestRecord("chat", 1, "premium", "ok", targets=[{"model_name": "gpt-4o"}],
                                  attempts=[{"target": "big", "outcome": "ok", "ms": 3.0}], latency_ms=float(i),
                                  split_label="a", source="gateway", first_target="big", first_outcome="ok",
                                  failed_over=bool(i % 2), time=1_700_000_000.0 + i * 40_000, id=f"q{i}")
            for i in range(7)]
    rows[0].captured_request, rows[0].captured_response = b'{"x": 1}', b'{"y": 2}'
    store.insert_requests(rows)
    store.close()
    url = postgres_server.new_database()
    copied = run("registry", "copy", sqlite_registry, url)
    assert copied.exit_code == Exit.OK, copied.output
    assert copied.output.startswith("copied 2 router(s), 3 version(s), 2 deployment(s) and 7 request(s)")
    expected = _contents(sqlite_registry)
    assert _contents(url) == expected
    assert expected["history"]["chat"][-1]["capture"] == {"request": '{"x": 1}', "response": '{"y": 2}'}
    back = tmp_path / "back.db"
    assert run("registry", "copy", url, back).exit_code == Exit.OK
    assert _contents(back) == expected
    # Into a registry that holds routers: refused, nothing merged.
    again = run("registry", "copy", sqlite_registry, url)
    assert again.exit_code == Exit.USAGE and "not empty" in again.output
    assert run("registry", "copy", tmp_path / "missing.db", tmp_path / "new.db").exit_code == Exit.USAGE


def test_a_database_that_fails_a_write_is_not_a_conflict(registry, router_file, writes_failing):
    """push, deploy and rollback whose write the database refuses: one line saying the registry
    cannot be used now and why (not "nothing to roll back"), exit 2, nothing changed."""
    run("push", router_file)
    run("deploy", "chat", "1", "--yes")
    write_router(router_file.parent, premium="small")
    run("push", router_file)
    run("deploy", "chat", "2", "--yes")
    write_router(router_file.parent, premium="big")
    router_file.write_text(router_file.read_text() + "\n# a third version\n")
    with writes_failing():
        for args in (("rollback", "chat"), ("deploy", "chat", "1", "--yes"), ("push", router_file)):
            result = run(*args)
            assert result.exit_code == Exit.USAGE, (args, result.output)
            last = result.output.splitlines()[-1]
            assert last.startswith("routelang: error: the registry ") and " cannot be used now: " in last, last
            assert "read-only" in last or "locked" in last, last
            assert "earlier deployment" not in result.output and "Traceback" not in result.output
    listed = json.loads(run("versions", "chat", "--format", "json").output)
    assert listed["active_version"] == 2 and len(listed["versions"]) == 2


def test_an_unreachable_database_is_said_on_one_line(router_file):
    from services import free_port

    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    for args in (("rollback", "chat"), ("deploy", "chat", "1", "--yes"), ("push", router_file)):
        result = run(*args, "--registry", url)
        assert result.exit_code == Exit.USAGE, result.output
        assert len(result.output.splitlines()) == 1 and "cannot be used now" in result.output, result.output
