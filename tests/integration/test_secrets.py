"""Provider credentials never reach callers: an upstream that echoes the API key in its error body
(OpenAI does: "Incorrect API key provided: sk-...") is scrubbed before the error is raised — in the
message, every attempt's message, the exception chain and the audit event (issue 11 #16)."""

from __future__ import annotations

import traceback

import pytest

from hyperion_core import Gateway, HyperionError

SECRET = "sk-provider-secret-0123456789abcdef"


@pytest.mark.parametrize("adapter", ["native", "litellm"])
async def test_an_echoed_api_key_never_reaches_the_caller(mock, tmp_path, adapter):
    dep = f"echo-{adapter}"
    mock.fault(dep, status=401, message=f"Incorrect API key provided: {SECRET}. You can find your API key at ...")
    gw = Gateway({
        "providers": {"p": {"kind": "openai", "api_key": SECRET, "base_url": mock.base_url(dep, "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini", "adapter": adapter}]}},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit.db"},
    })
    with pytest.raises(HyperionError) as exc:
        await gw.acomplete("chat", [{"role": "user", "content": "hi"}])
    err = exc.value
    shown = "".join(traceback.format_exception(err)) + repr(err) + str(getattr(err, "attempts", ""))
    assert "Incorrect API key provided" in shown  # the message itself is kept...
    assert SECRET not in shown and SECRET[8:] not in shown  # ...without the key, anywhere in the chain
    await gw.audit.aflush()
    (event,) = await gw.audit.query(limit=5)
    assert SECRET not in str(event.to_dict())
    await gw.aclose()
