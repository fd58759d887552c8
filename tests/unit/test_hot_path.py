"""The hot path's cheaper mechanisms keep the behaviour of what they replace: the per-attempt deadline
(``deadline.timeout``, asyncio.timeout's semantics on shared slot timers) and the pipeline skipping
stage hooks that are the base class's no-op."""

from __future__ import annotations

import asyncio
import math
import sys

import pytest

from hyperion_core.deadline import timeout as _timeout
from hyperion_core.pipeline import CHAT, Pipeline, Stage
from hyperion_core.types import ChatRequest

needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="the one-handle deadline needs Task.uncancel")


# -- the per-attempt deadline -------------------------------------------------------------------


@needs_311
def test_deadline_past_raises_timeout_error_and_leaves_the_task_uncancelled():
    async def main() -> tuple[str, int]:
        try:
            async with _timeout(0):
                await asyncio.sleep(3600)
        except TimeoutError:
            task = asyncio.current_task()
            assert task is not None
            return "timeout", task.cancelling()
        return "finished", -1

    assert asyncio.run(main()) == ("timeout", 0)


@needs_311
def test_deadline_not_reached_returns_the_body_result_and_lets_go_of_the_task():
    from hyperion_core import deadline as D

    async def main() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        before = len(loop._scheduled)  # noqa: SLF001 - timers are what deadlines cost
        for _ in range(1000):  # a thousand sequential attempts share a handful of slot timers
            async with _timeout(3600):
                await asyncio.sleep(0)
                value = 42
        members = sum(len(m) for m in D._wheels[loop].slots.values())  # noqa: SLF001
        return value, members, len(loop._scheduled) - before  # noqa: SLF001

    value, members, timers = asyncio.run(main())
    assert (value, members) == (42, 0)  # nothing holds an ended body's task
    assert 1 <= timers <= 3


@needs_311
@pytest.mark.parametrize("delay", [0.003, 0.02, 0.2])
def test_deadline_fires_never_early_and_at_most_its_slot_late(delay: float):
    from hyperion_core import deadline as D

    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            async with _timeout(delay):
                await asyncio.sleep(3600)
        except TimeoutError:
            return loop.time() - t0
        return -1.0

    elapsed = asyncio.run(main())
    slot = max(2.0 ** (math.frexp(delay)[1] - D.SLOT_BITS), D.MIN_SLOT_S)
    assert elapsed >= delay - 1e-6
    # the timer is due at most one slot after the expiry; a busy loop may run it later still, but a
    # deadline never waits for a much later slot (e.g. a wrong exponent would double the delay)
    assert slot <= max(delay / 1000, D.MIN_SLOT_S) + 1e-12
    assert elapsed < delay * 2 + 0.05


@needs_311
def test_deadlines_in_many_slots_fire_each_its_own_task_only():
    async def body(delay: float, log: list[float]) -> str:
        try:
            async with _timeout(delay):
                await asyncio.sleep(3600)
        except TimeoutError:
            log.append(delay)
            return "timeout"
        return "finished"

    async def main() -> tuple[list[str], list[float], str]:
        log: list[float] = []
        tasks = [asyncio.create_task(body(d, log)) for d in (0.04, 0.01, 0.02, 0.01)]
        async with _timeout(3600):  # a live deadline in a far slot is left alone
            out = await asyncio.gather(*tasks)
        return out, log, "ok"

    out, log, far = asyncio.run(main())
    assert out == ["timeout"] * 4 and far == "ok"
    assert log == sorted(log)  # in order of their delays


@needs_311
def test_outer_cancellation_stays_a_cancellation():
    async def body(started: asyncio.Event) -> None:
        async with _timeout(3600):
            started.set()
            await asyncio.sleep(3600)

    async def main() -> bool:
        started = asyncio.Event()
        task = asyncio.create_task(body(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert asyncio.run(main()) is True


@needs_311
def test_outer_cancellation_racing_the_deadline_is_not_turned_into_a_timeout():
    async def body() -> None:
        task = asyncio.current_task()
        assert task is not None
        async with _timeout(0):  # expires on the next loop step ...
            task.cancel()  # ... and the caller cancels in the same step
            await asyncio.sleep(3600)

    async def main() -> str:
        task = asyncio.create_task(body())
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        except TimeoutError:
            return "timeout"
        return "finished"

    assert asyncio.run(main()) == "cancelled"


@needs_311
def test_body_errors_pass_through_the_deadline():
    async def main() -> None:
        async with _timeout(3600):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())


# -- stage hooks ----------------------------------------------------------------------------------


class _Log(Stage):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log


class _BeforeOnly(_Log):
    async def before(self, ctx):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.before")


class _AfterOnly(_Log):
    always = True

    async def after(self, ctx):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.after")


class _Refuse(_Log):
    async def before(self, ctx):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.before")
        raise PermissionError("refused")

    async def after(self, ctx):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.after")


def test_pipeline_runs_every_overridden_hook_in_order_and_marks_the_no_ops():
    log: list[str] = []
    late = _Log("late", log)

    async def instance_after(ctx):  # type: ignore[no-untyped-def]
        log.append("late.after (set on the instance)")

    late.after = instance_after  # type: ignore[method-assign]
    stages = [_BeforeOnly("a", log), _AfterOnly("b", log), late, _BeforeOnly("c", log)]
    pipe = Pipeline(stages, {})
    assert [(s.runs_before, s.runs_after) for s in stages] == [(True, False), (False, True), (False, True), (True, False)]

    ctx = asyncio.run(pipe.run(pipe.context(ChatRequest("r", [{"role": "user", "content": "hi"}]), CHAT)))
    assert ctx.next == 4 and ctx.done
    assert log == ["a.before", "c.before", "b.after", "late.after (set on the instance)"]


def test_pipeline_refusal_runs_afters_of_reached_and_always_stages_only():
    log: list[str] = []
    refuse, after_later = _Refuse("r", log), _Log("x", log)

    async def x_after(ctx):  # type: ignore[no-untyped-def]
        log.append("x.after")

    after_later.after = x_after  # type: ignore[method-assign]
    pipe = Pipeline([_BeforeOnly("a", log), refuse, after_later, _AfterOnly("audit", log)], {})
    ctx = pipe.context(ChatRequest("r", [{"role": "user", "content": "hi"}]), CHAT)
    with pytest.raises(PermissionError, match="refused"):
        asyncio.run(pipe.run(ctx))
    assert log == ["a.before", "r.before", "r.after", "audit.after"]  # x was not reached, audit always runs


# -- the audit event of an answered request ---------------------------------------------------------


def _resp(**kw):  # type: ignore[no-untyped-def]
    from hyperion_core.types import Attempt, ChatResponse, Usage

    base = dict(request_id="req-1", route="chat", deployment="d1", model="m", content="the answer hk-abc.s3cretsecret",
                tool_calls=(), finish_reason="stop", usage=Usage(5, 7), cost=0.25,
                attempts=(Attempt("d0", "error", 3.0, "ProviderTimeoutError", None), Attempt("d1", "ok", float("nan"))),
                latency_ms=12.5)
    base.update(kw)
    return ChatResponse(**base)


def test_audit_event_of_an_answer_without_metadata_or_content():
    from hyperion_core.audit import event_from_response
    from hyperion_core.audit.record import AuditAttempt
    from hyperion_core.types import Caller

    caller = Caller("hk-abc.s3cretsecret", "abc", "team1", "user1", (), {})
    ev = event_from_response(_resp(), caller, stream=False, store_content=False,
                             messages=[{"role": "user", "content": "hi"}], time=7.0)
    assert (ev.outcome, ev.time, ev.request_id, ev.key_id, ev.team, ev.user) == ("ok", 7.0, "req-1", "abc", "team1", "user1")
    assert (ev.prompt_tokens, ev.completion_tokens, ev.cost, ev.cost_saved, ev.latency_ms) == (5, 7, 0.25, 0.0, 12.5)
    assert ev.attempts == (AuditAttempt("d0", "error", "ProviderTimeoutError", None, 3.0), AuditAttempt("d1", "ok", None, None, 0.0))
    assert dict(ev.metadata) == {} and ev.prompt is None and ev.answer is None
    assert ev.to_dict()["metadata"] == {}


def test_audit_event_of_an_answer_scrubs_metadata_tags_and_content():
    from hyperion_core.audit import event_from_response
    from hyperion_core.types import Caller

    caller = Caller("hk-abc.s3cretsecret", "abc", "team1", "user1", ("blue", "x"), {"api_key": "k-1", "app": "demo"})
    ev = event_from_response(_resp(), caller, stream=True, store_content=True, delivered_chunks=3,
                             messages=[{"role": "user", "content": "my key is hk-abc.s3cretsecret"}],
                             metadata={"usage": "estimated"}, guardrails=["in:pii:EMAIL:redact:1"])
    assert dict(ev.metadata) == {"api_key": "[REDACTED]", "app": "demo", "tags": "blue,x", "usage": "estimated"}
    assert ev.prompt is not None and "s3cretsecret" not in ev.prompt and "[REDACTED]" in ev.prompt
    assert ev.answer is not None and "s3cretsecret" not in ev.answer and ev.answer.startswith("the answer")
    assert (ev.stream, ev.delivered_chunks, ev.guardrails) == (True, 3, ("in:pii:EMAIL:redact:1",))


# -- usage checked on every answer ---------------------------------------------------------------------


def test_checked_usage_keeps_valid_usage_as_given_up_to_the_bounds():
    from hyperion_core.tokens import PLAUSIBLE_TOKENS, checked_usage
    from hyperion_core.types import Usage

    req = ChatRequest("r", [{"role": "user", "content": "hi"}])
    edge = Usage(PLAUSIBLE_TOKENS, PLAUSIBLE_TOKENS, cached_prompt_tokens=PLAUSIBLE_TOKENS - 1, cache_write_tokens=1,
                 reasoning_tokens=PLAUSIBLE_TOKENS)
    assert checked_usage(edge, req, None, 10) == (edge, None)
    assert checked_usage(Usage(0, 0), req, None, 0) == (Usage(0, 0), None)
    # one past a bound, a float or a bool: never taken as given
    for bad in (Usage(PLAUSIBLE_TOKENS + 1, 1), Usage(3, 2, cached_prompt_tokens=2, cache_write_tokens=2),
                Usage(3, 2, reasoning_tokens=3), Usage(3.0, 2), Usage(True, 2)):  # type: ignore[arg-type]
        fixed, note = checked_usage(bad, req, None, 10)
        assert note is not None and fixed != bad, bad
