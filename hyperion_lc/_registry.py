"""The gateway registry lives in the core (one per process, shared with the LlamaIndex door)."""

from hyperion_core.registry import (
    ENV_CONFIG,
    GatewayRegistry,
    aclose_gateways,
    close_gateways,
    get_gateway,
    registry,
)

__all__ = ["GatewayRegistry", "registry", "get_gateway", "close_gateways", "aclose_gateways", "ENV_CONFIG"]
