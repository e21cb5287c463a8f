"""The registry file: versions, deployments, migrations, several processes at once, history retention."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_router

from routelang.registry import history
from routelang.registry.artifacts import build_file, compile_stored
from routelang.registry.backends import open_store
from routelang.registry.rows import RequestRecord, Retention, sticky_hash
from routelang.registry.sqlite import MIGRATIONS, SCHEMA_VERSION, migrate
from routelang.registry.store import RegistryError, Store, default_location


def push_file(store: Store, path, name: str = "chat", message: str = ""):
    built = build_file(path)
    assert built.ok, built.problems
    return store.push(name, built.entry, built.sources, built.compiled, message)


def test_default_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ROUTELANG_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_location() == tmp_path / "data" / "routelang" / "registry.db"
    monkeypatch.setenv("ROUTELANG_REGISTRY", str(tmp_path / "x.db"))
    assert default_location() == tmp_path / "x.db"
    monkeypatch.setenv("ROUTELANG_REGISTRY", "postgresql://u@h:5432/db")
    assert default_location() == "postgresql://u@h:5432/db"


def test_the_file_is_in_wal_mode_with_a_busy_timeout(sqlite_registry):
    store = open_store(sqlite_registry)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    # The history's table is cheap to append to: rows by rowid and one index (no random id key).
    assert [r[1] for r in store.conn.execute("PRAGMA index_list(requests)")] == ["requests_by_router_time"]


def test_push_stores_the_files_with_their_imports_and_identical_content_no_version(registry, router_file):
    store = open_store(registry)
    first, new = push_file(store, router_file, message="first")
    assert new and first.version == 1 and first.message == "first"
    assert set(first.sources) == {"chat.route", "targets.route", "<std.providers>"}
    assert first.entry == "chat.route" and first.compiled["rules"][0]["name"] == "premium"
    again, new = push_file(store, router_file, message="again")
    assert not new and again.version == 1
    write_router(router_file.parent, premium="small")
    second, new = push_file(store, router_file)
    assert new and second.version == 2 and second.content_hash != first.content_hash
    assert [v["version"] for v in store.versions("chat")] == [1, 2]
    # The stored files compile again on their own, imports included (the source dir is gone from view).
    router_file.unlink()
    assert compile_stored(second.entry, second.sources).ok


def test_versions_are_immutable_rows_numbered_per_router(registry, router_file):
    store = open_store(registry)
    push_file(store, router_file, name="a")
    push_file(store, router_file, name="b")  # same content, other router: its own version 1
    assert store.version("b", 1).content_hash == store.version("a", 1).content_hash
    with pytest.raises(RegistryError, match="no version 7"):
        store.version("a", 7)
    with pytest.raises(RegistryError, match="no router called 'nope'"):
        store.versions("nope")


def test_deploy_and_rollback_walk_back_through_the_deployments(registry, router_file):
    store = open_store(registry)
    for premium in ("big", "small", "big"):   # versions 1, 2, and 1 again (identical)
        write_router(router_file.parent, premium=premium)
        push_file(store, router_file)
    write_router(router_file.parent, premium="small")
    (router_file.parent / "chat.route").write_text(router_file.read_text().replace("priority 10", "priority 11"))
    push_file(store, router_file)                 # version 3
    assert store.active_version("chat") is None
    for v in (1, 2, 3):
        store.deploy("chat", v)
    assert store.active_version("chat") == 3
    assert store.rollback("chat") == (3, 2)
    assert store.rollback("chat") == (2, 1)
    with pytest.raises(RegistryError, match="no earlier deployment"):
        store.rollback("chat")
    assert store.active_version("chat") == 1
    with pytest.raises(RegistryError, match="no version 9"):
        store.deploy("chat", 9)
    assert store.active_version("chat") == 1


def test_delete_removes_versions_deployments_and_history(registry, router_file):
    store = open_store(registry)
    push_file(store, router_file)
    store.deploy("chat", 1)
    store.insert_requests([RequestRecord("chat", 1, "default", "routed")])
    store.delete("chat")
    assert store.routers() == []
    for table in ("versions", "deployments", "requests"):
        assert store.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] == 0
    with pytest.raises(RegistryError):
        store.delete("chat")


def test_an_older_schema_is_migrated_keeping_its_data(sqlite_registry, router_file):
    registry = sqlite_registry
    registry.parent.mkdir(parents=True)
    old = sqlite3.connect(registry, isolation_level=None)
    migrate(old, upto=1)   # a registry written before the request history existed
    old.execute("INSERT INTO routers (name, active_version, created_at) VALUES ('old', NULL, 0)")
    old.close()
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 2
    store = open_store(registry)
    assert store.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert [r["name"] for r in store.routers()] == ["old"]
    store.insert_requests([RequestRecord("old", None, None, "unmatched")])  # the new table works


def test_rows_recorded_before_the_source_column_get_their_source(sqlite_registry):
    """SDK decisions (`routed`, or `unmatched` without an HTTP status) become `sdk`, the rest `gateway`."""
    registry = sqlite_registry
    registry.parent.mkdir(parents=True)
    old = sqlite3.connect(registry, isolation_level=None)
    migrate(old, upto=3)
    for row_id, status, http_status in (("d", "routed", None), ("u", "unmatched", None), ("g", "ok", 200),
                                        ("n", "unmatched", 400), ("e", "error", 502)):
        old.execute("INSERT INTO requests (id, time, router, targets, attempts, status, http_status) "
                    "VALUES (?, 0, 'r', '[]', '[]', ?, ?)", (row_id, status, http_status))
    old.close()
    sources = dict(open_store(registry).conn.execute("SELECT id, source FROM requests").fetchall())
    assert sources == {"d": "sdk", "u": "sdk", "g": "gateway", "n": "gateway", "e": "gateway"}


def test_a_newer_schema_is_refused(registry):
    store = open_store(registry)
    store.execute("UPDATE schema_version SET version = version + 1")
    store.close()
    with pytest.raises(RegistryError, match="newer than this routelang"):
        open_store(registry)


WORKER = """
import sys
from routelang.registry.store import Store
from routelang.registry.backends import open_store
store = open_store(sys.argv[1])
for i in range(int(sys.argv[3])):
    content = {"rules": [], "worker": sys.argv[2], "i": i}
    version, new = store.push("shared", "x.route", {"x.route": f"{sys.argv[2]}-{i}"}, content)
    assert new
    store.deploy("shared", version.version)
print("done")
"""


def test_several_processes_push_and_deploy_at_once(registry):
    open_store(registry).close()  # created once; the workers race on pushes and deploys, not on creation
    workers, each = 4, 10
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(registry), f"w{n}", str(each)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(workers)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    store = open_store(registry)
    numbers = [v["version"] for v in store.versions("shared")]
    assert numbers == list(range(1, workers * each + 1))   # no number given twice, none lost
    assert len(store.deployments("shared")) == workers * each
    assert store.active_version("shared") == store.deployments("shared")[-1]["version"]


def test_several_processes_migrate_a_new_registry_at_once(registry):
    if isinstance(registry, Path):
        registry.parent.mkdir(parents=True)
    code = "import sys; from routelang.registry.backends import open_store; open_store(sys.argv[1]); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(registry)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert open_store(registry).query("SELECT COUNT(*) AS n FROM schema_version")[0]["n"] == 1


# ---- request history ---------------------------------------------------------------------

def test_retention_deletes_old_rows_then_the_oldest_beyond_the_row_limit(registry):
    store = open_store(registry)
    now = 1_000_000_000.0
    rows = [RequestRecord("chat", 1, "default", "routed", time=now - age * 86400) for age in (40, 20, 3, 2, 1)]
    store.insert_requests(rows)
    assert store.prune(Retention(max_rows=2, max_days=30), now=now) == 3
    kept = store.query("SELECT time FROM requests ORDER BY time")
    assert [now - r["time"] for r in kept] == [2 * 86400, 86400]


def test_the_writer_batches_rows_in_the_background_and_flush_waits_for_them(registry):
    open_store(registry).close()
    writer = history.HistoryWriter(registry, batch_size=50)
    try:
        for i in range(120):
            writer.record(RequestRecord("chat", 1, "default", "routed", latency_ms=float(i)))
        writer.flush()
        assert writer.written == 120 and writer.dropped == 0
        listed = open_store(registry).list_requests("chat", limit=500)
        assert len(listed) == 120
    finally:
        writer.close()
    assert not writer._thread.is_alive()


def test_the_writer_writes_a_steady_trickle_in_few_transactions(registry):
    """Rows recorded one by one (as requests arrive) are written together each interval,
    not one transaction per row (a writer woken by every row did that under load)."""
    open_store(registry).close()
    writer = history.HistoryWriter(registry, interval_s=0.3)
    try:
        time.sleep(0.05)
        for _ in range(50):
            writer.record(RequestRecord("chat", 1, "default", "routed"))
            time.sleep(0.002)
        writer.flush()
    finally:
        writer.close()
    assert writer.written == 50 and writer.batches <= 2, writer.batches
    assert len(open_store(registry).list_requests("chat", limit=100)) == 50


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """The process ended and was reaped (a zombie keeps its /proc entry)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not Path(f"/proc/{pid}").exists()


def _dead(pid: int, timeout: float = 10.0) -> bool:
    """The process ended (a zombie, not reaped yet, or gone)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rpartition(")")[2].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_the_writer_process_starts_with_the_first_batch_and_ends_with_close(sqlite_registry):
    open_store(sqlite_registry).close()
    writer = history.HistoryWriter(sqlite_registry, interval_s=0.01)
    try:
        time.sleep(0.1)
        assert writer.process_id is None            # nothing recorded: no process
        writer.record(RequestRecord("chat", 1, "a", "routed"))
        writer.flush()
        pid = writer.process_id
        assert pid is not None and Path(f"/proc/{pid}").exists()
    finally:
        writer.close()
    assert _gone(pid) and writer.process_id is None and not writer._thread.is_alive()


def test_a_writer_process_that_dies_is_replaced_for_the_next_batch(sqlite_registry):
    open_store(sqlite_registry).close()
    writer = history.HistoryWriter(sqlite_registry, interval_s=0.01)
    try:
        writer.record(RequestRecord("chat", 1, "a", "routed"))
        writer.flush()
        first = writer.process_id
        subprocess.run(["kill", "-KILL", str(first)], check=True)
        assert _dead(first)   # (a batch sent while it is still dying is lost with it, and counted as dropped)
        for _ in range(3):
            writer.record(RequestRecord("chat", 1, "b", "routed"))
        writer.flush()
        assert writer.process_id not in (None, first)
        assert writer.written == 4 and writer.dropped == 0
        assert len(open_store(sqlite_registry).list_requests("chat", limit=10)) == 4
    finally:
        writer.close()


def test_the_shared_writer_writes_at_exit_and_leaves_no_process_behind(sqlite_registry):
    open_store(sqlite_registry).close()
    script = ("import sys; from routelang.registry import history, rows; "
              "w = history.shared_writer(sys.argv[1]); w.record(rows.RequestRecord('chat', 1, 'a', 'routed')); "
              "w.flush(); w.record(rows.RequestRecord('chat', 1, 'b', 'routed')); print(w.process_id)")
    done = subprocess.run([sys.executable, "-c", script, str(sqlite_registry)], capture_output=True, text=True,
                          timeout=60, check=True)
    assert _gone(int(done.stdout))
    assert len(open_store(sqlite_registry).list_requests("chat", limit=10)) == 2


def test_the_writer_drops_rows_instead_of_blocking_when_the_disk_cannot_keep_up(sqlite_registry):
    store = open_store(sqlite_registry)
    writer = history.HistoryWriter(sqlite_registry, queue_size=5, interval_s=0.01)
    try:
        store.conn.execute("BEGIN IMMEDIATE")    # the writer's next insert waits for this lock
        writer.record(RequestRecord("chat", 1, "a", "routed"))
        deadline = time.monotonic() + 5
        while writer._pending and time.monotonic() < deadline:  # the writer took it, and is blocked
            time.sleep(0.01)
        started = time.perf_counter()
        for _ in range(20):
            writer.record(RequestRecord("chat", 1, "b", "routed"))
        assert time.perf_counter() - started < 0.5    # record() never waited
        assert writer.dropped == 15
        store.conn.execute("COMMIT")
        writer.flush()
        assert writer.written == 6
    finally:
        if store.conn.in_transaction:
            store.conn.execute("COMMIT")
        writer.close()


def test_history_rows_never_hold_request_text(registry):
    record = RequestRecord("chat", 1, "default", "routed", sticky_key_hash=sticky_hash("u-1"))
    assert "u-1" not in repr(record.row())


def test_the_sdk_writer_reads_the_retention_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.db"
    open_store(path).close()
    monkeypatch.setenv("ROUTELANG_HISTORY_MAX_ROWS", "3")
    monkeypatch.setenv("ROUTELANG_HISTORY_MAX_DAYS", "0.5")
    writer = history.shared_writer(path)
    try:
        assert writer.retention == Retention(max_rows=3, max_days=0.5)
    finally:
        writer.close()


# ---- the history on Postgres: day partitions ------------------------------------------------

def test_postgres_history_is_partitioned_by_day_and_retention_drops_whole_days(postgres_registry):
    from routelang.registry.postgres import DAY_S, partition_name

    store = open_store(postgres_registry)
    now = 1_800_000_000.0
    today = now // DAY_S * DAY_S
    rows = [RequestRecord("chat", 1, "default", "ok", time=now - age * DAY_S - n)
            for age in (40, 3, 2, 1) for n in range(3)]
    rows[0].captured_request = b"old text"
    store.insert_requests(rows)
    days = [day for day, _name in store.partitions()]
    assert days == [today - age * DAY_S for age in (40, 3, 2, 1)]
    assert [day for day, _ in store.partitions("captures")] == days     # captures follow their rows' days
    assert store.prune(Retention(max_rows=6, max_days=30), now=now) == 6
    assert [day for day, _ in store.partitions()] == [today - 2 * DAY_S, today - DAY_S]
    assert not store.query("SELECT to_regclass(?) IS NOT NULL AS found",
                           (partition_name("captures", int(today - 40 * DAY_S)),))[0]["found"]
    assert store.query("SELECT COUNT(*) AS n FROM requests")[0]["n"] == 6
    # A day dropped is made again when a late row arrives for it.
    store.insert_requests([RequestRecord("chat", 1, "default", "ok", time=now - 3 * DAY_S)])
    assert len(store.partitions()) == 3


def test_postgres_reads_of_requests_and_ab_use_the_router_time_index(postgres_registry):
    store = open_store(postgres_registry)
    store.insert_requests([RequestRecord(f"r{i % 50}", 1, "ab", "ok", split_label="a", time=1e9 + i)
                           for i in range(5000)])
    store.execute("ANALYZE requests")
    plans = [" ".join(r["QUERY PLAN"] for r in store.query(f"EXPLAIN {sql}", args)) for sql, args in (
        ("SELECT * FROM requests WHERE router = ? ORDER BY time DESC, seq DESC LIMIT ?", ("r7", 20)),
        ("SELECT rule FROM requests WHERE router = ? AND split_label IS NOT NULL AND time >= ?", ("r7", 1e9)),
        ("SELECT * FROM requests WHERE id = ?", ("x",)))]
    assert all("Seq Scan" not in plan for plan in plans), plans


def test_one_store_shared_by_threads_keeps_each_write_whole_and_closes_safely(registry):
    """A gateway's one store serves its reload thread, the admin API's thread and its closing: each
    write transaction is one thread's from start to end (another thread's push would otherwise start
    a transaction inside it, or have its statements land in it), and closing waits for whatever
    runs; a call after the close is a registry error, never a crash."""
    import threading

    from services import closed_under_readers

    store = open_store(registry)
    errors: list[Exception] = []

    def pushes(worker: int) -> None:
        try:
            for i in range(10):
                version, new = store.push("shared", "x.route", {"x.route": f"{worker}-{i}"}, {"rules": [], "i": i})
                assert new
                store.deploy("shared", version.version)
        except (RegistryError, AssertionError) as exc:   # collected: the assertion below names it
            errors.append(exc)

    writers = [threading.Thread(target=pushes, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    assert errors == []
    assert [v["version"] for v in store.versions("shared")] == list(range(1, 41))
    assert len(store.deployments("shared")) == 40

    assert closed_under_readers(store.active_versions, store.close) == ["closed"] * 4
