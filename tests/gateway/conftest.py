"""Fixtures for the gateway tests: one background event loop, fake upstreams, gateways."""

from __future__ import annotations

import json

import pytest
from gateway_fakes import FAST, FakeUpstream, GatewayServer

from routelang.gateway.executor import Settings


@pytest.fixture
def upstreams(loop_thread):
    made: list[FakeUpstream] = []

    def make(name: str = "up") -> FakeUpstream:
        up = loop_thread.run(FakeUpstream(name).start())
        made.append(up)
        return up

    yield make
    for up in made:
        loop_thread.run(up.stop())


@pytest.fixture
def gateway(loop_thread, tmp_path):
    """gateway(config) -> a running GatewayServer; config is a dict (Mixtrain JSON) or .route text."""
    made: list[GatewayServer] = []

    def start(config: dict | str, settings: Settings = FAST, **kwargs) -> GatewayServer:
        stem = f"routes{len(made)}"
        if isinstance(config, dict):
            path = tmp_path / f"{stem}.json"
            path.write_text(json.dumps(config))
        else:
            path = tmp_path / f"{stem}.route"
            path.write_text(config)
        server = loop_thread.run(GatewayServer(loop_thread, path, settings, **kwargs).start())
        made.append(server)
        return server

    yield start
    for server in made:
        loop_thread.run(server.stop())


