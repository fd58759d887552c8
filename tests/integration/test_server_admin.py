"""The server's admin API (RBAC: admin / member / viewer, scoped to team) and its Prometheus metrics,
over real HTTP against a real uvicorn server."""

from __future__ import annotations

import httpx
import openai
import pytest

from hyperion_core.server import create_app
from hyperion_core.server.testing import ServerThread


def config(mock, dep: str, tmp_path) -> dict:
    return {
        "providers": {"p": {"kind": "openai", "api_key": "sk-upstream-secret", "base_url": mock.base_url(dep, "openai")}},
        "routes": {
            "chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "retry": {"attempts": 0}},
            "cached": {"deployments": [{"model": "p/gpt-4o-mini"}], "cache": {}},
        },
        "keys": {"store": "memory"},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit-{dep}.db"},
        "governance": {"budgets": [{"scope": "team", "id": "poor", "period": "daily", "limit_usd": 0.00001},
                                   {"scope": "team", "id": "a", "period": "daily", "limit_usd": 5}]},
    }


@pytest.fixture
def srv(mock, tmp_path, request):
    app = create_app(config(mock, f"adm-{request.node.name[-16:]}", tmp_path))
    with ServerThread(app) as s:
        s.gw = app.state.gateway
        yield s


def key(srv, name: str, **kw) -> str:
    return srv.call(srv.gw.keys.create(name, **kw))[0]


def call(srv, method: str, path: str, k: str | None, **kw) -> httpx.Response:
    headers = {"authorization": f"Bearer {k}"} if k else {}
    return httpx.request(method, srv.url + "/admin/v1" + path, headers=headers, timeout=60, **kw)


def chat(srv, k: str, route: str = "chat", text: str = "hello") -> None:
    openai.OpenAI(base_url=srv.url + "/v1", api_key=k, max_retries=0).chat.completions.create(
        model=route, messages=[{"role": "user", "content": text}], max_tokens=200)


def test_keys_lifecycle_and_team_scope(srv):
    root = key(srv, "root", roles=["admin"])
    team_admin = key(srv, "ta", roles=["admin"], team="a")
    assert call(srv, "GET", "/keys", None).status_code == 401
    assert call(srv, "GET", "/keys", "hk-bogus.key").status_code == 401
    r = call(srv, "POST", "/keys", root, json={"name": "svc", "team": "b", "routes": ["chat"]})
    assert r.status_code == 201
    created = r.json()
    assert created["key"].startswith("hk-") and "digest" not in created and "salt" not in created
    chat(srv, created["key"])
    # a team admin acts on its own team only
    r = call(srv, "POST", "/keys", team_admin, json={"name": "x", "team": "b"})
    assert r.status_code == 403
    r = call(srv, "POST", "/keys", team_admin, json={"name": "mine"})
    assert r.status_code == 201 and r.json()["team"] == "a"
    assert call(srv, "POST", f"/keys/{created['key_id']}/revoke", team_admin).status_code == 404
    listed = call(srv, "GET", "/keys", team_admin).json()["data"]
    assert {row["team"] for row in listed} == {"a"}
    assert len(call(srv, "GET", "/keys", root).json()["data"]) == 4
    # rotate: the new key works, the old one is refused at once
    r = call(srv, "POST", f"/keys/{created['key_id']}/rotate", root)
    assert r.status_code == 201 and r.json()["replaces"] == created["key_id"]
    chat(srv, r.json()["key"])
    with pytest.raises(openai.AuthenticationError):
        chat(srv, created["key"])
    r = call(srv, "POST", f"/keys/{r.json()['key_id']}/revoke", root)
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert call(srv, "GET", "/keys?include_revoked=true", root).json()["data"][-1]["revoked_at"]
    # members and viewers do not manage keys
    member = key(srv, "m", team="a")
    viewer = key(srv, "v", roles=["viewer"], team="a")
    assert call(srv, "POST", "/keys", member, json={"name": "x"}).status_code == 403
    assert call(srv, "POST", "/keys", viewer, json={"name": "x"}).status_code == 403
    assert {row["team"] for row in call(srv, "GET", "/keys", viewer).json()["data"]} == {"a"}
    assert call(srv, "GET", "/keys", member).status_code == 403
    bad = call(srv, "POST", "/keys", root, json={"name": "x", "roles": ["owner"]})
    assert bad.status_code == 400 and "unknown role" in bad.json()["error"]["message"]


def test_spend_audit_routes_and_budgets_by_role(srv):
    root = key(srv, "root", roles=["admin"])
    m1 = key(srv, "m1", team="a")
    m2 = key(srv, "m2", team="b", routes=["cached"])
    viewer = key(srv, "v", roles=["viewer"], team="a")
    chat(srv, m1)
    chat(srv, m2, "cached")
    chat(srv, m2, "cached")  # a cache hit
    srv.call(srv.gw.audit.aflush())
    by_key = call(srv, "GET", "/spend?by=key", root).json()["data"]
    assert len(by_key) == 2
    own = call(srv, "GET", "/spend", m1).json()["data"]
    assert [row["group"] for row in own] == [m1.split(".")[0][3:]]
    assert len(call(srv, "GET", "/spend", viewer).json()["data"]) == 1  # team a's keys only
    assert len(call(srv, "GET", "/audit", root).json()["data"]) == 3
    mine = call(srv, "GET", "/audit", m2).json()["data"]
    assert len(mine) == 2 and {e["cache_tier"] for e in mine} == {None, "l1"}
    assert call(srv, "GET", "/audit?team=b", viewer).status_code == 403
    assert len(call(srv, "GET", "/audit", viewer).json()["data"]) == 1
    assert call(srv, "GET", "/audit?limit=x", root).status_code == 400
    r = call(srv, "GET", "/audit/verify", root)
    assert r.status_code == 200 and r.json()["ok"] and r.json()["checked"] == 3
    assert call(srv, "GET", "/audit/verify", viewer).status_code == 403
    routes = call(srv, "GET", "/routes", root).json()["data"]
    assert {r["route"] for r in routes} == {"chat", "cached"}
    assert routes[0]["deployments"][0]["state"] == "closed"
    assert [r["route"] for r in call(srv, "GET", "/routes", m2).json()["data"]] == ["cached"]
    budgets = call(srv, "GET", "/budgets", root).json()["data"]
    assert {b["id"] for b in budgets} == {"poor", "a"}
    (mine,) = call(srv, "GET", "/budgets", m1).json()["data"]
    assert mine["id"] == "a" and mine["spent_usd"] > 0 and mine["remaining_usd"] < 5


def test_metrics(srv):
    k = key(srv, "k", team="a")
    poor = key(srv, "p", team="poor")
    chat(srv, k)
    chat(srv, k, "cached", "same")
    chat(srv, k, "cached", "same")
    stream = openai.OpenAI(base_url=srv.url + "/v1", api_key=k).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "stream"}], stream=True)
    assert list(stream)
    with pytest.raises(openai.RateLimitError):
        chat(srv, poor)
    with pytest.raises(openai.NotFoundError):
        chat(srv, k, "nope")
    r = httpx.get(srv.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['hyperion_requests_total{endpoint="chat.completions",outcome="ok",route="chat"}'] == 2
    assert samples['hyperion_requests_total{endpoint="chat.completions",outcome="ok",route="cached"}'] == 2
    assert samples['hyperion_cache_hits_total{route="cached",tier="l1"}'] == 1
    assert samples['hyperion_refusals_total{reason="budget",route="chat"}'] == 1
    assert samples['hyperion_errors_total{endpoint="chat.completions",error_class="BudgetExceededError",route="chat",status="429"}'] == 1
    assert samples['hyperion_errors_total{endpoint="chat.completions",error_class="RouteNotFoundError",route="nope",status="404"}'] == 1
    assert samples['hyperion_time_to_first_token_seconds_count{deployment="p/gpt-4o-mini",route="chat"}'] == 1
    assert samples['hyperion_request_duration_seconds_count{deployment="p/gpt-4o-mini",route="chat"}'] == 2
    assert samples['hyperion_tokens_total{deployment="p/gpt-4o-mini",kind="completion",route="chat"}'] > 0
    assert samples['hyperion_cost_usd_total{deployment="p/gpt-4o-mini",route="chat"}'] > 0
    assert samples['hyperion_breaker_state{deployment="p/gpt-4o-mini",route="chat"}'] == 0
    assert "sk-upstream-secret" not in r.text and k not in r.text


def test_budget_reset_by_role_and_what_it_restores(srv):
    """A team over its budget is refused (429); an admin's reset lets it call again at once; a team's
    admin resets its own team only; members and viewers may not."""
    root = key(srv, "root", roles=["admin"])
    poor_admin = key(srv, "pa", roles=["admin"], team="poor")
    other_admin = key(srv, "oa", roles=["admin"], team="a")
    member = key(srv, "m", team="poor")
    viewer = key(srv, "v", roles=["viewer"], team="poor")
    with pytest.raises(openai.RateLimitError):  # the reservation alone exceeds $0.00001
        chat(srv, member)
    m_a = key(srv, "ma", team="a")
    chat(srv, m_a)
    (before,) = call(srv, "GET", "/budgets", m_a).json()["data"]
    assert before["spent_usd"] > 0
    for who, status in ((member, 403), (viewer, 403), (poor_admin, 403)):
        r = call(srv, "POST", "/budgets/reset", who, json={"scope": "team", "id": "a"})
        assert r.status_code == status, who
    r = call(srv, "POST", "/budgets/reset", other_admin, json={"scope": "team", "id": "a", "period": "daily"})
    assert r.status_code == 200
    (row,) = r.json()["data"]
    assert row["id"] == "a" and row["spent_before_usd"] == pytest.approx(before["spent_usd"])
    (after,) = call(srv, "GET", "/budgets", m_a).json()["data"]
    assert after["spent_usd"] == 0 and after["remaining_usd"] == 5
    assert call(srv, "POST", "/budgets/reset", root, json={"scope": "team", "id": "nobody"}).status_code == 400
    assert call(srv, "POST", "/budgets/reset", root, json={"id": "a"}).status_code == 400
    assert call(srv, "POST", "/budgets/reset", root, json={"scope": "team", "id": "poor"}).status_code == 200


def test_cache_statistics(srv):
    root = key(srv, "root", roles=["admin"])
    member = key(srv, "m", team="a")
    chat(srv, member, "cached", "same")
    chat(srv, member, "cached", "same")
    stats = call(srv, "GET", "/cache", root).json()
    assert stats["enabled"] and stats["hits"] == {"l1": 1} and stats["misses"] == 1
    assert stats["routes"] == {"cached": {"l1_entries": 1}}
    assert call(srv, "GET", "/cache", member).status_code == 403


def test_audit_tail_follows_write_order_scoped_and_long_polled(srv):
    """The tail's cursor is an event id in write order, scoped like /audit, with a long poll that
    returns as soon as a row lands, and a gap flag when the cursor left the window."""
    import threading

    root = key(srv, "root", roles=["admin"])
    m1 = key(srv, "m1", team="a")
    m2 = key(srv, "m2", team="b")
    viewer = key(srv, "v", roles=["viewer"], team="a")
    chat(srv, m1)
    chat(srv, m2)
    first = call(srv, "GET", "/audit/tail", root).json()
    assert len(first["data"]) == 2 and first["next"] == first["data"][-1]["id"] and not first["gap"]
    assert call(srv, "GET", f"/audit/tail?after={first['next']}", root).json()["data"] == []
    for _ in range(2):
        chat(srv, m1)
    after = call(srv, "GET", f"/audit/tail?after={first['next']}", root).json()
    assert len(after["data"]) == 2 and all(e["team"] == "a" for e in after["data"])
    seen_by_viewer = call(srv, "GET", "/audit/tail", viewer).json()["data"]
    assert {e["team"] for e in seen_by_viewer} == {"a"} and len(seen_by_viewer) == 3
    assert [e["team"] for e in call(srv, "GET", "/audit/tail", m2).json()["data"]] == ["b"]  # its own key only
    gone = call(srv, "GET", "/audit/tail?after=ev-not-in-the-window", root).json()
    assert gone["gap"] and len(gone["data"]) == 4
    threading.Timer(0.3, chat, (srv, m2)).start()  # a row lands while the tail waits
    waited = call(srv, "GET", f"/audit/tail?after={after['next']}&wait=20", root).json()
    assert [e["team"] for e in waited["data"]] == ["b"]
    assert call(srv, "GET", "/audit/tail?n=0", root).status_code == 400
