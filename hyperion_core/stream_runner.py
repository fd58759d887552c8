"""A live stream from the upstream to the caller: first-chunk failover, idle timeout, cut detection,
stream resume, and what every segment cost.

:class:`StreamRunner` opens the stream through the router (failover is free until the first chunk),
then yields chunks. Silence longer than the route's ``stream_idle_timeout`` or a broken connection is a
cut: the deployment's breaker records a failure and, with ``stream_resume``, the next deployment is
asked to continue the partial answer (``streaming.resume_messages``) and its chunks are spliced in.
Each segment that ended without the provider's usage is billed for its prompt and the tokens it
delivered (``streaming.segment_usage``). When the caller closes the stream early, what was generated
so far is left in ``ctx.billed``; when it ends, ``ctx.response`` holds the whole answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import HyperionError, ProviderError, StreamCutError, StreamInterruptedError
from .pipeline import aclose_quietly
from .routing import DeploymentState, Router, RouteState, _timeout
from .streaming import Accumulator, resume_messages, segment_usage
from .tokens import estimate_prompt_tokens
from .types import Attempt, ChatChunk, ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from .pipeline import RequestContext


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
        self.rs: RouteState = ctx.rs  # type: ignore[assignment]
        self.ttft_ms: float | None = None

    async def _open(self, req: ChatRequest, exclude: tuple[str, ...] = ()) -> None:
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

        (self.first, self.upstream), self.ds = await self.router.run_with_fallback(
            self.rs, open_one, self.attempts, resolve=self.resolve, timeout=self.ctx.req.timeout, stream=True,
            exclude=exclude, request_id=self.ctx.req.request_id, retries=self.ctx.req.max_retries,
        )

    async def open(self) -> None:
        """Open the stream on the first deployment that gives a first chunk."""
        await self._open(self.ctx.req)
        self.ttft_ms = (time.perf_counter() - self.started) * 1000.0

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[ChatChunk]:
        ctx, req, acc = self.ctx, self.ctx.req, self.acc
        ds = self.ds
        assert ds is not None and self.first is not None
        idle = self.rs.cfg.stream_idle_timeout
        cost = 0.0
        extra_usage = Usage()
        resumed_by: list[str] = []
        chunk: ChatChunk | None = self.first
        seg_req, seg_chunks, seg_chars = req, 0, 0  # the current segment (a resume starts a new one)

        def segment_cut() -> Usage:
            """What the current segment cost upstream though it never reported usage."""
            return segment_usage(estimate_prompt_tokens(seg_req), seg_chunks, acc.chars - seg_chars)

        try:
            while chunk is not None:
                acc.add(chunk)
                seg_chunks += 1
                try:
                    yield chunk
                except GeneratorExit:  # the caller closed the stream: bill what was generated so far
                    seg = acc.usage if acc.usage is not None else segment_cut()
                    ctx.billed = (extra_usage + seg, cost + ds.adapter.target.price.cost(seg), ds.name)
                    raise
                seg_started = time.perf_counter()
                try:
                    chunk = await _next(self.upstream, idle)
                except (ProviderError, TimeoutError, asyncio.TimeoutError) as exc:
                    err = exc if isinstance(exc, ProviderError) else StreamCutError(f"no chunk for {idle:g}s")
                    self.attempts.append(
                        Attempt(ds.name, "error", (time.perf_counter() - seg_started) * 1000.0, err.error_class,
                                getattr(err, "status", None), f"after {seg_chunks} chunk(s): {err.message}"[:300])
                    )
                    ds.breaker.on_failure(self.router.clock.now())
                    await aclose_quietly(self.upstream)
                    if not self.rs.cfg.stream_resume or acc.tools:
                        seg = segment_cut()
                        raise StreamInterruptedError(
                            f"stream from '{ds.name}' failed after {acc.chunks} chunk(s): {err.message}",
                            delivered_chunks=acc.chunks,
                            usage=extra_usage + seg,
                            cost=cost + ds.adapter.target.price.cost(seg),
                            attempts=self.attempts,
                            route=self.rs.name,
                            deployment=ds.name,
                            request_id=req.request_id,
                        ) from err
                    # the cut segment was generated (and billed) upstream: its prompt and its tokens
                    cut = segment_cut()
                    cost += ds.adapter.target.price.cost(cut)
                    extra_usage = extra_usage + cut
                    creq = req.with_messages(resume_messages(req.messages, acc.text))
                    try:
                        await self._open(creq, exclude=(ds.name,))
                    except HyperionError as resume_err:
                        raise StreamInterruptedError(
                            f"stream from '{ds.name}' failed after {acc.chunks} chunk(s) and could not be "
                            f"resumed: {resume_err.message}",
                            delivered_chunks=acc.chunks,
                            usage=extra_usage,
                            cost=cost,
                            attempts=self.attempts,
                            route=self.rs.name,
                            deployment=ds.name,
                            request_id=req.request_id,
                        ) from resume_err
                    ds = self.ds
                    assert ds is not None
                    chunk = self.first
                    resumed_by.append(ds.name)
                    seg_req, seg_chunks, seg_chars = creq, 0, acc.chars
        finally:
            await aclose_quietly(self.upstream)
        usage = (acc.usage or Usage()) + extra_usage
        cost += ds.adapter.target.price.cost(acc.usage or Usage())
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
        )


async def replay(ctx: RequestContext, started: float) -> AsyncIterator[ChatChunk]:
    """A cached answer as a stream: its chunks, then ``ctx.response`` as the whole answer."""
    hit = ctx.hit
    ttft_ms = (time.perf_counter() - started) * 1000.0
    for chunk in hit.chunks():
        yield chunk
    ctx.response = replace(hit.response(ctx.req), latency_ms=(time.perf_counter() - started) * 1000.0, ttft_ms=ttft_ms)


async def _next(agen: AsyncIterator[ChatChunk], idle: float) -> ChatChunk | None:
    try:
        async with _timeout(idle):
            return await agen.__anext__()
    except StopAsyncIteration:
        return None


__all__ = ["StreamRunner", "replay"]
