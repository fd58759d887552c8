"""One vocabulary for what happened to a request, shared by audit, LangChain and LlamaIndex.

Every name a door or sink uses for a cache tier, an outcome or a decision is defined here once, so a
new value (``coalesced`` was one) cannot be known to one part and rejected by another.
:func:`provenance` is the one description of where an answer came from, for response metadata.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

#: how a cached answer was found: an exact tier, the semantic tier, or a concurrent identical request
#: (single flight) that this one waited for
CacheTier = Literal["l1", "l2", "semantic", "coalesced"]
CACHE_TIERS: tuple[str, ...] = get_args(CacheTier)

#: how a request ended, as audit records it
Outcome = Literal["ok", "error", "denied", "rate_limited", "budget_exceeded", "cancelled"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)

#: what admission decided
Admission = Literal["admitted", "refused", "rate_limited"]

#: the stages every request passes, in order (``pipeline.Pipeline``); events name them
Stage = Literal["validate", "authorize", "guard_in", "admit", "cache", "call", "guard_out", "settle", "audit"]
STAGES: tuple[str, ...] = get_args(Stage)


def provenance(resp: Any) -> dict[str, Any]:
    """Where a :class:`~hyperion_core.types.ChatResponse` came from, as plain values: request id,
    route, deployment, provider, model, cache tier, attempts, resumed-by, latency and cost, and what
    the provider sent about itself (its response id, ``system_fingerprint``, ``logprobs``, reasoning;
    None when it sent none). The same keys in every door's response metadata."""
    deployment = resp.deployment or ""
    out: dict[str, Any] = {
        "request_id": resp.request_id,
        "route": resp.route,
        "deployment": deployment,
        "provider": deployment.partition("/")[0] if "/" in deployment else None,
        "model": resp.model,
        "finish_reason": resp.finish_reason,
        "cost_usd": resp.cost,
        "latency_ms": resp.latency_ms,
        "ttft_ms": resp.ttft_ms,
        "attempts": [
            {"deployment": a.deployment, "outcome": a.outcome, "error_class": a.error_class, "status": a.status}
            for a in resp.attempts
        ],
        "resumed_by": list(resp.resumed_by),
        "cache_tier": resp.cache.tier if resp.cache is not None else None,
        "provider_id": getattr(resp, "provider_id", None),
        "system_fingerprint": getattr(resp, "system_fingerprint", None),
        "logprobs": getattr(resp, "logprobs", None),
        "reasoning": getattr(resp, "reasoning", None),
    }
    return out


__all__ = ["CacheTier", "CACHE_TIERS", "Outcome", "OUTCOMES", "Admission", "Stage", "STAGES", "provenance"]
