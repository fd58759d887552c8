"""Pinning one deployment: ``model: "<route>/<deployment>"`` on the server, ``deployment=`` in the
library. Only that deployment is tried (no failover, no cache read), a key needs ``deployments:pin``
(role admin), an unknown deployment is a 404 naming it; the answer explains the pick in
``x-hyperion-route-reason``."""

from __future__ import annotations

import openai
import pytest

from hyperion_core import Gateway
from hyperion_core.errors import AllDeploymentsFailedError, PermissionDeniedError, RouteNotFoundError
from hyperion_core.server import create_app
from hyperion_core.server.testing import ServerThread


def config(mock, tag: str) -> dict:
    return {
        "providers": {
            "p": {"kind": "openai", "api_key": "sk-up", "base_url": mock.base_url(f"{tag}-p", "openai")},
            "q": {"kind": "openai", "api_key": "sk-up", "base_url": mock.base_url(f"{tag}-q", "openai")},
        },
        "routes": {
            "chat": {"deployments": [{"model": "p/gpt-4o-mini", "name": "primary"},
                                     {"model": "q/gpt-4o-mini", "name": "backup"}],
                     "retry": {"attempts": 0}, "cache": {}},
        },
        "keys": {"store": "memory"},
    }


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def test_the_library_pins_a_deployment_without_failover_or_cache(mock):
    gw = Gateway({**config(mock, "pinlib"), "keys": {"store": "memory", "required": False}})
    warm = await gw.acomplete("chat", user("cached question"))
    assert warm.deployment == "primary"
    pinned = await gw.acomplete("chat", user("cached question"), deployment="backup")
    assert pinned.deployment == "backup" and pinned.cache is None  # not the cached answer of primary
    assert pinned.decision.strategy == "pinned" and "backup" in pinned.decision.reason
    mock.fault("pinlib-q", status=503, times=1)
    with pytest.raises(AllDeploymentsFailedError) as info:  # no failover to primary
        await gw.acomplete("chat", user("another"), deployment="backup")
    assert [a.deployment for a in info.value.attempts] == ["backup"]
    with pytest.raises(RouteNotFoundError, match="no deployment 'backpu'.*did you mean 'backup'"):
        await gw.acomplete("chat", user("x"), deployment="backpu")
    await gw.aclose()


async def test_a_key_needs_the_pin_permission(mock):
    gw = Gateway(config(mock, "pinperm"))
    member, _ = await gw.keys.create("m")
    admin, _ = await gw.keys.create("a", roles=["admin"])
    with pytest.raises(PermissionDeniedError, match="deployments:pin"):
        await gw.acomplete("chat", user("x"), deployment="backup", virtual_key=member)
    assert mock.stats().get("pinperm-q", {}).get("requests", 0) == 0
    resp = await gw.acomplete("chat", user("x"), deployment="backup", virtual_key=admin)
    assert resp.deployment == "backup"
    await gw.aclose()


@pytest.fixture
def server(mock):
    app = create_app(config(mock, "pinsrv"))
    srv = ServerThread(app).start()
    yield srv, app.state.gateway
    srv.stop()


def test_the_server_reads_route_slash_deployment(server, mock):
    srv, gw = server
    admin, _ = srv.call(gw.keys.create("a", roles=["admin"]))
    member, _ = srv.call(gw.keys.create("m"))
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key=admin, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="chat/backup", messages=user("hi"))
    assert raw.parse().model == "chat"
    assert raw.headers["x-hyperion-deployment"] == "backup"
    assert raw.headers["x-hyperion-route-reason"] == "deployment backup pinned by the request"
    stream = client.chat.completions.create(model="chat/backup", messages=user("hi"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert mock.stats()["pinsrv-q"]["requests"] == 2 and mock.stats().get("pinsrv-p", {}).get("requests", 0) == 0
    with pytest.raises(openai.NotFoundError, match="chat/nope"):
        client.chat.completions.create(model="chat/nope", messages=user("hi"))
    with pytest.raises(openai.PermissionDeniedError, match="deployments:pin"):
        openai.OpenAI(base_url=srv.url + "/v1", api_key=member, max_retries=0).chat.completions.create(
            model="chat/backup", messages=user("hi"))
    with pytest.raises(openai.NotFoundError):  # an unknown route before the slash stays unknown
        client.chat.completions.create(model="other/backup", messages=user("hi"))
