"""Every litellm exception has an explicit Hyperion mapping, and the mapping keeps status, retry-after,
provider code and context. Fails when a litellm upgrade adds an exception nobody has classified."""

from __future__ import annotations

import inspect
import subprocess
import sys
from types import SimpleNamespace

import httpx
import pytest

import hyperion_core.providers.litellm as litellm_adapter_module
from hyperion_core import errors as E
from hyperion_core.http import HttpClient
from hyperion_core.providers.base import Target
from hyperion_core.providers.litellm import (
    LITELLM_ERRORS,
    LiteLLMAdapter,
    error_class,
    litellm_usage,
    load_litellm,
    map_exception,
    parse_chunk,
)
from hyperion_core.types import ChatRequest, Usage

litellm = load_litellm()
import litellm.exceptions as LE  # noqa: E402

# litellm class name -> (Hyperion class, retryable, failover). Written out by hand on purpose: a new
# litellm exception (or a changed decision) must be looked at, not inherited silently.
EXPECTED: dict[str, tuple[type[E.ProviderError], bool, bool]] = {
    "BadRequestError": (E.BadRequestError, False, False),
    "InvalidRequestError": (E.BadRequestError, False, False),
    "UnprocessableEntityError": (E.BadRequestError, False, False),
    "MalformedRequestFieldError": (E.BadRequestError, False, False),
    "ImageFetchError": (E.BadRequestError, False, False),
    "UnsupportedParamsError": (E.BadRequestError, False, False),
    "VectorStoreSearchError": (E.BadRequestError, False, False),
    "ContextWindowExceededError": (E.ContextWindowExceededError, False, False),
    "ContentPolicyViolationError": (E.ContentPolicyError, False, False),
    "RejectedRequestError": (E.ContentPolicyError, False, False),
    "GuardrailRaisedException": (E.ContentPolicyError, False, False),
    "BlockedPiiEntityError": (E.ContentPolicyError, False, False),
    "ModifyResponseException": (E.ContentPolicyError, False, False),
    "SensitiveDataRouteException": (E.ContentPolicyError, False, False),
    "AuthenticationError": (E.AuthenticationError, False, True),
    "CallerCredentialAuthenticationError": (E.AuthenticationError, False, True),
    "PermissionDeniedError": (E.AuthenticationError, False, True),
    "PaymentRequiredError": (E.AuthenticationError, False, True),
    "NotFoundError": (E.NotFoundError, False, True),
    "UnsupportedEndpointError": (E.NotFoundError, False, True),
    "EndpointNotSupportedByModelError": (E.NotFoundError, False, True),
    "LiteLLMUnknownProvider": (E.NotFoundError, False, True),
    "ModelNotMappedError": (E.NotFoundError, False, True),
    "RateLimitError": (E.RateLimitError, True, True),
    "CallerCredentialRateLimitError": (E.RateLimitError, True, True),
    "BudgetExceededError": (E.RateLimitError, True, True),
    "Timeout": (E.ProviderTimeoutError, True, True),
    "APIConnectionError": (E.ProviderConnectionError, True, True),
    "InternalServerError": (E.ProviderUnavailableError, True, True),
    "ServiceUnavailableError": (E.ProviderUnavailableError, True, True),
    "BadGatewayError": (E.ProviderUnavailableError, True, True),
    "MidStreamFallbackError": (E.StreamCutError, True, True),
    "APIResponseValidationError": (E.MalformedResponseError, True, True),
    "JSONSchemaValidationError": (E.MalformedResponseError, True, True),
    "APIError": (E.ProviderError, True, True),
    "OpenAIError": (E.ProviderError, True, True),
    "MockException": (E.ProviderError, True, True),
}


def litellm_exception_classes() -> dict[str, type[BaseException]]:
    """Exception classes defined in ``litellm.exceptions`` plus top-level ``litellm`` names subclassing them."""
    found = {
        name: obj
        for name, obj in vars(LE).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == "litellm.exceptions"
    }
    roots = tuple(found.values())
    for name in dir(litellm):
        obj = getattr(litellm, name, None)
        if inspect.isclass(obj) and issubclass(obj, roots):
            found.setdefault(obj.__name__, obj)
    return found


CLASSES = litellm_exception_classes()


def test_litellm_still_has_exceptions():
    assert len(CLASSES) > 20  # guards against the discovery silently finding nothing


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_litellm_exception_has_an_explicit_entry(name):
    assert name in LITELLM_ERRORS, f"litellm.{name} has no entry in LITELLM_ERRORS"
    assert name in EXPECTED, f"litellm.{name}: decide its Hyperion class and add it to EXPECTED"


def test_table_has_no_stale_entries():
    assert set(LITELLM_ERRORS) == set(CLASSES), set(LITELLM_ERRORS) ^ set(CLASSES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_class_and_routing_decision(name):
    cls, retryable, failover = EXPECTED[name]
    assert LITELLM_ERRORS[name] is cls
    assert (cls.retryable, cls.failover) == (retryable, failover)
    if name in CLASSES:
        assert error_class(CLASSES[name].__new__(CLASSES[name])) is cls


def test_mro_walk_picks_the_most_specific_entry():
    # ContextWindowExceededError subclasses BadRequestError; MidStreamFallbackError subclasses
    # ServiceUnavailableError: each must get its own entry, not its parent's
    assert (
        error_class(LE.ContextWindowExceededError.__new__(LE.ContextWindowExceededError))
        is E.ContextWindowExceededError
    )
    assert error_class(LE.MidStreamFallbackError.__new__(LE.MidStreamFallbackError)) is E.StreamCutError

    class ProviderSpecific(LE.RateLimitError):  # a subclass litellm might add somewhere else
        pass

    assert error_class(ProviderSpecific.__new__(ProviderSpecific)) is E.RateLimitError


# -- mapping real instances ----------------------------------------------------------------------


def _response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=body, headers=headers, request=httpx.Request("POST", "http://mock/v1")
    )


def test_rate_limit_keeps_retry_after_and_provider_code():
    body = b'{"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}'
    exc = LE.RateLimitError(
        "AnthropicException - slow down",
        llm_provider="anthropic",
        model="m",
        response=_response(429, body, {"retry-after": "7"}),
    )
    err = map_exception(exc, route="r", deployment="d1")
    assert type(err) is E.RateLimitError
    assert err.status == 429 and err.retry_after == 7.0
    assert err.provider_code == "rate_limit_error" and "slow down" in err.message
    assert (err.route, err.deployment) == ("r", "d1")
    assert err.__cause__ is exc


def test_retry_after_ms_header():
    exc = LE.RateLimitError(
        "x", llm_provider="openai", model="m", response=_response(429, b"", {"retry-after-ms": "1500"})
    )
    assert map_exception(exc).retry_after == 1.5


def test_generic_api_error_is_classified_by_status():
    err = map_exception(LE.APIError(503, "upstream down", llm_provider="gemini", model="m"))
    assert type(err) is E.ProviderUnavailableError and err.status == 503
    err = map_exception(LE.APIError(401, "bad key", llm_provider="gemini", model="m"))
    assert type(err) is E.AuthenticationError


def test_bad_request_refined_by_message():
    exc = LE.BadRequestError(
        "AnthropicException - prompt is too long: 1 > 0", model="m", llm_provider="anthropic"
    )
    assert type(map_exception(exc)) is E.ContextWindowExceededError
    exc = LE.BadRequestError(
        "Output blocked by content filtering policy", model="m", llm_provider="anthropic"
    )
    assert type(map_exception(exc)) is E.ContentPolicyError
    exc = LE.BadRequestError("Invalid request", model="m", llm_provider="anthropic")
    assert type(map_exception(exc)) is E.BadRequestError


def test_overloaded_529():
    exc = LE.InternalServerError("AnthropicException - Overloaded", llm_provider="anthropic", model="m")
    exc.status_code = 529
    err = map_exception(exc)
    assert type(err) is E.ProviderUnavailableError and err.status == 529


def test_mid_stream_fallback_is_a_cut_stream():
    exc = LE.MidStreamFallbackError("stream broke", model="m", llm_provider="anthropic")
    err = map_exception(exc, deployment="d1")
    assert type(err) is E.StreamCutError and err.retryable and err.failover


def test_gemini_body_in_message():
    msg = 'VertexAIException - {"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}}'
    err = map_exception(LE.BadRequestError(msg, model="m", llm_provider="gemini"))
    assert type(err) is E.BadRequestError
    assert err.provider_code == "INVALID_ARGUMENT" and "invalid argument" in err.message


@pytest.mark.parametrize(
    "exc,cls",
    [
        (RuntimeError("something inside litellm"), E.ProviderError),
        (KeyError("choices"), E.ProviderError),
        (TimeoutError(), E.ProviderTimeoutError),
        (ConnectionResetError(), E.ProviderConnectionError),
    ],
)
def test_unmapped_exceptions_never_escape_raw(exc, cls):
    err = map_exception(exc, deployment="d1")
    assert type(err) is cls and err.deployment == "d1"


def test_hyperion_errors_pass_through_with_context():
    own = E.StreamCutError("cut")
    assert map_exception(own, route="r", deployment="d") is own
    assert (own.route, own.deployment) == ("r", "d")


# -- response normalisation ----------------------------------------------------------------------


def test_usage_details():
    u = litellm.Usage(
        prompt_tokens=160,
        completion_tokens=40,
        prompt_tokens_details={"cached_tokens": 100, "cache_creation_tokens": 50},
        completion_tokens_details={"reasoning_tokens": 30},
    )
    assert litellm_usage(u) == Usage(
        prompt_tokens=160,
        completion_tokens=40,
        cached_prompt_tokens=100,
        cache_write_tokens=50,
        reasoning_tokens=30,
    )
    assert litellm_usage(None) == Usage()


def test_parse_chunk_usage_only():
    content, deltas, finish, usage = parse_chunk(
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    )
    assert (content, deltas, finish) == ("", (), None) and usage == Usage(3, 1)


def test_module_import_does_not_import_litellm():
    code = "import sys, hyperion_core.providers.litellm; sys.exit('litellm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# -- the adapter's flow, with litellm.acompletion replaced (no sockets) ---------------------------


class FakeStream:
    """Stands in for litellm's CustomStreamWrapper, including the bookkeeping the adapter reads."""

    def __init__(self, chunks, *, upstream_finish="stop", fail_with=None):
        self.chunks = chunks
        self.received_finish_reason = upstream_finish
        self.intermittent_finish_reason = None
        self.received_any_finish_reason = upstream_finish is not None
        self.fail_with = fail_with
        self.closed = False

    async def _gen(self):
        for c in self.chunks:
            yield c
        if self.fail_with is not None:
            raise self.fail_with

    def __aiter__(self):
        return self._gen()

    async def aclose(self):
        self.closed = True


def _chunk(content=None, finish=None, tool_calls=None):
    return {
        "choices": [
            {"index": 0, "delta": {"content": content, "tool_calls": tool_calls}, "finish_reason": finish}
        ]
    }


USAGE_CHUNK = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}


@pytest.fixture
def fake_litellm(monkeypatch):
    calls: list[dict] = []
    fake = SimpleNamespace(result=None, error=None)

    async def acompletion(**kwargs):
        calls.append(kwargs)
        if fake.error is not None:
            raise fake.error
        return fake.result

    fake.acompletion = acompletion
    fake.calls = calls
    monkeypatch.setattr(litellm_adapter_module, "_litellm", fake)
    return fake


def _adapter(**kw):
    args = dict(
        name="d1", route="r", kind="bedrock", wire="litellm", model="anthropic.claude-3-haiku", base_url=None
    )
    args.update(kw)
    return LiteLLMAdapter(Target(**args), HttpClient())


def _req(**kw):
    return ChatRequest(route="r", messages=[{"role": "user", "content": "hi"}], **kw)


async def _drain(adapter, req):
    return [c async for c in adapter.stream(req)]


async def test_stream_ends_with_finish_and_usage(fake_litellm):
    fake_litellm.result = stream = FakeStream(
        [_chunk("Hel"), _chunk("lo"), _chunk(finish="stop"), USAGE_CHUNK]
    )
    chunks = await _drain(_adapter(), _req())
    assert [c.content for c in chunks] == ["Hel", "lo", ""]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == Usage(5, 2)
    assert stream.closed


async def test_stream_without_finish_reason_is_cut(fake_litellm):
    fake_litellm.result = FakeStream([_chunk("Hel"), _chunk("lo")], upstream_finish=None)
    with pytest.raises(E.StreamCutError) as info:
        await _drain(_adapter(), _req())
    assert info.value.deployment == "d1"


async def test_made_up_finish_reason_is_still_a_cut(fake_litellm):
    # litellm emits finish_reason "stop" itself when a non-OpenAI stream ends early; its wrapper
    # knows no finish reason came from upstream
    fake_litellm.result = FakeStream([_chunk("Hel"), _chunk(finish="stop")], upstream_finish=None)
    with pytest.raises(E.StreamCutError):
        await _drain(_adapter(), _req())


async def test_failure_mid_stream_is_mapped_and_closes(fake_litellm):
    broke = LE.MidStreamFallbackError("connection reset", model="m", llm_provider="bedrock")
    fake_litellm.result = stream = FakeStream([_chunk("Hel")], fail_with=broke)
    got = []
    with pytest.raises(E.StreamCutError):
        async for c in _adapter().stream(_req()):
            got.append(c)
    assert [c.content for c in got] == ["Hel"] and stream.closed


async def test_failure_before_first_chunk_reports_the_original(fake_litellm):
    original = LE.RateLimitError("slow down", llm_provider="gemini", model="m",
                                 response=_response(429, b"", {"retry-after": "4"}))  # fmt: skip
    wrapped = LE.MidStreamFallbackError(
        "x", model="m", llm_provider="gemini", original_exception=original, is_pre_first_chunk=True
    )
    fake_litellm.result = FakeStream([], fail_with=wrapped)
    with pytest.raises(E.RateLimitError) as info:
        await _drain(_adapter(), _req())
    assert info.value.retry_after == 4.0


async def test_call_errors_are_mapped(fake_litellm):
    fake_litellm.error = LE.AuthenticationError("bad key", llm_provider="bedrock", model="m")
    with pytest.raises(E.AuthenticationError) as info:
        await _adapter().chat(_req())
    assert (info.value.route, info.value.deployment) == ("r", "d1")


async def test_streamed_tool_calls(fake_litellm):
    tc = [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]
    tc2 = [{"index": 0, "id": None, "function": {"name": None, "arguments": ": 1}"}}]
    fake_litellm.result = FakeStream(
        [_chunk(tool_calls=tc), _chunk(tool_calls=tc2), _chunk(finish="tool_calls")]
    )
    chunks = await _drain(_adapter(), _req())
    deltas = [d for c in chunks for d in c.tool_calls]
    assert (deltas[0].id, deltas[0].name) == ("call_1", "f")
    assert "".join(d.arguments for d in deltas) == '{"a": 1}'
    assert chunks[-1].finish_reason == "tool_calls"


def test_build_kwargs():
    a = _adapter(
        api_key="k",
        base_url="http://b",
        params={"temperature": 0.1, "max_tokens": 9},
        litellm_params={"aws_region_name": "eu-west-1"},
        headers={"x-h": "1"},
    )
    kw = a.build_kwargs(_req(temperature=0.5, tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="auto",
                             extra={"top_k": 3}), True)  # fmt: skip
    assert kw["model"] == "bedrock/anthropic.claude-3-haiku"
    assert (kw["api_base"], kw["api_key"], kw["extra_headers"]) == ("http://b", "k", {"x-h": "1"})
    assert (kw["num_retries"], kw["max_retries"]) == (0, 0)
    assert kw["temperature"] == 0.5 and kw["max_tokens"] == 9
    assert kw["stream"] is True and kw["stream_options"] == {"include_usage": True}
    assert kw["aws_region_name"] == "eu-west-1" and kw["top_k"] == 3
    assert kw["tool_choice"] == "auto" and kw["tools"][0]["function"]["name"] == "f"
    assert "stream_options" not in a.build_kwargs(_req(), False)
    assert _adapter(kind="vllm", model="llama").model_name() == "hosted_vllm/llama"
    assert _adapter(kind="openai", model="openai/gpt-4o").model_name() == "openai/gpt-4o"


def test_build_kwargs_rejects_unparseable_tool_arguments():
    bad = [{"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{no"}}]}]
    with pytest.raises(E.InvalidRequestError):
        _adapter().build_kwargs(ChatRequest(route="r", messages=bad), False)
    _adapter(kind="openai", model="gpt-4o").build_kwargs(
        ChatRequest(route="r", messages=bad), False
    )  # forwarded as is
