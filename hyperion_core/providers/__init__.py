"""Provider adapters: native ones for the OpenAI, Anthropic and Gemini wire formats, litellm for the rest.

``adapter_class(wire)`` picks the class; the litellm adapter is imported only when a deployment uses it.
"""

from __future__ import annotations

from .base import Adapter, HttpAdapter, StreamParser, Target


def adapter_class(wire: str) -> type[Adapter]:
    if wire == "openai":
        from .openai import OpenAIAdapter

        return OpenAIAdapter
    if wire == "anthropic":
        from .anthropic import AnthropicAdapter

        return AnthropicAdapter
    if wire == "gemini":
        from .gemini import GeminiAdapter

        return GeminiAdapter
    if wire == "litellm":
        from .litellm import LiteLLMAdapter

        return LiteLLMAdapter
    raise KeyError(wire)


__all__ = ["Adapter", "HttpAdapter", "StreamParser", "Target", "adapter_class"]
