"""Hypothesis in CI runs the same examples every time (derandomize), so a red run
is reproducible and a green one does not depend on luck; by hand (no CI variable)
every run explores new examples, which is how the generators find new bugs."""

import os

import pytest
from hypothesis import settings
from services import postgres_server  # noqa: F401 (real servers, session-scoped: tests/services.py)

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def loop_thread():
    """One background event loop for the session's fake upstreams and gateways (the gateway
    and registry tests; gateway_fakes is on sys.path there)."""
    from gateway_fakes import LoopThread

    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server for this test (tests/services.py); stopped afterwards."""
    from services import RedisServer

    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder).start()
    yield server
    server.stop()
