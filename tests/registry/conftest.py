"""Fixtures for the registry tests: a registry file and routers to push, in tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))   # gateway_fakes: the gateway tests' helpers
from gateway_fakes import CHAT_RULES

TARGETS = '''
import std.providers

target small = openai("gpt-4o-mini", "https://api.openai.com/v1")
target big = openai("gpt-4o", "https://api.openai.com/v1")
'''

ROUTER = '''router chat "Chat"

import "targets.route"
''' + CHAT_RULES


def write_router(directory, premium: str = "big"):
    """chat.route (importing targets.route) in `directory`; `premium`: the premium rule's target."""
    (directory / "targets.route").write_text(TARGETS)
    path = directory / "chat.route"
    path.write_text(ROUTER.format(premium=premium))
    return path


@pytest.fixture
def sqlite_registry(tmp_path, monkeypatch):
    """The path of a registry file (also in ROUTELANG_REGISTRY, so the CLI uses it)."""
    path = tmp_path / "reg" / "registry.db"
    monkeypatch.setenv("ROUTELANG_REGISTRY", str(path))
    return path


@pytest.fixture
def postgres_registry(postgres_server, monkeypatch):
    """The URL of a new, empty Postgres database (also in ROUTELANG_REGISTRY)."""
    url = postgres_server.new_database()
    monkeypatch.setenv("ROUTELANG_REGISTRY", url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request):
    """A registry on each backend: a file's Path, or a postgresql:// URL (also in ROUTELANG_REGISTRY)."""
    return request.getfixturevalue(f"{request.param}_registry")


@pytest.fixture
def router_file(tmp_path):
    return write_router(tmp_path)


@pytest.fixture
def deployed(registry, router_file):
    """A registry Store with router_file pushed as chat version 1, deployed."""
    from test_registry_store import push_file

    from routelang.registry.backends import open_store

    store = open_store(registry)
    push_file(store, router_file)
    store.deploy("chat", 1)
    return store


# ---- the SDK against a live gateway (its admin API) -------------------------------------------

ADMIN_KEY = "sdk-admin-key"
# What the gateway serves from its file; the registry's routers are reached through its admin API.
FRONT = '''router front

import std.providers

target only = openai("front-model", "http://127.0.0.1:9/v1")

rule all priority 1 {
    route only
}
'''


@pytest.fixture
def live_gateway(loop_thread, registry, tmp_path):
    """A gateway on loopback whose admin API serves the registry file `registry`: its url."""
    from gateway_fakes import FAST, GatewayServer

    from routelang.gateway.auth import digest
    from routelang.registry.backends import open_store

    front = tmp_path / "front.route"
    front.write_text(FRONT)
    server = loop_thread.run(GatewayServer(loop_thread, front, FAST, admin_keys=frozenset({digest(ADMIN_KEY)}),
                                           store=open_store(registry)).start())
    yield server.url
    loop_thread.run(server.stop())


@pytest.fixture(params=["local", "remote"])
def open_router(request, registry):
    """open_router(name, **kwargs) -> routelang.Router over the registry file, or over a live gateway's API."""
    import routelang

    if request.param == "local":
        return lambda name, **kwargs: routelang.Router(name, registry=registry, **kwargs)
    url = request.getfixturevalue("live_gateway")
    return lambda name, **kwargs: routelang.Router(name, url=url, api_key=ADMIN_KEY, **kwargs)


@pytest.fixture
def writes_failing(registry, request, monkeypatch):
    """writes_failing(): a context in which the registry can be read but its database refuses every
    write (services.writes_refused)."""
    from services import writes_refused

    postgres = None if isinstance(registry, Path) else request.getfixturevalue("postgres_server")
    return lambda: writes_refused(registry, monkeypatch, postgres)
