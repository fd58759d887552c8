"""Shared fixtures: a real Redis server with the search module, the mock provider, test mode."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server with RediSearch + RedisJSON on a free loopback port (from PyPI wheels).
    If it cannot start, every test that uses it fails with the reason — never a silent skip."""
    from hyperion_core.redis_server import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def mock_provider():
    """The mock provider on a free port, shared by the session; faults and rules reset per test."""
    from hyperion_core.mock_provider import MockProvider

    mock = MockProvider().start()
    yield mock
    mock.stop()


@pytest.fixture
def mock(mock_provider):
    mock_provider.reset()
    yield mock_provider
    mock_provider.reset()


@pytest.fixture(scope="session", autouse=True)
def _state_dir(tmp_path_factory):
    """Configs that keep embedded state under ${HYPERION_STATE} (examples/hyperion.yaml) write it to a
    temporary folder, never into the working tree."""
    old = os.environ.get("HYPERION_STATE")
    os.environ["HYPERION_STATE"] = str(tmp_path_factory.mktemp("hyperion-state"))
    yield
    if old is None:
        os.environ.pop("HYPERION_STATE", None)
    else:
        os.environ["HYPERION_STATE"] = old


@pytest.fixture(autouse=True)
def _testing_mode():
    """Backoff sleeps return at once; breakers that need time use ManualClock explicitly."""
    from hyperion_core.routing import set_testing

    set_testing(True)
    yield
    set_testing(False)
