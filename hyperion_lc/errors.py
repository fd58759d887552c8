"""Errors at the LangChain door: each is both a Hyperion error and a LangChain model error.

``HyperionChat`` raises these, so a caller catching either family keeps working — the pattern of
langchain-openai's ``OpenAIRateLimitError(openai.RateLimitError, ModelRateLimitError)``::

    try:
        chain.invoke(...)
    except ModelRateLimitError:        # LangChain's class (``is_retryable`` is True) ...
        ...
    except BudgetExceededError:        # ... or Hyperion's (``budget``, ``limit``, ``spent`` attached)
        ...

Every class of :mod:`hyperion_core.errors` has its two-parent twin below (``Hyperion`` + its name; the
root is :class:`HyperionModelError`); LangChain's parent is the closest ``langchain_core.exceptions``
class, or ``ModelError`` where LangChain has no equivalent (a budget refusal, a config error). Other
``HyperionError`` subclasses (say an audit error) get a twin made on first use. ``with_fallbacks`` acts
on all of them (its default ``exceptions_to_handle`` is ``Exception``; pass e.g.
``(ModelRateLimitError,)`` or ``(BudgetExceededError,)`` to be selective).
"""

from __future__ import annotations

import threading

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from hyperion_core import errors as E


class HyperionModelError(E.HyperionError, ModelError):
    """Any Hyperion failure, as a LangChain ``ModelError``."""


class HyperionConfigError(E.ConfigError, ModelError):
    pass


class HyperionRequestError(E.RequestError, ModelInvalidRequestError):
    pass


class HyperionRouteNotFoundError(E.RouteNotFoundError, ModelNotFoundError):
    """The ``model`` (route name) is not in the gateway's configuration."""


class HyperionInvalidRequestError(E.InvalidRequestError, ModelInvalidRequestError):
    pass


class HyperionAccessError(E.AccessError, ModelPermissionDeniedError):
    pass


class HyperionInvalidKeyError(E.InvalidKeyError, ModelAuthenticationError):
    pass


class HyperionKeyRevokedError(E.KeyRevokedError, ModelAuthenticationError):
    pass


class HyperionKeyExpiredError(E.KeyExpiredError, ModelAuthenticationError):
    pass


class HyperionPermissionDeniedError(E.PermissionDeniedError, ModelPermissionDeniedError):
    pass


class HyperionBudgetExceededError(E.BudgetExceededError, ModelError):
    """A hard budget would be exceeded (LangChain has no budget class: ``ModelError``, not retryable)."""


class HyperionRateLimitedError(E.RateLimitedError, ModelRateLimitError):
    """Hyperion's own RPM/TPM limit on the caller; ``retry_after`` seconds until it is not."""


class HyperionGovernanceStoreError(E.GovernanceStoreError, ModelAPIError):
    pass


class HyperionProviderError(E.ProviderError, ModelAPIError):
    pass


class HyperionRateLimitError(E.RateLimitError, ModelRateLimitError):
    """An upstream 429."""


class HyperionProviderUnavailableError(E.ProviderUnavailableError, ModelAPIError):
    pass


class HyperionProviderTimeoutError(E.ProviderTimeoutError, ModelTimeoutError):
    pass


class HyperionFirstTokenTimeoutError(E.FirstTokenTimeoutError, ModelTimeoutError):
    pass


class HyperionProviderConnectionError(E.ProviderConnectionError, ModelConnectionError):
    pass


class HyperionMalformedResponseError(E.MalformedResponseError, ModelAPIError):
    pass


class HyperionStreamCutError(E.StreamCutError, ModelConnectionError):
    pass


class HyperionAuthenticationError(E.AuthenticationError, ModelAuthenticationError):
    pass


class HyperionNotFoundError(E.NotFoundError, ModelNotFoundError):
    pass


class HyperionBadRequestError(E.BadRequestError, ModelInvalidRequestError):
    pass


class HyperionContextWindowExceededError(E.ContextWindowExceededError, ContextOverflowError):
    pass


class HyperionContentPolicyError(E.ContentPolicyError, ModelInvalidRequestError):
    pass


class HyperionRoutingError(E.RoutingError, ModelAPIError):
    pass


class HyperionAllDeploymentsFailedError(E.AllDeploymentsFailedError, ModelAPIError):
    """Every deployment of the route failed (``attempts`` says how): like a 5xx from a proxy."""


class HyperionNoHealthyDeploymentError(E.NoHealthyDeploymentError, ModelAPIError):
    pass


class HyperionDeadlineExceededError(E.DeadlineExceededError, ModelTimeoutError):
    pass


class HyperionStreamInterruptedError(E.StreamInterruptedError, ModelAPIError):
    pass


class HyperionGuardrailBlockedError(E.GuardrailBlockedError, ModelInvalidRequestError):
    pass


#: Hyperion class -> its LangChain-door twin
TWINS: dict[type[E.HyperionError], type[E.HyperionError]] = {
    base: twin
    for twin in list(globals().values())
    if isinstance(twin, type) and issubclass(twin, ModelError) and issubclass(twin, E.HyperionError)
    for base in twin.__bases__[:1]
}
_made_lock = threading.Lock()


def twin_class(cls: type[E.HyperionError]) -> type[E.HyperionError]:
    """The LangChain-door class for a Hyperion error class (made and remembered for subclasses
    outside :mod:`hyperion_core.errors`, with the LangChain parent of their nearest mapped base)."""
    twin = TWINS.get(cls)
    if twin is not None:
        return twin
    with _made_lock:
        twin = TWINS.get(cls)
        if twin is None:
            base = next(c for c in cls.__mro__ if c in TWINS)
            lc_parent = TWINS[base].__bases__[1]
            twin = type(f"Hyperion{cls.__name__}", (cls, lc_parent), {"__module__": __name__})
            TWINS[cls] = twin
    return twin


_after_failover: dict[type[E.HyperionError], type[E.HyperionError]] = {}


def failed_over_class(cls: type[E.ProviderError]) -> type[E.HyperionError]:
    """The class raised when every deployment failed and the last with ``cls``: ``cls``'s twin (so
    ``ModelRateLimitError`` / ``RateLimitError`` catch it) and ``HyperionAllDeploymentsFailedError``
    (so callers catching ``AllDeploymentsFailedError`` keep working)."""
    made = _after_failover.get(cls)
    if made is None:
        with _made_lock:
            made = _after_failover.get(cls)
            if made is None:
                twin = twin_class(cls)
                made = type(
                    twin.__name__,
                    (twin, HyperionAllDeploymentsFailedError),
                    {
                        "__module__": __name__,
                        "__doc__": f"Every deployment failed, the last with {cls.__name__} (``attempts`` lists them).",
                        "__reduce__": lambda self: (E._rebuild, (twin, self.__dict__.copy())),
                    },
                )
                _after_failover[cls] = made
    return made


def _typed_failure(exc: E.AllDeploymentsFailedError) -> E.HyperionError | None:
    """``exc`` as the class of its last failed attempt (None when that is not a provider error)."""
    failed = [a for a in exc.attempts if getattr(a, "outcome", None) == "error"]
    if not failed or isinstance(exc, E.NoHealthyDeploymentError):
        return None
    cls = getattr(E, failed[-1].error_class or "", None)
    if not (isinstance(cls, type) and issubclass(cls, E.ProviderError)):
        return None
    new_cls = failed_over_class(cls)
    new = new_cls.__new__(new_cls)
    Exception.__init__(new, *exc.args)
    cause = exc.__cause__
    new.__dict__.update({"status": failed[-1].status, "retry_after": None, "provider_code": None})
    if isinstance(cause, E.ProviderError) and type(cause) is cls:
        new.__dict__.update(
            status=cause.status, retry_after=cause.retry_after, provider_code=cause.provider_code
        )
    new.__dict__.update(exc.__dict__)
    new.__cause__ = cause
    new.__suppress_context__ = exc.__suppress_context__
    return new.with_traceback(exc.__traceback__)


def to_langchain_error(exc: E.HyperionError) -> E.HyperionError:
    """``exc`` as an instance of its two-parent twin: same message, attributes (route, deployment,
    request id, attempts, budget ...), cause and traceback.

    ``AllDeploymentsFailedError`` becomes the class of its last failed attempt (e.g.
    ``HyperionRateLimitError`` when the last deployment answered 429), which is also an
    ``AllDeploymentsFailedError`` with the same ``attempts``: ``with_fallbacks(exceptions_to_handle=
    (ModelRateLimitError,))`` falls back when the whole route is rate-limited."""
    if isinstance(exc, ModelError):
        return exc
    if type(exc) is E.AllDeploymentsFailedError:
        typed = _typed_failure(exc)
        if typed is not None:
            return typed
    cls = twin_class(type(exc))
    new = cls.__new__(cls)
    Exception.__init__(new, *exc.args)
    new.__dict__.update(exc.__dict__)
    new.__cause__ = exc.__cause__
    new.__suppress_context__ = exc.__suppress_context__
    return new.with_traceback(exc.__traceback__)


__all__ = sorted(
    [c.__name__ for c in set(TWINS.values())]
    + ["TWINS", "twin_class", "to_langchain_error", "failed_over_class"]
)
