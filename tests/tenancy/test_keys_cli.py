"""`routelang keys create|list|revoke`: secrets shown once and stored hashed."""

from __future__ import annotations

import json
import sqlite3

from click.testing import CliRunner

from routelang.cli import main
from routelang.tenancy.keys import KeyStore, digest


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_create_list_revoke(tmp_path):
    registry = str(tmp_path / "registry.db")
    code, out = run("keys", "create", "ws-marketing-001", "--agent", "creative", "--expires", "30d",
                    "--json", "--registry", registry)
    assert code == 0
    created = json.loads(out)
    secret = created["key"]
    assert secret.startswith("rlk_") and created["workspace"] == "ws-marketing-001" and created["agent"] == "creative"
    stored = sqlite3.connect(registry).execute("SELECT digest FROM tenant_keys").fetchall()
    assert stored == [(digest(secret),)]                 # only the hash is kept
    assert secret not in (tmp_path / "registry.db").read_bytes().decode("latin-1")
    code, out = run("keys", "list", "--registry", registry)
    assert code == 0 and created["id"] in out and "active" in out and secret not in out
    assert KeyStore(registry).find(secret).workspace == "ws-marketing-001"
    code, out = run("keys", "revoke", created["id"], "--registry", registry)
    assert code == 0 and "revoked" in out
    assert KeyStore(registry).find(secret) is None
    listed = json.loads(run("keys", "list", "--json", "--registry", registry)[1])
    assert listed[0]["state"] == "revoked"


def test_expired_keys_are_refused(tmp_path):
    store = KeyStore(tmp_path / "k.db")
    _key, secret = store.create("ws", expires_at=1000.0, now=500.0)
    assert store.find(secret, now=999.0) is not None
    assert store.find(secret, now=1000.0) is None
    assert store.list()[0].state(1000.0) == "expired"


def test_usage_errors_exit_2(tmp_path):
    registry = str(tmp_path / "registry.db")
    assert run("keys", "create", "bad name", "--registry", registry)[0] == 2
    assert run("keys", "create", "ws", "--expires", "soon", "--registry", registry)[0] == 2
    assert run("keys", "create", "ws", "--expires", "2020-01-01", "--registry", registry)[0] == 2
    assert run("keys", "revoke", "key_000000000000", "--registry", registry)[0] == 2


def test_keys_and_usage_on_a_postgres_registry(postgres_server):
    """The keys live in the registry's Store: on Postgres as on SQLite (only the hash kept)."""
    url = postgres_server.new_database()
    code, out = run("keys", "create", "ws-a", "--json", "--registry", url)
    assert code == 0, out
    created = json.loads(out)
    store = KeyStore(url)
    try:
        assert [row["digest"] for row in store.store.query("SELECT digest FROM tenant_keys")] == [
            digest(created["key"])]
        assert store.find(created["key"]).workspace == "ws-a"
        assert run("keys", "revoke", created["id"], "--registry", url)[0] == 0
        assert store.find(created["key"]) is None
    finally:
        store.close()
    code, out = run("usage", "--json", "--registry", url)
    assert code == 0 and json.loads(out) == {"usage": [], "budgets": []}, out


def test_a_key_carries_its_own_limits_and_budgets_in_the_language_spelling(tmp_path):
    registry = str(tmp_path / "registry.db")
    code, out = run("keys", "create", "ws-a", "--limit", "60 requests per minute, 20k tokens per minute",
                    "--budget", "10 USD per day, 50.5 per month", "--json", "--registry", registry)
    assert code == 0, out
    created = json.loads(out)
    assert created["limit"] == "60 requests per minute, 20000 tokens per minute"
    assert created["budget"] == "10 USD per day, 50.5 per month"
    key = KeyStore(registry).find(created["key"])
    assert [(lim.unit, lim.amount, lim.per) for lim in key.limits] == [("requests", 60, "minute"),
                                                                        ("tokens", 20_000, "minute")]
    assert [(b.period, b.micros) for b in key.budgets] == [("day", 10_000_000), ("month", 50_500_000)]
    code, out = run("keys", "list", "--registry", registry)
    assert "60 requests per minute, 20000 tokens per minute" in out and "10 USD per day, 50.5 per month" in out


def test_a_bad_limit_or_budget_is_located_in_its_option_and_exits_2(tmp_path):
    registry = str(tmp_path / "registry.db")
    code, out = run("keys", "create", "ws-a", "--limit", "60 requests per minut", "--registry", registry)
    assert code == 2
    assert out.splitlines()[:5] == [
        "--limit:1:17: error[RL001]: unexpected `minut`",
        "  |",
        "1 | 60 requests per minut",
        "  |                 ^^^^^",
        "  = help: did you mean `minute`?",
    ]
    code, out = run("keys", "create", "ws-a", "--budget", "10 USD per day, 20 per day", "--registry", registry)
    assert code == 2 and "--budget:1:17: error[RL240]: the key has two budgets per day" in out
    code, out = run("keys", "create", "ws-a", "--budget", "0.0000001 USD per day", "--registry", registry)
    assert code == 2 and "finer than a micro-dollar" in out
    code, out = run("keys", "create", "ws-a", "--limit", "5 requests per", "--registry", registry)
    assert code == 2 and "--limit:1:15: error[RL001]: the limit ends too soon" in out
    code, out = run("keys", "create", "ws-a", "--budget", "1 USD per day } workspace x {", "--registry", registry)
    assert code == 2 and "`}` cannot be part of a budget" in out
    assert "Traceback" not in out
    assert KeyStore(registry).list() == []


def test_a_registry_made_before_keys_had_limits_keeps_its_keys(tmp_path):
    from routelang.registry import sqlite as backend

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    before = next(i for i, step in enumerate(backend.MIGRATIONS) if "ADD COLUMN budgets" in step)
    backend.migrate(conn, upto=before)
    conn.execute("INSERT INTO tenant_keys (id, digest, workspace, agent, created_at) VALUES"
                 " ('key_000000000001', ?, 'ws-a', NULL, 1.0)", (digest("rlk_old"),))
    conn.close()
    key = KeyStore(path).find("rlk_old")
    assert (key.workspace, key.budgets, key.limits) == ("ws-a", (), ())


def test_key_limits_on_a_postgres_registry(postgres_server):
    url = postgres_server.new_database()
    code, out = run("keys", "create", "ws-a", "--limit", "5 requests per second", "--budget", "1 USD per week",
                    "--json", "--registry", url)
    assert code == 0, out
    secret = json.loads(out)["key"]
    store = KeyStore(url)
    try:
        key = store.find(secret)
        assert [(lim.unit, lim.amount, lim.per) for lim in key.limits] == [("requests", 5, "second")]
        assert [(b.period, b.micros) for b in key.budgets] == [("week", 1_000_000)]
    finally:
        store.close()
    code, out = run("keys", "list", "--json", "--registry", url)
    assert [(k["limit"], k["budget"]) for k in json.loads(out)] == [("5 requests per second", "1 USD per week")]


def test_closing_the_key_store_waits_for_lookups_in_other_threads(tmp_path):
    """A gateway closes its key store while the key cache's threads may be querying it: the close
    waits for them, and a lookup after it is a registry error, never a crash."""
    from services import closed_under_readers

    store = KeyStore(tmp_path / "keys.db")
    _, secret = store.create("ws")
    assert closed_under_readers(lambda: store.lookup(secret), store.close) == ["closed"] * 4
