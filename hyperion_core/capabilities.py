"""What a route can do — context window, output limit, tool calling — for every door that must say so
(LlamaIndex's ``LLMMetadata``, LangChain's model profile, ``/v1/models``).

Each deployment's value comes from, in order:

1. the config (``max_input_tokens`` / ``context_window``, ``max_output_tokens``, ``function_calling``);
2. litellm's model map (for ``ft:<base>:...`` fine-tunes, the base model's entry);
3. a default by provider kind: models behind the OpenAI-wire kinds (``openai``, ``openai_compatible``,
   ``vllm``, ``ollama``) — typically vLLM / Ollama models and fine-tunes the map does not know — call
   tools and have a window of :data:`OPENAI_WIRE_WINDOW` tokens (``ollama``: :data:`OLLAMA_WINDOW`,
   Ollama's default ``num_ctx``); any other kind: no tools, window unknown (``None``).

A route's window and output limit are the smallest among its deployments that have one (a prompt that
fits it fits whichever deployment answers); it calls tools only if every deployment does. Pure
functions of the configuration (a ``Gateway`` or just its ``GatewayConfig``): no I/O, no gateway built.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from ._text import suggest
from .config import DeploymentConfig, GatewayConfig, provider_kind
from .errors import RouteNotFoundError
from .pricing import Price, lookup

if TYPE_CHECKING:
    from .gateway import Gateway

#: provider kinds that speak the OpenAI wire (where unknown models are assumed to call tools)
OPENAI_WIRE_KINDS = frozenset({"openai", "openai_compatible", "vllm", "ollama"})
#: tokens; the window assumed for an OpenAI-wire model that neither the config nor the map knows
OPENAI_WIRE_WINDOW = 8192
#: tokens; Ollama's default ``num_ctx`` (declare ``max_input_tokens`` if you raised it)
OLLAMA_WINDOW = 4096

Source = Literal["config", "model_map", "default", "unknown"]


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    """One deployment's limits and abilities, and where each came from."""

    name: str
    kind: str
    model: str
    #: tokens; None when unknown
    max_input_tokens: int | None
    #: tokens; None when unknown
    max_output_tokens: int | None
    function_calling: bool
    max_input_tokens_source: Source
    function_calling_source: Source


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A route's limits and abilities: what every door should advertise for it."""

    route: str
    kind: Literal["chat", "embedding"]
    #: tokens; the smallest known window among the deployments (None: none known)
    max_input_tokens: int | None
    #: tokens; the smallest known output limit among the deployments (None: none known)
    max_output_tokens: int | None
    #: every deployment calls tools
    function_calling: bool
    deployments: tuple[DeploymentInfo, ...]


def deployment_info(kind: str, dep: DeploymentConfig) -> DeploymentInfo:
    """Resolve one deployment served by provider ``kind``: config, then model map, then the kind's default."""
    model = dep.upstream_model
    price = lookup(kind, model, dep.pricing)
    base = _fine_tune_base(model)
    if base is not None and (price.max_input_tokens is None or price.supports_tools is None):
        price = _fill(price, lookup(kind, base))
    openai_wire = kind in OPENAI_WIRE_KINDS

    window: int | None
    window_src: Source
    if dep.max_input_tokens is not None:
        window, window_src = dep.max_input_tokens, "config"
    elif price.max_input_tokens:
        window, window_src = price.max_input_tokens, "model_map"
    elif openai_wire:
        window, window_src = (OLLAMA_WINDOW if kind == "ollama" else OPENAI_WIRE_WINDOW), "default"
    else:
        window, window_src = None, "unknown"

    tools_src: Source
    if dep.function_calling is not None:
        tools, tools_src = dep.function_calling, "config"
    elif price.supports_tools is not None:
        tools, tools_src = bool(price.supports_tools), "model_map"
    else:
        tools, tools_src = openai_wire, "default"

    return DeploymentInfo(
        name=dep.id,
        kind=kind,
        model=model,
        max_input_tokens=window,
        max_output_tokens=dep.max_output_tokens or price.max_output_tokens or None,
        function_calling=tools,
        max_input_tokens_source=window_src,
        function_calling_source=tools_src,
    )


def route_info(source: Gateway | GatewayConfig, route: str) -> RouteInfo:
    """The limits and abilities of ``route`` in a gateway's configuration (or a ``GatewayConfig``).
    An unknown route raises :class:`~hyperion_core.errors.RouteNotFoundError` with a did-you-mean."""
    cfg = source if isinstance(source, GatewayConfig) else source.config
    rc = cfg.routes.get(route)
    if rc is None:
        names = set(cfg.routes)
        raise RouteNotFoundError(
            f"unknown route '{route}'" + (suggest(route, names) or f" (routes: {', '.join(cfg.routes)})"),
            route=route,
        )
    deps = tuple(deployment_info(provider_kind(cfg, d.provider) or d.provider, d) for d in rc.deployments)
    windows = [d.max_input_tokens for d in deps if d.max_input_tokens]
    outputs = [d.max_output_tokens for d in deps if d.max_output_tokens]
    return RouteInfo(
        route=route,
        kind=rc.kind,
        max_input_tokens=min(windows) if windows else None,
        max_output_tokens=min(outputs) if outputs else None,
        function_calling=rc.kind == "chat" and all(d.function_calling for d in deps),
        deployments=deps,
    )


def _fine_tune_base(model: str) -> str | None:
    """``ft:gpt-4o-mini-2024-07-18:org::id`` -> ``gpt-4o-mini-2024-07-18`` (OpenAI's fine-tune names)."""
    if model.startswith("ft:"):
        base = model.split(":")[1]
        return base or None
    return None


def _fill(price: Price, base: Price) -> Price:
    return replace(
        price,
        max_input_tokens=price.max_input_tokens or base.max_input_tokens,
        max_output_tokens=price.max_output_tokens or base.max_output_tokens,
        supports_tools=price.supports_tools if price.supports_tools is not None else base.supports_tools,
    )


__all__ = [
    "RouteInfo",
    "DeploymentInfo",
    "route_info",
    "deployment_info",
    "OPENAI_WIRE_KINDS",
    "OPENAI_WIRE_WINDOW",
    "OLLAMA_WINDOW",
]
