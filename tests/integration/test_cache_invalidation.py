"""Cache invalidation by namespace: the namespace's entries become unreachable at once in the process
that invalidates, in every other process sharing Redis at its next refresh, other namespaces keep
theirs; the admin API's endpoint is for un-teamed admins only."""

from __future__ import annotations

import uuid

import httpx
import pytest

from hyperion_core import Gateway
from hyperion_core.server import create_app
from hyperion_core.server.testing import ServerThread
from hyperion_core.types import CacheControl


def config(mock, tag: str, **top) -> dict:
    return {"providers": {"p": {"kind": "openai", "api_key": "sk-t", "base_url": mock.base_url(tag, "openai")}},
            "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "cache": {}}}, **top}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def ask(gw: Gateway, ns: str | None) -> str:
    r = await gw.acomplete("chat", user("what are your opening hours?"), max_tokens=300,
                           cache=CacheControl(namespace=ns) if ns is not None else None)
    return r.cache.tier if r.cache is not None else "miss"


async def test_invalidating_a_namespace_in_one_process(mock):
    gw = Gateway(config(mock, "inv-mem"))
    assert [await ask(gw, "faq"), await ask(gw, "faq"), await ask(gw, "docs"), await ask(gw, None)] == \
        ["miss", "l1", "miss", "miss"]
    assert await gw.cache.generations.invalidate("faq") == 1
    assert [await ask(gw, "faq"), await ask(gw, "faq")] == ["miss", "l1"]  # fresh, then cached again
    assert [await ask(gw, "docs"), await ask(gw, None)] == ["l1", "l1"]  # other namespaces keep theirs
    await gw.cache.generations.invalidate("")  # requests without a namespace
    assert [await ask(gw, None), await ask(gw, "docs")] == ["miss", "l1"]
    await gw.aclose()


@pytest.mark.redis
async def test_invalidation_reaches_every_process_through_redis(mock, redis_url):
    cfg = config(mock, "inv-redis", state={"backend": "redis", "redis_url": redis_url,
                                           "prefix": f"inv{uuid.uuid4().hex[:8]}"})
    gw1, gw2 = Gateway(cfg), Gateway(cfg)
    assert await ask(gw1, "faq") == "miss"
    assert await ask(gw2, "faq") == "l2"  # shared through Redis
    await gw1.cache.generations.invalidate("faq")
    assert await ask(gw1, "faq") == "miss"  # at once where it was invalidated
    await gw2.cache.generations.refresh()  # (every 2 s on its own)
    assert await ask(gw2, "faq") == "l2"  # gw1's fresh answer, not the invalidated one
    assert gw2.cache.generations.current == {"faq": 1}
    await gw1.aclose()
    await gw2.aclose()


def test_the_admin_endpoint(mock):
    app = create_app({**config(mock, "inv-srv"), "keys": {"store": "memory"}})
    with ServerThread(app) as srv:
        gw = app.state.gateway
        root = srv.call(gw.keys.create("root", roles=["admin"]))[0]
        team_admin = srv.call(gw.keys.create("ta", roles=["admin"], team="a"))[0]
        member = srv.call(gw.keys.create("m"))[0]

        def post(k: str, body: dict) -> httpx.Response:
            return httpx.post(srv.url + "/admin/v1/cache/invalidate", json=body,
                              headers={"authorization": f"Bearer {k}"}, timeout=30)

        body = {"model": "chat", "messages": user("hours?"), "max_tokens": 300}
        h = {"authorization": f"Bearer {member}"}
        tiers = [httpx.post(srv.url + "/v1/chat/completions", json=body, headers=h).headers["x-hyperion-cache"]
                 for _ in range(2)]
        assert tiers == ["miss", "l1"]
        assert post(member, {"namespace": ""}).status_code == 403
        assert post(team_admin, {"namespace": ""}).status_code == 403
        assert post(root, {}).status_code == 400
        r = post(root, {"namespace": ""})
        assert r.status_code == 200 and r.json() == {"namespace": "", "generation": 1}
        again = httpx.post(srv.url + "/v1/chat/completions", json=body, headers=h).headers["x-hyperion-cache"]
        assert again == "miss"
