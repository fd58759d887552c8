"""Failover under chaos (issue 12): each defect reproduced against the mock provider over real HTTP.

No assertion depends on timing beyond generous upper bounds; breaker cooldowns run on a ManualClock.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from hyperion_core import Gateway, ManualClock, StreamInterruptedError
from hyperion_core.mock_provider.content import answer_for
from hyperion_core.streaming import splice

WIRES = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}


def make_gateway(mock, deployments: list[tuple[str, str]], clock=None, **route) -> Gateway:
    """deployments: (mock deployment name, wire) in priority order; all on the mock's one host:port."""
    providers = {d: {"kind": w, "api_key": "sk-test", "base_url": mock.base_url(d, w)} for d, w in deployments}
    route.setdefault("retry", {"attempts": 1, "backoff_base": 0.0})
    deps = [{"model": f"{d}/{WIRES[w]}", "name": d} for d, w in deployments]
    return Gateway({"providers": providers, "routes": {"chat": {"deployments": deps, **route}}}, clock=clock)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _requests(mock, dep: str) -> int:
    return mock.stats().get(dep, {}).get("requests", 0)


async def _text(stream) -> str:
    return "".join([c.content async for c in stream])


# -- 1. a stream's breaker outcome is decided when it ends ------------------------------------


@pytest.mark.parametrize("fault", [{"stall_after_chunks": 2}, {"cut_after_chunks": 2}], ids=["stall", "cut"])
async def test_streams_that_fail_after_their_first_chunk_open_the_breaker(mock, fault):
    clock = ManualClock()
    gw = make_gateway(mock, [("p1", "openai"), ("b1", "openai")], clock=clock, stream_resume=True,
                      stream_idle_timeout=0.5, retry={"attempts": 0}, breaker={"failure_threshold": 2, "cooldown": 30})
    mock.fault("p1", **fault)
    for i in range(5):
        stream = gw.astream("chat", user(f"story {i}"))
        assert await _text(stream) == answer_for(f"story {i}")
        assert stream.response.finish_reason == "stop"
    assert _requests(mock, "p1") == 2  # two failed streams open it; the next three skip it
    assert gw.health()["chat"]["p1"]["state"] == "open"
    assert gw.health()["chat"]["b1"]["state"] == "closed"
    await gw.aclose()


async def test_a_stream_that_ends_well_closes_a_half_open_breaker_only_then(mock):
    clock = ManualClock()
    gw = make_gateway(mock, [("p1h", "openai"), ("b1h", "openai")], clock=clock, stream_resume=True,
                      stream_idle_timeout=0.5, retry={"attempts": 0}, breaker={"failure_threshold": 1, "cooldown": 10})
    mock.fault("p1h", stall_after_chunks=1, times=1)
    assert await _text(gw.astream("chat", user("a"))) == answer_for("a")
    assert gw.health()["chat"]["p1h"]["state"] == "open"
    clock.advance(10)
    mock.fault("p1h", stall_after_chunks=1, times=1)
    stream = gw.astream("chat", user("b"))
    first = await stream.__anext__()  # the probe stream has opened ...
    assert first.content and gw.health()["chat"]["p1h"]["state"] == "half_open"  # ... not yet decided
    rest = await _text(stream)
    assert first.content + rest == answer_for("b") and stream.response.resumed_by == ("b1h",)
    assert gw.health()["chat"]["p1h"]["state"] == "open"  # the probe stalled: open again
    clock.advance(10)
    stream = gw.astream("chat", user("c"))
    assert await _text(stream) == answer_for("c") and stream.response.deployment == "p1h"
    assert gw.health()["chat"]["p1h"]["state"] == "closed"
    await gw.aclose()


# -- 2. a finished stream that loses only its trailer is complete ------------------------------


@pytest.mark.parametrize("wire", list(WIRES))
@pytest.mark.parametrize("resume", [True, False])
async def test_connection_dropped_after_the_finish_reason_is_a_complete_answer(mock, wire, resume, caplog):
    gw = make_gateway(mock, [(f"fin-{wire}", wire), ("fin-backup", "openai")], stream_resume=resume)
    mock.fault(f"fin-{wire}", drop_after_finish=True)
    stream = gw.astream("chat", user("finish me"))
    assert await _text(stream) == answer_for("finish me")  # nothing appended, nothing raised
    r = stream.response
    assert r.finish_reason == "stop" and r.resumed_by == () and r.deployment == f"fin-{wire}"
    assert r.usage.completion_tokens >= len(answer_for("finish me").split())
    assert _requests(mock, "fin-backup") == 0
    assert gw.health()["chat"][f"fin-{wire}"]["failures"] == 0
    if wire != "gemini":  # Gemini's finish frame is its terminal event: nothing was lost
        assert any("trailer" in rec.getMessage() for rec in caplog.records)
    await gw.aclose()


# -- 3. an empty 200 is malformed and fails over -----------------------------------------------


@pytest.mark.parametrize("wire", list(WIRES))
@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_empty_200_fails_over(mock, wire, streamed):
    gw = make_gateway(mock, [(f"empty-{wire}", wire), ("full", "openai")], retry={"attempts": 0})
    mock.fault(f"empty-{wire}", empty=True)
    if streamed:
        stream = gw.astream("chat", user("say something"))
        text, r = await _text(stream), stream.response
    else:
        r = await gw.acomplete("chat", user("say something"))
        text = r.content
    assert text == answer_for("say something") and r.deployment == "full" and r.finish_reason == "stop"
    assert r.attempts[0].error_class in ("MalformedResponseError", "StreamCutError")
    await gw.aclose()


# -- 4. a timeout fails over first -------------------------------------------------------------


async def test_timeout_fails_over_before_retrying_the_same_deployment(mock):
    gw = make_gateway(mock, [("slow4", "openai"), ("fast4", "anthropic")], attempt_timeout=1.0,
                      retry={"attempts": 2, "backoff_base": 0})
    mock.fault("slow4", hang=True)
    r = await gw.acomplete("chat", user("hurry"))
    assert r.deployment == "fast4" and [a.deployment for a in r.attempts] == ["slow4", "fast4"]
    assert _requests(mock, "slow4") == 1
    await gw.aclose()


async def test_timeout_is_retried_on_the_last_deployment(mock):
    gw = make_gateway(mock, [("solo4", "openai")], attempt_timeout=1.0, retry={"attempts": 1, "backoff_base": 0})
    mock.fault("solo4", hang=True, times=1)
    r = await gw.acomplete("chat", user("again"))
    assert r.deployment == "solo4" and [a.error_class for a in r.attempts] == ["ProviderTimeoutError", None]
    await gw.aclose()


# -- 5. a retry re-checks the breaker after its backoff ----------------------------------------


class _BreakerOpensDuringBackoff(ManualClock):
    """Another request opens the breaker while this one sleeps before its retry."""

    def __init__(self) -> None:
        super().__init__()
        self.gw = None

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        ds = next(d for d in self.gw._routes["chat"].deployments if d.name == "p5")
        for _ in range(5):
            ds.breaker.on_failure(self.now())


async def test_retry_after_backoff_skips_a_breaker_that_opened_meanwhile(mock):
    clock = _BreakerOpensDuringBackoff()
    gw = make_gateway(mock, [("p5", "openai"), ("b5", "gemini")], clock=clock,
                      retry={"attempts": 2, "backoff_base": 0.1}, breaker={"failure_threshold": 5})
    clock.gw = gw
    mock.fault("p5", kind="unavailable")
    r = await gw.acomplete("chat", user("q5"))
    assert r.deployment == "b5" and [a.deployment for a in r.attempts] == ["p5", "b5"]
    assert _requests(mock, "p5") == 1
    await gw.aclose()


# -- 6. every 429 with Retry-After cools down exactly that long -------------------------------


async def test_every_retry_after_cools_down_for_exactly_that_long(mock):
    clock = ManualClock()
    gw = make_gateway(mock, [("rl6", "openai"), ("ok6", "anthropic")], clock=clock,
                      breaker={"failure_threshold": 2, "cooldown": 30})
    mock.fault("rl6", kind="rate_limit", retry_after=20)
    for i in range(3):
        r = await gw.acomplete("chat", user(f"q{i}"))
        assert r.deployment == "ok6" and r.attempts[0].status == 429
        h = gw.health()["chat"]["rl6"]
        assert h["state"] == "open" and h["open_for"] == pytest.approx(20) and h["failures"] == 0
        clock.advance(20)
    assert _requests(mock, "rl6") == 3  # one call per Retry-After window
    mock.clear_faults("rl6")
    r = await gw.acomplete("chat", user("recovered"))
    assert r.deployment == "rl6" and gw.health()["chat"]["rl6"]["state"] == "closed"
    await gw.aclose()


# -- 7. a late success never closes an open breaker; the failure-rate breaker -----------------


async def test_late_success_does_not_close_an_open_breaker(mock):
    clock = ManualClock()
    gw = make_gateway(mock, [("p7", "openai"), ("b7", "openai")], clock=clock, retry={"attempts": 0},
                      breaker={"failure_threshold": 2, "cooldown": 30})
    mock.fault("p7", latency_ms=2000, times=1)  # the first request is slow but succeeds
    mock.fault("p7", kind="server_error")
    slow = asyncio.ensure_future(gw.acomplete("chat", user("slow")))
    deadline = time.monotonic() + 10
    while _requests(mock, "p7") < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for i in range(2):
        assert (await gw.acomplete("chat", user(f"fail {i}"))).deployment == "b7"
    assert gw.health()["chat"]["p7"]["state"] == "open"
    assert (await slow).deployment == "p7"  # succeeded after the breaker opened ...
    assert gw.health()["chat"]["p7"]["state"] == "open"  # ... and did not close it
    await gw.aclose()


async def test_failure_rate_breaker_trips_on_half_failing_deployment(mock):
    clock = ManualClock()
    gw = make_gateway(mock, [("p7r", "openai"), ("b7r", "anthropic")], clock=clock, retry={"attempts": 0},
                      breaker={"failure_threshold": 5, "cooldown": 30, "failure_rate": 0.3, "min_calls": 10,
                               "window": 60})
    mock.fault("p7r", kind="server_error", probability=0.5, seed=7)
    for i in range(60):
        r = await gw.acomplete("chat", user(f"r{i}"))
        assert r.content == answer_for(f"r{i}")
    assert gw.health()["chat"]["p7r"]["state"] == "open"
    assert _requests(mock, "p7r") <= 20  # without it, a consecutive-failures breaker lets all 60 through
    await gw.aclose()


# -- 8. idle timeout in line with the first-token timeout; a total stream deadline -------------


async def test_stalled_stream_uses_the_first_token_timeout_by_default(mock):
    gw = make_gateway(mock, [("stall8", "openai")], first_token_timeout=1.0)
    mock.fault("stall8", stall_after_chunks=2, hang_s=30)
    t0 = time.perf_counter()
    with pytest.raises(StreamInterruptedError):
        await _text(gw.astream("chat", user("stall")))
    assert time.perf_counter() - t0 < 20  # not the old 60 s default
    await gw.aclose()


async def test_total_deadline_applies_after_the_stream_opened(mock):
    gw = make_gateway(mock, [("drip8", "openai")], timeout=2.0, stream_idle_timeout=5)
    mock.fault("drip8", chunk_delay_ms=400)  # ~25 chunks, each within the idle timeout: ~10 s in all
    t0 = time.perf_counter()
    with pytest.raises(StreamInterruptedError, match="deadline"):
        await _text(gw.astream("chat", user("a slow but steady story")))
    assert time.perf_counter() - t0 < 8
    await gw.aclose()


# -- 9. a cut connection never goes back to the pool ------------------------------------------


@pytest.mark.parametrize("fault", [{"cut_after_chunks": 3}, {"drop_after_finish": True}, {"eof_after_chunks": 3},
                                   {"stall_after_chunks": 3, "hang_s": 1.0}], ids=["cut", "drop", "eof", "stall"])
async def test_cut_connections_are_not_reused_when_both_deployments_share_a_port(mock, fault):
    gw = make_gateway(mock, [("p9", "openai"), ("b9", "openai")], stream_resume=True, stream_idle_timeout=0.5,
                      breaker={"enabled": False})
    assert mock.base_url("p9").split("/")[2] == mock.base_url("b9").split("/")[2]
    mock.fault("p9", **fault)

    async def one(i: int) -> str:
        stream = gw.astream("chat", user(f"pool {i}"))
        text = await _text(stream)
        assert text == answer_for(f"pool {i}"), (i, stream.response.attempts)
        return stream.response

    results = []
    for _ in range(3):
        results += await asyncio.gather(*(one(i) for i in range(8)))
        await asyncio.sleep(0.2)  # let the server close what it drops
    errors = [a for r in results for a in r.attempts if a.deployment == "b9" and a.outcome == "error"]
    assert errors == []
    await gw.aclose()


# -- 10. the resume seam -----------------------------------------------------------------------

SEAM_TEXT = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps aloud "
    "so that the silence would not settle on him. At the top he trimmed the wick, polished the great "
    "lens until it threw the last of the daylight back at the sea, and wrote three lines in the log: "
    "the wind, the swell, and the ships he had seen pass."
)


def test_splice_trims_the_longest_overlap():
    assert splice("the quick brown", " brown fox") == " fox"
    assert splice("the quick brown ", "brown fox") == "fox"
    assert splice("the quick brown", " fox") == " fox"
    assert splice("the quick", " quick brown fox") == " brown fox"
    assert splice("a b c", "") == ""
    assert splice("ends with a", " apple") == " apple"  # a one-letter coincidence is not an overlap


@pytest.mark.parametrize("overlap", [0, 1, 3])
async def test_resume_seam_joins_exactly(mock, overlap):
    mock.script("lighthouse", content=SEAM_TEXT)
    gw = make_gateway(mock, [("p10", "openai"), ("b10", "anthropic")], stream_resume=True, breaker={"enabled": False})
    if overlap:
        mock.fault("b10", resume_overlap=overlap)
    exact = 0
    cuts = (1, 5, 17, 33, 50)
    for n in cuts:
        mock.fault("p10", cut_after_chunks=n, times=1)
        stream = gw.astream("chat", user("tell me about the lighthouse"))
        text = await _text(stream)
        assert stream.response.resumed_by == ("b10",)
        exact += text == SEAM_TEXT
    assert exact == len(cuts)
    await gw.aclose()


# -- 11. cut and resumed streams count the cut attempt's prompt --------------------------------


async def test_resumed_stream_counts_both_prompts(mock):
    gw = make_gateway(mock, [("p11", "openai"), ("b11", "openai")], stream_resume=True)
    whole = await gw.acomplete("chat", user("count my prompt twice"))
    mock.fault("p11", cut_after_chunks=4)
    stream = gw.astream("chat", user("count my prompt twice"))
    assert await _text(stream) == whole.content
    r = stream.response
    assert r.usage.prompt_tokens > 2 * whole.usage.prompt_tokens - 1  # the cut attempt's prompt + the resume's
    assert r.usage.completion_tokens >= whole.usage.completion_tokens
    await gw.aclose()


# -- the litellm adapter follows the same rules ------------------------------------------------


@pytest.mark.parametrize("fault", ["drop_after_finish", "empty"])
async def test_litellm_adapter_lost_trailer_and_empty_answer(mock, fault):
    providers = {
        "ll": {"kind": "openai", "api_key": "sk-x", "base_url": mock.base_url("ll-p", "openai")},
        "nat": {"kind": "openai", "api_key": "sk-x", "base_url": mock.base_url("ll-b", "openai")},
    }
    deps = [{"model": "ll/gpt-4o-mini", "name": "ll-p", "adapter": "litellm"}, {"model": "nat/gpt-4o-mini", "name": "ll-b"}]
    gw = Gateway({"providers": providers, "routes": {"chat": {"deployments": deps, "stream_resume": True,
                                                              "retry": {"attempts": 0}}}})
    mock.fault("ll-p", **{fault: True})
    stream = gw.astream("chat", user("via litellm"))
    assert await _text(stream) == answer_for("via litellm")
    r = stream.response
    assert r.finish_reason == "stop" and r.resumed_by == ()
    assert r.deployment == ("ll-p" if fault == "drop_after_finish" else "ll-b")
    await gw.aclose()
