"""The Python door: :class:`Gateway` — construction, the entry points and their sync twins, lifecycle.

Every request runs the one pipeline (``pipeline.py``; its stages, in order, in ``stages.py``). This
module only builds requests and hands them to it. Config -> routes and cache: ``build.py``; keys,
governance and audit: ``services.py``; a live stream: ``stream_runner.py``; admin reads: ``reads.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from typing_extensions import Unpack

from ._portal import Portal
from .build import attach_planners, build_cache, build_routes
from .config import GatewayConfig
from .experiments.api import Experiments
from .experiments.stage import Experiment
from .external import ExternalCall, ExternalCalls
from .http import HttpClient
from .pipeline import CHAT, EMBED, STREAM, Pipeline, RequestContext
from .policy.api import QualityControls
from .reads import Reads
from .routing import Clock, Router, RouteState
from .services import Services
from .stages import Parts, build_stages
from .streaming import ChatStream, SyncChatStream
from .types import (
    CacheControl,
    Caller,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    Message,
    RequestParams,
)


class Gateway(Reads, ExternalCalls, QualityControls):
    """Routes chat and embedding requests across deployments; see ``examples/hyperion.yaml``."""

    def __init__(
        self,
        config: GatewayConfig | Mapping[str, Any] | str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        http: HttpClient | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(config, (str, os.PathLike)):
            config = GatewayConfig.from_file(config, env=env)
        self.config: GatewayConfig = GatewayConfig.load(config, env=env)
        self.http = http or HttpClient()
        self.router = Router(clock)
        self._portal = Portal()
        self._routes: dict[str, RouteState] = build_routes(self.config, self.http, env if env is not None else os.environ)
        self.cache = build_cache(self.config, self._routes, gateway=self, verifier=self._verify_same_question)
        secrets = tuple({d.adapter.target.api_key or "" for rs in self._routes.values() for d in rs.deployments})
        self.services = Services(self.config, secrets=secrets)
        self.quality_scores = attach_planners(self.config, self._routes, clock=self.router.clock, rng=self.router.rng,
                                              services=self.services)
        self.parts = Parts(self._routes, self.router, self.services, self.cache)
        self.pipeline = Pipeline(build_stages(self.parts), self._routes)
        #: shadow / split experiments: records, kill switch, reports (``hyperion_core.experiments``)
        self.experiments = Experiments(self)
        for stage in self.pipeline.stages:
            if isinstance(stage, Experiment):
                stage.api = self.experiments

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kw: Any) -> Gateway:
        return cls(Path(path), **kw)

    async def _verify_same_question(self, route: str, query: str, cached_prompt: str) -> bool:
        """The semantic cache's grey-zone verifier: ask a (cheap) route whether two prompts ask the
        same thing. Anything but a clear "yes" keeps the candidate out. The gateway's own call: it
        needs no virtual key (``Caller.internal``)."""
        resp = await self.acomplete(
            route,
            [
                {"role": "system", "content": "Answer with exactly one word: yes or no."},
                {"role": "user", "content": f"Do these two requests ask for the same answer?\nA: {query}\nB: {cached_prompt}"},
            ],
            temperature=0,
            max_tokens=3,
            caller=Caller(user="hyperion:cache-verifier", tags=("internal",), internal=True),
        )
        return (resp.content or "").strip().lower().startswith("yes")

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        route: str,
        messages: list[Message],
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        n: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        response_format: dict[str, Any] | None = None,
        caller: Caller | None = None,
        virtual_key: str | None = None,
        cache: CacheControl | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        metadata: dict[str, Any] | None = None,
        deployment: str | None = None,
        **extra: Any,
    ) -> ChatRequest:
        """Build a :class:`ChatRequest` (what ``acomplete``/``astream`` do for you): ``RequestParams``
        and provider extras. ``virtual_key`` (``hk-...``) is authenticated by the pipeline; ``caller``
        is for trusted doors."""
        if virtual_key is not None:
            caller = replace(caller, virtual_key=virtual_key) if caller else Caller(virtual_key=virtual_key)
        return ChatRequest(route, messages, temperature, top_p, max_tokens, [stop] if isinstance(stop, str) else stop,
                           seed, n, tools, tool_choice, response_format, extra, caller, cache, timeout, max_retries,
                           metadata=metadata or {}, deployment=deployment)

    def _req(self, route: str | ChatRequest, messages: list[Message] | None, params: Any) -> ChatRequest:
        if isinstance(route, ChatRequest):
            return route
        if "extra" in params:
            params.update(params.pop("extra") or {})
        return self.request(route, messages, **params)  # type: ignore[arg-type]

    async def acomplete(self, route: str | ChatRequest, messages: list[Message] | None = None,
                        **params: Unpack[RequestParams]) -> ChatResponse:
        """Answer one chat request (whole). Raises a :class:`HyperionError` subclass on failure."""
        ctx = await self.pipeline.run(self.pipeline.context(self._req(route, messages, params), CHAT))
        assert ctx.response is not None
        return ctx.response

    def astream(self, route: str | ChatRequest, messages: list[Message] | None = None,
                **params: Unpack[RequestParams]) -> ChatStream:
        """Stream one chat request. Failover is free until the first chunk reaches the caller; after
        that a failure raises :class:`StreamInterruptedError`, unless the route has ``stream_resume``.
        Errors (including a bad request) surface when the stream is iterated."""
        stream = ChatStream()
        return stream.attach(self._iterate(self.pipeline.context(self._req(route, messages, params), STREAM), stream))

    async def open_stream(self, route: str | ChatRequest, messages: list[Message] | None = None,
                          **params: Unpack[RequestParams]) -> ChatStream:
        """:meth:`astream`, returning once the stream has its first chunk (or raising): for a server
        that must pick its status code before it sends anything."""
        ctx = await self.pipeline.open(self.pipeline.context(self._req(route, messages, params), STREAM))
        stream = ChatStream()
        return stream.attach(self._iterate(ctx, stream, opened=True))

    async def _iterate(self, ctx: RequestContext, out: ChatStream, *, opened: bool = False) -> AsyncIterator[ChatChunk]:
        if not opened:
            await self.pipeline.open(ctx)
        chunks = self.pipeline.chunks(ctx)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # a caller that stops early: bill and audit now, not at garbage collection
            out.response = ctx.response if ctx.error is None else None

    async def aembed(self, route: str, inputs: str | list[str], *, dimensions: int | None = None,
                     timeout: float | None = None, virtual_key: str | None = None,
                     caller: Caller | None = None) -> EmbeddingResponse:
        """Embed ``inputs`` on an embedding route, with the same failover, keys, budgets and audit
        as chat requests."""
        texts = [inputs] if isinstance(inputs, str) else inputs
        # the request record carries the texts as one user turn each: keys, budgets and audit see them
        req = self.request(route, [{"role": "user", "content": t} for t in texts] if isinstance(texts, list) else [],
                           caller=caller, virtual_key=virtual_key, timeout=timeout, max_tokens=1)
        ctx = self.pipeline.context(req, EMBED)
        ctx.inputs, ctx.dimensions = texts, dimensions
        await self.pipeline.run(ctx)
        return ctx.embedding

    # -- sync twins --------------------------------------------------------------------------

    def complete(self, route: str | ChatRequest, messages: list[Message] | None = None,
                 **params: Unpack[RequestParams]) -> ChatResponse:
        return self._portal.call(self.acomplete(route, messages, **params))

    def stream(self, route: str | ChatRequest, messages: list[Message] | None = None,
               **params: Unpack[RequestParams]) -> SyncChatStream:
        return SyncChatStream(self.astream(route, messages, **params), self._portal)

    def embed(self, route: str, inputs: str | list[str], **kw: Any) -> EmbeddingResponse:
        return self._portal.call(self.aembed(route, inputs, **kw))

    def run_sync(self, coro: Any) -> Any:
        """Run a coroutine on the gateway's background loop (the one the sync twins use) and wait:
        for framework callbacks that are sync but must reach async state (keys, budgets, audit)."""
        return self._portal.call(coro)

    def submit(self, coro: Any) -> Any:
        """Schedule a coroutine on the gateway's background loop without waiting; returns a
        ``concurrent.futures.Future``."""
        return asyncio.run_coroutine_threadsafe(coro, self._portal.loop)

    # -- lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Flush the audit log; close the connection pool, cache and governance connections."""
        await self.experiments.flush()  # shadow calls in flight finish (and are audited) first
        await self.services.aclose()
        await self.http.aclose()
        if self.cache is not None:
            await self.cache.aclose()

    def close(self) -> None:
        """Close from sync code: the background loop of the sync twins and its pool, and flush the
        audit log (run :meth:`aclose` first on any other loop the gateway was used from)."""
        started = self._portal.started
        self._portal.close(self.aclose() if started else None)
        if not started and self.services.active:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop here: flush the services' writers on a short-lived one
                asyncio.run(self.services.aclose())

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Gateway", "ExternalCall", "SyncChatStream", "RequestParams"]  # (re-exported)
