"""A deterministic mock LLM provider speaking the OpenAI, Anthropic and Gemini wire formats.

A real HTTP server (aiohttp + orjson) for testing, demoing and benchmarking
LLM clients and gateways without network access or API spend. Replies are
deterministic (see ``content``), usage is reported in each provider's real
shape, and faults (errors, latency, hangs, cut streams, malformed bodies) are
programmable per deployment at runtime (see ``faults``).

Quick start::

    from hyperion_core.mock_provider import MockProvider

    with MockProvider() as mock:                      # free port, background thread
        mock.fault("primary", kind="rate_limit", retry_after=1, times=1)
        client = AsyncOpenAI(base_url=mock.base_url("primary", "openai"), api_key="sk-test")

Deployments: every provider route accepts an optional first path segment naming
a deployment (``/primary/v1/chat/completions``); without one the deployment is
``default``. Faults, rules and stats are keyed on it.

Base URLs (``MockProvider.base_url(deployment, wire)``), also what litellm's
``api_base`` needs::

    wire        base URL                         litellm call
    openai      http://HOST:PORT/{dep}/v1        acompletion(model="openai/gpt-4o-mini", api_base=...)
    anthropic   http://HOST:PORT/{dep}           acompletion(model="anthropic/claude-haiku-4-5", api_base=...)
    gemini      http://HOST:PORT/{dep}/v1beta    acompletion(model="gemini/gemini-2.5-flash", api_base=...)

(litellm appends ``/chat/completions``, ``/v1/messages`` and
``/models/{model}:{generateContent|streamGenerateContent?alt=sse}`` respectively;
it authenticates Gemini with ``x-goog-api-key``.) Any non-empty API key works;
a missing key or one starting with ``bad`` gets a 401 in the wire's format.

Control surface, identical on :class:`MockProvider` (in-process, thread-safe)
and :class:`MockProviderClient` (HTTP ``/_mock`` admin API, stdlib only):
``fault(deployment="*", **spec) -> id``, ``faults()``, ``clear_faults(deployment=None)``,
``script(match, content=None, tool_calls=None, json=None, deployment=None, times=None) -> id``,
``rules()``, ``clear_rules()``, ``stats()``, ``reset()``, ``base_url(deployment, wire)``.
:func:`serve` runs the server in the foreground (``hyperion mock-provider``).

Modules: ``server`` (app, routes, runner), ``handlers`` (request pipeline),
``delivery`` (bytes on the wire, transport faults), ``admin`` (control API),
``client`` (HTTP control client), ``openai_wire`` / ``anthropic_wire`` /
``gemini_wire`` (formats), ``content`` (replies, tokens, continuation),
``schema_synth`` (JSON from schemas), ``embeddings``, ``rules``, ``faults``,
``stats``, ``state``, ``common`` (shared types).
"""

from .client import MockProviderClient, MockProviderError
from .content import answer_for, count_tokens
from .server import MockProvider, create_app, serve

__all__ = [
    "MockProvider",
    "MockProviderClient",
    "MockProviderError",
    "answer_for",
    "count_tokens",
    "create_app",
    "serve",
]
