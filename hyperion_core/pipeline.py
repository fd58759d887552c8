"""The request pipeline: one ordered list of stages that every request passes, whatever its door.

The list is :data:`hyperion_core.stages.STAGES`::

    Validate -> Authorize -> GuardIn -> Admit -> Cache -> Call -> GuardOut -> Settle -> Audit

A :class:`Stage` has two hooks, both run in list order:

* ``before(ctx)`` — the request's way through: validation, authentication, admission, a cache
  lookup, the upstream call itself (the ``Call`` stage), output checks. It may raise to end the
  request; a stage before ``Call`` may answer it (``ctx.response``: a cache hit), and ``Call`` then
  has nothing to do. Stages after ``Call`` run once the answer is there (for a stream: once it ended).
* ``after(ctx)`` — once the request is over, answered or not (``ctx.error`` says which): store in the
  cache, settle or release the budget, write the audit event. It runs for every stage whose
  ``before`` was reached, and for stages marked ``always`` (Settle, Audit) even when an earlier
  stage refused the request. An ``after`` never replaces the request's outcome: an exception there is
  counted (``Pipeline.failures``) and kept on the context (``ctx.after_errors``) for Audit to record.

A route runs only the stages that apply to it (``Stage.applies``): a route without cache has no
Cache stage, a gateway without governance no Admit or Settle. Adding a stage is one class and one
line in ``STAGES``.

The same context drives the three shapes of a request: :meth:`Pipeline.run` (a whole answer or an
embedding), :meth:`Pipeline.open` + :meth:`Pipeline.chunks` (a stream: ``open`` returns once the
first chunk is there, so a server can still choose its status code), and :meth:`Pipeline.enter` +
:meth:`Pipeline.exit` (a call made outside the gateway, by a framework's own client).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .types import ChatChunk, ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from .routing import RouteState

log = logging.getLogger("hyperion.pipeline")

#: request shapes
CHAT, STREAM, EMBED, EXTERNAL = "chat", "stream", "embed", "external"


class StreamCancelled(Exception):
    """Audit marker: the caller stopped reading a stream after ``delivered_chunks`` chunks. ``usage`` and
    ``cost`` are what was generated upstream until then (the provider's usage when it arrived, else
    estimated): a closed stream is billed like any other."""

    audit_outcome = "cancelled"

    def __init__(
        self, delivered_chunks: int, *, usage: Usage | None = None, cost: float = 0.0, deployment: str | None = None
    ) -> None:
        super().__init__(f"the caller closed the stream after {delivered_chunks} chunk(s)")
        self.delivered_chunks = delivered_chunks
        self.usage = usage
        self.cost = cost
        self.deployment = deployment


@dataclass(slots=True, eq=False)
class RequestContext:
    """One request's passage through the stages (what they read and leave for each other)."""

    req: ChatRequest
    kind: str  # CHAT | STREAM | EMBED | EXTERNAL
    streamed: bool = False  # audit: the answer was streamed (a STREAM request, or an external call that did)
    started: float = field(default_factory=time.time)  # wall clock: the audit event's time
    perf: float = field(default_factory=time.perf_counter)
    stages: tuple[Stage, ...] = ()
    next: int = 0  # index of the next stage whose ``before`` runs
    done: bool = False
    rs: RouteState | None = None
    #: external calls: the (price, upstream model) pairs the call may be billed at
    priced: list[tuple[Any, str | None]] | None = None
    admission: Any = None  # governance.Admission, until settled or released
    cached_record: Any = None  # a warm key's record, re-read during admission
    response: ChatResponse | None = None
    error: BaseException | None = None
    hit: Any = None  # a CacheHit found before the call (streams replay it)
    flight: Any = None  # the CacheFlight this request leads
    exits: AsyncExitStack | None = None
    stream: Any = None  # the live (or replayed) chunk iterator of a stream
    delivered: int = 0  # chunks that reached the caller
    #: (usage, cost, deployment) generated upstream by a request that then failed or was cancelled
    billed: tuple[Usage, float, str | None] | None = None
    settle_error: BaseException | None = None
    after_errors: list[tuple[str, BaseException]] | None = None  # (stage, error) of failed after hooks
    #: facts a stage wants on the audit event (``{"usage": "estimated"}``)
    notes: dict[str, Any] | None = None
    #: guardrails: actions taken (``"in:pii:EMAIL:redact:2"``; never the matched text), for the audit event
    guardrails: list[str] | None = None
    #: guardrails: the answer as the caller gets it (placeholders restored), applied when the request ends
    restore: Any = None
    #: guardrails on a stream: ``filter(chunk) -> chunk | None`` before each chunk reaches the caller, and
    #: ``filter.flush() -> chunk | None`` for what it held back when the stream ends
    chunk_filter: Any = None
    #: how the route chose its deployment (set by routing strategies, splits and hedges; see
    #: ``types.RouteDecision``), copied onto the response
    decision: Any = None
    #: the deployments to try in order, when the route's ``planner`` chose them for this request
    plan: list[Any] | None = None
    #: embeddings: the inputs and the result
    inputs: list[str] | None = None
    dimensions: int | None = None
    embedding: Any = None

    def note(self, name: str, value: Any) -> None:
        if self.notes is None:
            self.notes = {}
        self.notes[name] = value

    def exit_stack(self) -> AsyncExitStack:
        if self.exits is None:
            self.exits = AsyncExitStack()
        return self.exits

    @property
    def stream_mode(self) -> bool:
        return self.kind == STREAM


class Stage:
    """One step of the pipeline (see the module docstring). Subclasses override what they need."""

    #: the name events and metrics use (``events.Stage``)
    name = "stage"
    #: run ``after`` even when the request ended before this stage's ``before`` was reached
    always = False
    #: the stage that makes the upstream call (``open`` stops after it for streams)
    is_call = False
    #: whether ``before`` / ``after`` do anything (set by :class:`Pipeline`: a hook left as the base
    #: class's no-op is skipped, not awaited — a coroutine per stage and request saved)
    runs_before = True
    runs_after = True

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        """Whether requests of ``kind`` on route ``rs`` (None: not found yet) pass this stage."""
        return True

    async def before(self, ctx: RequestContext) -> None:
        return None

    async def after(self, ctx: RequestContext) -> None:
        return None


class Pipeline:
    """Runs requests through ``stages`` (in order; each route and kind gets the ones that apply)."""

    def __init__(self, stages: list[Stage] | tuple[Stage, ...], routes: dict[str, RouteState]) -> None:
        self.stages = tuple(stages)
        for stage in self.stages:
            stage.runs_before = _overrides(stage, "before")
            stage.runs_after = _overrides(stage, "after")
        self.routes = routes
        self._plans: dict[tuple[str | None, str], tuple[Stage, ...]] = {}
        #: failures inside ``after`` hooks, by stage name (each is also on its request's context)
        self.failures: Counter[str] = Counter()

    def plan(self, route: str | None, kind: str) -> tuple[Stage, ...]:
        """The stages a ``kind`` request on ``route`` passes (cached per route and kind)."""
        key = (route, kind)
        plan = self._plans.get(key)
        if plan is None:
            rs = self.routes.get(route) if route is not None else None
            plan = tuple(s for s in self.stages if s.applies(rs, kind))
            if len(self._plans) < 10_000:  # route names come from config, but external names are free text
                self._plans[key] = plan
        return plan

    def context(self, req: ChatRequest, kind: str) -> RequestContext:
        route = req.route if isinstance(req.route, str) else None
        return RequestContext(req, kind, streamed=kind == STREAM, stages=self.plan(route, kind))

    # -- the three shapes --------------------------------------------------------------------------
    async def run(self, ctx: RequestContext) -> RequestContext:
        """Every stage, start to end; raises what ended the request (after every ``after`` ran)."""
        await self.advance(ctx)
        await self.finish(ctx)
        if ctx.error is not None:
            raise ctx.error
        if ctx.restore is not None and ctx.response is not None:
            ctx.response = ctx.restore(ctx.response)  # after cache and audit: they keep the placeholders
        return ctx

    async def open(self, ctx: RequestContext) -> RequestContext:
        """A stream's way up to its first chunk (stops after the Call stage). Raises (after finishing
        the request) when it fails before that: the caller can still answer with an error status."""
        if not await self.advance(ctx, stop_at_call=True):
            await self.finish(ctx)
            assert ctx.error is not None
            raise ctx.error
        return ctx

    async def chunks(self, ctx: RequestContext) -> AsyncIterator[ChatChunk]:
        """The opened stream's chunks; the stages after Call run when it ends, however it ends."""
        stream = ctx.stream.__aiter__()  # kept: closing it is what records a cancelled stream's cost
        guard = ctx.chunk_filter
        try:
            if guard is None:
                async for chunk in stream:
                    ctx.delivered += 1
                    yield chunk
            else:
                async for chunk in stream:
                    try:
                        out = guard(chunk)
                    except BaseException:  # a guard refused the answer: stop the upstream stream first
                        await aclose_quietly(stream)
                        raise
                    if out is not None:
                        ctx.delivered += 1
                        yield out
                out = guard.flush()
                if out is not None:
                    ctx.delivered += 1
                    yield out
        except GeneratorExit:  # the caller stopped reading: bill what was generated, audit it
            await aclose_quietly(stream)  # the live stream leaves what it generated in ctx.billed
            usage, cost, dep = ctx.billed or (None, 0.0, None)
            ctx.error = StreamCancelled(ctx.delivered, usage=usage, cost=cost, deployment=dep)
            await self.finish(ctx)
            raise
        except asyncio.CancelledError:  # the caller's task was cancelled mid-stream: billed and audited as a close
            usage, cost, dep = ctx.billed or (None, 0.0, None)
            ctx.error = StreamCancelled(ctx.delivered, usage=usage, cost=cost, deployment=dep)
            await self.finish(ctx)
            raise
        except BaseException as exc:
            ctx.error = exc
            await self.finish(ctx)
            raise
        await self.advance(ctx)
        await self.finish(ctx)
        if ctx.error is not None:
            raise ctx.error
        if ctx.restore is not None and ctx.response is not None:
            ctx.response = ctx.restore(ctx.response)

    async def enter(self, ctx: RequestContext) -> RequestContext:
        """A call made elsewhere: the stages before it (authorize, admit). Raises when it may not run."""
        if not await self.advance(ctx):
            await self.finish(ctx)
            assert ctx.error is not None
            raise ctx.error
        return ctx

    async def exit(self, ctx: RequestContext, response: ChatResponse | None, error: BaseException | None = None) -> None:
        """The same call, done: settle and audit it (``error`` when it failed)."""
        ctx.response, ctx.error = response, error
        await self.finish(ctx)

    # -- the mechanics -------------------------------------------------------------------------------
    async def advance(self, ctx: RequestContext, *, stop_at_call: bool = False) -> bool:
        """Run ``before`` hooks from where the request stands; False (``ctx.error`` set) if one raised."""
        stages = ctx.stages
        try:
            while ctx.next < len(stages):
                stage = stages[ctx.next]
                ctx.next += 1
                if stage.runs_before:
                    await stage.before(ctx)
                if stop_at_call and stage.is_call:
                    break
        except BaseException as exc:  # noqa: BLE001 - cancellation too: the afters still settle and audit
            ctx.error = exc
            return False
        return True

    async def finish(self, ctx: RequestContext) -> None:
        """Run the ``after`` hooks once; they never raise into the caller."""
        if ctx.done:
            return
        ctx.done = True
        reached = ctx.next
        for i, stage in enumerate(ctx.stages):
            if stage.runs_after and (i < reached or stage.always):
                try:
                    await stage.after(ctx)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - an after hook never replaces the outcome
                    self.failures[stage.name] += 1
                    ctx.after_errors = [*(ctx.after_errors or ()), (stage.name, exc)]
                    log.error("stage %s failed after request %s: %s: %s", stage.name, ctx.req.request_id,
                              type(exc).__name__, exc)
        if ctx.exits is not None:
            try:
                await ctx.exits.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. a cache lock that could not be released
                self.failures["exits"] += 1
                ctx.after_errors = [*(ctx.after_errors or ()), ("exits", exc)]


def _overrides(stage: Stage, hook: str) -> bool:
    """Whether ``stage``'s ``hook`` is its own (its class's or set on the instance), not Stage's no-op."""
    return hook in getattr(stage, "__dict__", ()) or getattr(type(stage), hook) is not getattr(Stage, hook)


async def aclose_quietly(agen: Any) -> None:
    """Close an async generator or stream, ignoring what a broken one raises while closing."""
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing a broken stream
            pass


__all__ = ["aclose_quietly", "Pipeline", "RequestContext", "Stage", "StreamCancelled", "CHAT", "STREAM", "EMBED", "EXTERNAL"]
