"""What a route is made of, read from the gateway configuration without building a gateway.

``HyperionChat`` needs this at construction (its ``profile``, which ``create_agent`` reads to pick a
structured-output strategy) and for tracing (``ls_provider`` / ``ls_model_name``: LangSmith should
see the provider and model that serve the route, not "hyperion"). Parsing a config file costs ~15 ms
once; the parse is cached per file (and its modification time). A route's targets and profile are
cached per configuration and route (:func:`route`), so building a model costs a dictionary lookup and
one ``stat`` of the config file (STYLE 9: ``HyperionChat`` in a loop stays cheap).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from langchain_core.language_models import ModelProfile

from hyperion_core import Gateway, HyperionError
from hyperion_core.capabilities import route_info
from hyperion_core.config import GatewayConfig
from hyperion_core.pricing import cost_map
from hyperion_core.registry import ENV_CONFIG

#: Hyperion provider kinds -> the provider names LangSmith and LangChain use
LS_PROVIDERS = {
    "gemini": "google_genai",
    "vertex_ai": "google_vertexai",
    "azure": "azure",
    "bedrock": "amazon_bedrock",
    "openai_compatible": "openai",
}


@dataclass(slots=True, frozen=True)
class Target:
    """One deployment of a route: its provider kind and upstream model."""

    name: str
    kind: str
    model: str
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    function_calling: bool | None = None

    @property
    def ls_provider(self) -> str:
        return LS_PROVIDERS.get(self.kind, self.kind)


_lock = threading.Lock()
_parsed: dict[Any, GatewayConfig] = {}


def gateway_config(source: Any) -> GatewayConfig | None:
    """The configuration behind a ``Gateway``, a path, a dict, a ``GatewayConfig`` or
    ``$HYPERION_CONFIG``; None when there is none or it does not load."""
    if isinstance(source, Gateway):
        return source.config
    if isinstance(source, GatewayConfig):
        return source
    try:
        if source is None:
            source = os.environ.get(ENV_CONFIG)
            if not source:
                return None
        if isinstance(source, (str, os.PathLike)):
            path = Path(source).expanduser().resolve()
            key: Any = ("path", str(path), path.stat().st_mtime_ns)
        elif isinstance(source, Mapping):
            blob = orjson.dumps(source, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=repr)
            key = ("dict", hashlib.blake2b(blob, digest_size=16).hexdigest())
        else:
            return None
        cfg = _parsed.get(key)
        if cfg is None:
            cfg = GatewayConfig.from_file(path) if key[0] == "path" else GatewayConfig.load(source)
            with _lock:
                if len(_parsed) > 256:
                    _parsed.clear()
                    _mtimes.clear()
                _parsed[key] = cfg
                if key[0] == "path":
                    _mtimes[id(cfg)] = key[2]
        return cfg
    except Exception:  # noqa: BLE001 - a config that does not load fails on the first call, with its own error
        return None


def targets(cfg: GatewayConfig | None, route: str) -> list[Target]:
    """The deployments of ``route`` in order, with the core's limits and tool calling for each
    (:func:`hyperion_core.capabilities.route_info`); empty when the route is unknown."""
    if cfg is None or route not in cfg.routes:
        return []
    try:
        info = route_info(cfg, route)
    except HyperionError:
        return []
    return [
        Target(d.name, d.kind, d.model, d.max_input_tokens, d.max_output_tokens, d.function_calling)
        for d in info.deployments
    ]


@dataclass(slots=True, frozen=True)
class RouteFacts:
    """A route's deployments and profile, computed once per configuration and route."""

    targets: tuple[Target, ...]
    profile: ModelProfile | None


_NONE = RouteFacts((), None)
#: (source key, route) -> (the GatewayConfig it was computed from, its facts)
_facts: dict[Any, tuple[GatewayConfig, RouteFacts]] = {}


def _source_key(source: Any) -> Any:
    """A cheap key for a config source (no path resolution: a relative path is keyed with the cwd)."""
    if isinstance(source, Gateway):
        return ("obj", id(source.config))
    if isinstance(source, GatewayConfig):
        return ("obj", id(source))
    if source is None:
        source = os.environ.get(ENV_CONFIG)
        if not source:
            return None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return ("path", path, os.getcwd() if not os.path.isabs(path) else "")
    if isinstance(source, Mapping):
        blob = orjson.dumps(source, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=repr)
        return ("dict", hashlib.blake2b(blob, digest_size=16).hexdigest())
    return None


def route(source: Any, name: str) -> RouteFacts:
    """:func:`targets` and :func:`profile` of route ``name`` in ``source`` (as :func:`gateway_config`
    takes it), cached per source and route: a config file is re-read only when its mtime changes."""
    try:
        skey = _source_key(source)
    except Exception:  # noqa: BLE001 - an unusable source has no facts; the first call says why
        return _NONE
    if skey is None:
        return _NONE
    key = (skey, name)
    entry = _facts.get(key)
    if entry is not None:
        cfg = entry[0]
        if skey[0] == "obj":
            src_cfg = source.config if isinstance(source, Gateway) else source
            if src_cfg is cfg:
                return entry[1]
        elif skey[0] == "dict":
            return entry[1]
        elif _fresh(skey, cfg):
            return entry[1]
    cfg = gateway_config(source)
    if cfg is None:
        return _NONE
    ts = tuple(targets(cfg, name))
    facts = RouteFacts(ts, profile(list(ts)))
    with _lock:
        if len(_facts) > 1024:
            _facts.clear()
        _facts[key] = (cfg, facts)
    return facts


def _fresh(skey: Any, cfg: GatewayConfig) -> bool:
    """Is the parse cached for this path still the file's current content (same mtime)?"""
    path = skey[1] if not skey[2] else os.path.join(skey[2], skey[1])
    try:
        mtime = os.stat(os.path.expanduser(path)).st_mtime_ns
    except OSError:
        return False
    return _mtimes.get(id(cfg)) == mtime


#: id(GatewayConfig parsed from a file) -> the file's mtime at parse time
_mtimes: dict[int, int] = {}


def _entry(t: Target) -> dict[str, Any]:
    m = cost_map()
    prefix = {"openai_compatible": "openai", "vllm": "hosted_vllm"}.get(t.kind, t.kind)
    for key in (f"{t.kind}/{t.model}", f"{prefix}/{t.model}", t.model):
        if key in m:
            return m[key]
    return {}


#: ModelProfile key -> the cost-map flag saying the model has it
_FLAGS = {
    "image_inputs": "supports_vision",
    "image_tool_message": "supports_vision",
    "pdf_inputs": "supports_pdf_input",
    "pdf_tool_message": "supports_pdf_input",
    "audio_inputs": "supports_audio_input",
    "tool_calling": "supports_function_calling",
    "tool_choice": "supports_tool_choice",
    "structured_output": "supports_response_schema",
    "reasoning_output": "supports_reasoning",
}


def profile(ts: list[Target]) -> ModelProfile | None:
    """A route's profile: what holds whichever deployment answers. A capability is True only if every
    deployment has it (failover may land on any of them), False if one lacks it, absent if unknown;
    token limits are the smallest. Facts come from litellm's model map and the deployment config."""
    if not ts:
        return None
    out: dict[str, Any] = {"text_inputs": True, "text_outputs": True}
    entries = [_entry(t) for t in ts]
    for key, flag in _FLAGS.items():
        values = [e.get(flag) for e in entries]
        if key == "tool_calling":
            values = [
                t.function_calling if t.function_calling is not None else v
                for t, v in zip(ts, values, strict=True)
            ]
        if any(v is False for v in values):
            out[key] = False
        elif all(v is True for v in values):
            out[key] = True
        elif key == "audio_inputs" and all(e for e in entries):  # the map only says so where true
            out[key] = False
    for key in ("max_input_tokens", "max_output_tokens"):
        values = [getattr(t, key) for t in ts]
        if all(isinstance(v, int) for v in values):
            out[key] = min(values)
    return ModelProfile(**out)  # type: ignore[typeddict-item]


__all__ = ["Target", "RouteFacts", "route", "gateway_config", "targets", "profile", "LS_PROVIDERS"]
