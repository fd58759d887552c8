"""``HyperionEmbedding``: LlamaIndex embeddings over a Hyperion embedding route.

Batched (LlamaIndex cuts ``get_text_embedding_batch`` into ``embed_batch_size`` pieces; each piece is one
``Gateway.aembed`` request), cached (an LRU of text -> vector per instance: identical texts, within a
batch or across calls, are sent once), and governed by the gateway pipeline like chat requests: the
virtual key is checked, budgets and rate limits admit each request, spend is settled and one audit
event is written per request. Sync methods call ``Gateway.embed``, async ones ``Gateway.aembed``;
nothing else differs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr

from hyperion_core import Gateway
from hyperion_core.doors import check_source, resolve_gateway
from hyperion_core.errors import HyperionError, InvalidRequestError
from hyperion_core.types import EmbeddingResponse

from .events import HyperionRoutingEvent, budget_event_for_error, dispatcher


class HyperionEmbedding(BaseEmbedding):
    """Embeddings from a Hyperion ``kind: embedding`` route (``model_name``). Gateway from ``config=`` or
    ``gateway=`` as for :class:`~hyperion_li.HyperionLLM`; ``virtual_key`` is never serialised."""

    model_name: str = Field(default="embeddings", description="The Hyperion embedding route.")
    embed_batch_size: int = Field(default=64, gt=0, le=2048, description="Texts per upstream request.")
    dimensions: int | None = Field(default=None, gt=0, description="Output dimensions, for models that take them.")
    timeout: float | None = Field(default=None, gt=0, description="Deadline per request in seconds; None = the route's.")
    cache_size: int = Field(default=4096, ge=0, description="Vectors kept in the LRU (0 = no cache).")
    config: Any = Field(default=None, exclude=True, repr=False, description="Gateway config: YAML path, mapping or GatewayConfig.")
    virtual_key: SecretStr | None = Field(default=None, exclude=True, repr=False, description="Hyperion virtual key (hk-...).")

    _gateway: Gateway | None = PrivateAttr(default=None)
    _lru: OrderedDict[str, list[float]] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _hits: int = PrivateAttr(default=0)
    _sent: int = PrivateAttr(default=0)

    def __init__(self, model_name: str = "embeddings", *, gateway: Gateway | None = None, **kwargs: Any) -> None:
        check_source(gateway, kwargs.get("config"), "HyperionEmbedding")
        super().__init__(model_name=model_name, **kwargs)
        self._gateway = gateway

    @classmethod
    def class_name(cls) -> str:
        return "HyperionEmbedding"

    @property
    def gateway(self) -> Gateway:
        gw = self._gateway
        if gw is None:
            gw = self._gateway = resolve_gateway(None, self.config, "HyperionEmbedding")
        return gw

    def cache_info(self) -> dict[str, int]:
        """``hits`` (texts answered from the LRU), ``sent`` (texts sent upstream), ``size``."""
        return {"hits": self._hits, "sent": self._sent, "size": len(self._lru)}

    # -- LlamaIndex's interface: sync and async differ only in how the flow is run -------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._aembed([query]))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aembed([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._aembed(texts)

    def _embed(self, texts: list[str]) -> list[Embedding]:
        known, missing = self._lookup(texts)
        if missing:
            try:
                resp = self.gateway.embed(self.model_name, missing, **self._params())
            except HyperionError as exc:
                self._failed(exc)
                raise
            known.update(self._store(missing, resp))
        return [known[t] for t in texts]

    async def _aembed(self, texts: list[str]) -> list[Embedding]:
        known, missing = self._lookup(texts)
        if missing:
            try:
                resp = await self.gateway.aembed(self.model_name, missing, **self._params())
            except HyperionError as exc:
                self._failed(exc)
                raise
            known.update(self._store(missing, resp))
        return [known[t] for t in texts]

    # -- the flow --------------------------------------------------------------------------------

    def _lookup(self, texts: list[str]) -> tuple[dict[str, list[float]], list[str]]:
        """The cached vectors among ``texts``, and the texts to send (each once)."""
        if not all(isinstance(t, str) for t in texts):
            raise InvalidRequestError("texts: every input must be a string", route=self.model_name)
        known: dict[str, list[float]] = {}
        missing: list[str] = []
        with self._lock:
            for t in dict.fromkeys(texts):
                v = self._lru.get(t)
                if v is None:
                    missing.append(t)
                else:
                    self._lru.move_to_end(t)
                    known[t] = v
            self._hits += len(texts) - len(missing)
        return known, missing

    def _params(self) -> dict[str, Any]:
        vk = self.virtual_key.get_secret_value() if self.virtual_key is not None else None
        return {"dimensions": self.dimensions, "timeout": self.timeout, "virtual_key": vk}

    def _failed(self, exc: HyperionError) -> None:
        event = budget_event_for_error(exc, self.model_name)
        if event is not None:
            dispatcher.event(event)

    def _store(self, texts: list[str], resp: EmbeddingResponse) -> dict[str, list[float]]:
        if len(resp.vectors) != len(texts):
            raise InvalidRequestError(
                f"the embedding route returned {len(resp.vectors)} vectors for {len(texts)} texts",
                route=self.model_name, deployment=resp.deployment,
            )
        dispatcher.event(HyperionRoutingEvent(
            route=self.model_name, request_id=None, deployment=resp.deployment, model=resp.model,
            attempts=[{"deployment": a.deployment, "outcome": a.outcome, "latency_ms": a.latency_ms,
                       "error_class": a.error_class, "status": a.status, "message": a.message} for a in resp.attempts],
            failed_over=any(a.outcome == "error" for a in resp.attempts), latency_ms=resp.latency_ms,
        ))
        fresh = dict(zip(texts, resp.vectors))
        with self._lock:
            self._sent += len(texts)
            if self.cache_size:
                self._lru.update(fresh)
                for t in texts:
                    self._lru.move_to_end(t)
                while len(self._lru) > self.cache_size:
                    self._lru.popitem(last=False)
        return fresh


__all__ = ["HyperionEmbedding"]
