"""A kit for door authors: what every framework integration (LangChain, LlamaIndex, yours) needs from
the core, written once.

* **The gateway, lazily** — :class:`GatewayRef` (and :func:`check_source` / :func:`resolve_gateway` for
  objects that keep their own fields): a door object is given a ``Gateway`` or a config (a path, a
  mapping, a ``GatewayConfig``, or ``$HYPERION_CONFIG``); constructors only check the arguments, and the
  shared gateway of that config (:mod:`hyperion_core.registry`) is built on first use.
* **Calls made by a framework's own client** — :class:`ExternalMeter`: admit on start
  (``Gateway.abegin_external``: key, rate limits, budget reservation), then settle exactly once on end
  (at the reported usage, else an estimate; an answer from Hyperion's cache as a **saving**, at $0) or
  release on error, keyed by the framework's run / span id. The LangChain callback handler and the
  LlamaIndex instrumentation both use it.
* **Usage, one parser per wire** — :func:`usage_from` reads the token counts a framework hands over
  (OpenAI, Anthropic, Gemini, LangChain ``usage_metadata``; dicts or SDK objects) with the adapters'
  own parsers, so a door bills exactly as the gateway does; :func:`estimated_usage` when none came.
* **Authorization without a call** — :func:`authorize` runs the pipeline's Authorize stage for a door
  that serves requests itself (``HyperionCache``): revocation and expiry apply at once.
* **Cache provenance** — :func:`cache_info_dict` / :func:`cache_info_from`: how a door marks an answer
  that came from Hyperion's cache, and how a meter recognises it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import AccessError, ConfigError
from .gateway import ExternalCall, Gateway
from .pipeline import EXTERNAL
from .providers.anthropic import anthropic_usage
from .providers.gemini import gemini_usage
from .providers.openai import openai_usage
from .tokens import estimate_prompt_tokens
from .types import CacheInfo, Caller, ChatRequest, ChatResponse, Message, Usage

# -- the gateway, lazily -----------------------------------------------------------------------------


def check_source(gateway: Any, config: Any, who: str) -> None:
    """Construction-time check of a door object's ``gateway=`` / ``config=`` (builds nothing): not
    both, a real ``Gateway``, a config of a usable type, or ``$HYPERION_CONFIG`` when neither."""
    from .registry import ENV_CONFIG, config_key

    if gateway is not None and config is not None:
        raise ConfigError(f"{who}: pass config= or gateway=, not both")
    if gateway is not None:
        if not isinstance(gateway, Gateway):
            raise ConfigError(f"{who}: gateway= must be a hyperion_core.Gateway, got {type(gateway).__name__}")
        return
    if config is None and not os.environ.get(ENV_CONFIG):
        raise ConfigError(
            f"{who} needs a gateway: pass config='hyperion.yaml' (a path, a mapping or a GatewayConfig), "
            f"gateway=Gateway(...), or set ${ENV_CONFIG}"
        )
    config_key(config)  # a config of the wrong type fails here, not on first use


def resolve_gateway(gateway: Gateway | None, config: Any, who: str = "this object") -> Gateway:
    """``gateway`` if given, else the shared gateway of ``config`` (``$HYPERION_CONFIG`` when None)."""
    if gateway is not None:
        return gateway
    from . import registry as _registry

    try:
        return _registry.registry.get(config)
    except ConfigError as exc:
        if config is None:
            raise ConfigError(f"{who}: {exc.message}") from None
        raise


class GatewayRef:
    """A door object's gateway: the one it was given, or the shared gateway of its config, built on
    first use (see the module docstring). ``check=True`` validates the arguments at once."""

    __slots__ = ("_gateway", "config", "who")

    def __init__(self, gateway: Gateway | None = None, config: Any = None, *, who: str = "this object",
                 check: bool = True) -> None:
        if check:
            check_source(gateway, config, who)
        self._gateway = gateway
        self.config = config
        self.who = who

    def get(self) -> Gateway:
        gw = self._gateway
        if gw is None:
            gw = self._gateway = resolve_gateway(None, self.config, self.who)
        return gw

    @property
    def resolved(self) -> Gateway | None:
        """The gateway if it is known already (never builds one)."""
        return self._gateway

    def __repr__(self) -> str:  # a config mapping may carry secrets
        return f"GatewayRef(who={self.who!r}, resolved={self._gateway is not None})"


# -- usage, one parser per wire -------------------------------------------------------------------------

Wire = Literal["openai", "anthropic", "gemini", "langchain"]


def _plain(obj: Any) -> Any:
    """A dict from a mapping or an SDK object (pydantic models, dataclass-like objects), recursively."""
    if obj is None or isinstance(obj, (int, float, str, bool)):
        return obj
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump()
        except Exception:  # noqa: BLE001 - an odd object: read its attributes instead
            pass
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        return {k: _plain(v) for k, v in attrs.items() if not k.startswith("_")}
    return obj


def langchain_usage(um: Mapping[str, Any]) -> Usage:
    """LangChain's ``usage_metadata``: ``input_tokens`` already include cache reads and writes,
    ``output_tokens`` the reasoning tokens (the gateway's convention too)."""
    ind = um.get("input_token_details") or {}
    outd = um.get("output_token_details") or {}
    return Usage(
        prompt_tokens=int(um.get("input_tokens") or 0),
        completion_tokens=int(um.get("output_tokens") or 0),
        cached_prompt_tokens=int(ind.get("cache_read") or 0),
        cache_write_tokens=int(ind.get("cache_creation") or 0),
        reasoning_tokens=int(outd.get("reasoning") or 0),
    )


_PARSERS = {"openai": openai_usage, "anthropic": anthropic_usage, "gemini": gemini_usage,
            "langchain": langchain_usage}


def wire_of(u: Mapping[str, Any]) -> Wire | None:
    """Which wire's shape a usage record has (None: no token counts in it)."""
    if "prompt_tokens" in u or "completion_tokens" in u:
        return "openai"
    if "promptTokenCount" in u or "candidatesTokenCount" in u:
        return "gemini"
    if "input_tokens" in u or "output_tokens" in u:
        # LangChain's usage_metadata always has total_tokens; Anthropic's usage never does
        return "langchain" if "total_tokens" in u or "input_token_details" in u else "anthropic"
    return None


def usage_from(u: Any, wire: Wire | None = None) -> Usage | None:
    """Token usage from what a framework handed over — a dict or an SDK object in ``wire``'s shape
    (guessed by :func:`wire_of` when None) — parsed by the adapters' own parser for that wire, so an
    external call is billed as a gateway call would be. None when it holds no token counts."""
    if u is None:
        return None
    d = _plain(u)
    if not isinstance(d, Mapping):
        return None
    wire = wire or wire_of(d)
    if wire is None:
        return None
    return _PARSERS[wire](dict(d))


def estimated_usage(req: ChatRequest, content: str | None) -> Usage:
    """Usage for a call whose provider reported none (say a stream without usage): the prompt by
    :func:`~hyperion_core.tokens.estimate_prompt_tokens`, the answer at four characters a token."""
    return Usage(prompt_tokens=estimate_prompt_tokens(req), completion_tokens=(len(content or "") + 3) // 4)


# -- cache provenance ------------------------------------------------------------------------------------

#: the metadata key under which doors mark an answer served by Hyperion's cache
CACHE_KEY = "hyperion_cache"


def cache_info_dict(c: CacheInfo) -> dict[str, Any]:
    """A :class:`CacheInfo` as plain values (what doors put in response metadata under :data:`CACHE_KEY`)."""
    return {
        "tier": c.tier,
        "similarity": c.similarity,
        "age_s": round(c.age_s, 3),
        "guards": list(c.guards),
        "tokens_saved": c.tokens_saved,
        "cost_saved": c.cost_saved,
        "source_deployment": c.source_deployment,
    }


def cache_info_from(meta: Any) -> CacheInfo | None:
    """The :class:`CacheInfo` a door recorded in ``meta`` (a mapping holding :data:`CACHE_KEY`, or that
    record itself), or None when the answer did not come from Hyperion's cache."""
    if not isinstance(meta, Mapping):
        return None
    d = meta.get(CACHE_KEY, meta if "tier" in meta else None)
    if not isinstance(d, Mapping) or not isinstance(d.get("tier"), str):
        return None
    sim = d.get("similarity")
    return CacheInfo(
        tier=d["tier"],
        age_s=float(d.get("age_s") or 0.0),
        similarity=float(sim) if isinstance(sim, (int, float)) else None,
        guards=tuple(d.get("guards") or ()),
        tokens_saved=int(d.get("tokens_saved") or 0),
        cost_saved=float(d.get("cost_saved") or 0.0),
        source_deployment=d.get("source_deployment"),
    )


# -- authorization without a call -----------------------------------------------------------------------


async def authorize(gw: Gateway, route: str, *, virtual_key: str | None = None,
                    caller: Caller | None = None) -> Caller | None:
    """Who a door's request is from, checked by the pipeline's Authorize stage as a gateway call
    would be (key, expiry, revocation, the route allowed; ``keys.required``), for a door that serves
    requests without an upstream call (a cache lookup). A warm key held in memory is read again, so
    revocation applies at once. Raises the stage's :class:`~hyperion_core.AccessError`."""
    if virtual_key is not None:
        caller = Caller(virtual_key=virtual_key) if caller is None else Caller(
            virtual_key, tags=caller.tags, metadata=dict(caller.metadata))
    req = ChatRequest(route=route, messages=[], caller=caller)
    ctx = gw.pipeline.context(req, EXTERNAL)
    for stage in gw.pipeline.stages:
        if stage.name == "authorize":
            await stage.before(ctx)
            break
    if ctx.cached_record is not None and virtual_key:  # served from memory: admission would re-read it
        services = gw.services
        try:
            await services.keys.authenticate_record(virtual_key)
        except AccessError:
            services.records.pop(ctx.cached_record.key_id, None)
            raise
    return req.caller


# -- calls made by a framework's own client ---------------------------------------------------------------


@dataclass(slots=True)
class CallEnd:
    """What a door knows when a metered call ends. ``usage`` None: estimated from the content.
    ``cache``: the answer came from Hyperion's cache (settled at $0, its cost recorded as saved).
    ``stream``: whether it turned out to be streamed (None: as announced at the start, or as tokens
    arriving one by one showed)."""

    usage: Usage | None = None
    content: str | None = None
    finish_reason: str | None = None
    model: str | None = None
    cache: CacheInfo | None = None
    stream: bool | None = None


class ExternalMeter:
    """Admission, settlement and audit of model calls a framework's own client makes, keyed by the
    framework's run or span id: :meth:`abegin` once, then exactly one of :meth:`aend` / :meth:`afail`
    (a second, or one for an id never admitted, does nothing). Thread-safe; the coroutines run on
    whichever loop the door uses for the gateway (``Gateway.run_sync`` / ``submit`` for sync code).

    ``virtual_key``: whose keys, budgets and rate limits apply; ``route``: the name calls are
    governed and audited under (default ``external:<model>``)."""

    def __init__(self, gateway: GatewayRef | Gateway, *, virtual_key: Any = None, route: str | None = None) -> None:
        self._ref = gateway if isinstance(gateway, GatewayRef) else GatewayRef(gateway, who="ExternalMeter")
        self._virtual_key = virtual_key  # a str or a pydantic SecretStr
        self.route = route
        self._calls: dict[Hashable, ExternalCall] = {}
        self._first_token: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"ExternalMeter(route={self.route!r}, open_calls={len(self._calls)})"

    @property
    def gateway(self) -> Gateway:
        return self._ref.get()

    @property
    def open_calls(self) -> int:
        """Admitted calls not settled or released yet."""
        return len(self._calls)

    def is_open(self, run_id: Hashable) -> bool:
        return run_id in self._calls

    def _key(self) -> str | None:
        vk = self._virtual_key
        if vk is None:
            return None
        return vk.get_secret_value() if hasattr(vk, "get_secret_value") else str(vk)

    async def abegin(self, run_id: Hashable, *, model: str, messages: list[Message], provider: str = "openai",
                     max_tokens: int | None = None, stream: bool = False, request_id: str | None = None) -> ExternalCall:
        """Admit the call (raises the gateway's refusal, already audited) and hold it under ``run_id``."""
        call = await self.gateway.abegin_external(
            model=model, messages=messages or [{"role": "user", "content": ""}], provider=provider,
            route=self.route, max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
            virtual_key=self._key(), stream=stream, request_id=request_id,
        )
        with self._lock:
            self._calls[run_id] = call
        return call

    def token(self, run_id: Hashable) -> None:
        """A streamed token arrived (the first one's time is the call's time to first token)."""
        if run_id in self._calls and run_id not in self._first_token:
            self._first_token.setdefault(run_id, time.perf_counter())

    def _take(self, run_id: Hashable) -> tuple[ExternalCall | None, float | None]:
        with self._lock:
            return self._calls.pop(run_id, None), self._first_token.pop(run_id, None)

    async def aend(self, run_id: Hashable, end: CallEnd) -> ChatResponse | None:
        """Settle the call at its usage (estimated when none came) or, for a cache hit, at $0 with its
        saving; record spend and audit it. None when ``run_id`` has no open call."""
        call, first = self._take(run_id)
        if call is None:
            return None
        usage = end.usage if end.usage is not None else estimated_usage(call.req, end.content)
        cache = end.cache
        if cache is not None and not cache.cost_saved:  # what the answer would have cost at this price
            cache = CacheInfo(cache.tier, cache.age_s, cache.similarity, cache.guards,
                              cache.tokens_saved or usage.total_tokens, call.price.cost(usage),
                              cache.source_deployment)
        stream = end.stream if end.stream is not None else (True if first is not None else None)
        return await self.gateway.aend_external(
            call, usage=usage, content=end.content, finish_reason=end.finish_reason, model=end.model,
            ttft_ms=None if first is None else (first - call.started) * 1000.0, stream=stream, cache=cache,
        )

    async def afail(self, run_id: Hashable, exc: BaseException) -> bool:
        """Release the call's reservation and audit its failure; False when ``run_id`` has no open call."""
        call, _ = self._take(run_id)
        if call is None:
            return False
        await self.gateway.afail_external(call, exc)
        return True


__all__ = [
    "GatewayRef", "check_source", "resolve_gateway",
    "Wire", "usage_from", "wire_of", "langchain_usage", "estimated_usage",
    "CACHE_KEY", "cache_info_dict", "cache_info_from",
    "authorize",
    "CallEnd", "ExternalMeter",
]
