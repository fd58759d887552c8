"""Deterministic embedding vectors from a hashed bag of words.

``embed(text, dims)`` lower-cases ``text``, splits it into ``\\w+`` words and adds,
for every word, signed unit weights at :data:`SLOTS` positions chosen by a hash
of the word; the sum is L2-normalised. Identical texts give identical vectors,
texts sharing words have a positive cosine similarity that grows with the
overlap, and unrelated texts are close to orthogonal. A text with no words maps
to a fixed unit vector. Token usage for embeddings is ``content.count_tokens``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from functools import lru_cache

SLOTS = 4
DEFAULT_DIMENSIONS = 256
_WORD = re.compile(r"\w+")


@lru_cache(maxsize=65536)
def _slots(word: str, dims: int) -> tuple[tuple[int, float], ...]:
    digest = hashlib.blake2b(word.encode(), digest_size=4 * SLOTS).digest()
    out = []
    for i in range(SLOTS):
        n = int.from_bytes(digest[4 * i : 4 * i + 4], "little")
        out.append((n % dims, 1.0 if n & 0x80000000 else -1.0))
    return tuple(out)


def embed(text: str, dims: int = DEFAULT_DIMENSIONS) -> list[float]:
    dims = max(1, int(dims))
    vec = [0.0] * dims
    for word in _WORD.findall(text.lower()) or [""]:
        for index, sign in _slots(word, dims):
            vec[index] += sign
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:  # all weights cancelled out: fall back to a fixed direction
        vec[0], norm = 1.0, 1.0
    return [v / norm for v in vec]


def to_base64(vec: list[float]) -> str:
    """OpenAI ``encoding_format=base64``: little-endian float32 array, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
