"""Shared helpers of the cache tests (unit and Redis): toy embedders, requests and responses."""

from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace

import numpy as np

from hyperion_core.types import Caller, ChatRequest, ChatResponse, Usage


class BagOfWords:
    """A deterministic toy embedder: hashed bag of words, L2-normalised. ``calls`` counts batches."""

    dim = 64

    def __init__(self) -> None:
        self.calls = 0

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9%]+", t.lower()):
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little")
                out[i, h % self.dim] += 1.0
            out[i] /= np.linalg.norm(out[i]) or 1.0
        return out


class Table:
    """An embedder that returns chosen vectors (to test exact distances)."""

    dim = 4

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = {k: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for k, v in vectors.items()}

    async def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


def at_distance(d: float) -> list[float]:
    """A unit vector at cosine distance ``d`` from [1, 0, 0, 0]."""
    c = 1.0 - d
    return [c, float(np.sqrt(max(0.0, 1 - c * c))), 0.0, 0.0]


def allow_all(query, cached, enabled=None):
    """A guard check that passes everything (tests of the tiers, not of the guards)."""
    return SimpleNamespace(passed=True, passed_guards=("fake",), failed=())


def req(text: str = "What is the capital of France?", *, key: str | None = "k1", team: str | None = None,
        route: str = "chat", system: str = "Be brief.", **kw) -> ChatRequest:
    caller = Caller(key_id=key, team=team) if key or team else None
    return ChatRequest(route, [{"role": "system", "content": system}, {"role": "user", "content": text}],
                       caller=caller, **kw)


def resp(content: str | None = "Paris.", *, finish: str | None = "stop", tool_calls=(), cost: float = 0.002,
         resumed_by=()) -> ChatResponse:
    return ChatResponse(
        request_id="r", route="chat", deployment="dep-a", model="gpt-x", content=content,
        tool_calls=tuple(tool_calls), finish_reason=finish, usage=Usage(12, 3), cost=cost, attempts=(),
        latency_ms=5.0, resumed_by=tuple(resumed_by),
    )
