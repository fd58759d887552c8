"""Keep secrets out of audit events: API keys, bearer tokens, ``sk-...`` provider keys and
``hk-<id>.<secret>`` virtual keys are replaced by ``[REDACTED]`` wherever text reaches an event
(error messages, metadata, stored prompts and answers).

Pattern-based scrubbing is a safety net, not a guarantee: builders also pass the exact secrets they
know about (the caller's virtual key), which are removed literally whatever their shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

# (pattern, replacement); applied in order, the specific shapes before the generic ``name=value`` one
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Hyperion virtual keys: keep the key id (it is what audit rows name anyway), drop the secret
    (re.compile(r"\bhk-([A-Za-z0-9]+)\.[A-Za-z0-9_\-]+"), r"hk-\1." + REDACTED),
    # OpenAI / Anthropic / DeepSeek style keys (sk-..., sk-proj-..., sk-ant-...) and bare hk- keys
    (re.compile(r"\b(?:sk|hk)-[A-Za-z0-9_\-]{8,}"), REDACTED),
    # Stripe-like live/test keys
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"), REDACTED),
    # Authorization header values
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 " + REDACTED),
    # Google API keys, AWS access key ids, GitHub and Slack tokens, JWTs
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"), REDACTED),
    # name=value / name: value pairs whose name says secret (headers, JSON, query strings, env dumps)
    (
        re.compile(
            r"(?i)((?:api[_-]?key|x-api-key|x-goog-api-key|access[_-]?token|auth[_-]?token|refresh[_-]?token"
            r"|client[_-]?secret|secret[_-]?key|secret|password|passwd|authorization)[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\[REDACTED\]|(?i:bearer)\s)([^\s\"',;&}]+)"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)([?&](?:key|api_key|apikey|token|access_token|sig|signature)=)[^&\s\"'#]+"), r"\1" + REDACTED),
)

_SENSITIVE_PARTS = frozenset(
    {"key", "apikey", "token", "secret", "password", "passwd", "authorization", "auth", "cookie",
     "credential", "credentials", "bearer", "signature"}
)
_SPLIT = re.compile(r"[^a-z0-9]+")


def is_sensitive_name(name: str) -> bool:
    """True for metadata names such as ``api_key``, ``X-Api-Key``, ``authToken``, ``password``;
    false for ``key_id`` or ``max_tokens``."""
    parts = [p for p in _SPLIT.split(name.lower()) if p]
    if "id" in parts:
        return False
    return any(p in _SENSITIVE_PARTS or p.endswith(("apikey", "token", "secret", "password")) for p in parts)


class Scrubber:
    """Removes secrets from text. ``secrets`` are exact strings to remove whatever their shape."""

    __slots__ = ("_literals",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # longest first, so a secret that contains another is removed whole
        self._literals = tuple(sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True))

    def text(self, value: str) -> str:
        for lit in self._literals:
            if lit in value:
                value = value.replace(lit, REDACTED)
        for pattern, repl in _PATTERNS:
            value = pattern.sub(repl, value)
        return value

    def structure(self, value: Any) -> Any:
        """Scrub every string in a JSON-like structure (messages); secret-named keys lose their value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                str(k): (REDACTED if isinstance(k, str) and is_sensitive_name(k) and v else self.structure(v))
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.structure(v) for v in value]
        return value

    def metadata(self, value: Mapping[str, Any] | None) -> dict[str, str]:
        """Metadata as ``str -> str`` with secret-named entries redacted and every value scrubbed."""
        out: dict[str, str] = {}
        for k, v in (value or {}).items():
            if v is None:
                continue
            name = str(k)
            text = v if isinstance(v, str) else ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
            out[name] = REDACTED if is_sensitive_name(name) else self.text(text)
        return out


DEFAULT_SCRUBBER = Scrubber()


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Scrub one string (see :class:`Scrubber`)."""
    return (Scrubber(secrets) if secrets else DEFAULT_SCRUBBER).text(text)


__all__ = ["REDACTED", "Scrubber", "scrub", "is_sensitive_name"]
