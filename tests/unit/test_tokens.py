"""Prompt token bounds for budget reservations: never below the provider's count (field trial: a prompt
the provider counted as 2,003 tokens was reserved as 1,011)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hyperion_core.tokens import encoding_for, estimate_prompt_tokens, prompt_tokens_bound
from hyperion_core.types import ChatRequest

TEXTS = {
    "english": "The quick brown fox jumps over the lazy dog. " * 40,
    "digits": " ".join(str(i * 7919 % 100_003) for i in range(600)),
    "cjk": "東京の天気は明日晴れますか？私は公園で散歩したいです。" * 30,
    "emoji": "🙂🚀🔥✨🎉 " * 150,
    "code": "def f(x):\n    return {k: [v ** 2 for v in x[k]] for k in x if k.startswith('_')}\n" * 40,
    "base64ish": "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==" * 60,
}


def req(text: str, **kw) -> ChatRequest:
    return ChatRequest("chat", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}], **kw)


def exact_openai(r: ChatRequest, model: str = "gpt-4o-mini") -> int:
    """OpenAI's documented chat accounting: 3 tokens a message + the content + 3 for the reply."""
    enc = encoding_for(model)
    return sum(3 + len(enc.encode(m["content"])) for m in r.messages) + 3


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_openai_bound_is_at_least_the_exact_count(name):
    r = req(TEXTS[name])
    exact = exact_openai(r)
    assert prompt_tokens_bound(r, "gpt-4o-mini") >= exact
    assert prompt_tokens_bound(r, "gpt-4o-mini") <= exact + 40  # and tight: the count, not a guess


def test_the_old_estimate_fell_short_where_the_bound_does_not():
    short = [n for n, t in TEXTS.items() if estimate_prompt_tokens(req(t)) < exact_openai(req(t))]
    assert {"digits", "cjk", "emoji"} <= set(short)  # chars/4 under-counts these by up to 2-3x


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_byte_bound_covers_other_tokenizers(name):
    """Models with no offline tokenizer are bounded by UTF-8 bytes: above the OpenAI counts and above
    the Anthropic tokenizer litellm ships (byte-level BPE never makes a token of less than a byte)."""
    from tokenizers import Tokenizer

    r = req(TEXTS[name])
    bound = prompt_tokens_bound(r, "claude-haiku-4-5")
    assert bound == prompt_tokens_bound(r, None) == prompt_tokens_bound(r, "llama3.1:8b")
    tok = Tokenizer.from_file(str(_litellm_tokenizers() / "anthropic_tokenizer.json"))
    anthropic = sum(len(tok.encode(m["content"]).ids) for m in r.messages)
    assert bound >= anthropic and bound >= exact_openai(r)


def test_tools_images_and_files_count():
    plain = req("What is in this picture?")
    with_image = ChatRequest("chat", [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100}},
    ]}])
    assert prompt_tokens_bound(with_image, "gpt-4o") >= 2_000
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "x" * 400}}}}}]
    assert prompt_tokens_bound(req("hi", tools=tools), "gpt-4o") > prompt_tokens_bound(req("hi"), "gpt-4o") + 50
    pdf = ChatRequest("chat", [{"role": "user", "content": [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64," + "Q" * 9000}}]}])
    assert prompt_tokens_bound(pdf, "gpt-4o") >= 9000
    assert prompt_tokens_bound(plain, None) > 0


def test_tokenizers_load_from_litellms_files_and_leave_the_environment_alone():
    before = os.environ.get("TIKTOKEN_CACHE_DIR")
    enc = encoding_for("gpt-4o")
    assert enc is not None and enc.name == "o200k_base"
    assert encoding_for("gpt-4").name == "cl100k_base"
    assert encoding_for("not-an-openai-model") is None
    assert os.environ.get("TIKTOKEN_CACHE_DIR") == before


def _litellm_tokenizers() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    return Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"


def test_upstream_usage_is_validated_before_it_is_billed():
    """Issue 11 #8: missing usage billed $0, negative counts were stored, 2^63 tokens poisoned
    serialisation, cached_tokens > prompt_tokens was priced as given."""
    from hyperion_core.tokens import MAX_TOKENS, checked_usage
    from hyperion_core.types import Usage

    r = req("How many tokens is this question? " * 20)
    good = Usage(100, 20, cached_prompt_tokens=30, reasoning_tokens=5)
    assert checked_usage(good, r, "gpt-4o-mini", 80) == (good, None)
    est, note = checked_usage(Usage(), r, "gpt-4o-mini", 400)  # no usage at all for a real answer
    assert note == "estimated" and est.prompt_tokens == prompt_tokens_bound(r, "gpt-4o-mini") and est.completion_tokens == 100
    est2, _ = checked_usage(Usage(), r, "claude-haiku-4-5", 3)  # no tokenizer: the plain estimate
    assert est2.prompt_tokens == estimate_prompt_tokens(r) and est2.completion_tokens == 1
    assert checked_usage(Usage(), r, None, 0) == (Usage(), None)  # an empty answer may cost nothing
    for nonsense in (Usage(-5, 20), Usage(10, 2**63), Usage(10, 5, reasoning_tokens=-1), Usage(60_000_000, 5)):
        bad, note = checked_usage(nonsense, r, None, 5)  # nonsense is replaced by what was sent and received
        assert note == "estimated: the upstream's usage was invalid"
        assert bad == Usage(estimate_prompt_tokens(r), 2) and bad.completion_tokens < MAX_TOKENS
    over, note = checked_usage(Usage(10, 5, cached_prompt_tokens=50, reasoning_tokens=9), r, None, 5)
    assert note == "clamped" and over == Usage(10, 5, cached_prompt_tokens=10, reasoning_tokens=5)


def test_long_texts_are_counted_once_and_exactly():
    """A text that comes back (a conversation's history, a system prompt) is counted once per encoding;
    the remembered count is the tokenizer's own, on both sides of the remembered length range."""
    from hyperion_core import tokens

    enc = encoding_for("gpt-4o-mini")
    history = "The migration plan covers billing, onboarding and support. " * 40  # ~2,400 characters
    for text in ("x" * 255, "y" * 256, history, "z" * 32_768, "w" * 32_769):
        r = req(text)
        assert prompt_tokens_bound(r, "gpt-4o-mini") == prompt_tokens_bound(req(text + ""), "gpt-4o-mini")
        assert tokens._text_len(text, enc) == len(enc.encode_ordinary(text))
    before = tokens._counted.cache_info()
    again = "".join(["The migration plan covers billing, onboarding and support. "] * 40)  # a new str object
    assert again is not history
    tokens._text_len(again, enc)
    after = tokens._counted.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
    other = encoding_for("gpt-3.5-turbo")  # cl100k: its own entry, its own count
    if other is not None and other.name != enc.name:
        assert tokens._text_len(history, other) == len(other.encode_ordinary(history))
