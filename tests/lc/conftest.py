"""Fixtures for the LangChain door: gateway configs against the shared mock provider."""

from __future__ import annotations

import functools

import pytest
from lc_support import chat_config


@pytest.fixture
def make_config(mock):
    """``make_config(prefix, **sections)``: a two-deployment ``chat`` route on the (reset) mock."""
    return functools.partial(chat_config, mock)


@pytest.fixture
def lc_registry():
    """A private gateway registry, closed after the test."""
    from hyperion_lc import GatewayRegistry

    reg = GatewayRegistry()
    yield reg
    reg.close()


@pytest.fixture(scope="session", autouse=True)
def _close_shared_gateways():
    """Gateways the process-wide registry built during the session are closed at its end."""
    yield
    from hyperion_lc import close_gateways

    close_gateways()
