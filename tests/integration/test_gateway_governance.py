"""Keys, budgets, rate limits, spend and audit inside the Gateway, against the mock provider over HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest

from hyperion_core import (
    AllDeploymentsFailedError,
    BudgetExceededError,
    Gateway,
    InvalidKeyError,
    InvalidRequestError,
    KeyRevokedError,
    PermissionDeniedError,
    RateLimitedError,
    RouteNotFoundError,
    StreamInterruptedError,
)
from hyperion_core.types import Usage


def make(mock, dep: str, tmp_path, *, governance: dict | None = None, cache: bool = False, state: dict | None = None,
         required: bool = True, keys_store: str = "memory", route: dict | None = None) -> Gateway:
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-provider-secret-123", "base_url": mock.base_url(dep, "openai")}},
        "routes": {
            "chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "retry": {"attempts": 0}, **({"cache": {}} if cache else {}),
                     **(route or {})},
            "other": {"deployments": [{"model": "p/gpt-4o-mini"}]},
        },
        "keys": {"required": required, "store": keys_store},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit-{dep}.db"},
    }
    if governance is not None:
        cfg["governance"] = governance
    if state is not None:
        cfg["state"] = state
    return Gateway(cfg)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def outcomes(gw: Gateway) -> list[str]:
    return [e.outcome for e in reversed(await gw.audit.query(limit=1000))]


async def test_keys_gate_every_request_and_each_denial_is_audited(mock, tmp_path):
    gw = make(mock, "g-keys", tmp_path)
    key, rec = await gw.keys.create("svc", team="ml", user="ana", routes=["chat"])
    ok = await gw.acomplete("chat", user("hello"), virtual_key=key)
    assert ok.content
    with pytest.raises(InvalidKeyError, match="requires a virtual key"):
        await gw.acomplete("chat", user("hello"))
    with pytest.raises(InvalidKeyError, match="unknown virtual key"):
        await gw.acomplete("chat", user("hello"), virtual_key=key[:-3] + "abc")
    with pytest.raises(PermissionDeniedError, match="may not call route 'other'"):
        await gw.acomplete("other", user("hello"), virtual_key=key)
    await gw.keys.revoke(rec.key_id)
    with pytest.raises(KeyRevokedError):
        await gw.acomplete("chat", user("hello"), virtual_key=key)
    assert await outcomes(gw) == ["ok", "denied", "denied", "denied", "denied"]
    events = list(reversed(await gw.audit.query(limit=10)))
    assert {e.key_id for e in events if e.key_id} == {rec.key_id}
    # denials are attributed to the presented key id; to its team only when the secret was the key's
    assert [(e.key_id, e.team) for e in events] == [
        (rec.key_id, "ml"), (None, None), (rec.key_id, None), (rec.key_id, "ml"), (rec.key_id, "ml"),
    ]
    dump = json.dumps([e.to_dict() for e in events])
    secret = key.split(".", 1)[1]
    assert secret not in dump and "sk-provider-secret-123" not in dump  # secrets never reach audit rows
    assert (await gw.audit.verify()).ok
    await gw.aclose()


async def test_budget_refuses_before_the_limit_is_crossed(mock, tmp_path):
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 0.0001}]}
    gw = make(mock, "g-budget", tmp_path, governance=gov)
    key, rec = await gw.keys.create("b", team="thrifty")
    answered = refused = 0
    for i in range(40):
        try:
            await gw.acomplete("chat", user(f"spend {i}"), virtual_key=key, max_tokens=50)
            answered += 1
        except BudgetExceededError as exc:
            refused += 1
            assert "team 'thrifty' daily budget" in str(exc)
    assert answered >= 1 and refused >= 1
    (status,) = [s for s in await gw.governance.status({"team": "thrifty"}) if s.scope == "team"]
    assert status.spent_usd <= 0.0001 + 1e-12 and status.reserved_usd == 0
    rows = {r.group: r for r in await gw.spend_report("team")}
    assert rows["thrifty"].requests == answered
    assert rows["thrifty"].cost_usd == pytest.approx(status.spent_usd)
    outs = await outcomes(gw)
    assert outs.count("ok") == answered and outs.count("budget_exceeded") == refused
    await gw.aclose()


async def test_rate_limit_with_retry_after(mock, tmp_path):
    gw = make(mock, "g-rate", tmp_path, governance={"rate_limits": [{"scope": "key", "rpm": 3}]})
    key, _ = await gw.keys.create("r")
    for i in range(3):
        await gw.acomplete("chat", user(f"r{i}"), virtual_key=key)
    with pytest.raises(RateLimitedError) as ei:
        await gw.acomplete("chat", user("r4"), virtual_key=key)
    assert ei.value.retry_after and 0 < ei.value.retry_after <= 20
    assert "rpm 3" in str(ei.value)
    other, _ = await gw.keys.create("r2")
    await gw.acomplete("chat", user("another key is not limited"), virtual_key=other)
    assert (await outcomes(gw))[-2:] == ["rate_limited", "ok"]
    await gw.aclose()


async def test_cache_hit_costs_nothing_and_records_the_saving(mock, tmp_path):
    gw = make(mock, "g-save", tmp_path, governance={}, cache=True)
    key, rec = await gw.keys.create("c", team="t")
    first = await gw.acomplete("chat", user("cache me"), virtual_key=key)
    hit = await gw.acomplete("chat", user("cache me"), virtual_key=key)
    assert hit.cache is not None and hit.cost == 0
    (row,) = await gw.spend_report("key")
    assert row.group == rec.key_id and row.cost_usd == pytest.approx(first.cost)
    assert row.saved_usd == pytest.approx(first.cost)
    events = await gw.audit.query(limit=5)
    assert events[0].cache_tier == "l1" and events[0].cost == 0 and events[0].cost_saved == pytest.approx(first.cost)
    await gw.aclose()


async def test_one_audit_event_per_request_in_every_outcome(mock, tmp_path):
    gw = make(mock, "g-audit", tmp_path, governance={"rate_limits": [{"scope": "key", "rpm": 1000}]}, required=False)
    key, _ = await gw.keys.create("a")
    await gw.acomplete("chat", user("fine"), virtual_key=key)
    s = gw.astream("chat", user("stream fine"), virtual_key=key)
    async for _ in s:
        pass
    mock.fault("g-audit", kind="server_error", times=1)
    with pytest.raises(AllDeploymentsFailedError):
        await gw.acomplete("chat", user("broken"), virtual_key=key)
    mock.fault("g-audit", cut_after_chunks=3, times=1)
    with pytest.raises(StreamInterruptedError):
        async for _ in gw.astream("chat", user("cut"), virtual_key=key):
            pass
    s = gw.astream("chat", user("abandoned story"), virtual_key=key)
    async for _ in s:
        break
    await s.aclose()
    with pytest.raises(RouteNotFoundError):  # a bad request is audited too
        await gw.acomplete("nope", user("x"), virtual_key=key)
    await gw.acomplete("chat", user("anonymous but allowed"))
    events = list(reversed(await gw.audit.query(limit=100)))
    assert [(e.outcome, e.stream) for e in events] == [
        ("ok", False), ("ok", True), ("error", False), ("error", True), ("cancelled", True), ("error", False), ("ok", False),
    ]
    assert len({e.request_id for e in events}) == len(events)
    cut = events[3]
    assert cut.delivered_chunks >= 2 and cut.error_class == "StreamInterruptedError" and cut.cost > 0
    assert events[1].ttft_ms is not None and events[0].attempts[0].deployment == "p/gpt-4o-mini"
    assert (await gw.audit.verify()).ok
    await gw.aclose()


async def test_sync_twins_go_through_the_same_pipeline(mock, tmp_path):
    gw = make(mock, "g-sync", tmp_path, governance={"rate_limits": [{"scope": "key", "rpm": 2}]})
    key = gw._portal.call(gw.keys.create("s"))[0]
    gw.complete("chat", user("1"), virtual_key=key)
    assert "".join(c.content for c in gw.stream("chat", user("2"), virtual_key=key))
    with pytest.raises(RateLimitedError):
        gw.complete("chat", user("3"), virtual_key=key)
    assert gw._portal.call(outcomes(gw)) == ["ok", "ok", "rate_limited"]
    gw.close()


RACE = r"""
import asyncio, json, sys
from hyperion_core import Gateway, BudgetExceededError
cfg = json.loads(sys.argv[1]); key = sys.argv[2]; proc = sys.argv[3]
async def main():
    gw = Gateway(cfg)
    async def one(i):
        try:
            r = await gw.acomplete("chat", [{"role": "user", "content": f"race {proc} {i}"}], virtual_key=key, max_tokens=40)
            return ("ok", r.cost)
        except BudgetExceededError:
            return ("refused", 0.0)
    res = await asyncio.gather(*(one(i) for i in range(50)))
    await gw.aclose()
    print(json.dumps(res))
asyncio.run(main())
"""


async def test_budget_race_across_processes_never_exceeds_the_limit(mock, tmp_path, redis_url):
    prefix = f"race{uuid.uuid4().hex[:6]}"
    state = {"backend": "redis", "redis_url": redis_url, "prefix": prefix}
    # about 10 requests' worth: each costs ~ (12 prompt * 1.5e-7 + 40 out * 6e-7) worst case ~2.6e-5
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 0.00025}]}
    gw = make(mock, "g-race", tmp_path, governance=gov, state=state, keys_store="redis")
    key, rec = await gw.keys.create("racer", team="racers")
    cfg = gw.config.model_dump(mode="json")
    cfg["providers"]["p"]["api_key"] = "sk-provider-secret-123"
    cfg["audit"] = None
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", RACE, json.dumps(cfg), key, str(n),
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in range(4)
    ]
    results = []
    for p in procs:
        out, err = await p.communicate()
        assert p.returncode == 0, err.decode()[-2000:]
        results += json.loads(out)
    assert len(results) == 200
    ok = [c for o, c in results if o == "ok"]
    assert all(o in ("ok", "refused") for o, _ in results)
    assert 5 <= len(ok) <= 20  # about ten fit
    (status,) = [s for s in await gw.governance.status({"team": "racers"}) if s.scope == "team"]
    assert status.spent_usd <= 0.00025 + 1e-12
    assert status.spent_usd == pytest.approx(sum(ok), rel=1e-6)
    assert status.reserved_usd == 0
    await gw.aclose()


async def test_external_calls_are_admitted_settled_and_audited(mock, tmp_path):
    from hyperion_core import Usage

    gw = make(mock, "g-ext", tmp_path, governance={"budgets": [{"scope": "key", "period": "total", "limit_usd": 0.001}]})
    key, rec = await gw.keys.create("ext", team="lc")
    call = await gw.abegin_external(model="gpt-4o-mini", messages=user("hi from ChatOpenAI"), virtual_key=key, max_tokens=100)
    resp = await gw.aend_external(call, usage=Usage(prompt_tokens=1000, completion_tokens=500), content="hello")
    assert resp.cost == pytest.approx(1000 * 1.5e-7 + 500 * 6e-7)
    (row,) = await gw.spend_report("key")
    assert row.group == rec.key_id and row.cost_usd == pytest.approx(resp.cost)
    failing = await gw.abegin_external(model="gpt-4o-mini", messages=user("boom"), virtual_key=key, max_tokens=10)
    await gw.afail_external(failing, RuntimeError("upstream exploded"))
    with pytest.raises(BudgetExceededError):
        await gw.abegin_external(model="gpt-4o", messages=user("too pricey"), virtual_key=key, max_tokens=100_000)
    with pytest.raises(InvalidKeyError):
        await gw.abegin_external(model="gpt-4o-mini", messages=user("x"))
    events = list(reversed(await gw.audit.query(limit=10)))
    assert [e.outcome for e in events] == ["ok", "error", "budget_exceeded", "denied"]
    assert events[0].route == "external:gpt-4o-mini" and events[0].cost == pytest.approx(resp.cost)
    (status,) = await gw.governance.status({"key": rec.key_id})
    assert status.reserved_usd == 0  # the failed call's reservation was released
    await gw.aclose()


async def test_embeddings_are_governed_and_audited(mock, tmp_path):
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-x", "base_url": mock.base_url("g-emb", "openai")}},
        "routes": {"emb": {"kind": "embedding", "deployments": [{"model": "p/text-embedding-3-small"}]}},
        "keys": {"required": True, "store": "memory"},
        "governance": {"rate_limits": [{"scope": "key", "rpm": 2}]},
        "audit": {"sink": f"sqlite:///{tmp_path}/emb.db"},
    }
    gw = Gateway(cfg)
    key, rec = await gw.keys.create("e")
    r = await gw.aembed("emb", ["alpha", "beta"], virtual_key=key)
    assert len(r.vectors) == 2 and r.cost > 0
    await gw.aembed("emb", "gamma", virtual_key=key)
    with pytest.raises(RateLimitedError):
        await gw.aembed("emb", "delta", virtual_key=key)
    with pytest.raises(InvalidKeyError):
        await gw.aembed("emb", "no key")
    events = list(reversed(await gw.audit.query(limit=10)))
    assert [e.outcome for e in events] == ["ok", "ok", "rate_limited", "denied"]
    assert events[0].cost == pytest.approx(r.cost) and events[0].key_id == rec.key_id
    (row,) = await gw.spend_report("route")
    assert row.group == "emb" and row.requests == 2
    await gw.aclose()


async def test_rbac_on_spend_and_audit_reads(mock, tmp_path):
    gw = make(mock, "g-rbac", tmp_path, governance={}, required=True)
    ana, ana_rec = await gw.keys.create("ana", team="ml", roles=["member"])
    bob, bob_rec = await gw.keys.create("bob", team="ml", roles=["member"])
    eve, eve_rec = await gw.keys.create("eve", team="ads", roles=["member"])
    viewer, _ = await gw.keys.create("ml-viewer", team="ml", roles=["viewer"])
    admin, _ = await gw.keys.create("root", roles=["admin"])
    for k in (ana, bob, eve):
        await gw.acomplete("chat", user("hi"), virtual_key=k)
    assert {r.group for r in await gw.spend_for(ana)} == {ana_rec.key_id}
    assert {r.group for r in await gw.spend_for(viewer)} == {ana_rec.key_id, bob_rec.key_id}
    assert {r.group for r in await gw.spend_for(admin)} == {ana_rec.key_id, bob_rec.key_id, eve_rec.key_id}
    assert {e.key_id for e in await gw.audit_for(ana)} == {ana_rec.key_id}
    assert {e.team for e in await gw.audit_for(viewer)} == {"ml"}
    with pytest.raises(PermissionDeniedError, match="may read team 'ml' only"):
        await gw.audit_for(viewer, team="ads")
    with pytest.raises(PermissionDeniedError, match="its own audit rows only"):
        await gw.audit_for(ana, key_id=eve_rec.key_id)
    assert len(await gw.audit_for(admin)) == 3
    with pytest.raises(PermissionDeniedError, match="lacks permission 'call'"):
        await gw.acomplete("chat", user("viewers read, they do not call"), virtual_key=viewer)
    await gw.aclose()


async def test_redis_admission_is_one_round_trip_and_revocation_is_still_immediate(mock, tmp_path, redis_url):
    state = {"backend": "redis", "redis_url": redis_url, "prefix": f"rt{uuid.uuid4().hex[:6]}"}
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 10}], "rate_limits": [{"scope": "key", "rpm": 1000}]}
    gw = make(mock, "g-rtt", tmp_path, governance=gov, state=state, keys_store="redis")
    key, rec = await gw.keys.create("rt", team="fast")
    await gw.acomplete("chat", user("warm the key"), virtual_key=key)  # cold: the record is read once
    trips = []
    client = gw.services.client()
    real_cmd = client.execute_command
    conn_cls = client.connection_pool.connection_class
    real_send = conn_cls.send_packed_command

    async def counted_cmd(*args, **kw):
        trips.append(args[0])
        return await real_cmd(*args, **kw)

    async def counted_send(self, command, *a, **kw):  # every write to Redis, whoever builds it
        trips.append("WRITE")
        return await real_send(self, command, *a, **kw)

    from hyperion_core.pipeline import EXTERNAL
    from hyperion_core.types import Caller, ChatRequest

    client.execute_command = counted_cmd
    conn_cls.send_packed_command = counted_send
    try:  # the Authorize and Admit stages alone (as for a call made outside the gateway)
        ctx = gw.pipeline.context(ChatRequest("chat", user("x"), caller=Caller(virtual_key=key), max_tokens=20), EXTERNAL)
        ctx.priced = [(d.adapter.target.price, d.adapter.target.model) for d in gw.route("chat").deployments]
        await gw.pipeline.enter(ctx)
        assert trips == ["WRITE"]  # key check + rate limit + budget reservation: one write, one round trip
    finally:
        client.execute_command, conn_cls.send_packed_command = real_cmd, real_send
    assert ctx.admission.subjects.team == "fast"
    await gw.governance.release(ctx.admission)

    await gw.keys.revoke(rec.key_id)  # e.g. from another process
    with pytest.raises(KeyRevokedError):
        await gw.acomplete("chat", user("after revoke"), virtual_key=key)
    (status,) = [s for s in await gw.governance.status({"team": "fast"}) if s.scope == "team"]
    assert status.reserved_usd == 0  # the refused request's reservation was given back
    await gw.aclose()


async def test_a_small_budget_admits_calls_without_max_tokens_under_the_route_default_cap(mock, tmp_path):
    """Field trial: with no max_tokens a call reserved gpt-4o-mini's whole 16,384-token output window,
    so a $0.005 daily budget refused the first call at $0 spent. A route's default_max_tokens is
    sent upstream (the reservation is still a true worst case) and is all that is reserved."""
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 0.005}]}
    gw = make(mock, "g-cap", tmp_path, governance=gov)
    key, _ = await gw.keys.create("c", team="small")
    with pytest.raises(BudgetExceededError) as exc:  # today's behaviour without a route default...
        await gw.acomplete("chat", user("hello"), virtual_key=key)
    msg = str(exc.value)  # ...but the refusal now says why and what to do
    assert "16,384 tokens" in msg and "pass max_tokens" in msg and "default_max_tokens on route 'chat'" in msg
    assert (await gw.acomplete("chat", user("hello"), virtual_key=key, max_tokens=200)).content
    await gw.aclose()

    mock.reset()
    capped = make(mock, "g-cap2", tmp_path, governance=gov, route={"default_max_tokens": 3})
    key, _ = await capped.keys.create("c", team="small")
    mock.script("tell me everything", content="one two three four five six seven eight nine ten")
    resp = await capped.acomplete("chat", user("tell me everything"), virtual_key=key)
    # enforced upstream (the mock keeps max_tokens words): the reservation is a real worst case
    assert (resp.content, resp.finish_reason, resp.usage.completion_tokens) == ("one two three", "length", 3)
    assert (await capped.acomplete("chat", user("tell me everything"), virtual_key=key, max_tokens=5)).content == (
        "one two three four five"  # a request's own max_tokens wins
    )
    (st,) = await capped.governance.status({"team": "small"})
    assert st.reserved_usd == 0 and 0 < st.spent_usd < 0.005
    await capped.aclose()


async def test_every_output_size_parameter_counts_in_the_reservation(mock, tmp_path):
    """max_completion_tokens (and n answers) reserve their whole size, whatever max_tokens says."""
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 0.01}]}
    gw = make(mock, "g-mct", tmp_path, governance=gov)
    key, _ = await gw.keys.create("m", team="t")
    # gpt-4o-mini output: $0.60 / Mtok -> 100,000 tokens = $0.06 > $0.01
    with pytest.raises(BudgetExceededError):
        await gw.acomplete("chat", user("hi"), virtual_key=key, max_tokens=1, max_completion_tokens=100_000)
    with pytest.raises(BudgetExceededError):  # 20 answers of 1,000 tokens = $0.012
        await gw.acomplete("chat", user("hi"), virtual_key=key, max_tokens=1000, n=20)
    (st,) = await gw.governance.status({"team": "t"})
    assert (st.spent_usd, st.reserved_usd) == (0, 0)
    await gw.aclose()


def test_default_max_tokens_must_be_a_positive_token_count():
    from hyperion_core import ConfigError

    for bad in (0, -5, "lots"):
        cfg = {"providers": {"p": {"kind": "openai", "api_key": "k"}},
               "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "default_max_tokens": bad}}}
        with pytest.raises(ConfigError, match="routes.chat.default_max_tokens"):
            Gateway(cfg)


async def test_four_hundred_concurrent_requests_on_redis_state_all_succeed(mock, tmp_path, redis_url):
    """redis-py's default pool fails every request past the 100th in a burst ("Too many connections"):
    the shared pool is bounded (state.max_connections) and requests wait for a free connection."""
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 100.0}],
           "rate_limits": [{"scope": "key", "rpm": 100_000}]}
    state = {"backend": "redis", "redis_url": redis_url, "prefix": f"c400{uuid.uuid4().hex[:8]}", "max_connections": 16}
    gw = make(mock, "g-400", tmp_path, governance=gov, state=state, keys_store="redis")
    key, rec = await gw.keys.create("burst", team="wide")
    results = await asyncio.gather(
        *(gw.acomplete("chat", user(f"burst {i}"), virtual_key=key, max_tokens=5) for i in range(400)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [], errors[:3]
    (st,) = await gw.governance.status({"team": "wide"})
    assert st.reserved_usd == 0
    assert st.spent_usd == pytest.approx(sum(r.cost for r in results), abs=1e-6)
    await gw.audit.aflush()
    assert (await outcomes(gw)).count("ok") == 400
    pool = gw.services.client().connection_pool
    assert pool.max_connections == 16
    await gw.aclose()


async def test_calls_sharing_one_request_id_are_each_reserved_and_billed(mock, tmp_path):
    """Field trial: 20 concurrent calls with one caller-chosen request_id shared one reservation and one
    was billed. Each admitted call holds and settles its own reservation."""
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 10.0}]}
    gw = make(mock, "g-same-id", tmp_path, governance=gov)
    key, _ = await gw.keys.create("s", team="same")

    async def call(i: int):
        req = gw.request("chat", user(f"same id {i}"), virtual_key=key, max_tokens=5)
        req.request_id = "caller-chosen-id"
        return await gw.acomplete(req)

    results = await asyncio.gather(*(call(i) for i in range(20)))
    (st,) = await gw.governance.status({"team": "same"})
    assert st.reserved_usd == 0
    assert st.spent_usd == pytest.approx(sum(r.cost for r in results), abs=1e-9) and all(r.cost > 0 for r in results)
    (row,) = await gw.governance.spend_report("team")
    assert row.requests == 20
    await gw.aclose()


async def test_a_stream_the_caller_closes_is_billed_for_what_was_generated(mock, tmp_path):
    """Field trial: 50 streams read to their last chunk and then aclose()d recorded $0.00 of $3.05
    generated. A closed stream is billed: the provider's usage when it arrived, else the prompt and
    every token delivered."""
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 10.0}]}
    gw = make(mock, "g-close", tmp_path, governance=gov)
    key, _ = await gw.keys.create("c", team="closers")
    price = gw.route("chat").deployments[0].adapter.target.price
    # 1) read to the last chunk (the one with usage), then close instead of reading on to the end
    full = await gw.acomplete("chat", user("tell me a long story about closing"), max_tokens=40, virtual_key=key)
    s = gw.astream("chat", user("tell me a long story about closing"), virtual_key=key, max_tokens=40)
    got = []
    while True:
        chunk = await s.__anext__()
        got.append(chunk)
        if chunk.usage is not None:
            break
    await s.aclose()
    (st,) = await gw.governance.status({"team": "closers"})
    assert st.reserved_usd == 0 and st.spent_usd == pytest.approx(2 * full.cost, rel=1e-9)  # the provider's usage
    # 2) closed after three chunks, before any usage arrived: prompt + delivered tokens, estimated
    s = gw.astream("chat", user("tell me a long story about leaving early"), virtual_key=key, max_tokens=40)
    delivered = [await s.__anext__() for _ in range(3)]
    await s.aclose()
    (st2,) = await gw.governance.status({"team": "closers"})
    charged = st2.spent_usd - st.spent_usd
    assert st2.reserved_usd == 0
    assert charged >= price.cost(Usage(prompt_tokens=5, completion_tokens=3)) and charged < full.cost
    events = list(reversed(await gw.audit.query(limit=10)))[-2:]
    assert [e.outcome for e in events] == ["cancelled", "cancelled"]
    assert events[0].cost == pytest.approx(full.cost, rel=1e-9) and events[1].cost == pytest.approx(charged, rel=1e-6)
    assert events[1].completion_tokens >= len(delivered) and events[1].prompt_tokens > 0
    await gw.aclose()


async def test_a_cut_stream_is_billed_for_its_prompt_too(mock, tmp_path):
    gw = make(mock, "g-cutbill", tmp_path, governance={"budgets": [{"scope": "team", "period": "daily", "limit_usd": 5}]})
    key, _ = await gw.keys.create("k", team="cuts")
    mock.fault("g-cutbill", cut_after_chunks=3, times=1)
    with pytest.raises(StreamInterruptedError) as exc:
        async for _ in gw.astream("chat", user("a story that will be cut short by the network"), virtual_key=key):
            pass
    assert exc.value.usage.prompt_tokens > 0 and exc.value.usage.completion_tokens >= 2
    (st,) = await gw.governance.status({"team": "cuts"})
    assert st.spent_usd == pytest.approx(exc.value.cost) and st.reserved_usd == 0
    await gw.aclose()


async def test_extra_parameters_cannot_change_the_model_or_slip_past_the_route(mock, tmp_path):
    """Field trial: model="o1-pro" on a gpt-4o-mini route asked the upstream for o1-pro and billed it at
    the route's price; any other key went to the provider as it was."""
    gw = make(mock, "g-extra", tmp_path, governance={"budgets": [{"scope": "team", "period": "daily", "limit_usd": 1}]},
              route={"allow_params": ["safe_prompt"]})
    key, _ = await gw.keys.create("x", team="x")
    with pytest.raises(InvalidRequestError, match="model: the route's deployments choose the model"):
        await gw.acomplete("chat", user("hi"), virtual_key=key, model="o1-pro")
    with pytest.raises(InvalidRequestError, match=r"unknown request parameter 'temprature' \(did you mean 'temperature'\?\)"):
        await gw.acomplete("chat", user("hi"), virtual_key=key, temprature=0.2)
    ok = await gw.acomplete("chat", user("hi"), virtual_key=key, logprobs=True, max_completion_tokens=20)
    assert ok.model == "gpt-4o-mini"
    with pytest.raises(InvalidRequestError, match="unknown request parameter 'safe_prompt'"):
        await gw.acomplete("other", user("hi"), virtual_key=key, safe_prompt=True)  # allowed on "chat" only
    events = list(reversed(await gw.audit.query(limit=10)))
    assert [(e.outcome, e.error_class) for e in events] == [  # refused requests are audited too
        ("error", "InvalidRequestError"), ("error", "InvalidRequestError"), ("ok", None), ("error", "InvalidRequestError"),
    ]
    await gw.aclose()


async def test_thinking_budgets_and_candidate_counts_count_in_the_reservation(mock, tmp_path):
    """reasoning_effort / thinking budgets are output tokens on top of the answer, and n or
    candidateCount answers each reserve their share: a $0.005 budget refuses what it could not pay."""
    gw = make(mock, "g-think", tmp_path, governance={"budgets": [{"scope": "team", "period": "daily", "limit_usd": 0.005}]})
    key, _ = await gw.keys.create("t", team="thinkers")
    # gpt-4o-mini output $0.60/Mtok: 100 tokens ≈ $0.00006 fits; + a 16,384-token "high" budget ≈ $0.0099 does not
    assert (await gw.acomplete("chat", user("hi"), virtual_key=key, max_tokens=100)).content
    with pytest.raises(BudgetExceededError):
        await gw.acomplete("chat", user("hi"), virtual_key=key, max_tokens=100, reasoning_effort="high")
    with pytest.raises(BudgetExceededError):
        await gw.acomplete("chat", user("hi"), virtual_key=key, max_tokens=100, thinking={"type": "enabled", "budget_tokens": 20_000})
    with pytest.raises(BudgetExceededError):  # 100 answers of 100 tokens
        await gw.acomplete("chat", user("hi"), virtual_key=key, max_tokens=100, candidateCount=100)
    (st,) = await gw.governance.status({"team": "thinkers"})
    assert st.reserved_usd == 0
    await gw.aclose()


async def test_the_reservation_covers_the_providers_own_prompt_count(mock, tmp_path):
    """Field trial: prompts were estimated at chars/4 — one the provider counted as 2,003 tokens was
    reserved as 1,011. The reservation now counts with the model's tokenizer (OpenAI) or a byte bound."""
    from hyperion_core.tokens import encoding_for

    gw = make(mock, "g-count", tmp_path, governance={"budgets": [{"scope": "team", "period": "daily", "limit_usd": 5}]})
    key, _ = await gw.keys.create("c", team="count")
    digits = " ".join(str(i * 7919 % 100_003) for i in range(1500))
    msgs = user(digits)
    exact = len(encoding_for("gpt-4o-mini").encode(digits)) + 7
    assert len(digits) // 4 < exact * 0.6  # what the old estimate would have reserved for
    call = await gw.abegin_external(model="gpt-4o-mini", messages=msgs, max_tokens=1, virtual_key=key)
    price = gw.route("chat").deployments[0].adapter.target.price
    assert call.ticket.admission.reservation.amount_usd >= price.estimate(exact, 1)
    await gw.afail_external(call, RuntimeError("not sent"))
    (st,) = await gw.governance.status({"team": "count"})
    assert st.reserved_usd == 0
    await gw.aclose()



@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_stream_longer_than_the_reservation_ttl_keeps_its_hold(mock, tmp_path, redis_url, backend):
    """Issue 11 #5: a stream that outlived reservation_ttl_s lost its hold and others were admitted into
    its money. A reservation now lasts the request's whole lifetime (its deadline + a margin)."""
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 0.0006}], "reservation_ttl_s": 1.0}
    state = {"backend": "redis", "redis_url": redis_url, "prefix": f"hold{uuid.uuid4().hex[:6]}"} if backend == "redis" else None
    gw = make(mock, f"g-hold-{backend}", tmp_path, governance=gov, state=state, route={"timeout": 60})
    key, _ = await gw.keys.create("h", team="long")
    mock.fault(f"g-hold-{backend}", chunk_delay_ms=100, times=1)  # a slow stream: seconds long
    s = gw.astream("chat", user("a long story " * 5), virtual_key=key, max_tokens=600)  # holds ~$0.00037
    await s.__anext__()
    (st,) = await gw.governance.status({"team": "long"})
    held = st.reserved_usd
    assert 0.0003 < held < 0.0006  # more than half the budget is held by the running stream
    await asyncio.sleep(1.5)  # longer than reservation_ttl_s
    (st,) = await gw.governance.status({"team": "long"})
    assert st.reserved_usd == pytest.approx(held)  # still held while the stream runs
    with pytest.raises(BudgetExceededError):  # nobody is admitted into its money
        await gw.acomplete("chat", user("squeeze in"), virtual_key=key, max_tokens=600)
    await s.aclose()
    (st,) = await gw.governance.status({"team": "long"})
    assert st.reserved_usd == 0 and st.spent_usd > 0
    await gw.aclose()


@pytest.mark.parametrize(
    ("reported", "note"),
    [
        ({}, "estimated"),  # no usage at all: it used to bill $0
        ({"prompt_tokens": -5, "completion_tokens": 7, "total_tokens": 2}, "estimated: the upstream's usage was invalid"),
        ({"prompt_tokens": 10, "completion_tokens": 2**63, "total_tokens": 2**63}, "estimated: the upstream's usage was invalid"),
        ({"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 500}}, "clamped"),
    ],
)
async def test_upstream_usage_that_is_missing_or_nonsense_is_never_billed_as_given(mock, tmp_path, reported, note):
    """Issue 11 #8: missing usage billed $0, negative counts were stored, 2^63 tokens poisoned spend, and
    cached_tokens > prompt_tokens was priced as given. Usage is checked at the Call stage."""
    dep = f"g-usage-{len(reported)}-{note[:9].strip()}"
    gw = make(mock, dep, tmp_path, governance={"budgets": [{"scope": "team", "period": "daily", "limit_usd": 5}]})
    key, _ = await gw.keys.create("u", team="usage")
    mock.fault(dep, usage=reported, times=1)
    resp = await gw.acomplete("chat", user("how many tokens did this cost?"), virtual_key=key)
    u = resp.usage
    assert 0 < u.prompt_tokens < 1000 and 0 < u.completion_tokens < 1000
    assert u.cached_prompt_tokens <= u.prompt_tokens and resp.cost > 0
    (st,) = await gw.governance.status({"team": "usage"})
    assert st.spent_usd == pytest.approx(resp.cost) and st.reserved_usd == 0
    await gw.audit.aflush()
    (event,) = await gw.audit.query(limit=1)
    assert event.metadata.get("usage") == note and event.cost == pytest.approx(resp.cost)
    await gw.aclose()


async def test_connections_the_server_closed_are_replaced_without_failing_a_request(mock, tmp_path, redis_url):
    """After a Redis restart (or a proxy dropping idle connections) every pooled connection is dead; each
    used to fail its next request once. A command that meets a closed connection is sent again on a
    fresh one."""
    import redis.asyncio as aioredis

    state = {"backend": "redis", "redis_url": redis_url, "prefix": f"ck{uuid.uuid4().hex[:6]}"}
    gov = {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 5}], "rate_limits": [{"scope": "key", "rpm": 10_000}]}
    gw = make(mock, "g-kill", tmp_path, governance=gov, state=state, keys_store="redis")
    key, _ = await gw.keys.create("k", team="killed")
    await asyncio.gather(*(gw.acomplete("chat", user(f"warm {i}"), virtual_key=key, max_tokens=5) for i in range(12)))
    admin = aioredis.Redis.from_url(redis_url)
    killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await admin.aclose()
    assert killed >= 2  # the gateway's pooled connections (and the mock's neighbours') are gone
    results = await asyncio.gather(
        *(gw.acomplete("chat", user(f"after {i}"), virtual_key=key, max_tokens=5) for i in range(12)),
        return_exceptions=True,
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    (st,) = await gw.governance.status({"team": "killed"})
    assert st.reserved_usd == 0
    await gw.aclose()
