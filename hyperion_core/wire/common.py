"""What the OpenAI and Anthropic codecs share: parsed-request records, the error reply, and the pure
helpers that turn a :class:`~hyperion_core.errors.HyperionError` into a client-facing message.

Nothing here does I/O; everything is built once at import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..audit.scrub import scrub
from ..errors import (
    AllDeploymentsFailedError,
    HyperionError,
    InvalidRequestError,
    NoHealthyDeploymentError,
    ProviderError,
)
from ..types import ChatRequest

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


class RequestBodyError(InvalidRequestError):
    """A request body the wire's API refuses. ``message`` is the API's own wording, ``param`` and
    ``code`` its error fields (OpenAI); the codecs render it exactly, without added context."""

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, **ctx: Any
    ) -> None:
        super().__init__(message, **ctx)
        self.param = param
        self.code = code


@dataclass(slots=True)
class ParsedChat:
    """A chat request read off a wire: the pipeline's :class:`ChatRequest` plus how to answer it."""

    request: ChatRequest
    stream: bool = False
    #: OpenAI ``stream_options.include_usage`` (always True on the Anthropic wire, which always reports usage)
    include_usage: bool = False


@dataclass(slots=True, frozen=True)
class ParsedEmbeddings:
    """An OpenAI ``/v1/embeddings`` request: ``Gateway.aembed(route, inputs, dimensions=...)``."""

    route: str
    inputs: list[str]
    dimensions: int | None = None
    encoding_format: str = "float"  # "float" | "base64"
    user: str | None = None


@dataclass(slots=True, frozen=True)
class ErrorReply:
    """An error as the wire's HTTP answer: status, JSON body (``payload``) and headers to send."""

    status: int
    payload: dict[str, Any]
    headers: dict[str, str]

    @property
    def content(self) -> bytes:
        return orjson.dumps(self.payload)


def lookup(table: Mapping[str, Any], cls: type[BaseException]) -> Any:
    """The entry of the most specific class of ``cls``'s MRO named in ``table`` (None if none is)."""
    for klass in cls.__mro__:
        entry = table.get(klass.__name__)
        if entry is not None:
            return entry
    return None


def decisive(exc: HyperionError) -> HyperionError:
    """The error whose kind decides the status: for "every deployment failed" the last upstream
    failure (all rate limited -> 429 with its Retry-After, all down -> 503, ...), else ``exc``."""
    if type(exc) is AllDeploymentsFailedError or (
        isinstance(exc, AllDeploymentsFailedError) and not isinstance(exc, NoHealthyDeploymentError)
    ):
        cause = exc.__cause__
        if isinstance(cause, ProviderError):
            return cause
    return exc


def retry_after_of(exc: HyperionError, decided: HyperionError) -> float | None:
    for e in (exc, decided):
        value = getattr(e, "retry_after", None)
        if isinstance(value, (int, float)) and value >= 0:
            return float(value)
    return None


def retry_headers(seconds: float | None) -> dict[str, str]:
    """``Retry-After`` (whole seconds, rounded up, as HTTP wants) and ``retry-after-ms`` (both SDKs
    read it first) for a wait of ``seconds``."""
    if seconds is None:
        return {}
    return {
        "retry-after": str(max(math.ceil(seconds), 0)),
        "retry-after-ms": str(max(int(seconds * 1000), 0)),
    }


def client_message(exc: BaseException, text: str | None = None) -> str:
    """What a client reads: the error's message (secrets scrubbed) and the route / request id it can
    quote to an operator. :class:`RequestBodyError` keeps the API's exact wording."""
    if not isinstance(exc, HyperionError):
        return "internal error"
    message = scrub(text if text is not None else exc.message)
    if isinstance(exc, RequestBodyError):
        return message
    ctx = [f"{k}: {v}" for k, v in (("route", exc.route), ("request id", exc.request_id)) if v]
    return f"{message} ({', '.join(ctx)})" if ctx else message


def load_body(
    body: bytes | bytearray | memoryview | str | dict[str, Any], not_json: str, not_object: str
) -> dict[str, Any]:
    """A request body as a dict; JSON that does not parse, or is not an object, is a :class:`RequestBodyError`."""
    if isinstance(body, dict):
        return body
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestBodyError(not_json) from None
    if not isinstance(data, dict):
        raise RequestBodyError(not_object)
    return data


def sse(data: bytes, event: str | None = None) -> bytes:
    """One Server-Sent Event frame."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


__all__ = [
    "SSE_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "RequestBodyError",
    "ParsedChat",
    "ParsedEmbeddings",
    "ErrorReply",
    "client_message",
    "decisive",
    "load_body",
    "lookup",
    "retry_after_of",
    "retry_headers",
    "sse",
]
