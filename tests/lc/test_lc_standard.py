"""LangChain's standard suites (``langchain-tests``) for HyperionChat: unit, and integration against
the mock provider over real HTTP. Scripted mock replies play the part of recorded cassettes."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from lc_support import chat_config

from hyperion_lc import HyperionChat

PREFIX = "std"
_MOCK: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _mock_with_cassettes(mock):
    """The shared mock provider, reset, with the scripted replies the suite's prompts expect."""
    _MOCK["mock"] = mock
    # json_mode: the mock answers json_object requests with {"answer": ...}; this test wants a joke
    mock.script(
        r"Return the result as a JSON with 'setup' and 'punchline' keys",
        json={"setup": "Why did the cat sit on the computer?", "punchline": "To keep an eye on the mouse."},
    )
    # unicode tool arguments must survive the round trip unescaped
    mock.script(
        "你好啊集团",
        tool_calls=[
            {
                "name": "unicode_customer",
                "arguments": {"customer_name": "你好啊集团", "description": "Chinese technology company"},
            }
        ],
    )
    mock.script(
        "こんにちは株式会社",
        tool_calls=[
            {
                "name": "unicode_customer",
                "arguments": {"customer_name": "こんにちは株式会社", "description": "Japanese company"},
            }
        ],
    )
    # the agent loop binds get_weather without forcing it; a real model would call it
    mock.script(
        r"What is the weather in San Francisco",
        tool_calls=[{"name": "get_weather", "arguments": {"location": "San Francisco, CA"}}],
    )
    # a runnable turned into a tool: the model must fill its one argument
    mock.script(
        r"Using the tool, generate a Pirate greeting",
        tool_calls=[{"name": "greeting_generator", "arguments": {"answer_style": "pirate"}}],
    )
    yield mock


def _config() -> dict[str, Any]:
    mock = _MOCK.get("mock")
    if mock is None:  # unit tests build models without calling them
        return {"routes": {"chat": {"deployments": [{"model": "openai/gpt-4o-mini"}]}}}
    return chat_config(
        mock,
        PREFIX,
        extra_routes={
            # a second route, named after the model that serves it, for the model-override tests
            "gpt-4.1-mini": {"deployments": [{"model": "primary/gpt-4.1-mini"}]},
        },
    )


class TestHyperionChatUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[HyperionChat]:
        return HyperionChat

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # a path is what serialises; nothing is loaded until the first call
        return {"model": "chat", "config": "examples/hyperion.yaml"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"HYPERION_VIRTUAL_KEY": "hk-from-env", "HYPERION_CONFIG": "examples/hyperion.yaml"},
            {"model": "chat"},
            {"virtual_key": "hk-from-env", "model": "chat"},
        )

    @property
    def model_override_value(self) -> str:
        return "gpt-4.1-mini"

    @property
    def supports_json_mode(self) -> bool:
        return True

    # The serialised form matches its snapshot (the first half of this test passes); the round trip
    # cannot: langchain-core 1.8's load() only revives classes listed in its own import mapping, even
    # with allowed_objects="all", and an out-of-tree package cannot add itself there.
    # tests/lc/test_lc_chat.py::test_serialisation_round_trip loads it with an explicit allow-list.
    @pytest.mark.xfail(
        reason="load() refuses classes outside langchain-core's import mapping",
        raises=ValueError,
        strict=True,
    )
    def test_serdes(self, model: BaseChatModel, snapshot: Any) -> None:
        super().test_serdes(model, snapshot)


class TestHyperionChatIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[HyperionChat]:
        return HyperionChat

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "chat", "config": _config()}

    @property
    def model_override_value(self) -> str:
        return "gpt-4.1-mini"

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        return True  # tool_use / tool_result / thinking blocks convert to OpenAI messages

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[str]]:
        return {
            "invoke": ["reasoning_output", "cache_read_input"],
            "stream": ["reasoning_output", "cache_read_input"],
        }

    def _with_usage_fault(self, stream: bool, **tokens: int) -> AIMessage:
        mock = _MOCK["mock"]
        mock.fault(f"{PREFIX}-primary", times=1, **tokens)  # no error: only the usage it reports
        model = HyperionChat(**self.chat_model_params)
        if not stream:
            return model.invoke("Hello")  # type: ignore[return-value]
        full = None
        for chunk in model.stream("Hello"):
            full = chunk if full is None else full + chunk
        return full  # type: ignore[return-value]

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        msg = self._with_usage_fault(stream, cached_tokens=3)
        assert msg.usage_metadata["input_token_details"]["cache_read"] == 3  # type: ignore[index]
        return msg

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> AIMessage:
        msg = self._with_usage_fault(stream, reasoning_tokens=7)
        assert msg.usage_metadata["output_token_details"]["reasoning"] == 7  # type: ignore[index]
        return msg

    # -- media, offline ----------------------------------------------------------------------------
    # The suite fetches its media with httpx.get (an image from GitHub, a PDF from w3.org, a WAV from
    # Wikimedia); here that module-level httpx is swapped for local, generated files of the same types
    # (tests/lc/media.py), so the tests run as written with no network. Both deployments of the route
    # take images and PDFs (the Anthropic adapter translates OpenAI ``file`` parts after a failover).

    @pytest.fixture(autouse=True)
    def _local_media(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import langchain_tests.integration_tests.chat_models as suite
        from media import LocalMedia

        monkeypatch.setattr(suite, "httpx", LocalMedia())

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_tool_message(self) -> bool:
        return True

    @property
    def supports_pdf_inputs(self) -> bool:
        return True

    @property
    def supports_pdf_tool_message(self) -> bool:
        return True

    @property
    def supports_audio_inputs(self) -> bool:
        return True  # on routes whose deployments take audio: see the model fixture

    @pytest.fixture
    def model(self, request: Any) -> BaseChatModel:
        """The suite's model; for the audio test, one on a route that takes audio. gpt-4o-mini and
        Claude take none (the ``chat`` route's profile says ``audio_inputs=False``), Gemini does."""
        if request.node.originalname != "test_audio_inputs":
            return super().model.__wrapped__(self, request)  # type: ignore[attr-defined]
        cfg = _config()
        cfg["providers"]["google"] = {
            "kind": "gemini",
            "api_key": "gm-mock",
            "base_url": _MOCK["mock"].base_url(f"{PREFIX}-google", "gemini"),
        }
        cfg["routes"]["listen"] = {"deployments": [{"model": "google/gemini-2.5-flash"}]}
        listen = HyperionChat(model="listen", config=cfg)
        assert listen.profile is not None and listen.profile.get("audio_inputs") is True
        return listen

    # VCR cassettes record real provider traffic; here the mock provider is the cassette, and the
    # streaming overhead this benchmark watches is measured by bench/langchain.py instead.
    @pytest.mark.xfail(
        reason="VCR cassettes do not apply: the mock provider plays that part; "
        "streaming overhead is measured by bench/langchain.py",
        run=False,
    )
    def test_stream_time(self, model: BaseChatModel, benchmark: Any, vcr: Any) -> None:
        super().test_stream_time(model, benchmark, vcr)
