"""Counting prompt tokens offline: a cheap estimate, and a worst case that budgets can rely on.

* :func:`estimate_prompt_tokens` — about four characters a token: what a door reports when no usage
  came back. Cheap, and wrong by a factor of two either way on code, digits or non-Latin text.
* :func:`prompt_tokens_bound` — what a budget reservation uses: **never below** the count the
  provider will bill.

  - OpenAI models: counted exactly with ``tiktoken`` on the ``o200k_base`` / ``cl100k_base`` files
    that litellm ships (loaded from disk, never downloaded), plus the chat format's fixed cost per
    message (4 tokens, 3 for the reply's priming; 12 and 8 here, to spare the exact accounting).
  - Any other model: the UTF-8 length in bytes. Byte-level BPE (OpenAI, Anthropic, Llama, Mistral, ...)
    never makes a token of less than one byte, and SentencePiece with byte fallback (Gemini) makes at
    most one token a byte, so bytes bound the count from above — loosely (about 4x for English), which
    only makes admission cautious; the settled cost is always the provider's own usage.
  - Images: 2,000 tokens each (OpenAI's high-detail 2048x2048 is 1,105; Anthropic's largest ~1,600;
    Gemini 258). Other binary parts (files, audio): their base64 payload in bytes.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from .types import ChatRequest, Usage

PER_MESSAGE = 12  # tokens; OpenAI's chat format costs 3-4 per message
PER_REQUEST = 8
IMAGE_TOKENS = 2_000

_lock = threading.Lock()


def estimate_prompt_tokens(req: ChatRequest) -> int:
    """A cheap estimate (about 4 characters a token). Not a bound: use :func:`prompt_tokens_bound`
    for anything that must not be exceeded."""
    chars = 0
    for m in req.messages:
        c = m.get("content")
        if isinstance(c, str):
            chars += len(c)
        elif isinstance(c, list):
            chars += sum(len(p.get("text") or "") for p in c if isinstance(p, dict))
        for tc in m.get("tool_calls") or ():
            chars += len(str(tc))
    if req.tools:
        chars += sum(len(str(t)) for t in req.tools)
    return chars // 4 + 4 * len(req.messages) + 8


@lru_cache(maxsize=8)
def _encoding(name: str) -> Any:
    """A tiktoken encoding from the BPE file litellm bundles (None when it is not there: no download)."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    if not (folder / hashlib.sha1(url.encode()).hexdigest()).is_file():  # tiktoken's cache file name
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    with _lock:  # tiktoken reads its cache folder from the environment: point it at litellm's, briefly
        old = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            return tiktoken.get_encoding(name)
        except Exception:  # noqa: BLE001 - a damaged file: fall back to the byte bound
            return None
        finally:
            if old is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = old


@lru_cache(maxsize=256)
def encoding_for(model: str) -> Any:
    """The exact tokenizer of an OpenAI model, or None (then bytes bound the count)."""
    try:
        import tiktoken

        name = tiktoken.encoding_name_for_model(model)
    except (ImportError, KeyError):
        return None
    return _encoding(name)


def _text_len(text: str, enc: Any) -> int:
    if not text:
        return 0
    if enc is None:
        return len(text.encode("utf-8", "surrogatepass"))
    if _CACHED_MIN <= len(text) <= _CACHED_MAX:
        return _counted(enc.name, text)
    return len(enc.encode_ordinary(text))


#: Counting a 2,000-token text costs ~0.6 ms, and the same texts come back: a conversation re-sends its
#: whole history every turn, an application its system prompt with every request, a failover route
#: counts once per model sharing an encoding. Texts of 256 characters to 32 k are kept (at most 512:
#: ~16 MB at worst); shorter ones cost less to count than to look up, longer ones are not pinned.
_CACHED_MIN, _CACHED_MAX = 256, 32_768


@lru_cache(maxsize=512)
def _counted(name: str, text: str) -> int:
    return len(_encoding(name).encode_ordinary(text))


def _json_len(obj: Any, enc: Any) -> int:
    import orjson

    try:
        raw = orjson.dumps(obj, default=str).decode()
    except TypeError:  # not JSON-able (e.g. a huge int): its repr is longer than any encoding of it
        raw = repr(obj)
    return _text_len(raw, enc)


def _part_len(part: Any, enc: Any) -> int:
    if isinstance(part, str):
        return _text_len(part, enc)
    if not isinstance(part, dict):
        return _json_len(part, enc)
    kind = part.get("type")
    if kind == "text":
        return _text_len(part.get("text") or "", enc)
    if kind in ("image_url", "image"):
        return IMAGE_TOKENS
    return len(str(part))  # files, audio, documents: their payload, in bytes (>= any token count)


def prompt_tokens_bound(req: ChatRequest, model: str | None = None) -> int:
    """Tokens the provider will count for ``req``'s prompt, at most (see the module docstring).
    ``model``: the upstream model name (an OpenAI one is counted exactly), None for the byte bound."""
    enc = encoding_for(model) if model else None
    total = PER_REQUEST
    for m in req.messages:
        total += PER_MESSAGE
        c = m.get("content")
        if isinstance(c, list):
            total += sum(_part_len(p, enc) for p in c)
        elif c is not None:
            total += _text_len(c if isinstance(c, str) else str(c), enc)
        for key, value in m.items():
            if key not in ("role", "content") and value is not None:
                total += _json_len(value, enc) if not isinstance(value, str) else _text_len(value, enc)
    if req.tools:
        total += _json_len(req.tools, enc)
    if req.tool_choice is not None:
        total += _json_len(req.tool_choice, enc)
    if req.response_format is not None:
        total += _json_len(req.response_format, enc)
    return total


#: the largest token count stored or priced (exact in doubles and int64)
MAX_TOKENS = 2**53 - 1
#: no model reads or writes more tokens than this in one call: a count above it (or below 0) is nonsense
PLAUSIBLE_TOKENS = 50_000_000


def checked_usage(usage: Usage, req: ChatRequest, model: str | None, answer_chars: int) -> tuple[Usage, str | None]:
    """Upstream usage made safe to bill: usage that is missing (all zero for a non-empty answer) or
    nonsense (a count below 0 or above :data:`PLAUSIBLE_TOKENS`) is replaced by an estimate from what
    was sent (the model's own tokenizer when there is one) and received (``answer_chars`` / 4); cached
    and cache-write tokens are kept within the prompt and reasoning within the completion. Returns the
    usage and a note for audit (``"estimated..."``, ``"clamped"``, or None when used as given)."""
    p, c = usage.prompt_tokens, usage.completion_tokens
    cached, written, reasoning = usage.cached_prompt_tokens, usage.cache_write_tokens, usage.reasoning_tokens
    if (type(p) is int and type(c) is int and type(cached) is int and type(written) is int and type(reasoning) is int
            and 0 <= cached and 0 <= written and cached + written <= p <= PLAUSIBLE_TOKENS
            and 0 <= reasoning <= c <= PLAUSIBLE_TOKENS and (p or c or not answer_chars)):
        return usage, None  # the common case, decided without building anything
    fields = (p, c, cached, written, reasoning)
    missing = p == 0 and c == 0 and answer_chars > 0
    absurd = any(type(v) is not int or v < 0 or v > PLAUSIBLE_TOKENS for v in fields)
    if missing or absurd:  # what was sent and received is a better measure than nonsense
        prompt = prompt_tokens_bound(req, model) if model and encoding_for(model) is not None else estimate_prompt_tokens(req)
        est = Usage(prompt_tokens=prompt, completion_tokens=max(1 if answer_chars else 0, -(-answer_chars // 4)))
        return est, "estimated" if missing else "estimated: the upstream's usage was invalid"
    if all(type(v) is int and 0 <= v <= MAX_TOKENS for v in fields) and usage.cached_prompt_tokens + \
            usage.cache_write_tokens <= p and usage.reasoning_tokens <= c:
        return usage, None
    p, c, cached, written, reasoning = (min(max(int(v), 0), MAX_TOKENS) for v in fields)
    cached = min(cached, p)
    written = min(written, p - cached)
    return Usage(p, c, cached, written, min(reasoning, c)), "clamped"


__all__ = [
    "estimate_prompt_tokens", "prompt_tokens_bound", "encoding_for", "checked_usage", "PER_MESSAGE", "IMAGE_TOKENS",
    "MAX_TOKENS",
]
