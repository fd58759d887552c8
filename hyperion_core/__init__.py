"""Hyperion: an LLM gateway for Python teams.

``Gateway`` routes requests across provider deployments with failover, retries, timeouts and circuit
breakers; ``GatewayConfig`` describes it (``Gateway.from_file("hyperion.yaml")``). The mock provider
(``hyperion_core.mock_provider.MockProvider``) serves the OpenAI, Anthropic and Gemini wire formats
locally, with fault injection, for tests and demos.
"""

from .config import GatewayConfig
from .errors import (
    AccessError,
    AllDeploymentsFailedError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConfigError,
    ContentPolicyError,
    ContextWindowExceededError,
    DeadlineExceededError,
    FirstTokenTimeoutError,
    GovernanceStoreError,
    HyperionError,
    InvalidKeyError,
    InvalidRequestError,
    KeyExpiredError,
    KeyRevokedError,
    MalformedResponseError,
    NoHealthyDeploymentError,
    NotFoundError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    RateLimitError,
    RequestError,
    RouteNotFoundError,
    RoutingError,
    StreamCutError,
    StreamInterruptedError,
)
from .gateway import Gateway, SyncChatStream
from .registry import shared_gateway
from .routing import ManualClock, set_testing
from .streaming import ChatStream
from .types import (
    Attempt,
    CacheControl,
    CacheInfo,
    Caller,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "Gateway",
    "GatewayConfig",
    "ChatStream",
    "SyncChatStream",
    "ChatRequest",
    "ChatResponse",
    "ChatChunk",
    "EmbeddingResponse",
    "Caller",
    "CacheControl",
    "CacheInfo",
    "Usage",
    "ToolCall",
    "ToolCallDelta",
    "Attempt",
    "ManualClock",
    "set_testing",
    "shared_gateway",
    "HyperionError",
    "ConfigError",
    "RequestError",
    "RouteNotFoundError",
    "InvalidRequestError",
    "AccessError",
    "InvalidKeyError",
    "KeyRevokedError",
    "KeyExpiredError",
    "PermissionDeniedError",
    "BudgetExceededError",
    "RateLimitedError",
    "GovernanceStoreError",
    "ProviderError",
    "RateLimitError",
    "ProviderUnavailableError",
    "ProviderTimeoutError",
    "FirstTokenTimeoutError",
    "ProviderConnectionError",
    "MalformedResponseError",
    "StreamCutError",
    "AuthenticationError",
    "NotFoundError",
    "BadRequestError",
    "ContextWindowExceededError",
    "ContentPolicyError",
    "RoutingError",
    "AllDeploymentsFailedError",
    "NoHealthyDeploymentError",
    "DeadlineExceededError",
    "StreamInterruptedError",
    "__version__",
]
