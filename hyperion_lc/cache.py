"""``HyperionCache``: Hyperion's response cache behind LangChain's ``BaseCache``.

Code that keeps its own model (``ChatOpenAI``) still gets the exact tiers (L1, Redis L2) and the
semantic tier with its guards, scoped to the caller's tenant::

    set_llm_cache(HyperionCache(config="hyperion.yaml", virtual_key="hk-...", route="lc-cache"))
    # or per model: ChatOpenAI(..., cache=HyperionCache(...))

LangChain asks the cache with ``(prompt, llm_string)``: ``prompt`` is the serialised conversation and
``llm_string`` the model and its parameters. The adapter turns them into a ``ChatRequest``: the messages
are the conversation (so the semantic tier embeds the last user turn and partitions by the rest), the
temperature and tools come from ``llm_string`` (the semantic tier skips hot or tool-bearing requests),
and a hash of the whole ``llm_string`` is the request's cache namespace — two models, or one model with
different parameters, never share an entry. The tenant is the virtual key's (scope ``key`` / ``team`` /
``shared`` from the cache settings), or the trusted ``caller=``. The key is checked by the pipeline's
Authorize stage on every lookup and store (:func:`hyperion_core.doors.authorize`): a revoked or expired
key, or one not allowed on ``route``, reads and writes nothing from that moment on.

A hit is marked in the answer's ``response_metadata["hyperion_cache"]`` (tier, similarity, age, what
the original call cost); a ``HyperionCallbackHandler`` on the same model settles such a call at $0 and
records that cost as saved.

The cache policy is the ``cache:`` section of ``route`` in the gateway configuration (or ``settings=``);
entries live in the gateway's cache store (its Redis tiers when state is shared), one store per gateway.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import weakref
from dataclasses import replace
from typing import Any

from langchain_core._api import suppress_langchain_beta_warning
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import loads
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation, LLMResult
from pydantic import SecretStr

from hyperion_core import Gateway, HyperionError
from hyperion_core.cache import CacheSettings, ResponseCache, SemanticSettings
from hyperion_core.doors import CACHE_KEY, GatewayRef, authorize, cache_info_dict
from hyperion_core.pricing import lookup as price_lookup
from hyperion_core.types import CacheControl, Caller, ChatRequest, ChatResponse, ToolCall, Usage

from . import _convert as C
from .callbacks import usage_of

log = logging.getLogger("hyperion.langchain")

_stores: weakref.WeakKeyDictionary[Gateway, ResponseCache] = weakref.WeakKeyDictionary()


def _store_for(gw: Gateway, semantic: bool) -> ResponseCache:
    """The gateway's response cache; one built for it (and shared) when its routes have none."""
    if gw.cache is not None:
        return gw.cache
    store = _stores.get(gw)
    if store is None:
        from hyperion_core.cache import CacheBackendConfig
        from hyperion_core.cache.embedders import make_embedder

        st = gw.config.state
        backend = CacheBackendConfig(
            backend=st.backend,
            redis_url=st.redis_url,
            key_prefix=st.prefix,
            socket_timeout=gw.config.cache.socket_timeout,
        )
        embedder = make_embedder(gw.config.cache.embedder, gw) if semantic else None
        store = _stores[gw] = ResponseCache(backend, embedder=embedder)
    return store


def parse_llm_string(llm_string: str) -> dict[str, Any]:
    """Best effort: the model name, temperature and tools that a LangChain ``llm_string`` carries."""
    out: dict[str, Any] = {}
    head, sep, tail = llm_string.partition("---")
    params: dict[str, Any] = {}
    if sep:
        try:
            kwargs = json.loads(head).get("kwargs") or {}
            params.update(
                {k: v for k, v in kwargs.items() if not isinstance(v, dict) or v.get("type") != "secret"}
            )
        except (ValueError, AttributeError):
            pass
    try:
        params.update(dict(ast.literal_eval(tail if sep else llm_string)))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    model = params.get("model_name") or params.get("model")
    if isinstance(model, str):
        out["model"] = model
    t = params.get("temperature")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        out["temperature"] = float(t)
    tools = params.get("tools")
    if tools or (not params and "'tools'" in llm_string):
        out["tools"] = tools if isinstance(tools, list) else [{"type": "function", "function": {"name": "?"}}]
    return out


class HyperionCache(BaseCache):
    """LangChain's LLM cache served by Hyperion's tiers (see the module docstring).

    ``route``: whose ``cache:`` settings apply (and the name entries are filed under);
    ``settings``: a ``CacheSettings`` (or dict) instead, default: scope ``key``, semantic tier on.
    ``virtual_key``: the tenant (authenticated by the gateway); ``caller``: a trusted ``Caller`` instead.
    ``namespace``: an extra partition of the key space.
    """

    def __init__(
        self,
        *,
        config: Any = None,
        gateway: Gateway | None = None,
        route: str = "langchain",
        settings: CacheSettings | dict[str, Any] | None = None,
        virtual_key: str | SecretStr | None = None,
        caller: Caller | None = None,
        namespace: str | None = None,
    ) -> None:
        self._ref = GatewayRef(gateway, config, who="HyperionCache")
        self.route = route
        self._settings = CacheSettings.model_validate(settings) if isinstance(settings, dict) else settings
        self._virtual_key = SecretStr(virtual_key) if isinstance(virtual_key, str) else virtual_key
        self._caller = caller
        self.namespace = namespace
        self._epoch = 0

    def __repr__(self) -> str:
        return f"HyperionCache(route={self.route!r}, namespace={self.namespace!r})"

    @property
    def gateway(self) -> Gateway:
        return self._ref.get()

    @property
    def settings(self) -> CacheSettings:
        if self._settings is None:
            rc = self.gateway.config.routes.get(self.route)
            self._settings = (
                rc.cache
                if rc is not None and rc.cache is not None
                else CacheSettings(semantic=SemanticSettings(enabled=True))
            )
        return self._settings

    @property
    def store(self) -> ResponseCache:
        """The response cache the entries live in (shared by every adapter on the same gateway)."""
        return _store_for(self.gateway, self.settings.semantic.enabled)

    # -- prepare ---------------------------------------------------------------------------------

    async def _tenant(self) -> Caller | None:
        """The caller, authorized for ``route`` by the pipeline's Authorize stage (every time: a revoked
        key is refused at once)."""
        vk = self._virtual_key.get_secret_value() if self._virtual_key is not None else None
        caller = await authorize(self.gateway, self.route, virtual_key=vk, caller=self._caller)
        if caller is not None and caller.virtual_key:
            caller = Caller(key_id=caller.key_id, team=caller.team, user=caller.user, tags=caller.tags)
        return caller

    def _request(self, prompt: str, llm_string: str, caller: Caller | None) -> tuple[ChatRequest, bool]:
        """(the request LangChain's key stands for, whether the prompt was a chat conversation)."""
        chat = False
        messages: list[dict[str, Any]] | None = None
        if prompt.startswith("[{"):
            try:
                with suppress_langchain_beta_warning():
                    msgs = loads(prompt, allowed_objects="messages")
                messages, chat = C.to_openai_messages(msgs), True
            except Exception:  # noqa: BLE001 - not a serialised conversation: the text is the prompt
                messages = None
        if messages is None:
            messages = [{"role": "user", "content": prompt}]
        info = parse_llm_string(llm_string)
        digest = hashlib.blake2b(llm_string.encode(), digest_size=12).hexdigest()
        ns = f"lc:{digest}:{self._epoch}" + (f":{self.namespace}" if self.namespace else "")
        req = ChatRequest(
            route=self.route,
            messages=messages,
            temperature=info.get("temperature"),
            tools=info.get("tools"),
            caller=caller,
            cache=CacheControl(namespace=ns),
            metadata={"model": info.get("model")},
        )
        return req, chat

    # -- async (native) ----------------------------------------------------------------------------

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        try:
            caller = await self._tenant()
        except HyperionError as exc:  # a refused key reads nothing
            log.warning("hyperion cache: lookup skipped: %s", exc)
            return None
        req, chat = self._request(prompt, llm_string, caller)
        hit = await self.store.lookup(req, self.settings)
        if hit is None:
            return None
        resp = hit.response(req)
        return [_generation(resp, chat)]

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        if len(return_val) != 1:
            return  # several choices: not representable as one cached answer
        try:
            caller = await self._tenant()
        except HyperionError as exc:
            log.warning("hyperion cache: store skipped: %s", exc)
            return
        req, _ = self._request(prompt, llm_string, caller)
        resp = _response(req, return_val[0])
        if resp is not None:
            await self.store.store(req, resp, self.settings)

    async def aclear(self, **kwargs: Any) -> None:
        self.clear()

    # -- sync: the same, on the gateway's loop ------------------------------------------------------

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self.gateway.run_sync(self.alookup(prompt, llm_string))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.gateway.run_sync(self.aupdate(prompt, llm_string, return_val))

    def clear(self, **kwargs: Any) -> None:
        """Make this adapter's earlier entries unreachable (they expire by their TTL; the shared store
        and other adapters' entries are not touched)."""
        self._epoch += 1


def _response(req: ChatRequest, gen: Generation) -> ChatResponse | None:
    """A LangChain generation as the gateway's response record (what the cache stores)."""
    msg = getattr(gen, "message", None)
    calls: tuple[ToolCall, ...] = ()
    meta: dict[str, Any] = {}
    usage = Usage()
    if isinstance(msg, AIMessage):
        calls = tuple(
            ToolCall(id=tc.get("id") or f"call_{i}", name=tc["name"], arguments=json.dumps(tc["args"]))
            for i, tc in enumerate(msg.tool_calls)
        )
        meta = msg.response_metadata or {}
        usage = usage_of(LLMResult(generations=[[gen]])) or Usage()
    text = gen.text
    finish = (gen.generation_info or {}).get("finish_reason") or meta.get("finish_reason")
    if finish is None:
        finish = "tool_calls" if calls else "stop"
    model = meta.get("model_name") or req.metadata.get("model") or "unknown"
    provider = meta.get("model_provider") or "openai"
    return ChatResponse(
        request_id=req.request_id,
        route=req.route,
        deployment=f"{provider}/{model}",
        model=model,
        content=text or None,
        tool_calls=calls,
        finish_reason=finish,
        usage=usage,
        cost=price_lookup(provider, model).cost(usage),
        attempts=(),
        latency_ms=0.0,
    )


def _generation(resp: ChatResponse, chat: bool) -> Generation:
    c = resp.cache
    cache_meta = None if c is None else cache_info_dict(c)
    info: dict[str, Any] = {"finish_reason": resp.finish_reason, CACHE_KEY: cache_meta}
    if not chat:
        return Generation(text=resp.content or "", generation_info=info)
    msg = C.to_ai_message(replace(resp, attempts=()))
    msg.response_metadata = {
        "model_name": resp.model,
        "finish_reason": resp.finish_reason,
        CACHE_KEY: cache_meta,
    }
    return ChatGeneration(message=msg, generation_info=info)


__all__ = ["HyperionCache", "parse_llm_string"]
