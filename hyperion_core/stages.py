"""The stages of the request pipeline, in the order every request passes them (:data:`STAGES`).

==========  ====================================================================================
Validate    the route exists and serves this kind of request; messages, parameters and limits make
            sense; a route's ``default_max_tokens`` is applied
Authorize   a virtual key is authenticated (a warm key from memory, re-read during admission) and
            may call the route; a gateway with ``keys.required`` refuses requests without one
GuardIn     input guardrails: prompt injection blocked or flagged; PII redacted into placeholders
            (what cache, provider and audit see), blocked or flagged. Before admission: a block is free
Experiment  a split's variant (a deployment put first, or another route) before admission prices it;
            after the answer, a shadow sample mirrored in the background and a record per variant
Admit       rate limits and the budget reservation: the worst case the call may cost
Cache       an exact or semantic hit answers the request; a miss leads (or waits for) the one
            upstream call of identical concurrent requests; the answer is stored afterwards
Call        the upstream call through the router: strategy, breakers, retries, failover, the
            context-window fallback; streams open here (failover is free until the first chunk)
GuardOut    output guardrails: PII the model produced redacted, blocked or flagged (streams: per
            chunk); the caller's own values are restored once cache and audit have the placeholders
Settle      the reservation is settled at the actual cost (a cache hit: at 0, its saving recorded),
            or released, or — for a failed or cancelled stream — settled at what was generated;
            exactly once. A failure here is recorded, never put in place of a paid answer
Audit       exactly one event per request, whatever happened; it never raises into the caller
==========  ====================================================================================
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._text import suggest
from .checks import answers, check_extra, output_cap, thinking_budget, validate_chat
from .errors import (
    AccessError,
    BudgetExceededError,
    InvalidKeyError,
    InvalidRequestError,
    RouteNotFoundError,
    StreamInterruptedError,
)
from .experiments.stage import Experiment
from .governance.keys import KEY_PREFIX, KeyRecord, check_active, parse_key, verify_secret
from .pipeline import CHAT, EMBED, EXTERNAL, STREAM, RequestContext, Stage, StreamCancelled
from .stream_runner import StreamRunner, replay
from .tokens import checked_usage, prompt_tokens_bound
from .types import (
    CacheControl,
    Caller,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    RouteDecision,
    new_request_id,
)

if TYPE_CHECKING:
    from .routing import Router, RouteState
    from .services import Services

log = logging.getLogger("hyperion.pipeline")

class Parts:
    """What the stages share: the routes, the router, the services and the response cache."""

    def __init__(self, routes: dict[str, RouteState], router: Router, services: Services, cache: Any) -> None:
        self.routes = routes
        self.router = router
        self.services = services
        self.cache = cache
        self.guardrails = build_guardrails(self)

    def route(self, name: Any) -> RouteState:
        rs = self.routes.get(name) if isinstance(name, str) else None
        if rs is None:
            known = set(self.routes)
            raise RouteNotFoundError(
                f"unknown route '{name}'" + (suggest(str(name), known) or f" (routes: {', '.join(self.routes)})"),
                route=name if isinstance(name, str) else None,
            )
        return rs


def build_guardrails(parts: Parts) -> Any:
    """The gateway's guardrails, or None when no route, team or key has a policy (then GuardIn and
    GuardOut are in no route's plan and the detectors are never imported)."""
    cfg = getattr(parts.services, "cfg", None)
    top = getattr(cfg, "guardrails", None)
    if top is None and not any(getattr(rs.cfg, "guardrails", None) is not None for rs in parts.routes.values()):
        return None
    from .guardrails.engine import Guardrails

    async def call_route(route: str, prompt: str) -> str:  # a grey-zone judge behind the gateway
        rs = parts.route(route)
        req = ChatRequest(route, [{"role": "user", "content": prompt}], temperature=0, max_tokens=4)
        resp, _ = await parts.router.run_with_fallback(rs, lambda d: d.adapter.chat(req), [], resolve=parts.route,
                                                       timeout=req.timeout, request_id=req.request_id)
        return resp.content or ""

    guards = Guardrails(parts.routes, top, call_route=call_route)
    return guards if guards.active else None


# -- the stages ------------------------------------------------------------------------------------


class Validate(Stage):
    name = "validate"

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        return kind != EXTERNAL

    async def before(self, ctx: RequestContext) -> None:
        req = ctx.req
        rs = self.parts.route(req.route)
        want = "embedding" if ctx.kind == EMBED else "chat"
        if rs.cfg.kind != want:
            raise InvalidRequestError(f"route '{req.route}' is a {rs.cfg.kind} route, not a {want} route", route=req.route)
        if ctx.kind == EMBED:
            inputs = ctx.inputs
            if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
                raise InvalidRequestError("inputs: must be a string or a non-empty list of strings", route=req.route)
        else:
            validate_chat(rs, req)
        ctx.rs = rs
        if req.deployment is not None:
            pin(ctx, rs)


def pin(ctx: RequestContext, rs: RouteState) -> None:
    """``req.deployment``: that deployment only (no failover, no cache read), or a clear 404."""
    req = ctx.req
    name = req.deployment
    ds = next((d for d in rs.deployments if d.name == name), None)
    if ds is None:
        known = [d.name for d in rs.deployments]
        raise RouteNotFoundError(
            f"route '{req.route}' has no deployment '{name}'" + (suggest(str(name), known) or f" (deployments: {', '.join(known)})"),
            route=req.route,
        )
    ctx.plan = [ds]
    ctx.decision = RouteDecision(strategy="pinned", reason=f"deployment {name} pinned by the request")
    req.cache = replace(req.cache, no_cache=True) if req.cache is not None else NO_CACHE


NO_CACHE = CacheControl(no_cache=True)


class Authorize(Stage):
    name = "authorize"

    def __init__(self, parts: Parts) -> None:
        self.services = parts.services

    async def before(self, ctx: RequestContext) -> None:
        req = ctx.req
        caller = req.caller
        vk = caller.virtual_key if caller is not None else None
        sv = self.services
        if not vk:
            if sv.keys_required and not (caller is not None and (caller.internal or caller.authenticated)):
                raise InvalidKeyError("this gateway requires a virtual key (pass virtual_key='hk-...')", route=req.route)
            return
        assert caller is not None
        key_id, secret = parse_key(vk)
        cached = sv.records.get(key_id) if sv.one_trip else None
        if cached is not None and not verify_secret(cached, secret):
            cached = None
        rec = cached or await sv.keys.authenticate_record(vk)  # a cold key: one extra round trip
        if sv.one_trip and cached is None:
            if len(sv.records) > 100_000:
                sv.records.clear()
            sv.records[rec.key_id] = rec
        principal = rec.principal()
        principal.require_route(req.route)
        if req.deployment is not None:
            principal.require("deployments:pin")
        meta = {**principal.metadata, **caller.metadata} if principal.metadata else caller.metadata
        req.caller = Caller(vk, principal.key_id, principal.team, principal.user, caller.tags, meta)
        ctx.cached_record = cached


class GuardIn(Stage):
    """Input guardrails (``hyperion_core.guardrails``): prompt injection blocked or flagged, PII
    redacted into typed placeholders (what the cache keys, the provider and the audit see), blocked or
    flagged. Before Admit and Cache, so a blocked request costs nothing. Calls made by a framework's own
    client (``EXTERNAL``) can only be blocked or flagged."""

    name = "guard_in"

    def __init__(self, parts: Parts) -> None:
        self.guards = parts.guardrails

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        return self.guards is not None and self.guards.applies(rs, kind)

    async def before(self, ctx: RequestContext) -> None:
        assert self.guards is not None
        await self.guards.check_input(ctx)


class Admit(Stage):
    name = "admit"

    def __init__(self, parts: Parts) -> None:
        self.services = parts.services

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        return self.services.governance is not None

    async def before(self, ctx: RequestContext) -> None:
        """Rate limits and a reservation of the worst case over the deployments that may answer: each
        model's prompt counted with a bound never below its provider's count."""
        sv, req = self.services, ctx.req
        priced = ctx.priced
        if priced is None:
            assert ctx.rs is not None
            priced = [(d.adapter.target.price, d.adapter.target.model) for d in ctx.rs.deployments]
        c = req.caller or Caller()
        bounds = {model: prompt_tokens_bound(req, model) for _, model in priced}
        cap = output_cap(req)
        window = max((p.max_output_tokens or 4096) for p, _ in priced)
        max_out = ((cap or window) + thinking_budget(req)) * answers(req)
        worst = max(p.estimate(bounds[model], max_out) for p, model in priced)
        cached = ctx.cached_record
        # a warm key's record is re-read in the admission round trip: revocation and expiry still
        # take effect at once, and Redis admission stays one round trip
        reads = (sv.keys.record_key(cached.key_id),) if cached is not None else ()
        try:
            ctx.admission = await sv.governance.admit(
                # one reservation per admitted call, whatever id the caller chose: a shared request_id
                # must never let many calls share (and settle) one hold
                f"{req.request_id}/{new_request_id()}",
                {"key": c.key_id, "team": c.team, "user": c.user, "route": req.route},
                tokens_estimate=max(bounds.values()) + max_out,
                cost_estimate_usd=worst,
                reads=reads,
                hold_s=_lifetime(ctx),
            )
        except BudgetExceededError as exc:
            if cap is None:
                exc.message += (
                    f"; with no max_tokens set, this request reserved the model's whole output window "
                    f"({max_out:,} tokens): pass max_tokens, or set default_max_tokens on route '{req.route}'"
                )
                exc.args = (exc.message,)
            raise
        if reads:
            raw = ctx.admission.reads[0]
            try:
                if raw is None:
                    raise InvalidKeyError(f"unknown virtual key '{KEY_PREFIX}{cached.key_id}.…'")
                check_active(KeyRecord.loads(raw), sv.keys.now())
            except AccessError:
                sv.records.pop(cached.key_id, None)
                admission, ctx.admission = ctx.admission, None
                await sv.governance.release(admission)
                raise


#: seconds a reservation outlives its request's deadline (admission comes first; clocks and queues lag)
HOLD_MARGIN_S = 30.0


def _lifetime(ctx: RequestContext) -> float | None:
    """The longest a request can run (its deadline, a stream's total deadline) plus a margin: what its
    budget hold must cover. None for calls made elsewhere (their lifetime is not the gateway's)."""
    rs = ctx.rs
    if rs is None or ctx.kind == EXTERNAL:
        return None
    cfg = rs.cfg
    life = max(ctx.req.timeout or 0.0, cfg.timeout, (cfg.stream_timeout or 0.0) if ctx.kind == STREAM else 0.0)
    return life + HOLD_MARGIN_S


class Cache(Stage):
    name = "cache"

    def __init__(self, parts: Parts) -> None:
        self.cache = parts.cache

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        settings = rs.cfg.cache if rs is not None else None
        return self.cache is not None and settings is not None and settings.enabled and kind in (CHAT, STREAM)

    async def before(self, ctx: RequestContext) -> None:
        assert ctx.rs is not None
        settings, cache, req = ctx.rs.cfg.cache, self.cache, ctx.req
        hit = await cache.lookup(req, settings)
        if hit is None:
            flight = await ctx.exit_stack().enter_async_context(cache.flight(req, settings))
            if not flight.leader:
                hit = await flight.wait()
            if hit is None:
                ctx.flight = flight  # this request makes the call; the others wait for its answer
                return
        if ctx.kind == STREAM:
            ctx.hit = hit  # replayed as chunks by the Call stage
        else:
            ctx.response = hit.response(req, latency_ms=(time.perf_counter() - ctx.perf) * 1000.0)

    async def after(self, ctx: RequestContext) -> None:
        if ctx.flight is not None and ctx.error is None and ctx.response is not None:
            await ctx.flight.finish(ctx.response, complete=True)


class Call(Stage):
    """The upstream call (skipped when the cache answered)."""

    name = "call"
    is_call = True

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.router = parts.router

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        return kind != EXTERNAL

    async def before(self, ctx: RequestContext) -> None:
        rs = ctx.rs
        if rs is not None and rs.planner is not None and ctx.plan is None and ctx.response is None and ctx.hit is None:
            ctx.plan, decision = await rs.planner(ctx)
            if decision is not None:
                ctx.decision = decision
        if ctx.kind == CHAT:
            if ctx.response is None:
                ctx.response = await self._chat(ctx)
        elif ctx.kind == STREAM:
            if ctx.hit is not None:
                ctx.stream = replay(ctx, ctx.perf)
            else:
                runner = StreamRunner(self.router, self.parts.route, ctx)
                await runner.open()
                ctx.stream = runner
        else:
            await self._embed(ctx)

    async def _chat(self, ctx: RequestContext) -> ChatResponse:
        req, attempts, started = ctx.req, [], time.perf_counter()
        assert ctx.rs is not None
        resp, ds = await self.router.run_with_fallback(
            ctx.rs, lambda d: d.adapter.chat(req), attempts, resolve=self.parts.route, timeout=req.timeout,
            request_id=req.request_id, retries=req.max_retries, ordered=ctx.plan, ctx=ctx,
        )
        chars = len(resp.content or "")
        if resp.tool_calls:
            chars += sum(len(t.arguments) for t in resp.tool_calls)
        usage, note = checked_usage(resp.usage, req, ds.adapter.target.model, chars)
        if note is not None:
            ctx.note("usage", note)
        return ChatResponse(
            request_id=req.request_id,
            route=req.route,
            deployment=ds.name,
            model=resp.model,
            content=resp.content,
            tool_calls=resp.tool_calls,
            finish_reason=resp.finish_reason,
            usage=usage,
            cost=ds.adapter.target.price.cost(usage),
            attempts=tuple(attempts),
            latency_ms=(time.perf_counter() - started) * 1000.0,
            provider_id=resp.id,
            system_fingerprint=resp.system_fingerprint,
            logprobs=resp.logprobs,
            reasoning=resp.reasoning,
            decision=ctx.decision,
        )

    async def _embed(self, ctx: RequestContext) -> None:
        req, attempts, started = ctx.req, [], time.perf_counter()
        assert ctx.rs is not None and ctx.inputs is not None
        inputs, dims = ctx.inputs, ctx.dimensions
        (vectors, usage), ds = await self.router.run_with_fallback(
            ctx.rs, lambda d: d.adapter.embed(inputs, dimensions=dims), attempts, resolve=self.parts.route,
            timeout=req.timeout, request_id=req.request_id, ordered=ctx.plan, ctx=ctx,
        )
        emb = EmbeddingResponse(
            vectors=vectors,
            model=ds.adapter.target.model,
            deployment=ds.name,
            usage=usage,
            cost=ds.adapter.target.price.cost(usage),
            attempts=tuple(attempts),
            latency_ms=(time.perf_counter() - started) * 1000.0,
            request_id=req.request_id,
        )
        ctx.embedding = emb
        ctx.response = ChatResponse(  # what settle and audit see
            request_id=req.request_id, route=req.route, deployment=emb.deployment, model=emb.model, content=None,
            tool_calls=(), finish_reason="stop", usage=emb.usage, cost=emb.cost, attempts=emb.attempts,
            latency_ms=emb.latency_ms,
        )


class GuardOut(Stage):
    """Output guardrails: personal data the model produced itself is redacted, blocked or flagged (a
    stream's chunks were checked as they went, by the filter GuardIn set). The caller's own values are
    put back when the request ends (``ctx.restore``), after the cache stored and audit recorded the
    placeholders."""

    name = "guard_out"

    def __init__(self, parts: Parts) -> None:
        self.guards = parts.guardrails

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        return self.guards is not None and kind not in (EXTERNAL, EMBED) and self.guards.applies(rs, kind)

    async def before(self, ctx: RequestContext) -> None:
        assert self.guards is not None
        self.guards.check_output(ctx)


class Settle(Stage):
    name = "settle"
    always = True

    def __init__(self, parts: Parts) -> None:
        self.services = parts.services

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        return self.services.governance is not None

    async def after(self, ctx: RequestContext) -> None:
        admission = ctx.admission
        if admission is None:
            return
        ctx.admission = None  # exactly once, whatever happens below
        gov = self.services.governance
        release = False
        if ctx.error is None:
            resp = ctx.response
            assert resp is not None
            if resp.cache is not None:  # nothing was paid upstream: record what was saved
                actual, kw = 0.0, {"saved_usd": resp.cache.cost_saved, "deployment": resp.cache.source_deployment,
                                   "model": resp.model}
            else:
                u = resp.usage
                actual, kw = resp.cost, {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                                         "deployment": resp.deployment, "model": resp.model}
        else:
            usage, actual, dep = _billed(ctx)
            if actual > 0 and usage is not None:  # a cut or cancelled stream: billed for what it generated
                kw = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                      "deployment": dep}
            else:
                release, actual, kw = True, 0.0, {}
        try:
            if release:
                await gov.release(admission)
            else:
                await gov.settle(admission, actual, **kw)
        except Exception as exc:  # noqa: BLE001 - the answer stands: settle it later, audit says so now
            ctx.settle_error = exc
            self.services.pending.add(admission, actual, release=release, **kw)
            log.error("settle failed for request %s: %s: %s; queued to be written when the store is back",
                      ctx.req.request_id, type(exc).__name__, exc)
            return
        if self.services.pending:
            await self.services.pending.replay()


def _billed(ctx: RequestContext) -> tuple[Any, float, str | None]:
    err = ctx.error
    if isinstance(err, (StreamInterruptedError, StreamCancelled)):
        return err.usage, err.cost, getattr(err, "deployment", None)
    if ctx.billed is not None:
        return ctx.billed
    return None, 0.0, None


class Audit(Stage):
    name = "audit"
    always = True

    def __init__(self, parts: Parts) -> None:
        self.services = parts.services
        #: events that could not be built or handed to the log (each also logged)
        self.failures = 0
        if self.services.audit is not None:  # built once, not per request (audit imports lazily)
            from .audit import event_from_error, event_from_response

            self._builders = (event_from_error, event_from_response)

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        return self.services.audit is not None

    async def after(self, ctx: RequestContext) -> None:
        event_from_error, event_from_response = self._builders
        sv = self.services
        audit, req = sv.audit, ctx.req
        meta = dict(ctx.notes) if ctx.notes else None
        if ctx.settle_error is not None:
            meta = {**(meta or {}), "settle_error": f"{type(ctx.settle_error).__name__}: {ctx.settle_error}"}
        try:
            if ctx.error is None:
                assert ctx.response is not None
                event = event_from_response(
                    ctx.response, req.caller, stream=ctx.streamed, store_content=audit.store_content,
                    messages=req.messages, delivered_chunks=ctx.delivered if ctx.kind == STREAM else None,
                    guardrails=ctx.guardrails or (), metadata=meta, secrets=sv.secrets, time=ctx.started,
                )
            else:
                exc = ctx.error
                usage, cost, _ = _billed(ctx)
                event = event_from_error(
                    exc, req.request_id, req.route, await self._attributed(req.caller), stream=ctx.streamed,
                    deployment=getattr(exc, "deployment", None), attempts=getattr(exc, "attempts", None),
                    usage=usage, cost=cost, latency_ms=(time.perf_counter() - ctx.perf) * 1000.0,
                    delivered_chunks=getattr(exc, "delivered_chunks", None), store_content=audit.store_content,
                    guardrails=ctx.guardrails or (), messages=req.messages, metadata=meta, secrets=sv.secrets,
                    time=ctx.started,
                )
            audit.emit(event)
        except Exception as exc:  # noqa: BLE001 - audit never fails a request; it counts and says so
            self.failures += 1
            log.error("audit event for request %s could not be written: %s: %s", req.request_id, type(exc).__name__, exc)

    async def _attributed(self, caller: Caller | None) -> Caller | None:
        """A caller refused before its key was authenticated (unknown, revoked or expired key; a bad
        route) is audited under the key id it presented, when that parses — and under the key's team
        and user when the presented secret is the key's own (never the secret itself)."""
        if caller is None or caller.key_id is not None or not caller.virtual_key:
            return caller
        try:
            key_id, secret = parse_key(caller.virtual_key)
        except AccessError:
            return caller
        team, user = caller.team, caller.user
        try:
            rec = await self.services.keys.get(key_id)
            if rec is not None and verify_secret(rec, secret):
                team, user = rec.team or team, rec.user or user
        except Exception:  # noqa: BLE001 - attribution is best effort; the denial is audited regardless
            pass
        return replace(caller, key_id=key_id, team=team, user=user)


#: every stage a request passes, in order; each route and request kind runs the ones that apply
STAGES: tuple[type[Stage], ...] = (
    Validate, Authorize, GuardIn, Experiment, Admit, Cache, Call, GuardOut, Settle, Audit,
)


def build_stages(parts: Parts) -> list[Stage]:
    return [cls(parts) for cls in STAGES]  # type: ignore[call-arg]


__all__ = [
    "STAGES", "Parts", "build_stages", "output_cap", "thinking_budget", "answers", "validate_chat", "check_extra",
    "Validate", "Authorize", "GuardIn", "Experiment", "Admit", "Cache", "Call", "GuardOut", "Settle", "Audit",
]
