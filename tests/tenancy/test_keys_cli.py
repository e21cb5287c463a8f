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
