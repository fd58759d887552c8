"""OpenTelemetry traces for ``hyperion serve`` (the ``otel`` extra): one span per model request, a
child span per attempt, with the GenAI semantic-convention attributes.

Off unless configured: ``create_app(..., tracer_provider=provider)``, or ``ServerSettings(otel=True)`` /
``HYPERION_OTEL=1``, which use the global tracer provider — the one ``opentelemetry-instrument`` or the
application's own SDK setup installs (exporter, sampler, resource: the standard ``OTEL_*`` variables).
Without an SDK that provider is a no-op and nothing is exported; without the extra nothing is imported.

The request span (kind SERVER, named ``"{operation} {route}"``, child of an incoming ``traceparent``)
carries ``gen_ai.operation.name``, ``gen_ai.system`` / ``gen_ai.provider.name`` (the provider kind of
the deployment that answered), ``gen_ai.request.model`` (the route the client named),
``gen_ai.response.model``, ``gen_ai.request.max_tokens`` / ``temperature`` / ``top_p``,
``gen_ai.response.finish_reasons``, ``gen_ai.usage.input_tokens`` / ``output_tokens``, and
``hyperion.route``, ``hyperion.deployment``, ``hyperion.cache_tier`` (``miss`` for a fresh answer),
``hyperion.cost_usd``, ``hyperion.attempts``, ``hyperion.request_id``, ``hyperion.endpoint``; a failure
sets ``error.type`` and the ERROR status. Each attempt is a CLIENT child span ``"chat {model}"`` with
``hyperion.deployment``, the provider's ``gen_ai.system`` / ``gen_ai.request.model``, its outcome and
``error.type``. Spans are written when the request ends, with its real start and end times; attempts
are laid end to end from the request start with their measured latencies (the pipeline records
durations, not start times), so retry backoff shows as a gap after the last attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ..gateway import Gateway

log = logging.getLogger("hyperion.server")

OPERATIONS = {"chat.completions": "chat", "messages": "chat", "responses": "chat", "embeddings": "embeddings"}


class Tracing:
    """Writes the spans of one app (see the module docstring)."""

    def __init__(self, gateway: Gateway, tracer_provider: Any = None) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer = provider.get_tracer("hyperion_core.server")
        self._trace, self._propagate = trace, propagate
        self._kind, self._status, self._code = SpanKind, Status, StatusCode
        # deployment name -> (provider kind, model), for gen_ai.system on the request and attempt spans
        self.deployments: dict[str, tuple[str, str]] = {}
        cfg = gateway.config
        for route in cfg.routes.values():
            for d in route.deployments:
                provider_name, _, model = d.model.partition("/")
                account = cfg.providers.get(provider_name)
                kind = account.kind if account is not None else provider_name
                self.deployments[d.name or d.model] = (kind, model or d.model)

    @staticmethod
    def now() -> int:
        return time.time_ns()

    def record(
        self,
        endpoint: str,
        route: str,
        start_ns: int,
        *,
        headers: Mapping[str, str] | None = None,
        request: Any = None,
        response: Any = None,
        error: BaseException | None = None,
        request_id: str = "",
        outcome: str = "ok",
    ) -> None:
        """The spans of one finished request: ``response`` (a ChatResponse / EmbeddingResponse) or
        ``error``; ``request`` is the ChatRequest when there was one. Never raises: a tracing failure
        is logged, the answer is not touched."""
        try:
            self._record(endpoint, route, start_ns, headers, request, response, error, request_id, outcome)
        except Exception:  # noqa: BLE001 - tracing must never turn an answer into an error
            log.exception("tracing: could not record the spans of request %s", request_id)

    def _record(
        self,
        endpoint: str,
        route: str,
        start_ns: int,
        headers: Mapping[str, str] | None,
        request: Any,
        response: Any,
        error: BaseException | None,
        request_id: str,
        outcome: str,
    ) -> None:
        end = time.time_ns()
        op = OPERATIONS.get(endpoint, endpoint)
        parent = self._propagate.extract(dict(headers)) if headers else None
        attrs: dict[str, Any] = {"gen_ai.operation.name": op, "gen_ai.request.model": route or "",
                                 "hyperion.route": route or "", "hyperion.endpoint": endpoint}
        if request_id:
            attrs["hyperion.request_id"] = request_id
        if request is not None:
            for name, value in (("max_tokens", request.max_tokens), ("temperature", request.temperature),
                                ("top_p", request.top_p)):
                if value is not None:
                    attrs[f"gen_ai.request.{name}"] = value
        dep = getattr(response, "deployment", None)
        if dep:
            kind, _ = self.deployments.get(dep, ("", ""))
            attrs["hyperion.deployment"] = dep
            if kind:
                attrs["gen_ai.system"] = attrs["gen_ai.provider.name"] = kind
        if response is not None:
            usage = response.usage
            cache = getattr(response, "cache", None)
            attrs.update({
                "gen_ai.response.model": response.model or "",
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": getattr(usage, "completion_tokens", 0),
                "hyperion.cache_tier": cache.tier if cache is not None else "miss",
                "hyperion.cost_usd": float(response.cost),
                "hyperion.attempts": len(getattr(response, "attempts", ()) or ()),
            })
            finish = getattr(response, "finish_reason", None)
            if finish:
                attrs["gen_ai.response.finish_reasons"] = (finish,)
            provider_id = getattr(response, "provider_id", None)
            if provider_id:
                attrs["gen_ai.response.id"] = provider_id
        if outcome == "cancelled":
            attrs["hyperion.outcome"] = "cancelled"
        if error is not None:
            attrs["error.type"] = type(error).__name__
        span = self.tracer.start_span(f"{op} {route}".strip(), context=parent, kind=self._kind.SERVER,
                                      start_time=start_ns, attributes=attrs)
        if error is not None:
            span.set_status(self._status(self._code.ERROR, type(error).__name__))
        attempts = getattr(response, "attempts", None) or getattr(error, "attempts", None) or ()
        ctx = self._trace.set_span_in_context(span)
        at = start_ns
        for a in attempts:
            if not hasattr(a, "deployment"):
                continue
            kind, model = self.deployments.get(a.deployment, ("", ""))
            child_attrs: dict[str, Any] = {"gen_ai.operation.name": op, "hyperion.deployment": a.deployment,
                                           "hyperion.attempt.outcome": a.outcome}
            if kind:
                child_attrs["gen_ai.system"] = child_attrs["gen_ai.provider.name"] = kind
            if model:
                child_attrs["gen_ai.request.model"] = model
            if a.error_class:
                child_attrs["error.type"] = a.error_class
            if a.status is not None:
                child_attrs["http.response.status_code"] = a.status
            stop = min(at + int(a.latency_ms * 1e6), end)
            child = self.tracer.start_span(f"{op} {model or a.deployment}", context=ctx, kind=self._kind.CLIENT,
                                           start_time=at, attributes=child_attrs)
            if a.outcome == "error":  # a hedge's cancelled loser is not an error
                child.set_status(self._status(self._code.ERROR, a.error_class or "error"))
            child.end(end_time=stop)
            at = stop
        span.end(end_time=end)


__all__ = ["OPERATIONS", "Tracing"]
