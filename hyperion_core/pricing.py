"""Prices and context windows from litellm's model cost map, overridable per deployment.

The map is read from the JSON file litellm ships (``model_prices_and_context_window_backup.json``)
without importing litellm (which costs ~2 s and may try the network). Lookups happen once per
deployment when the gateway is built; the hot path only multiplies.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import PricingConfig
from .types import Usage

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
log = logging.getLogger("hyperion.pricing")

_MTOK = 1_000_000.0


@dataclass(slots=True, frozen=True)
class Price:
    """USD per token. ``known`` is False when neither the map nor the config had this model."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float = 0.0
    cache_write: float = 0.0
    reasoning: float = 0.0
    known: bool = False
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    supports_tools: bool | None = None

    def cost(self, u: Usage) -> float:
        """Exact cost of one call: cached and cache-write prompt tokens and reasoning tokens are
        priced at their own rates (they are included in prompt/completion totals)."""
        plain_in = max(u.prompt_tokens - u.cached_prompt_tokens - u.cache_write_tokens, 0)
        plain_out = max(u.completion_tokens - u.reasoning_tokens, 0)
        return (
            plain_in * self.input
            + u.cached_prompt_tokens * self.cached_input
            + u.cache_write_tokens * self.cache_write
            + plain_out * self.output
            + u.reasoning_tokens * self.reasoning
        )

    def estimate(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Worst-case cost with no cache discount (used for budget reservations)."""
        return prompt_tokens * self.input + completion_tokens * max(self.output, self.reasoning)


@lru_cache(maxsize=1)
def cost_map() -> dict[str, dict[str, Any]]:
    import orjson

    spec = importlib.util.find_spec("litellm")
    if not spec or not spec.submodule_search_locations:
        return {}
    f = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    try:
        data = orjson.loads(f.read_bytes())
    except (OSError, ValueError):  # pragma: no cover - a broken litellm install
        log.warning("litellm's model cost map could not be read from %s; prices unknown", f)
        return {}
    data.pop("sample_spec", None)
    return data


_PREFIXES = {"openai_compatible": "openai", "vllm": "hosted_vllm", "gemini": "gemini"}


def lookup(kind: str, model: str, override: PricingConfig | None = None) -> Price:
    """The price of ``model`` served by provider ``kind``; an override replaces the map's prices."""
    m = cost_map()
    entry: dict[str, Any] = {}
    for key in (f"{kind}/{model}", f"{_PREFIXES.get(kind, kind)}/{model}", model):
        if key in m:
            entry = m[key]
            break
    ctx = dict(
        max_input_tokens=entry.get("max_input_tokens"),
        max_output_tokens=entry.get("max_output_tokens") or entry.get("max_tokens"),
        supports_tools=entry.get("supports_function_calling"),
    )
    if override is not None:
        inp = override.input_per_mtok / _MTOK
        out = override.output_per_mtok / _MTOK
        cached = override.cached_input_per_mtok
        write = override.cache_write_per_mtok
        return Price(
            input=inp,
            output=out,
            cached_input=inp if cached is None else cached / _MTOK,
            cache_write=inp if write is None else write / _MTOK,
            reasoning=out,
            known=True,
            **ctx,
        )
    if "input_cost_per_token" not in entry:
        return Price(**ctx)
    inp = float(entry.get("input_cost_per_token") or 0.0)
    out = float(entry.get("output_cost_per_token") or 0.0)
    return Price(
        input=inp,
        output=out,
        cached_input=float(entry.get("cache_read_input_token_cost", inp)),
        cache_write=float(entry.get("cache_creation_input_token_cost", inp)),
        reasoning=float(entry.get("output_cost_per_reasoning_token", out)),
        known=True,
        **ctx,
    )


__all__ = ["Price", "lookup", "cost_map"]
