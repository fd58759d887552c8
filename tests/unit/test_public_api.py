"""The public surface is pinned: exports, the error tree, lazy imports."""

from __future__ import annotations

import inspect
import subprocess
import sys

import hyperion_core
from hyperion_core import errors


def test_all_is_complete_and_importable():
    for name in hyperion_core.__all__:
        assert hasattr(hyperion_core, name), name
    public_errors = {n for n, o in vars(errors).items() if inspect.isclass(o) and issubclass(o, errors.HyperionError)}
    assert public_errors <= set(hyperion_core.__all__) | {"HyperionError"}
    assert set(errors.__all__) >= public_errors


def test_error_tree_is_documented_and_rooted():
    doc = errors.__doc__ or ""
    for name, cls in vars(errors).items():
        if inspect.isclass(cls) and issubclass(cls, Exception):
            assert issubclass(cls, errors.HyperionError), name
            assert name in doc, f"{name} is missing from the error tree in errors.py's docstring"
            assert isinstance(cls.retryable, bool) and isinstance(cls.failover, bool)


def test_errors_carry_context_and_pickle():
    import pickle

    e = errors.RateLimitError("slow down", status=429, retry_after=2.5, route="chat", deployment="d1")
    e.request_id = "req-1"
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.status, e2.retry_after, e2.route, e2.deployment, e2.request_id) == (429, 2.5, "chat", "d1", "req-1")
    assert str(e2) == "slow down [route=chat, deployment=d1]"


def test_status_mapping():
    m = errors.error_for_status
    assert type(m(429, "x")) is errors.RateLimitError
    assert type(m(503, "x")) is errors.ProviderUnavailableError
    assert type(m(529, "overloaded")) is errors.ProviderUnavailableError
    assert type(m(599, "x")) is errors.ProviderUnavailableError
    assert type(m(401, "x")) is errors.AuthenticationError
    assert type(m(400, "x", provider_code="context_length_exceeded")) is errors.ContextWindowExceededError
    assert type(m(400, "prompt is too long: 300000 tokens > 200000 maximum")) is errors.ContextWindowExceededError
    assert type(m(400, "x", provider_code="content_policy_violation")) is errors.ContentPolicyError
    assert type(m(400, "bad field")) is errors.BadRequestError
    assert type(m(418, "teapot")) is errors.ProviderError


def test_import_is_fast_and_lazy():
    code = (
        "import time, sys; t = time.perf_counter(); import hyperion_core; "
        "dt = time.perf_counter() - t; "
        "print(dt, 'litellm' in sys.modules, 'langchain_core' in sys.modules, 'redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False", "False"], "heavy modules imported eagerly"
    assert float(out[0]) < 1.0  # the benchmark holds the 0.5 s target; this guards against regressions
