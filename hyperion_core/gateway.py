"""The Python door: :class:`Gateway` runs every request through one async pipeline.

Today's pipeline: validate -> route (strategy, breakers, retries, deadline, failover) -> call
(native adapter or litellm) -> settle cost. Authorization, guards, admission, caching and audit slot
in around the same flow. Sync methods are twins of the async ones, driven on one background loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._portal import Portal
from .config import NATIVE_KINDS, GatewayConfig, ProviderConfig, RouteConfig, provider_kind, suggest
from .errors import (
    ContextWindowExceededError,
    HyperionError,
    InvalidRequestError,
    PermissionDeniedError,
    ProviderError,
    RouteNotFoundError,
    StreamCutError,
    StreamInterruptedError,
)
from .http import HttpClient
from .pricing import lookup
from .providers import Target, adapter_class
from .providers.params import KNOWN_PARAMS
from .routing import CircuitBreaker, Clock, DeploymentState, Router, RouteState, _timeout
from .steward import Steward, StreamCancelled, estimate_prompt_tokens, output_cap
from .streaming import Accumulator, ChatStream, resume_messages, segment_usage
from .types import (
    Attempt,
    CacheControl,
    Caller,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    Message,
    Usage,
)

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


#: parameters a request may not set through ``extra``, and why
_RESERVED_PARAMS = {
    "model": "the route's deployments choose the model (and its price); call the route that serves the model you want",
    "messages": "pass messages as the messages argument",
    "stream": "call astream()/stream() to stream",
}


class Gateway:
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
        self._env = env if env is not None else os.environ
        self.http = http or HttpClient()
        self.router = Router(clock)
        self._portal = Portal()
        self._routes: dict[str, RouteState] = {
            name: self._build_route(name, rc) for name, rc in self.config.routes.items()
        }
        self.cache = self._build_cache() if any(rc.cache for rc in self.config.routes.values()) else None
        secrets = tuple({d.adapter.target.api_key or "" for rs in self._routes.values() for d in rs.deployments})
        self.steward = Steward(self.config, secrets=secrets)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kw: Any) -> Gateway:
        return cls(Path(path), **kw)

    def _build_cache(self) -> Any:
        from .cache import CacheBackendConfig, ResponseCache
        from .cache.embedders import make_embedder
        from .cache.keys import route_fingerprint

        st = self.config.state
        tuning = self.config.cache.model_dump(exclude={"embedder"})
        backend = CacheBackendConfig(backend=st.backend, redis_url=st.redis_url, key_prefix=st.prefix, **tuning)
        embedder = None
        if any(rc.cache and rc.cache.enabled and rc.cache.semantic.enabled for rc in self.config.routes.values()):
            embedder = make_embedder(self.config.cache.embedder, self)
        route_ids = {
            name: f"{name}#" + route_fingerprint(
                {"kind": t.kind, "model": t.model, "base_url": t.base_url, "params": t.params}
                for t in (d.adapter.target for d in rs.deployments)
            )
            for name, rs in self._routes.items()
        }
        return ResponseCache(backend, embedder=embedder, verifier=self._verify_same_question, route_ids=route_ids)

    async def _verify_same_question(self, route: str, query: str, cached_prompt: str) -> bool:
        """The semantic cache's grey-zone verifier: ask a (cheap) route whether two prompts ask the
        same thing. Anything but a clear "yes" keeps the candidate out."""
        resp = await self.acomplete(
            route,
            [
                {"role": "system", "content": "Answer with exactly one word: yes or no."},
                {"role": "user", "content": f"Do these two requests ask for the same answer?\nA: {query}\nB: {cached_prompt}"},
            ],
            temperature=0,
            max_tokens=3,
        )
        return (resp.content or "").strip().lower().startswith("yes")

    # -- construction ------------------------------------------------------------------------

    def _build_route(self, name: str, rc: RouteConfig) -> RouteState:
        rs = RouteState(name, rc)
        for dep in rc.deployments:
            kind = provider_kind(self.config, dep.provider)
            assert kind is not None  # config validation guarantees it
            prov = self.config.providers.get(dep.provider) or ProviderConfig(kind=kind)
            native = NATIVE_KINDS.get(kind)
            wire = native["wire"] if native and dep.adapter != "litellm" else "litellm"
            api_key = prov.api_key.get_secret_value() if prov.api_key else None
            if api_key is None and native and native["key_env"]:
                api_key = self._env.get(native["key_env"]) or (
                    self._env.get("GOOGLE_API_KEY") if kind == "gemini" else None
                )
            price = lookup(kind, dep.upstream_model, dep.pricing)
            target = Target(
                name=dep.id,
                route=name,
                kind=kind,
                wire=wire,
                model=dep.upstream_model,
                base_url=prov.base_url or (native["base_url"] if native else None),
                api_key=api_key,
                headers=dict(prov.headers),
                params=dict(dep.params),
                litellm_params=dict(prov.litellm_params),
                price=price,
                timeout=dep.timeout,
            )
            if dep.max_input_tokens or dep.max_output_tokens:
                target.price = replace(
                    price,
                    max_input_tokens=dep.max_input_tokens or price.max_input_tokens,
                    max_output_tokens=dep.max_output_tokens or price.max_output_tokens,
                )
            rs.deployments.append(
                DeploymentState(
                    name=dep.id,
                    adapter=adapter_class(wire)(target, self.http),
                    breaker=CircuitBreaker(rc.breaker),
                    weight=dep.weight,
                    timeout=dep.timeout,
                    unit_price=price.input + price.output,
                )
            )
        return rs

    # -- introspection -----------------------------------------------------------------------

    @property
    def routes(self) -> list[str]:
        return list(self._routes)

    def route(self, name: str) -> RouteState:
        rs = self._routes.get(name)
        if rs is None:
            raise RouteNotFoundError(
                f"unknown route '{name}'" + (suggest(name, set(self._routes)) or f" (routes: {', '.join(self._routes)})"),
                route=name,
            )
        return rs

    @property
    def keys(self) -> Any:
        """The virtual-key store (``await gw.keys.create("name", team=..., roles=[...])``)."""
        return self.steward.keys

    @property
    def governance(self) -> Any:
        """Budgets, rate limits, spend and anomaly alerts (None when not configured)."""
        return self.steward.governance

    @property
    def audit(self) -> Any:
        """The audit log (None when not configured): ``await gw.audit.query(key_id=...)``."""
        return self.steward.audit

    # -- calls made outside the gateway (LangChain / LlamaIndex handlers) ------------------------

    async def abegin_external(
        self,
        *,
        model: str,
        messages: list[Message],
        provider: str = "openai",
        route: str | None = None,
        max_tokens: int | None = None,
        virtual_key: str | None = None,
        caller: Caller | None = None,
        stream: bool = False,
        request_id: str | None = None,
    ) -> ExternalCall:
        """Admit a model call that another client makes (say ``ChatOpenAI``): authorize the key,
        apply rate limits and reserve the budget at ``provider/model``'s price. Raises the same
        errors as a gateway call (audited); hand the result to :meth:`aend_external` or
        :meth:`afail_external` exactly once."""
        req = self.request(route or f"external:{model}", messages, max_tokens=max_tokens, caller=caller,
                           virtual_key=virtual_key)
        if request_id:
            req.request_id = request_id
        price = lookup(provider, model)
        ticket = self.steward.ticket(req, stream)
        call = ExternalCall(req, model, provider, price, ticket, time.perf_counter())
        if ticket is not None:
            try:
                await self.steward.admit_priced(ticket, [(price, model)])
            except BaseException as exc:
                await self.steward.fail(ticket, exc)
                raise
        return call

    async def aend_external(
        self, call: ExternalCall, *, usage: Usage, content: str | None = None, finish_reason: str | None = None,
        model: str | None = None, ttft_ms: float | None = None, stream: bool | None = None,
    ) -> ChatResponse:
        """Settle the call at its actual usage, record spend and audit it; returns it as a response record.
        ``stream``: whether it turned out to be streamed (handlers often learn that only from tokens)."""
        if stream is not None and call.ticket is not None:
            call.ticket.stream = stream
        resp = ChatResponse(
            request_id=call.req.request_id, route=call.req.route, deployment=f"{call.provider}/{model or call.model}",
            model=model or call.model, content=content, tool_calls=(), finish_reason=finish_reason, usage=usage,
            cost=call.price.cost(usage), attempts=(), latency_ms=(time.perf_counter() - call.started) * 1000.0,
            ttft_ms=ttft_ms,
        )
        await self.steward.succeed(call.ticket, resp)
        return resp

    async def afail_external(self, call: ExternalCall, exc: BaseException) -> None:
        """Release the call's reservation and audit its failure."""
        await self.steward.fail(call.ticket, exc)

    async def spend_report(self, by: str = "key", since: Any = None, until: Any = None) -> list[Any]:
        """Spend rows grouped by ``key`` | ``team`` | ``user`` | ``route`` | ``day`` | ``deployment``."""
        if self.steward.governance is None:
            raise InvalidRequestError("spend is recorded by governance: add a 'governance:' section to the config")
        return await self.steward.governance.spend_report(by, since, until)

    async def spend_for(self, virtual_key: str, by: str = "key") -> list[Any]:
        """Spend rows as ``virtual_key`` may see them: an admin sees everything, a viewer its own
        team's keys, anyone else only its own key."""
        p = await self.keys.authenticate(virtual_key)
        rows = await self.spend_report(by if "spend:read:all" in p.permissions else "key")
        if "spend:read:all" in p.permissions:
            return rows
        if "spend:read:team" in p.permissions:
            team_keys = {r.key_id for r in await self.keys.list(team=p.team, include_revoked=True)} if p.team else set()
            return [r for r in rows if r.group in team_keys or r.group == p.key_id]
        return [r for r in rows if r.group == p.key_id]

    async def audit_for(self, virtual_key: str, **filters: Any) -> list[Any]:
        """Audit events as ``virtual_key`` may see them (admin: all; viewer: its team; others: its own
        key). Filters as ``AuditQuery`` (key_id, team, user, route, outcome, since, until, limit)."""
        if self.steward.audit is None:
            raise InvalidRequestError("no audit log: add an 'audit:' section to the config")
        p = await self.keys.authenticate(virtual_key)
        if "audit:read:all" not in p.permissions:
            if "audit:read:team" in p.permissions:
                if not p.team:
                    raise PermissionDeniedError(f"key '{p.key_id}' has no team to read the audit of")
                if filters.get("team") not in (None, p.team):
                    raise PermissionDeniedError(f"key '{p.key_id}' may read team '{p.team}' only")
                filters["team"] = p.team
            else:
                if filters.get("key_id") not in (None, p.key_id):
                    raise PermissionDeniedError(f"key '{p.key_id}' may read its own audit rows only")
                filters["key_id"] = p.key_id
        return await self.steward.audit.query(**filters)

    def health(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Breaker state and observed latency of every deployment, by route."""
        now = self.router.clock.now()
        return {
            name: {
                d.name: {
                    **d.breaker.snapshot(now),
                    "ewma_latency_ms": None if d.ewma_latency is None else d.ewma_latency * 1000,
                    "ewma_ttft_ms": None if d.ewma_ttft is None else d.ewma_ttft * 1000,
                }
                for d in rs.deployments
            }
            for name, rs in self._routes.items()
        }

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
        **extra: Any,
    ) -> ChatRequest:
        """Build a :class:`ChatRequest` (what ``acomplete``/``astream`` do for you). ``virtual_key``
        (``hk-...``) is authenticated by the pipeline; ``caller`` is for trusted doors."""
        if virtual_key is not None:
            caller = replace(caller, virtual_key=virtual_key) if caller else Caller(virtual_key=virtual_key)
        req = ChatRequest(
            route=route,
            messages=messages,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=[stop] if isinstance(stop, str) else stop,
            seed=seed,
            n=n,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            extra=extra,
            caller=caller,
            cache=cache,
            timeout=timeout,
            max_retries=max_retries,
            metadata=metadata or {},
        )
        return req

    def _validate(self, req: ChatRequest, kind: str = "chat") -> RouteState:
        rs = self.route(req.route)
        if rs.cfg.kind != kind:
            raise InvalidRequestError(
                f"route '{req.route}' is a {rs.cfg.kind} route, not a {kind} route", route=req.route
            )
        msgs = req.messages
        if not isinstance(msgs, list) or not msgs:
            raise InvalidRequestError("messages: must be a non-empty list of messages", route=req.route)
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                raise InvalidRequestError(
                    f"messages[{i}]: must be a dict with 'role' and 'content', got {type(m).__name__}",
                    route=req.route,
                )
            role = m.get("role")
            if role not in _ROLES:
                raise InvalidRequestError(
                    f"messages[{i}].role: unknown role {role!r}" + suggest(str(role), set(_ROLES)),
                    route=req.route,
                )
        if req.max_tokens is not None and (not isinstance(req.max_tokens, int) or req.max_tokens < 1):
            raise InvalidRequestError(f"max_tokens: must be a positive integer, got {req.max_tokens!r}", route=req.route)
        if req.extra:
            self._check_extra(rs, req)
        if req.max_tokens is None and rs.cfg.default_max_tokens and not output_cap(req):
            req.max_tokens = rs.cfg.default_max_tokens  # enforced upstream, so budgets may reserve just this
        if req.max_retries is not None and (not isinstance(req.max_retries, int) or req.max_retries < 0):
            raise InvalidRequestError(f"max_retries: must be an integer >= 0, got {req.max_retries!r}", route=req.route)
        if req.temperature is not None and not 0 <= req.temperature <= 2:
            raise InvalidRequestError(f"temperature: must be between 0 and 2, got {req.temperature!r}", route=req.route)
        return rs

    @staticmethod
    def _check_extra(rs: RouteState, req: ChatRequest) -> None:
        """Extra parameters reach the provider: the deployment owns ``model`` (a caller's ``model``
        would be billed at the route's price), and a name no wire knows is refused unless the route
        allows it (``allow_params``) — never silently sent or silently dropped."""
        allowed = rs.cfg.allow_params
        for name in req.extra:
            if name in _RESERVED_PARAMS:
                raise InvalidRequestError(
                    f"{name}: {_RESERVED_PARAMS[name]}", route=req.route
                )
            if name not in KNOWN_PARAMS and name not in allowed and "*" not in allowed:
                raise InvalidRequestError(
                    f"unknown request parameter '{name}'" + (suggest(name, set(KNOWN_PARAMS)) or "")
                    + f" (route '{req.route}' takes the OpenAI Chat Completions parameters and each wire's own; "
                    "list others in its allow_params)",
                    route=req.route,
                )

    def _deadline(self, rs: RouteState, req: ChatRequest) -> float:
        return self.router.clock.now() + (req.timeout or rs.cfg.timeout)

    async def acomplete(self, route: str | ChatRequest, messages: list[Message] | None = None, **params: Any) -> ChatResponse:
        """Answer one chat request (whole). Raises a :class:`HyperionError` subclass on failure."""
        req = route if isinstance(route, ChatRequest) else self.request(route, messages, **params)  # type: ignore[arg-type]
        st = self.steward
        ticket = st.ticket(req, False)
        try:
            rs = self._validate(req)
            if ticket is not None:
                await st.admit(ticket, rs)
            settings = rs.cfg.cache
            if self.cache is not None and settings is not None and settings.enabled:
                resp = await self.cache.complete(req, settings, lambda: self._call(rs, req))
            else:
                resp = await self._call(rs, req)
        except BaseException as exc:
            if ticket is not None:
                await st.fail(ticket, exc)
            raise
        if ticket is not None:
            await st.succeed(ticket, resp)
        return resp

    async def _call(self, rs: RouteState, req: ChatRequest) -> ChatResponse:
        """The upstream call: route, retry, fail over (and fall back on context-window errors)."""
        attempts: list[Attempt] = []
        started = time.perf_counter()
        while True:
            try:
                resp, ds = await self.router.run(
                    rs,
                    lambda d: d.adapter.chat(req),
                    attempts,
                    deadline=self._deadline(rs, req),
                    request_id=req.request_id,
                    retries=req.max_retries,
                )
                break
            except ContextWindowExceededError:
                if not rs.cfg.context_window_fallback:
                    raise
                rs = self._routes[rs.cfg.context_window_fallback]
        return ChatResponse(
            request_id=req.request_id,
            route=req.route,
            deployment=ds.name,
            model=resp.model,
            content=resp.content,
            tool_calls=resp.tool_calls,
            finish_reason=resp.finish_reason,
            usage=resp.usage,
            cost=ds.adapter.target.price.cost(resp.usage),
            attempts=tuple(attempts),
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )

    def astream(self, route: str | ChatRequest, messages: list[Message] | None = None, **params: Any) -> ChatStream:
        """Stream one chat request. Failover is free until the first chunk reaches the caller; after
        that a failure raises :class:`StreamInterruptedError`, unless the route has ``stream_resume``.
        Errors (including a bad request) surface when the stream is iterated."""
        req = route if isinstance(route, ChatRequest) else self.request(route, messages, **params)  # type: ignore[arg-type]
        stream = ChatStream()
        stream._agen = self._governed_stream(req, stream)
        return stream

    async def _governed_stream(self, req: ChatRequest, out: ChatStream) -> AsyncIterator[ChatChunk]:
        st = self.steward
        ticket = st.ticket(req, True)
        delivered = 0
        inner: Any = None
        try:
            rs = self._validate(req)
            if ticket is not None:
                await st.admit(ticket, rs)
            settings = rs.cfg.cache
            if self.cache is not None and settings is not None and settings.enabled:
                inner = self._cached_stream(rs, req, out, settings)
            else:
                inner = self._stream(rs, req, out)
            async for chunk in inner:
                delivered += 1
                yield chunk
        except GeneratorExit:  # the caller stopped reading
            if inner is not None:
                await _aclose(inner)  # the live stream records what it generated in out.partial
            if ticket is not None:
                usage, cost, dep = out.partial or (None, 0.0, None)
                await st.fail(ticket, StreamCancelled(delivered, usage=usage, cost=cost, deployment=dep))
            raise
        except BaseException as exc:
            if ticket is not None:
                await st.fail(ticket, exc)
            raise
        if ticket is not None and out.response is not None:
            await st.succeed(ticket, out.response, delivered_chunks=delivered)

    async def _cached_stream(self, rs: RouteState, req: ChatRequest, out: ChatStream, settings: Any) -> AsyncIterator[ChatChunk]:
        """A stream through the cache: a hit replays as chunks; a miss streams live and is stored
        once whole (identical concurrent streams wait for it and replay)."""
        started = time.perf_counter()
        cache = self.cache
        hit = await cache.lookup(req, settings)
        if hit is None:
            async with cache.flight(req, settings) as flight:
                if not flight.leader:
                    hit = await flight.wait()
                if hit is None:
                    async with contextlib.aclosing(self._stream(rs, req, out)) as live:  # closed with us
                        async for chunk in live:
                            yield chunk
                    await flight.finish(out.response, complete=True)
                    return
        ttft_ms = (time.perf_counter() - started) * 1000.0
        for chunk in hit.chunks():
            yield chunk
        out.response = replace(hit.response(req), latency_ms=(time.perf_counter() - started) * 1000.0, ttft_ms=ttft_ms)

    async def _stream(self, rs: RouteState, req: ChatRequest, out: ChatStream) -> AsyncIterator[ChatChunk]:
        attempts: list[Attempt] = []
        started = time.perf_counter()
        acc = Accumulator()
        cost = 0.0
        extra_usage = Usage()
        resumed_by: list[str] = []
        (first, upstream), ds = await self._open_stream(rs, req, attempts)
        ttft_ms = (time.perf_counter() - started) * 1000.0
        idle = rs.cfg.stream_idle_timeout
        chunk: ChatChunk | None = first
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
                    out.partial = (extra_usage + seg, cost + ds.adapter.target.price.cost(seg), ds.name)
                    raise
                seg_started = time.perf_counter()
                try:
                    chunk = await _next(upstream, idle)
                except (ProviderError, TimeoutError, asyncio.TimeoutError) as exc:
                    err = exc if isinstance(exc, ProviderError) else StreamCutError(f"no chunk for {idle:g}s")
                    attempts.append(
                        Attempt(ds.name, "error", (time.perf_counter() - seg_started) * 1000.0, err.error_class,
                                getattr(err, "status", None), f"after {seg_chunks} chunk(s): {err.message}"[:300])
                    )
                    ds.breaker.on_failure(self.router.clock.now())
                    await _aclose(upstream)
                    if not rs.cfg.stream_resume or acc.tools:
                        seg = segment_cut()
                        raise StreamInterruptedError(
                            f"stream from '{ds.name}' failed after {acc.chunks} chunk(s): {err.message}",
                            delivered_chunks=acc.chunks,
                            usage=extra_usage + seg,
                            cost=cost + ds.adapter.target.price.cost(seg),
                            attempts=attempts,
                            route=rs.name,
                            deployment=ds.name,
                            request_id=req.request_id,
                        ) from err
                    # the cut segment was generated (and billed) upstream: its prompt and its tokens
                    cut = segment_cut()
                    cost += ds.adapter.target.price.cost(cut)
                    extra_usage = extra_usage + cut
                    creq = req.with_messages(resume_messages(req.messages, acc.text))
                    try:
                        (chunk, upstream), ds = await self._open_stream(rs, creq, attempts, exclude=(ds.name,))
                    except HyperionError as resume_err:
                        raise StreamInterruptedError(
                            f"stream from '{ds.name}' failed after {acc.chunks} chunk(s) and could not be "
                            f"resumed: {resume_err.message}",
                            delivered_chunks=acc.chunks,
                            usage=extra_usage,
                            cost=cost,
                            attempts=attempts,
                            route=rs.name,
                            deployment=ds.name,
                            request_id=req.request_id,
                        ) from resume_err
                    resumed_by.append(ds.name)
                    seg_req, seg_chunks, seg_chars = creq, 0, acc.chars
        finally:
            await _aclose(upstream)
        usage = (acc.usage or Usage()) + extra_usage
        cost += ds.adapter.target.price.cost(acc.usage or Usage())
        out.response = ChatResponse(
            request_id=req.request_id,
            route=req.route,
            deployment=ds.name,
            model=ds.adapter.target.model,
            content=acc.text if acc.parts or not acc.tools else None,
            tool_calls=acc.tool_calls(),
            finish_reason=acc.finish_reason,
            usage=usage,
            cost=cost,
            attempts=tuple(attempts),
            latency_ms=(time.perf_counter() - started) * 1000.0,
            ttft_ms=ttft_ms,
            resumed_by=tuple(resumed_by),
        )

    async def _open_stream(
        self, rs: RouteState, req: ChatRequest, attempts: list[Attempt], exclude: tuple[str, ...] = ()
    ) -> tuple[tuple[ChatChunk, AsyncIterator[ChatChunk]], DeploymentState]:
        async def open_one(ds: DeploymentState) -> tuple[ChatChunk, AsyncIterator[ChatChunk]]:
            agen = ds.adapter.stream(req)
            try:
                first = await agen.__anext__()
            except StopAsyncIteration:
                raise StreamCutError("stream ended before its first chunk", deployment=ds.name) from None
            except BaseException:
                await _aclose(agen)
                raise
            return first, agen

        while True:
            try:
                return await self.router.run(
                    rs, open_one, attempts, deadline=self._deadline(rs, req), stream=True,
                    exclude=exclude, request_id=req.request_id, retries=req.max_retries,
                )
            except ContextWindowExceededError:
                if not rs.cfg.context_window_fallback:
                    raise
                rs = self._routes[rs.cfg.context_window_fallback]

    async def aembed(
        self,
        route: str,
        inputs: str | list[str],
        *,
        dimensions: int | None = None,
        timeout: float | None = None,
        virtual_key: str | None = None,
        caller: Caller | None = None,
    ) -> EmbeddingResponse:
        """Embed ``inputs`` on an embedding route, with the same failover, keys, budgets and audit
        as chat requests."""
        texts = [inputs] if isinstance(inputs, str) else inputs
        # the request record carries the texts as one user turn: keys, budgets and audit see it whole
        req = self.request(route, [{"role": "user", "content": t} for t in texts] if isinstance(texts, list) else [],
                           caller=caller, virtual_key=virtual_key, timeout=timeout, max_tokens=1)
        st = self.steward
        ticket = st.ticket(req, False)
        try:
            rs = self.route(route)
            if rs.cfg.kind != "embedding":
                raise InvalidRequestError(f"route '{route}' is a {rs.cfg.kind} route, not an embedding route", route=route)
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise InvalidRequestError("inputs: must be a string or a non-empty list of strings", route=route)
            if ticket is not None:
                await st.admit(ticket, rs)
            attempts: list[Attempt] = []
            started = time.perf_counter()
            (vectors, usage), ds = await self.router.run(
                rs,
                lambda d: d.adapter.embed(texts, dimensions=dimensions),
                attempts,
                deadline=self.router.clock.now() + (timeout or rs.cfg.timeout),
                request_id=req.request_id,
            )
            resp = EmbeddingResponse(
                vectors=vectors,
                model=ds.adapter.target.model,
                deployment=ds.name,
                usage=usage,
                cost=ds.adapter.target.price.cost(usage),
                attempts=tuple(attempts),
                latency_ms=(time.perf_counter() - started) * 1000.0,
                request_id=req.request_id,
            )
        except BaseException as exc:
            if ticket is not None:
                await st.fail(ticket, exc)
            raise
        if ticket is not None:
            await st.succeed(ticket, ChatResponse(
                request_id=req.request_id, route=route, deployment=resp.deployment, model=resp.model, content=None,
                tool_calls=(), finish_reason="stop", usage=resp.usage, cost=resp.cost, attempts=resp.attempts,
                latency_ms=resp.latency_ms,
            ))
        return resp

    # -- sync twins --------------------------------------------------------------------------

    def complete(self, route: str | ChatRequest, messages: list[Message] | None = None, **params: Any) -> ChatResponse:
        return self._portal.call(self.acomplete(route, messages, **params))

    def stream(self, route: str | ChatRequest, messages: list[Message] | None = None, **params: Any) -> SyncChatStream:
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
        await self.steward.aclose()
        await self.http.aclose()
        if self.cache is not None:
            await self.cache.aclose()

    def close(self) -> None:
        """Close from sync code: the background loop of the sync twins and its pool, and flush the
        audit log (run :meth:`aclose` first on any other loop the gateway was used from)."""
        self._portal.close(self.aclose() if self._portal._loop is not None else None)
        if self._portal._loop is None and self.steward.active:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop here: flush the steward's writers on a short-lived one
                asyncio.run(self.steward.aclose())

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class ExternalCall:
    """A model call made outside the gateway, admitted by :meth:`Gateway.abegin_external`."""

    req: ChatRequest
    model: str
    provider: str
    price: Any
    ticket: Any
    started: float


class SyncChatStream:
    """Iterate a :class:`ChatStream` from sync code; ``response`` as on the async stream."""

    def __init__(self, stream: ChatStream, portal: Portal) -> None:
        self._stream = stream
        self._portal = portal

    def __iter__(self) -> Iterator[ChatChunk]:
        return self._portal.iterate(self._stream)

    @property
    def response(self) -> ChatResponse | None:
        return self._stream.response

    def collect(self) -> ChatResponse:
        for _ in self:
            pass
        assert self.response is not None
        return self.response


async def _next(agen: AsyncIterator[ChatChunk], idle: float) -> ChatChunk | None:
    try:
        async with _timeout(idle):
            return await agen.__anext__()
    except StopAsyncIteration:
        return None


async def _aclose(agen: Any) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except (HyperionError, OSError, RuntimeError):
            pass


__all__ = ["Gateway", "SyncChatStream", "ExternalCall"]
