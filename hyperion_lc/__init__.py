"""Hyperion for LangChain.

* :class:`HyperionChat` — a ``BaseChatModel`` whose calls run the gateway pipeline (failover, cache,
  budgets, rate limits, audit): swap it in for ``ChatOpenAI``. Importing this package registers the
  ``hyperion`` provider: ``init_chat_model("hyperion:chat")``, ``create_agent(model="hyperion:chat")``.
* :class:`HyperionCallbackHandler` / :class:`AsyncHyperionCallbackHandler` — for chains that keep their
  own model: admission (key, rate limit, budget) on start, spend and audit on end / error.
* :class:`HyperionCache` — ``set_llm_cache(HyperionCache(...))``: Hyperion's exact and semantic cache
  tiers, tenant-scoped and guarded, for any LangChain model.
* :class:`HyperionShadow` — migration: the current model answers, a second one is mirrored in the
  background, and a side-by-side report records latency, cost, errors and agreement.
* :mod:`hyperion_lc.errors` — two-parent errors (Hyperion's and LangChain's); :mod:`hyperion_lc.events`
  — typed custom events for LangChain callback handlers.
"""

from hyperion_core.registry import GatewayRegistry, aclose_gateways, close_gateways, get_gateway, registry

from .cache import HyperionCache
from .callbacks import AsyncHyperionCallbackHandler, HyperionCallbackHandler
from .chat_models import HyperionChat, register_provider
from .errors import (
    HyperionAccessError,
    HyperionAllDeploymentsFailedError,
    HyperionAuthenticationError,
    HyperionBadRequestError,
    HyperionBudgetExceededError,
    HyperionConfigError,
    HyperionContentPolicyError,
    HyperionContextWindowExceededError,
    HyperionDeadlineExceededError,
    HyperionFirstTokenTimeoutError,
    HyperionGovernanceStoreError,
    HyperionGuardrailBlockedError,
    HyperionInvalidKeyError,
    HyperionInvalidRequestError,
    HyperionKeyExpiredError,
    HyperionKeyRevokedError,
    HyperionMalformedResponseError,
    HyperionModelError,
    HyperionNoHealthyDeploymentError,
    HyperionNotFoundError,
    HyperionPermissionDeniedError,
    HyperionProviderConnectionError,
    HyperionProviderError,
    HyperionProviderTimeoutError,
    HyperionProviderUnavailableError,
    HyperionRateLimitedError,
    HyperionRateLimitError,
    HyperionRequestError,
    HyperionRouteNotFoundError,
    HyperionRoutingError,
    HyperionStreamCutError,
    HyperionStreamInterruptedError,
    to_langchain_error,
)
from .events import (
    AdmissionRefused,
    AttemptRecord,
    CacheHitEvent,
    FailoverAttempt,
    HyperionEvent,
    RequestFailed,
    RouteDecision,
)
from .shadow import HyperionShadow, ShadowRecord, SideResult

register_provider()  # init_chat_model("hyperion:<route>") / create_agent(model="hyperion:<route>")

__all__ = [
    "HyperionChat",
    "register_provider",
    "HyperionCallbackHandler",
    "AsyncHyperionCallbackHandler",
    "HyperionCache",
    "HyperionShadow",
    "ShadowRecord",
    "SideResult",
    "GatewayRegistry",
    "registry",
    "get_gateway",
    "close_gateways",
    "aclose_gateways",
    "HyperionEvent",
    "AttemptRecord",
    "RouteDecision",
    "FailoverAttempt",
    "CacheHitEvent",
    "AdmissionRefused",
    "RequestFailed",
    "to_langchain_error",
    "HyperionModelError",
    "HyperionConfigError",
    "HyperionRequestError",
    "HyperionRouteNotFoundError",
    "HyperionInvalidRequestError",
    "HyperionAccessError",
    "HyperionInvalidKeyError",
    "HyperionKeyRevokedError",
    "HyperionKeyExpiredError",
    "HyperionPermissionDeniedError",
    "HyperionBudgetExceededError",
    "HyperionGuardrailBlockedError",
    "HyperionRateLimitedError",
    "HyperionGovernanceStoreError",
    "HyperionProviderError",
    "HyperionRateLimitError",
    "HyperionProviderUnavailableError",
    "HyperionProviderTimeoutError",
    "HyperionFirstTokenTimeoutError",
    "HyperionProviderConnectionError",
    "HyperionMalformedResponseError",
    "HyperionStreamCutError",
    "HyperionAuthenticationError",
    "HyperionNotFoundError",
    "HyperionBadRequestError",
    "HyperionContextWindowExceededError",
    "HyperionContentPolicyError",
    "HyperionRoutingError",
    "HyperionAllDeploymentsFailedError",
    "HyperionNoHealthyDeploymentError",
    "HyperionDeadlineExceededError",
    "HyperionStreamInterruptedError",
]
