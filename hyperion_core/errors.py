"""Hyperion's one error tree.

Every error the gateway raises is a :class:`HyperionError`. Routing reads two attributes on the
class, never a hard-coded tuple of exception types:

* ``retryable`` — the same deployment may succeed if asked again (after backoff);
* ``failover`` — another deployment of the route may succeed.

::

    HyperionError                          (route, deployment, request_id on every instance)
    ├── ConfigError                        bad configuration; names the place and the fix
    ├── RequestError                       the caller's request cannot be served as sent
    │   ├── RouteNotFoundError             unknown route name (with a "did you mean")
    │   ├── InvalidRequestError            malformed messages / parameters
    │   ├── AccessError                    the virtual key may not do this
    │   │   ├── InvalidKeyError            unknown or malformed key
    │   │   ├── KeyRevokedError            revoked
    │   │   ├── KeyExpiredError            past its expiry
    │   │   └── PermissionDeniedError      route not allowed / role missing
    │   ├── BudgetExceededError            a hard budget would be exceeded (names the budget)
    │   ├── RateLimitedError               Hyperion's own RPM/TPM limit on the caller (retry_after);
    │   │                                  not an upstream 429, which is RateLimitError
    │   └── GuardrailBlockedError          a guardrail refused the prompt or the answer (detector, findings)
    ├── GovernanceStoreError               the budget / rate-limit store is unreachable (fails closed)
    ├── ProviderError                      an upstream call failed          (status, deployment)
    │   ├── RateLimitError                 429            retryable  failover  (retry_after)
    │   ├── ProviderUnavailableError       5xx, 529       retryable  failover
    │   ├── ProviderTimeoutError           no answer in time          retryable  failover
    │   │   └── FirstTokenTimeoutError     stream: no first chunk in time
    │   ├── ProviderConnectionError        refused / reset / DNS      retryable  failover
    │   ├── MalformedResponseError         unparseable body           retryable  failover
    │   ├── StreamCutError                 stream ended without its terminal event
    │   ├── AuthenticationError            401 / 403      -          failover  (deployment's creds)
    │   ├── NotFoundError                  404 (model)    -          failover  (deployment's model)
    │   ├── BadRequestError                400 / 422      -          -
    │   │   ├── ContextWindowExceededError -> the route's context-window fallback, if any
    │   │   └── ContentPolicyError         refused by the provider's content filter
    ├── RoutingError                       the route could not produce an answer
    │   ├── AllDeploymentsFailedError      every eligible deployment failed (attempts attached)
    │   │   └── NoHealthyDeploymentError   every breaker open; nothing was tried
    │   ├── DeadlineExceededError          the route's total deadline ran out
    │   └── StreamInterruptedError         a stream failed after its first chunk reached the caller

An upstream error with no specific mapping becomes a plain ``ProviderError`` (status kept), which is
retried and failed over like a 5xx: unknown failures should not take a route down.
"""

from __future__ import annotations

from typing import Any


class HyperionError(Exception):
    """Root of every error Hyperion raises."""

    retryable: bool = False
    failover: bool = False

    def __init__(
        self,
        message: str,
        *,
        route: str | None = None,
        deployment: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.route = route
        self.deployment = deployment
        self.request_id = request_id

    def __str__(self) -> str:
        ctx = [f"{k}={v}" for k, v in (("route", self.route), ("deployment", self.deployment)) if v]
        return f"{self.message} [{', '.join(ctx)}]" if ctx else self.message

    def __reduce__(self) -> tuple[Any, ...]:  # keep context through pickling (multiprocessing, pytest-xdist)
        return (_rebuild, (type(self), self.__dict__.copy()))

    @property
    def error_class(self) -> str:
        return type(self).__name__


def _rebuild(cls: type[HyperionError], state: dict[str, Any]) -> HyperionError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class ConfigError(HyperionError):
    """The configuration is invalid. ``problems`` lists each ``path: message`` found."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class RequestError(HyperionError):
    """The request cannot be served as sent (the caller's side)."""


class RouteNotFoundError(RequestError):
    pass


class InvalidRequestError(RequestError):
    pass


class AccessError(RequestError):
    """The caller's virtual key may not make this request."""


class InvalidKeyError(AccessError):
    pass


class KeyRevokedError(AccessError):
    pass


class KeyExpiredError(AccessError):
    pass


class PermissionDeniedError(AccessError):
    pass


class BudgetExceededError(RequestError):
    """Admitting the request could exceed a hard budget. Attributes name the budget and its state."""

    def __init__(
        self,
        message: str,
        *,
        budget: str | None = None,
        limit: float | None = None,
        spent: float | None = None,
        reserved: float | None = None,
        period: str | None = None,
        resets_at: float | None = None,
        **ctx: Any,
    ) -> None:
        super().__init__(message, **ctx)
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.period = period
        self.resets_at = resets_at


class RateLimitedError(RequestError):
    """The caller is over one of Hyperion's own rate limits; ``retry_after`` seconds until it is not."""

    def __init__(self, message: str, *, limit_name: str | None = None, retry_after: float | None = None, **ctx: Any):
        super().__init__(message, **ctx)
        self.limit_name = limit_name
        self.retry_after = retry_after


class GuardrailBlockedError(RequestError):
    """A guardrail policy blocked the request (``direction="in"``: nothing was sent upstream) or its
    answer (``"out"``). ``detector`` is ``pii`` or ``injection``; ``findings`` names what fired (PII
    types or injection rule ids, never the matched text); ``score`` is the injection score."""

    audit_outcome = "denied"

    def __init__(self, message: str, *, detector: str = "", direction: str = "in", findings: tuple[str, ...] = (),
                 score: float | None = None, **ctx: Any) -> None:
        super().__init__(message, **ctx)
        self.detector = detector
        self.direction = direction
        self.findings = tuple(findings)
        self.score = score


class GovernanceStoreError(HyperionError):
    """The governance store (Redis) could not be reached or refused a command. Admission fails
    closed: a request is not admitted when its budget or rate limit cannot be checked."""


class ProviderError(HyperionError):
    """An upstream provider call failed. Unknown upstream failures land here and are failed over."""

    retryable = True
    failover = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        provider_code: str | None = None,
        **ctx: Any,
    ) -> None:
        super().__init__(message, **ctx)
        self.status = status
        self.retry_after = retry_after
        self.provider_code = provider_code


class RateLimitError(ProviderError):
    retryable = True
    failover = True


class ProviderUnavailableError(ProviderError):
    retryable = True
    failover = True


class ProviderTimeoutError(ProviderError):
    retryable = True
    failover = True


class FirstTokenTimeoutError(ProviderTimeoutError):
    pass


class ProviderConnectionError(ProviderError):
    retryable = True
    failover = True


class MalformedResponseError(ProviderError):
    retryable = True
    failover = True


class StreamCutError(ProviderError):
    retryable = True
    failover = True


class AuthenticationError(ProviderError):
    retryable = False
    failover = True


class NotFoundError(ProviderError):
    retryable = False
    failover = True


class BadRequestError(ProviderError):
    retryable = False
    failover = False


class ContextWindowExceededError(BadRequestError):
    pass


class ContentPolicyError(BadRequestError):
    pass


class RoutingError(HyperionError):
    """The route as a whole could not produce an answer."""

    def __init__(self, message: str, *, attempts: list[Any] | None = None, **ctx: Any) -> None:
        super().__init__(message, **ctx)
        self.attempts = list(attempts or [])


class AllDeploymentsFailedError(RoutingError):
    pass


class NoHealthyDeploymentError(AllDeploymentsFailedError):
    pass


class DeadlineExceededError(RoutingError):
    pass


class StreamInterruptedError(RoutingError):
    """A stream failed after chunks reached the caller. ``delivered_chunks`` says how far it got."""

    def __init__(
        self, message: str, *, delivered_chunks: int = 0, usage: Any = None, cost: float = 0.0, **ctx: Any
    ) -> None:
        super().__init__(message, **ctx)
        self.delivered_chunks = delivered_chunks
        #: what the provider generated (and bills) before the failure, estimated one token a chunk
        self.usage = usage
        self.cost = cost


_STATUS_MAP: dict[int, type[ProviderError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    408: ProviderTimeoutError,
    413: ContextWindowExceededError,
    422: BadRequestError,
    429: RateLimitError,
    500: ProviderUnavailableError,
    502: ProviderUnavailableError,
    503: ProviderUnavailableError,
    504: ProviderTimeoutError,
    529: ProviderUnavailableError,
}

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "prompt is too long",
    "maximum context",
    "too many tokens",
    "input token count",
    "exceeds the maximum number of tokens",
)
_POLICY_MARKERS = ("content_policy", "content_filter", "content policy", "safety", "blocked")


def error_for_status(
    status: int,
    message: str,
    *,
    provider_code: str | None = None,
    retry_after: float | None = None,
    **ctx: Any,
) -> ProviderError:
    """Map an upstream HTTP status (plus the provider's own code/message) to a Hyperion error."""
    cls = _STATUS_MAP.get(status)
    if cls is None:
        cls = ProviderUnavailableError if status >= 500 else ProviderError
    if status in (400, 403, 413, 422):
        text = f"{provider_code or ''} {message}".lower()
        if any(m in text for m in _CONTEXT_MARKERS):
            cls = ContextWindowExceededError
        elif any(m in text for m in _POLICY_MARKERS):
            cls = ContentPolicyError
    return cls(
        f"upstream {status}: {message}",
        status=status,
        provider_code=provider_code,
        retry_after=retry_after,
        **ctx,
    )


__all__ = [
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
    "GuardrailBlockedError",
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
    "error_for_status",
]
