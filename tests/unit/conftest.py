"""Unit tests run with no network at all (pytest-socket): a unit test that opens a socket fails.
Unix socket pairs stay allowed (asyncio's event loop wakes itself up with one)."""

from __future__ import annotations

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network():
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()
