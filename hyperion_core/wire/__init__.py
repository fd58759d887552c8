"""Wire codecs: the OpenAI and Anthropic HTTP formats on the *server* side (what a door such as
``hyperion serve`` reads and writes), pure and I/O-free. The provider adapters
(``hyperion_core.providers``) are the client side of the same formats.

* :mod:`hyperion_core.wire.openai` — Chat Completions / Embeddings / Models: :func:`~.openai.parse_chat`,
  :func:`~.openai.parse_embeddings`, :func:`~.openai.encode_chat_completion`, :class:`~.openai.ChunkEncoder`,
  :func:`~.openai.encode_embeddings`, :func:`~.openai.encode_models`, :func:`~.openai.error_reply`.
* :mod:`hyperion_core.wire.anthropic` — Messages: :func:`~.anthropic.parse_messages`,
  :func:`~.anthropic.encode_message`, :class:`~.anthropic.EventEncoder`, :func:`~.anthropic.error_reply`.
* :mod:`hyperion_core.wire.responses` — the OpenAI Responses API: :func:`~.responses.parse_responses`,
  :func:`~.responses.encode_response`, :class:`~.responses.EventEncoder` (OpenAI errors).
* :mod:`hyperion_core.wire.completions` — OpenAI legacy Completions: :func:`~.completions.parse_completions`,
  :func:`~.completions.encode_completion`, :class:`~.completions.TextChunkEncoder` (OpenAI errors).

All parse into :class:`ParsedChat` (a ``ChatRequest`` in OpenAI format plus ``stream`` /
``include_usage``), refuse bodies the real API refuses with :class:`RequestBodyError` (the API's own
message), and map every :class:`~hyperion_core.errors.HyperionError` to an :class:`ErrorReply`
(status, the wire's error body, headers such as Retry-After).

The mock provider keeps its own encoders on purpose: it is the independent oracle the adapters and this
codec are tested against (sharing the encoder would make those tests agree with themselves), and it
renders its own reply records (word chunks, fault-countable frames). The dependency runs the other way:
the codec reuses the mock's strict validator and 400 renderers, so refusals are identical by construction.
"""

from . import anthropic, openai
from .common import (
    JSON_CONTENT_TYPE,
    SSE_CONTENT_TYPE,
    ErrorReply,
    ParsedChat,
    ParsedEmbeddings,
    RequestBodyError,
)

__all__ = [
    "JSON_CONTENT_TYPE",
    "SSE_CONTENT_TYPE",
    "ErrorReply",
    "ParsedChat",
    "ParsedEmbeddings",
    "RequestBodyError",
    "anthropic",
    "openai",
]
