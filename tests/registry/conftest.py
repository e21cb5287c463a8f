"""Fixtures for the registry tests: a registry file and routers to push, in tmp_path."""

from __future__ import annotations

import pytest

TARGETS = '''
import std.providers

target small = openai("gpt-4o-mini", "https://api.openai.com/v1")
target big = openai("gpt-4o", "https://api.openai.com/v1")
'''

ROUTER = '''router chat "Chat"

import "targets.route"

rule premium priority 100 {{
    when user.tier == "premium"
    route {premium}
}}

rule ab priority 50 {{
    when user.tier == "trial"
    split sticky by user.id {{
        50% control: small
        50% variant: big
    }}
}}

rule default priority 10 {{
    route small
}}
'''


def write_router(directory, premium: str = "big"):
    """chat.route (importing targets.route) in `directory`; `premium`: the premium rule's target."""
    (directory / "targets.route").write_text(TARGETS)
    path = directory / "chat.route"
    path.write_text(ROUTER.format(premium=premium))
    return path


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """The path of a registry file (also in ROUTELANG_REGISTRY, so the CLI uses it)."""
    path = tmp_path / "reg" / "registry.db"
    monkeypatch.setenv("ROUTELANG_REGISTRY", str(path))
    return path


@pytest.fixture
def router_file(tmp_path):
    return write_router(tmp_path)
