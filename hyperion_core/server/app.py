"""The HTTP door: OpenAI- and Anthropic-compatible endpoints over one :class:`~hyperion_core.Gateway`.

Thin by design: read the body with the wire codec (``hyperion_core.wire``), build the ``ChatRequest``
with the caller's virtual key (``Authorization: Bearer hk-...`` or ``x-api-key``; a client can never
make a request ``internal``), run it through the gateway's one pipeline, write the answer with the
same codec. Errors are each wire's own error body and status (Retry-After on 429s).

=====================================  ===============================================================
``POST /v1/chat/completions``          OpenAI Chat Completions, JSON or SSE (``stream_options``)
``POST /v1/embeddings``                OpenAI Embeddings (float or base64)
``GET  /v1/models``                    the routes the caller's key may call (OpenAI list; Anthropic's
                                       shape when the request carries ``anthropic-version``)
``POST /v1/messages``                  Anthropic Messages, JSON or SSE (needs ``anthropic-version``)
``POST /v1/responses``                 OpenAI Responses, JSON or SSE events (``wire/responses.py``): text,
                                       instructions, function tools and their call/output items
``POST /v1/completions``               OpenAI legacy Completions, JSON or SSE (``wire/completions.py``):
                                       one prompt as one user message on the route
``GET  /healthz``                      the process is up
``GET  /readyz``                       config loaded, Redis answering (when state is in Redis), and
                                       every route with a deployment whose breaker is not open
``GET  /metrics``                      Prometheus (``server/metrics.py``)
``/admin/v1/...``                      keys, spend, audit, routes, budgets (``server/admin.py``)
=====================================  ===============================================================

Every answer carries ``x-hyperion-request-id``, ``-route`` and, when known, ``-deployment``,
``-attempts``, ``-cache`` (the tier, or ``miss``) and ``-cost`` (USD).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ..deadline import timeout
from ..errors import HyperionError, InvalidKeyError, RouteNotFoundError
from ..gateway import Gateway
from ..types import Caller, ChatResponse, new_request_id
from ..wire import JSON_CONTENT_TYPE, SSE_CONTENT_TYPE, RequestBodyError
from ..wire import anthropic as anthropic_wire
from ..wire import completions as completions_wire
from ..wire import openai as openai_wire
from ..wire import responses as responses_wire
from ..wire.common import load_body
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .oidc import OIDCSettings, OIDCVerifier, looks_like_jwt
from .streams import SSEResponse

log = logging.getLogger("hyperion.server")

H_PREFIX = "x-hyperion-"


@dataclass(slots=True, frozen=True)
class ServerSettings:
    """How the server treats requests (``hyperion serve`` flags)."""

    #: refuse model calls that carry no virtual key (401), whatever the config's ``keys.required`` says
    require_keys: bool = True
    #: largest request body in bytes; a larger one is answered 413
    max_body_bytes: int = 4 * 1024 * 1024
    #: seconds a client may take to send its whole body (slow clients are answered 408)
    body_timeout_s: float = 30.0
    #: serve the admin API under /admin/v1
    admin: bool = True
    #: serve Prometheus metrics under /metrics
    metrics: bool = True
    #: accept OIDC bearer tokens (JWTs) on the admin API, besides virtual keys
    oidc: OIDCSettings | None = None
    #: OpenTelemetry spans through the global tracer provider (``server/tracing.py``; the ``otel`` extra)
    otel: bool = False
    #: also accept ``oidc`` tokens on the model endpoints: the token's user (and team) are the budget
    #: and rate-limit subjects, its roles must include ``call``
    oidc_model_calls: bool = False


def body_error(message: str, status: int) -> RequestBodyError:
    """A body the server refuses before any wire reads it (413 too large, 408 too slow): the wire's
    400 body, sent with ``status`` (``http_status``; not an error class of its own, so the codecs'
    one-entry-per-class tables stay the whole error tree)."""
    exc = RequestBodyError(message, code="request_too_large" if status == 413 else "request_timeout")
    exc.http_status = status  # type: ignore[attr-defined]
    return exc


def credential(request: Request) -> str | None:
    """The virtual key a request presents: ``Authorization: Bearer <key>`` or ``x-api-key``."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class Door:
    """The request handlers of one app: its gateway, settings and metrics."""

    def __init__(self, gateway: Gateway, settings: ServerSettings, *, owns_gateway: bool,
                 tracing: Any = None) -> None:
        self.gw = gateway
        self.settings = settings
        self.owns_gateway = owns_gateway
        self.metrics = Metrics() if settings.metrics else None
        self.tracing = tracing  # server/tracing.Tracing when configured
        self.inflight = 0
        self._breakers_at = 0.0
        self.oidc = OIDCVerifier(settings.oidc) if settings.oidc is not None else None

    # -- request reading -------------------------------------------------------------------------------
    async def caller(self, request: Request) -> Caller | None:
        key = credential(request)
        if key is None:
            if self.settings.require_keys:
                raise InvalidKeyError(
                    "missing virtual key: send 'Authorization: Bearer hk-...' (OpenAI SDKs: api_key=) "
                    "or 'x-api-key: hk-...'"
                )
            return None
        if self.oidc is not None and self.settings.oidc_model_calls and looks_like_jwt(key):
            p = await self.oidc.principal(key)  # 401 naming why a token is refused
            p.require("call")
            return Caller(key_id=p.key_id, team=p.team, user=p.user, authenticated=True)
        return Caller(virtual_key=key)  # never internal: that is for the gateway's own calls

    async def body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise body_error(f"request body of {int(declared):,} bytes exceeds this server's limit "
                             f"of {limit:,} bytes", 413)
        chunks: list[bytes] = []
        size = 0

        async def read() -> None:
            nonlocal size
            async for piece in request.stream():
                size += len(piece)
                if size > limit:
                    raise body_error(f"request body exceeds this server's limit of {limit:,} bytes", 413)
                chunks.append(piece)

        try:
            async with timeout(self.settings.body_timeout_s):  # a timer, not a task per request
                await read()
        except (TimeoutError, asyncio.TimeoutError):  # the same class from 3.11
            raise body_error(f"the request body did not arrive within {self.settings.body_timeout_s:g} s",
                             408) from None
        return b"".join(chunks)

    def pinned(self, data: dict[str, Any]) -> str | None:
        """``model: "<route>/<deployment>"`` (when ``<route>/<deployment>`` is not itself a route):
        the body's model becomes the route, the deployment is returned (the pipeline checks that the key
        may pin and that the deployment exists)."""
        name = data.get("model")
        if not isinstance(name, str) or "/" not in name or name in self.gw.routes:
            return None
        route, _, dep = name.rpartition("/")
        if route not in self.gw.routes or not dep:
            return None
        data["model"] = route
        return dep

    def allow(self, data: dict[str, Any]) -> tuple[str, ...]:
        name = data.get("model")
        if not isinstance(name, str) or name not in self.gw.routes:
            return ()
        return tuple(self.gw.route(name).cfg.allow_params)

    # -- answers ---------------------------------------------------------------------------------------
    @staticmethod
    def headers(rid: str, route: str, resp: Any = None, deployment: str | None = None) -> dict[str, str]:
        h = {f"{H_PREFIX}request-id": rid, "x-request-id": rid, "request-id": rid}
        if route:
            h[f"{H_PREFIX}route"] = route
        dep = getattr(resp, "deployment", None) or deployment
        if dep:
            h[f"{H_PREFIX}deployment"] = dep
        if resp is not None:
            h[f"{H_PREFIX}attempts"] = str(max(len(resp.attempts), 1 if getattr(resp, "cache", None) is None else 0))
            cache = getattr(resp, "cache", None)
            h[f"{H_PREFIX}cache"] = cache.tier if cache is not None else "miss"
            h[f"{H_PREFIX}cost"] = f"{resp.cost:.10f}".rstrip("0").rstrip(".") or "0"
            decision = getattr(resp, "decision", None)
            if decision is not None:
                h[f"{H_PREFIX}route-reason"] = decision.reason.encode("ascii", "replace").decode()
                if decision.variant:
                    h[f"{H_PREFIX}variant"] = decision.variant
        return h

    def error(self, wire: Any, endpoint: str, exc: BaseException, rid: str, route: str, model: Any = None) -> Response:
        if isinstance(exc, RouteNotFoundError):
            # the pipeline's message lists every route; a client learns only about the model it named
            name = model if isinstance(model, str) else exc.route
            text = (f"model: {name}" if wire is anthropic_wire
                    else f"The model `{name}` does not exist or you do not have access to it.")
            exc = RouteNotFoundError(text, request_id=rid)
        if isinstance(exc, HyperionError) and not exc.request_id:
            exc.request_id = rid
        if not isinstance(exc, HyperionError):
            log.error("request %s failed: %s", rid, type(exc).__name__, exc_info=exc)
        reply = wire.error_reply(exc)
        status = getattr(exc, "http_status", None) or reply.status
        if self.metrics is not None:
            self.metrics.failed(endpoint, route or "-", exc, status)
        headers = {**self.headers(rid, route if not isinstance(exc, RouteNotFoundError) else ""), **reply.headers}
        if status == 408:
            headers["connection"] = "close"
        return Response(reply.content, status, headers=headers, media_type=JSON_CONTENT_TYPE)

    def _breakers(self, resp: Any = None) -> None:
        """Breaker gauges: on every scrape, after a request that failed over or retried, and otherwise
        at most every 0.5 s (reading every deployment's health per request cost ~4 µs)."""
        if self.metrics is None:
            return
        now = time.monotonic()
        if resp is not None and len(resp.attempts) <= 1 and now - self._breakers_at < 0.5:
            return
        self._breakers_at = now
        self.metrics.breakers(self.gw.health())

    # -- chat (both wires) ------------------------------------------------------------------------------
    async def chat(self, request: Request, wire: Any, endpoint: str) -> Response | SSEResponse:
        rid = new_request_id()
        route, model, req = "", None, None
        t0 = time.time_ns()
        self.inflight += 1
        try:
            if wire is anthropic_wire and not request.headers.get("anthropic-version"):
                raise RequestBodyError("anthropic-version: header is required")
            caller = await self.caller(request)
            raw = await self.body(request)
            data = load_body(raw, wire.NOT_JSON, wire.NOT_OBJECT)
            model = data.get("model")
            pinned = self.pinned(data)
            route = data["model"] if isinstance(model, str) else ""
            parse = (wire.parse_chat if wire is openai_wire else wire.parse_messages if wire is anthropic_wire
                     else wire.parse_completions if wire is completions_wire else wire.parse_responses)
            parsed = parse(data, allow=self.allow(data), caller=caller, request_id=rid)
            req = parsed.request
            req.deployment = pinned
            if not parsed.stream:
                resp = await self.gw.acomplete(req)
                if wire is openai_wire:
                    body = openai_wire.encode_chat_completion(resp, model=route)
                elif wire is anthropic_wire:
                    body = anthropic_wire.encode_message(resp, model=route, id=f"msg_{rid}")
                elif wire is completions_wire:
                    body = completions_wire.encode_completion(resp, model=route, id=f"cmpl-{rid}")
                else:
                    body = responses_wire.encode_response(resp, model=route, id=f"resp_{rid}", request=data)
                if self.metrics is not None:
                    self.metrics.answered(endpoint, resp, route)
                    self._breakers(resp)
                if self.tracing is not None:
                    self.tracing.record(endpoint, route, t0, headers=request.headers, request=req, response=resp,
                                        request_id=rid)
                return Response(body, 200, headers=self.headers(rid, route, resp), media_type=JSON_CONTENT_TYPE)
            stream = await self.gw.open_stream(req)
            try:
                first = await stream.__anext__()
            except StopAsyncIteration:
                first = None
            except BaseException:
                await stream.aclose()
                raise
            if wire is openai_wire:
                enc: Any = openai_wire.ChunkEncoder(id=f"chatcmpl-{rid}", model=route,
                                                    include_usage=parsed.include_usage)
            elif wire is anthropic_wire:
                enc = anthropic_wire.EventEncoder(id=f"msg_{rid}", model=route)
            elif wire is completions_wire:
                enc = completions_wire.TextChunkEncoder(id=f"cmpl-{rid}", model=route,
                                                        include_usage=parsed.include_usage)
            else:
                enc = responses_wire.EventEncoder(id=f"resp_{rid}", model=route, request=data)
            headers = self.headers(rid, route, deployment=first.deployment if first is not None else None)
            headers.update({"content-type": SSE_CONTENT_TYPE, "cache-control": "no-cache", "x-accel-buffering": "no"})
            self.inflight += 1  # until the stream ends (the handler returns first)
            trace = (t0, request.headers, req, rid)
            return SSEResponse(stream, first, enc, headers,
                               on_end=self._stream_end(stream, endpoint, route, wire, trace))
        except (ClientDisconnect, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the wire's format
            if self.tracing is not None:
                self.tracing.record(endpoint, route, t0, headers=request.headers, request=req, error=exc,
                                    request_id=rid)
            return self.error(wire, endpoint, exc, rid, route, model)
        finally:
            self.inflight -= 1

    def _stream_end(self, stream: Any, endpoint: str, route: str, wire: Any, trace: tuple[Any, ...]) -> Any:
        def done(outcome: str, exc: BaseException | None) -> None:
            self.inflight -= 1
            if self.tracing is not None:
                t0, headers, req, rid = trace
                self.tracing.record(endpoint, route, t0, headers=headers, request=req, response=stream.response,
                                    error=exc, request_id=rid, outcome=outcome)
            m = self.metrics
            if m is None:
                return
            resp: ChatResponse | None = stream.response
            if outcome == "ok" and resp is not None:
                m.answered(endpoint, resp, route)
            elif outcome == "cancelled":
                m.cancelled(endpoint, route)
            elif exc is not None:
                m.failed(endpoint, route, exc, wire.error_reply(exc).status)
            self._breakers()

        return done

    async def chat_completions(self, request: Request) -> Any:
        return await self.chat(request, openai_wire, "chat.completions")

    async def messages(self, request: Request) -> Any:
        return await self.chat(request, anthropic_wire, "messages")

    async def responses(self, request: Request) -> Any:
        return await self.chat(request, responses_wire, "responses")

    async def completions(self, request: Request) -> Any:
        return await self.chat(request, completions_wire, "completions")

    # -- embeddings and models --------------------------------------------------------------------------
    async def embeddings(self, request: Request) -> Response:
        rid = new_request_id()
        route, model = "", None
        t0 = time.time_ns()
        try:
            caller = await self.caller(request)
            data = load_body(await self.body(request), openai_wire.NOT_JSON, openai_wire.NOT_OBJECT)
            model = data.get("model")
            route = model if isinstance(model, str) else ""
            parsed = openai_wire.parse_embeddings(data)
            resp = await self.gw.aembed(parsed.route, parsed.inputs, dimensions=parsed.dimensions, caller=caller)
            body = openai_wire.encode_embeddings(resp, model=route, encoding_format=parsed.encoding_format)
            if self.metrics is not None:
                self.metrics.answered("embeddings", resp, route)
            if self.tracing is not None:
                self.tracing.record("embeddings", route, t0, headers=request.headers, response=resp,
                                    request_id=resp.request_id or rid)
            return Response(body, 200, headers=self.headers(rid if not resp.request_id else resp.request_id, route,
                                                            resp), media_type=JSON_CONTENT_TYPE)
        except ClientDisconnect:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the wire's format
            if self.tracing is not None:
                self.tracing.record("embeddings", route, t0, headers=request.headers, error=exc, request_id=rid)
            return self.error(openai_wire, "embeddings", exc, rid, route, model)

    async def allowed_routes(self, request: Request) -> list[str]:
        key = credential(request)
        if key is None:
            await self.caller(request)  # raises when keys are required
            return self.gw.routes
        if self.oidc is not None and self.settings.oidc_model_calls and looks_like_jwt(key):
            principal = await self.oidc.principal(key)
        else:
            principal = await self.gw.keys.authenticate(key)
        if "call" not in principal.permissions:
            return []
        return [r for r in self.gw.routes if "*" in principal.routes or r in principal.routes]

    async def models(self, request: Request) -> Response:
        rid = new_request_id()
        anthropic = bool(request.headers.get("anthropic-version"))
        wire = anthropic_wire if anthropic else openai_wire
        try:
            routes = await self.allowed_routes(request)
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the wire's format
            return self.error(wire, "models", exc, rid, "")
        if anthropic:
            data = [{"type": "model", "id": r, "display_name": r, "created_at": "1970-01-01T00:00:00Z"} for r in routes]
            body = orjson.dumps({"data": data, "has_more": False, "first_id": routes[0] if routes else None,
                                 "last_id": routes[-1] if routes else None})
        else:
            body = openai_wire.encode_models(routes)
        return Response(body, 200, headers=self.headers(rid, ""), media_type=JSON_CONTENT_TYPE)

    # -- health -----------------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return Response(orjson.dumps({"status": "ok"}), 200, media_type=JSON_CONTENT_TYPE)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {"config": "ok"}
        ready = True
        if self.gw.config.state.backend == "redis":
            try:
                await asyncio.wait_for(self.gw.services.client().ping(), 2.0)
                checks["redis"] = "ok"
            except Exception as exc:  # noqa: BLE001 - a readiness check reports, it does not raise
                ready = False
                checks["redis"] = f"unreachable: {type(exc).__name__}"
        routes: dict[str, str] = {}
        for name, deps in self.gw.health().items():
            open_ = [d for d, snap in deps.items() if snap.get("state") == "open"]
            if deps and len(open_) == len(deps):
                ready = False
                routes[name] = f"every deployment's breaker is open ({', '.join(open_)})"
            else:
                routes[name] = "ok"
        checks["routes"] = routes
        return ready, checks

    async def readyz(self, request: Request) -> Response:
        ready, checks = await self.readiness()
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return Response(orjson.dumps(body), 200 if ready else 503, media_type=JSON_CONTENT_TYPE)

    async def metrics_endpoint(self, request: Request) -> Response:
        assert self.metrics is not None
        self._breakers()
        return Response(self.metrics.render(), 200, media_type=METRICS_CONTENT_TYPE)

    # -- lifecycle --------------------------------------------------------------------------------------
    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) for requests and streams still in flight."""
        deadline = time.monotonic() + timeout
        while self.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        if self.owns_gateway:
            await self.gw.aclose()
        elif self.gw.services.audit is not None:
            await self.gw.services.audit.aflush()


def create_app(
    gateway: Gateway | str | os.PathLike[str] | Mapping[str, Any],
    settings: ServerSettings | None = None,
    *,
    drain_timeout: float = 30.0,
    tracer_provider: Any = None,
) -> HotPaths:
    """The ASGI app of ``hyperion serve``. ``gateway``: a :class:`Gateway` (the caller keeps owning it)
    or what builds one (a config file path, a mapping): then the app closes it on shutdown.
    ``tracer_provider``: an OpenTelemetry tracer provider for the request spans (``server/tracing.py``);
    ``settings.otel`` or ``HYPERION_OTEL=1`` use the global one; otherwise no tracing."""
    settings = settings or ServerSettings()
    owns = not isinstance(gateway, Gateway)
    gw = Gateway(Path(gateway) if isinstance(gateway, (str, os.PathLike)) else gateway) if owns else gateway
    door = Door(gw, settings, owns_gateway=owns)
    if tracer_provider is not None or settings.otel or os.environ.get("HYPERION_OTEL") == "1":
        from .tracing import Tracing

        door.tracing = Tracing(door.gw, tracer_provider)
    # the model endpoints (POST): served by HotPaths directly, and routed by Starlette as well
    model_calls = {
        "/v1/chat/completions": door.chat_completions, "/chat/completions": door.chat_completions,
        "/v1/messages": door.messages, "/v1/responses": door.responses, "/responses": door.responses,
        "/v1/completions": door.completions, "/completions": door.completions,
    }
    routes = [Route(path, handler, methods=["POST"]) for path, handler in model_calls.items()] + [
        Route("/v1/embeddings", door.embeddings, methods=["POST"]),
        Route("/v1/models", door.models, methods=["GET"]),
        Route("/healthz", door.healthz, methods=["GET"]),
        Route("/readyz", door.readyz, methods=["GET"]),
    ]
    if settings.metrics:
        routes.append(Route("/metrics", door.metrics_endpoint, methods=["GET"]))
    if settings.admin:
        from .admin import admin_routes

        routes.extend(admin_routes(door))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        await door.drain(drain_timeout)
        await door.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.door = door
    app.state.gateway = gw
    return HotPaths(app, model_calls)


class HotPaths:
    """The model endpoints (``POST``) straight to their handlers, everything else (other methods,
    admin, metrics, lifespan) through the Starlette app. The handlers answer every failure in their
    wire's format themselves, so Starlette's routing, error and exception middleware add nothing there
    but ~25 µs of wrappers per request and per streamed chunk. Attributes are the Starlette app's."""

    def __init__(self, app: Starlette, handlers: dict[str, Any]) -> None:
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.handlers.get(scope["path"])
            if handler is not None:
                scope["app"] = self.app
                try:
                    response = await handler(Request(scope, receive))
                except ClientDisconnect:  # the client left while sending its body: nobody to answer
                    return
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


__all__ = ["Door", "HotPaths", "body_error", "ServerSettings", "create_app", "credential"]
