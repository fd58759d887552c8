"""The adapter contract and the shared HTTP flow of the native adapters.

An adapter turns a :class:`~hyperion_core.types.ChatRequest` into one provider call and the answer
back into Hyperion's records. Native adapters follow *prepare, call, validate*: pure
``build_body`` / ``parse_response`` / ``parse_error`` / stream parser per wire format, and one HTTP
flow here shared by all of them. Every stream must end with its wire's terminal event; a stream that
stops without one raises :class:`~hyperion_core.errors.StreamCutError`, whichever adapter carried it —
unless the answer was complete: a stream that lost only its trailer (``[DONE]``, ``message_stop``)
after its finish reason ends normally and the loss is logged. An answer with no content, no tool
call and no finish reason is a :class:`~hyperion_core.errors.MalformedResponseError` (fails over), in
both modes. A stream that ends any way but its terminal event closes its connection instead of
returning it to the pool (the server may be closing it).
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
import orjson

from ..audit.scrub import scrub
from ..errors import (
    HyperionError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    ProviderConnectionError,
    ProviderError,
    StreamCutError,
    error_for_status,
)
from ..http import HttpClient, dumps_body, sse_events
from ..pricing import Price
from ..types import ChatChunk, ChatRequest, ProviderResponse, Usage

log = logging.getLogger("hyperion.providers")


@dataclass(slots=True)
class Target:
    """A deployment resolved for calling: where, how, with which credentials and price."""

    name: str
    route: str
    kind: str
    wire: str
    model: str
    base_url: str | None
    api_key: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    litellm_params: dict[str, Any] = field(default_factory=dict, repr=False)
    price: Price = field(default_factory=Price)
    timeout: float | None = None


class Adapter:
    """One provider call. Subclasses implement :meth:`chat`, :meth:`stream` and (optionally) :meth:`embed`."""

    wire: ClassVar[str] = ""

    def __init__(self, target: Target, http: HttpClient) -> None:
        self.target = target
        self.http = http

    async def chat(self, req: ChatRequest) -> ProviderResponse:
        raise NotImplementedError

    def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError

    async def embed(
        self, inputs: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], Usage]:
        # NotFound: never retried here, but another deployment of the route may serve embeddings
        raise NotFoundError(
            f"{self.target.kind} deployments do not serve embeddings",
            route=self.target.route,
            deployment=self.target.name,
        )

    def _with_context(self, exc: HyperionError) -> HyperionError:
        exc.route = exc.route or self.target.route
        exc.deployment = exc.deployment or self.target.name
        return exc


class StreamParser:
    """Turns one wire's SSE events into chunks. ``done`` becomes True on the terminal event."""

    done: bool = False

    def feed(self, event: str | None, data: bytes) -> ChatChunk | None:
        raise NotImplementedError

    def ended_early(self) -> ChatChunk | None:
        """The stream stopped before its terminal event: the closing chunk (finish reason, usage if it
        came, else ``None`` to estimate) when the finish reason had already arrived, else ``None`` (cut)."""
        return None


def substantial(chunk: ChatChunk | None) -> bool:
    """Does ``chunk`` carry any of the answer (content, a tool call, a finish reason)?"""
    return chunk is not None and bool(chunk.content or chunk.tool_calls or chunk.finish_reason)


def empty_answer(kind: str, target: Target) -> MalformedResponseError:
    return MalformedResponseError(
        f"{kind} returned an empty answer (no content, no tool call, no finish reason or end_turn)",
        route=target.route,
        deployment=target.name,
    )


class HttpAdapter(Adapter):
    """The call flow shared by native adapters; subclasses supply the pure wire-format parts."""

    # -- prepare (pure) ----------------------------------------------------------------------
    def url(self, stream: bool) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def build_body(self, req: ChatRequest, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    # -- validate (pure) ---------------------------------------------------------------------
    def parse_response(self, data: dict[str, Any]) -> ProviderResponse:
        raise NotImplementedError

    def stream_parser(self) -> StreamParser:
        raise NotImplementedError

    def error_details(self, data: Any) -> tuple[str, str | None]:
        """(message, provider code) from an error body; the body may be anything."""
        return str(data)[:500], None

    # -- call --------------------------------------------------------------------------------
    def __init__(self, target: Target, http: HttpClient) -> None:
        super().__init__(target, http)
        self._headers = self.headers()
        self._url = self.url(False)
        self._stream_url = self.url(True)

    def parse_error(self, status: int, headers: Any, raw: bytes) -> ProviderError:
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            data = raw[:300].decode("utf-8", "replace")
        message, code = self.error_details(data)
        return error_for_status(
            status,
            scrub(message, (self.target.api_key,)),  # an upstream may echo the key back: never pass it on
            provider_code=code,
            retry_after=retry_after_seconds(headers),
            route=self.target.route,
            deployment=self.target.name,
        )

    def _decode(self, raw: bytes) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise MalformedResponseError(
                f"{self.target.kind} returned a body that is not JSON: {raw[:80]!r}",
                route=self.target.route,
                deployment=self.target.name,
            ) from None

    async def chat(self, req: ChatRequest) -> ProviderResponse:
        try:
            status, headers, raw = await self.http.post_json(
                self._url, self.build_body(req, False), self._headers
            )
        except HyperionError as exc:
            self._with_context(exc)
            raise
        if status >= 400:
            raise self.parse_error(status, headers, raw)
        data = self._decode(raw)
        try:
            resp = self.parse_response(data)
        except HyperionError as exc:
            self._with_context(exc)
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponseError(
                f"{self.target.kind} response has an unexpected shape ({type(exc).__name__}: {exc})",
                route=self.target.route,
                deployment=self.target.name,
            ) from None
        if self.is_empty(data, resp):
            raise empty_answer(self.target.kind, self.target)
        return resp

    def is_empty(self, data: Any, resp: ProviderResponse) -> bool:
        """Is this whole answer empty (malformed: fail over)? No content, tool call or finish reason."""
        return not resp.content and not resp.tool_calls and not resp.finish_reason

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        body = dumps_body(self.build_body(req, True))
        url = self._stream_url
        try:
            async with self.http.session().post(url, data=body, headers=self._headers) as resp:
                if resp.status >= 400:
                    raise self.parse_error(resp.status, resp.headers, await resp.read())
                parser = self.stream_parser()
                # a short body may have ended (and its connection gone back to the pool) already
                protocol = resp.connection.protocol if resp.connection is not None else getattr(resp, "_protocol", None)
                answered = False  # any content, tool call or finish reason yet
                finished = False
                try:
                    async for event, data in sse_events(resp, url):
                        try:
                            chunk = parser.feed(event, data)
                        except HyperionError as exc:
                            self._with_context(exc)
                            raise
                        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                            raise MalformedResponseError(
                                f"{self.target.kind} stream event could not be parsed ({type(exc).__name__})",
                                route=self.target.route,
                                deployment=self.target.name,
                            ) from None
                        answered = answered or substantial(chunk)
                        if parser.done and not answered:
                            raise empty_answer(self.target.kind, self.target)
                        if chunk is not None:
                            yield chunk
                        if parser.done:
                            finished = True
                            return
                    cut: StreamCutError = StreamCutError(f"{self.target.kind} stream ended without its terminal event")
                except StreamCutError as exc:
                    cut = exc
                finally:
                    if not finished:  # ended early (cut, abandoned, failed): never back to the pool
                        self.http.discard(resp, protocol)
                last = parser.ended_early()
                if last is None:
                    raise cut
                log.warning(
                    "%s stream of deployment '%s' lost its trailer after the finish reason (%s); the answer "
                    "is complete", self.target.kind, self.target.name, cut.message,
                )
                yield last
        except HyperionError as exc:  # e.g. StreamCutError from a connection broken mid-body
            self._with_context(exc)
            raise
        except aiohttp.ClientConnectionError as exc:  # failures opening the stream
            raise ProviderConnectionError(
                f"connection to {self.target.kind} failed: {type(exc).__name__}",
                route=self.target.route,
                deployment=self.target.name,
            ) from exc


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date), else None."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)


def tool_arguments(tc: dict[str, Any]) -> dict[str, Any]:
    """The arguments of an OpenAI-format tool call as an object (wire formats that carry them as JSON
    objects need them parsed); malformed arguments are the caller's error, named here."""
    fn = tc.get("function") or {}
    raw = fn.get("arguments") or "{}"
    try:
        args = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except orjson.JSONDecodeError:
        raise InvalidRequestError(
            f"tool call {tc.get('id')!r} ({fn.get('name')}) has arguments that are not JSON: {str(raw)[:80]!r}"
        ) from None
    if not isinstance(args, dict):
        raise InvalidRequestError(f"tool call {tc.get('id')!r} arguments must be a JSON object")
    return args


def merged_params(req: ChatRequest, defaults: dict[str, Any]) -> dict[str, Any]:
    """Sampling parameters set on the request, over the deployment's defaults (None = unset)."""
    out = dict(defaults) if defaults else {}
    for key in ("temperature", "top_p", "max_tokens", "stop", "seed", "n"):
        v = getattr(req, key)
        if v is not None:
            out[key] = v
    return out


__all__ = [
    "Target",
    "Adapter",
    "HttpAdapter",
    "StreamParser",
    "retry_after_seconds",
    "merged_params",
    "tool_arguments",
]
