"""A live stream from the upstream to the caller: first-chunk failover, idle timeout, cut detection,
stream resume, and what every segment cost.

:class:`StreamRunner` opens the stream through the router (failover is free until the first chunk),
then yields chunks. Silence longer than the route's stream idle timeout or a broken connection is a
cut; the route's stream deadline holds to the last chunk. A stream's outcome reaches the breaker (and
the latency EWMA) when it ends, through the router's :class:`~.routing.Lease`: cut or stalled is a
failure, a stream that reached its end a success, a stream the caller closed or the deadline ended no
verdict. With ``stream_resume`` the next deployment is asked to continue the partial answer
(``streaming.resume_messages``) and its chunks are spliced in past any overlap (``streaming.Seam``).
Each segment that ended without the provider's usage is billed for its prompt and the tokens it
delivered (``streaming.segment_usage``). When the caller closes the stream early, what was generated
so far is left in ``ctx.billed``; when it ends, ``ctx.response`` holds the whole answer. A route with
``hedge`` races the next deployment for the first chunk (:mod:`.hedge`); a resume is not hedged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .config import RouteConfig
from .errors import HyperionError, ProviderError, StreamCutError, StreamInterruptedError
from .pipeline import aclose_quietly
from .routing import DeploymentState, Lease, Router, RouteState, _timeout
from .streaming import Accumulator, Seam, resume_messages, segment_usage
from .tokens import estimate_prompt_tokens
from .types import Attempt, ChatChunk, ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from .pipeline import RequestContext

log = logging.getLogger("hyperion.stream")

#: seconds of silence mid-stream when neither ``stream_idle_timeout`` nor a first-token or attempt timeout is set
DEFAULT_IDLE_TIMEOUT = 30.0


def idle_timeout(cfg: RouteConfig) -> float:
    """The route's stream idle timeout: ``stream_idle_timeout``, else in line with the first-token
    timeout (else the attempt timeout, else :data:`DEFAULT_IDLE_TIMEOUT`)."""
    return cfg.stream_idle_timeout or cfg.first_token_timeout or cfg.attempt_timeout or DEFAULT_IDLE_TIMEOUT


class StreamRunner:
    """One request's live stream (see the module docstring). ``await open()``, then iterate."""

    def __init__(self, router: Router, resolve: Callable[[str], RouteState], ctx: RequestContext) -> None:
        self.router = router
        self.resolve = resolve
        self.ctx = ctx
        self.attempts: list[Attempt] = []
        self.started = time.perf_counter()
        self.acc = Accumulator()
        self.first: ChatChunk | None = None
        self.upstream: Any = None
        self.ds: DeploymentState | None = None
        self.lease: Lease | None = None
        self.rs: RouteState = ctx.rs  # type: ignore[assignment]
        self.ttft_ms: float | None = None
        self.deadline = 0.0  # router clock: when the whole stream must have ended

    async def _open(self, req: ChatRequest, exclude: tuple[str, ...] = (), deadline: float | None = None) -> None:
        async def open_one(ds: DeploymentState) -> tuple[ChatChunk, AsyncIterator[ChatChunk]]:
            agen = ds.adapter.stream(req)
            try:
                first = await agen.__anext__()
            except StopAsyncIteration:
                raise StreamCutError("stream ended before its first chunk", deployment=ds.name) from None
            except BaseException:
                await aclose_quietly(agen)
                raise
            return first, agen

        (self.first, self.upstream), self.lease = await self.router.open_stream(
            self.rs, open_one, self.attempts, resolve=self.resolve, deadline=deadline, timeout=self.ctx.req.timeout,
            exclude=exclude, request_id=self.ctx.req.request_id, retries=self.ctx.req.max_retries,
            ordered=self.ctx.plan, ctx=self.ctx, discard=_discard, hedge=not exclude,  # a resume is not hedged
        )
        self.ds = self.lease.ds

    async def open(self) -> None:
        """Open the stream on the first deployment that gives a first chunk."""
        cfg = self.rs.cfg
        self.deadline = self.router.clock.now() + (self.ctx.req.timeout or cfg.stream_timeout or cfg.timeout)
        await self._open(self.ctx.req)
        self.ttft_ms = (time.perf_counter() - self.started) * 1000.0

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._chunks()

    def _interrupted(self, message: str, usage: Usage, cost: float, ds: DeploymentState) -> StreamInterruptedError:
        return StreamInterruptedError(
            message,
            delivered_chunks=self.acc.chunks,
            usage=usage,
            cost=cost,
            attempts=self.attempts,
            route=self.rs.name,
            deployment=ds.name,
            request_id=self.ctx.req.request_id,
        )

    async def _chunks(self) -> AsyncIterator[ChatChunk]:
        ctx, req, acc, clock = self.ctx, self.ctx.req, self.acc, self.router.clock
        lease, ds = self.lease, self.ds
        assert lease is not None and ds is not None and self.first is not None
        idle = idle_timeout(self.rs.cfg)
        cost = 0.0
        extra_usage = Usage()
        resumed_by: list[str] = []
        left: list[str] = [ds.name]  # deployments whose stream broke: a resume goes elsewhere
        chunk: ChatChunk | None = self.first
        seam: Seam | None = None  # holds back a continuation's start until its overlap is trimmed
        seg_req, seg_chunks, seg_chars = req, 0, 0  # the current segment (a resume starts a new one)

        def segment_cut() -> Usage:
            """What the current segment cost upstream though it never reported usage."""
            return segment_usage(estimate_prompt_tokens(seg_req), seg_chunks, acc.chars - seg_chars)

        try:
            while True:
                if chunk is not None:
                    seg_chunks += 1
                outs = (seam.feed(chunk) if chunk is not None else seam.flush()) if seam else [chunk]
                for out in outs:
                    if out is None:
                        continue
                    acc.add(out)
                    try:
                        yield out
                    except GeneratorExit:  # the caller closed the stream: bill what was generated so far
                        lease.release()
                        seg = acc.usage if acc.usage is not None else segment_cut()
                        ctx.billed = (extra_usage + seg, cost + ds.adapter.target.price.cost(seg), ds.name)
                        raise
                if chunk is None:
                    break
                remaining = self.deadline - clock.now()
                started = time.perf_counter()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    chunk = await _next(self.upstream, min(idle, remaining))
                    continue
                except asyncio.CancelledError:  # the caller's task was cancelled (a client gone): as a close
                    lease.release()
                    seg = acc.usage if acc.usage is not None else segment_cut()
                    ctx.billed = (extra_usage + seg, cost + ds.adapter.target.price.cost(seg), ds.name)
                    raise
                except (TimeoutError, asyncio.TimeoutError):
                    if remaining <= idle:  # the stream's deadline, not the deployment's silence
                        lease.release()
                        await aclose_quietly(self.upstream)
                        seg = segment_cut()
                        total = req.timeout or self.rs.cfg.stream_timeout or self.rs.cfg.timeout
                        raise self._interrupted(
                            f"stream deadline of {total:g}s exceeded after {acc.chunks} chunk(s)",
                            extra_usage + seg, cost + ds.adapter.target.price.cost(seg), ds,
                        ) from None
                    err: ProviderError = StreamCutError(f"no chunk for {idle:g}s")
                except ProviderError as exc:
                    err = exc
                await aclose_quietly(self.upstream)
                if acc.finish_reason is not None:
                    # the answer was complete; only its trailer was lost
                    log.warning("stream from '%s' lost its trailer after the finish reason: %s", ds.name, err.message)
                    chunk = None
                    continue
                self.attempts.append(
                    Attempt(ds.name, "error", (time.perf_counter() - started) * 1000.0, err.error_class,
                            getattr(err, "status", None), f"after {seg_chunks} chunk(s): {err.message}"[:300])
                )
                lease.fail()
                cut = segment_cut()  # the cut segment was generated (and billed) upstream: its prompt and tokens
                if not self.rs.cfg.stream_resume or acc.tools:
                    raise self._interrupted(
                        f"stream from '{ds.name}' failed after {acc.chunks} chunk(s): {err.message}",
                        extra_usage + cut, cost + ds.adapter.target.price.cost(cut), ds,
                    ) from err
                cost += ds.adapter.target.price.cost(cut)
                extra_usage = extra_usage + cut
                creq = req.with_messages(resume_messages(req.messages, acc.text))
                try:
                    await self._open(creq, exclude=tuple(left), deadline=self.deadline)
                except HyperionError as resume_err:
                    raise self._interrupted(
                        f"stream from '{ds.name}' failed after {acc.chunks} chunk(s) and could not be "
                        f"resumed: {resume_err.message}",
                        extra_usage, cost, ds,
                    ) from resume_err
                lease, ds = self.lease, self.ds
                assert lease is not None and ds is not None
                left.append(ds.name)
                chunk = self.first
                seam = Seam(acc.text)
                resumed_by.append(ds.name)
                seg_req, seg_chunks, seg_chars = creq, 0, acc.chars
            lease.succeed()
        finally:
            lease.release()  # no verdict if it was not settled above (e.g. cancelled)
            await aclose_quietly(self.upstream)
        final = acc.usage if acc.usage is not None else segment_cut()
        usage = final + extra_usage
        cost += ds.adapter.target.price.cost(final)
        ctx.response = ChatResponse(
            request_id=req.request_id,
            route=req.route,
            deployment=ds.name,
            model=ds.adapter.target.model,
            content=acc.text if acc.parts or not acc.tools else None,
            tool_calls=acc.tool_calls(),
            finish_reason=acc.finish_reason,
            usage=usage,
            cost=cost,
            attempts=tuple(self.attempts),
            latency_ms=(time.perf_counter() - self.started) * 1000.0,
            ttft_ms=self.ttft_ms,
            resumed_by=tuple(resumed_by),
            decision=ctx.decision,
        )


async def replay(ctx: RequestContext, started: float) -> AsyncIterator[ChatChunk]:
    """A cached answer as a stream: its chunks, then ``ctx.response`` as the whole answer."""
    hit = ctx.hit
    ttft_ms = (time.perf_counter() - started) * 1000.0
    for chunk in hit.chunks():
        yield chunk
    ctx.response = replace(hit.response(ctx.req), latency_ms=(time.perf_counter() - started) * 1000.0, ttft_ms=ttft_ms)


async def _discard(opened: tuple[Any, Any]) -> None:
    """A stream a hedge opened but did not use: close its upstream."""
    await aclose_quietly(opened[1])


async def _next(agen: AsyncIterator[ChatChunk], idle: float) -> ChatChunk | None:
    try:
        async with _timeout(idle):
            return await agen.__anext__()
    except StopAsyncIteration:
        return None


__all__ = ["StreamRunner", "replay"]
