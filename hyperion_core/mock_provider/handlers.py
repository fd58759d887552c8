"""Provider endpoint handlers: one pipeline shared by the three wires.

For every chat or embeddings request:

1. count it in the stats of its deployment (first path segment, else ``default``);
2. authenticate with the wire's header: missing key, or a key starting with
   ``bad`` -> 401 in the wire's error format;
3. parse the body into the common form (invalid -> 400 ``bad_request``);
4. take the first matching fault (``faults.FaultBook.take``) and apply its
   latency, hang and error effects;
5. build the deterministic reply (``content.build_reply`` / ``embeddings.embed``)
   and send it as JSON or as a stream, applying cut / malformed / chunk delay.

A wire is any module exposing ``NAME``, ``api_key``, ``error_body``,
``parse_chat``, ``chat_body``, ``chat_events``, ``MALFORMED_BODY``,
``MALFORMED_EVENT`` (and ``parse_embed`` / ``embed_body`` for embeddings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TypeVar

import orjson
from aiohttp import web

from . import delivery, gemini_wire, openai_wire
from .common import BadRequest, ChatRequest, Refused, Reject, Reply
from .content import build_reply, count_tokens, prompt_tokens
from .embeddings import embed
from .faults import Fault
from .state import MockState
from .strict import validate


def deployment_of(request: web.Request) -> str:
    return request.match_info.get("dep", "default")


T = TypeVar("T")
Endpoint = Callable[[web.Request, ModuleType, str], Awaitable[web.StreamResponse]]


class Handlers:
    def __init__(self, state: MockState) -> None:
        self.state = state

    # -------------------------------------------------------------- endpoints

    async def chat(self, request: web.Request, wire: ModuleType) -> web.StreamResponse:
        return await self._guarded(request, wire, "chat", self._chat)

    async def embed(self, request: web.Request, wire: ModuleType) -> web.StreamResponse:
        return await self._guarded(request, wire, "embeddings", self._embed)

    async def models(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, openai_wire, "models", self._models)

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        _, method = gemini_wire.split_tail(request.match_info["tail"])
        if method in gemini_wire.CHAT_METHODS:
            return await self.chat(request, gemini_wire)
        if method in gemini_wire.EMBED_METHODS:
            return await self.embed(request, gemini_wire)
        return await self._guarded(request, gemini_wire, "unknown", self._unknown_method)

    # --------------------------------------------------------------- pipeline

    async def _guarded(
        self, request: web.Request, wire: ModuleType, endpoint: str, handler: Endpoint
    ) -> web.StreamResponse:
        dep = deployment_of(request)
        self.state.stats.request(dep, wire.NAME, endpoint)
        try:
            return await handler(request, wire, dep)
        except Refused as exc:  # strict validation: the wire's own 400, already rendered
            self.state.stats.status(dep, exc.status)
            self.state.stats.refusal(dep, str(exc))
            return delivery.error_response(exc.status, exc.body, None)
        except Reject as exc:
            status, body = wire.error_body(
                exc.kind, exc.message, status=exc.status, model=exc.model, prompt_tokens=exc.tokens
            )
            self.state.stats.status(dep, status)
            return delivery.error_response(status, body, exc.retry_after)

    async def _chat(self, request: web.Request, wire: ModuleType, dep: str) -> web.StreamResponse:
        req = await _parse(request, wire, wire.parse_chat, "chat" if self.state.strict else None)
        req.deployment = dep
        fault = self.state.faults.take(dep, req.model)
        if fault is not None and (
            hung := await self._fault_effects(request, dep, fault, req.model, prompt_tokens(req))
        ):
            return hung
        self.state.stats.received(dep, req.system, [(m.role, m.text or m.tool_result or "") for m in req.messages])
        reply = build_reply(req, self.state.rules, overlap=fault.resume_overlap if fault is not None else 0)
        if fault is not None and fault.empty:
            reply = Reply(text="", finish=None, prompt_tokens=reply.prompt_tokens)  # type: ignore[arg-type]
        if fault is not None:
            reply.cached_tokens, reply.reasoning_tokens = fault.cached_tokens, fault.reasoning_tokens
            reply.usage = fault.usage
        completion = reply.completion_tokens + reply.reasoning_tokens
        self.state.stats.add(dep, prompt_tokens=reply.prompt_tokens, completion_tokens=completion)
        if req.stream:
            return await self._stream(request, wire, dep, req, reply, fault)
        return await self._send(request, wire, dep, wire.chat_body(req, reply), fault)

    async def _embed(self, request: web.Request, wire: ModuleType, dep: str) -> web.StreamResponse:
        req = await _parse(request, wire, wire.parse_embed, "embeddings" if self.state.strict else None)
        tokens = sum(count_tokens(t) for t in req.texts)
        fault = self.state.faults.take(dep, req.model)
        if fault is not None and (hung := await self._fault_effects(request, dep, fault, req.model, tokens)):
            return hung
        vectors = [embed(text, req.dimensions) for text in req.texts]
        self.state.stats.add(dep, prompt_tokens=tokens)
        return await self._send(request, wire, dep, wire.embed_body(req, vectors, tokens), fault)

    async def _models(self, request: web.Request, wire: ModuleType, dep: str) -> web.StreamResponse:
        _check_key(wire.api_key(request))
        self.state.stats.status(dep, 200)
        return delivery.json_response(openai_wire.models_body())

    async def _unknown_method(self, request: web.Request, wire: ModuleType, dep: str) -> web.StreamResponse:
        _, method = gemini_wire.split_tail(request.match_info["tail"])
        raise Reject("not_found", f"Method '{method}' is not supported by the mock provider.")

    async def _fault_effects(
        self, request: web.Request, dep: str, fault: Fault, model: str, tokens: int
    ) -> web.StreamResponse | None:
        """Latency, then hang (returns the dropped response) or error (raises); None lets the request proceed."""
        self.state.stats.add(dep, faults_applied=1)
        if fault.latency_ms > 0:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.hang:
            self.state.stats.add(dep, hung=1)
            return await delivery.hang(request, fault.hang_s)
        if fault.is_error:
            raise Reject(
                fault.kind,
                fault.message,
                status=fault.status,
                retry_after=fault.retry_after,
                model=model,
                tokens=tokens,
            )
        return None

    async def _send(
        self, request: web.Request, wire: ModuleType, dep: str, body: dict, fault: Fault | None
    ) -> web.StreamResponse:
        cut = fault is not None and fault.cut_after_chunks is not None
        malformed = fault is not None and fault.malformed
        self.state.stats.status(dep, 200)
        self.state.stats.add(dep, bodies_cut=int(cut), malformed=int(malformed and not cut))
        return await delivery.send_body(
            request, orjson.dumps(body), cut=cut, malformed_body=wire.MALFORMED_BODY if malformed else None
        )

    async def _stream(
        self,
        request: web.Request,
        wire: ModuleType,
        dep: str,
        req: ChatRequest,
        reply: Reply,
        fault: Fault | None,
    ) -> web.StreamResponse:
        cut_after = fault.cut_after_chunks if fault is not None else None
        malformed = fault is not None and fault.malformed
        self.state.stats.status(dep, 200)
        self.state.stats.add(dep, streams=1, streams_cut=int(cut_after is not None), malformed=int(malformed))
        return await delivery.send_stream(
            request,
            wire.chat_events(req, reply),
            content_type="text/event-stream" if req.sse else delivery.JSON,
            delay_s=fault.chunk_delay_ms / 1000 if fault is not None else 0.0,
            cut_after=cut_after,
            malformed_frame=wire.MALFORMED_EVENT if malformed else None,
            stall_after=fault.stall_after_chunks if fault is not None else None,
            stall_s=fault.hang_s if fault is not None else 300.0,
            eof_after=fault.eof_after_chunks if fault is not None else None,
            drop_after_finish=fault is not None and fault.drop_after_finish,
        )


def _check_key(key: str | None) -> None:
    if not key:
        raise Reject("auth", "Missing API key.")
    if key.startswith("bad"):
        raise Reject("auth")


async def _parse(
    request: web.Request, wire: ModuleType, parse: Callable[[dict, web.Request], T], strict: str | None = None
) -> T:
    """Check the wire's API key, then parse the JSON body with ``parse``; bad input -> ``BadRequest``.

    ``strict`` (``chat`` / ``embeddings``) first validates the body against the wire's SDK-derived schema
    and rules; a problem -> :class:`Refused` with the wire's own 400 body."""
    _check_key(wire.api_key(request))
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    if strict is not None:
        endpoint = wire.strict_endpoint(strict, request)
        issue = validate(endpoint, body) or wire.strict_rules(strict, body)
        if issue is not None:
            raise Refused(*wire.invalid_body(issue, endpoint))
    try:
        return parse(body, request)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a field of an unexpected shape
        raise BadRequest(f"Malformed request: {exc!r}") from None
