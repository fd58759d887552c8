"""``hyperion demo --serve``: the server on the embedded default, called by the official SDKs.

Starts the mock provider and ``hyperion serve``'s app (a real uvicorn server on a free loopback port)
over ``examples/hyperion.yaml``, then: the openai SDK (whole and streamed), the anthropic SDK on the
same route, LangChain's ``ChatOpenAI(base_url=...)``, a primary outage answered by the backup through
HTTP, a team budget refusing a call (429 ``insufficient_quota``, not retried), and the admin API's
spend by team.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from ..config import GatewayConfig


def _default_config() -> Path:
    from ..demo import _default_config as default

    return default()


def run(config: str | Path | None = None, out: TextIO = sys.stdout) -> int:
    import anthropic
    import httpx
    import openai

    from ..mock_provider import MockProvider
    from .app import create_app
    from .testing import ServerThread

    started = time.perf_counter()
    failed = 0
    mock = MockProvider().start()
    state = tempfile.TemporaryDirectory(prefix="hyperion-demo-serve-")
    path = Path(config) if config else _default_config()
    try:
        cfg = GatewayConfig.from_file(path, env={"HYPERION_MOCK_URL": mock.url, "HYPERION_STATE": state.name})
        app = create_app(cfg)
        gw = app.state.gateway
        with ServerThread(app) as srv:
            key = srv.call(gw.keys.create("demo-app"))[0]
            team_key = srv.call(gw.keys.create("demo-team-app", team="demo-team"))[0]
            admin = srv.call(gw.keys.create("demo-admin", roles=["admin"]))[0]
            out.write(f"Hyperion server demo — config {path}\n  server {srv.url}  (mock provider {mock.url})\n\n")

            def step(title: str, fn: Any) -> None:
                nonlocal failed
                try:
                    out.write(f"  {title:<44} {fn()}\n")
                except Exception as exc:  # noqa: BLE001 - the demo reports a failed step and goes on
                    failed += 1
                    out.write(f"  {title:<44} FAILED: {type(exc).__name__}: {exc}\n")
                out.flush()

            client = openai.OpenAI(base_url=srv.url + "/v1", api_key=key)
            msgs = [{"role": "user", "content": "What is a circuit breaker?"}]

            def chat() -> str:
                raw = client.chat.completions.with_raw_response.create(model="chat", messages=msgs, max_tokens=60)
                r, h = raw.parse(), raw.headers
                return (f"{(r.choices[0].message.content or '')[:28]!r}… via {h['x-hyperion-deployment']}, "
                        f"${float(h['x-hyperion-cost']):.6f}")

            def stream() -> str:
                s = client.chat.completions.create(model="chat", messages=msgs, max_tokens=60, stream=True,
                                                   stream_options={"include_usage": True})
                chunks = list(s)
                return f"{len(chunks)} chunks, {chunks[-1].usage.completion_tokens} tokens out"

            def claude() -> str:
                a = anthropic.Anthropic(base_url=srv.url, api_key=key)
                m = a.messages.create(model="chat", max_tokens=60, messages=[{"role": "user", "content": "hello"}])
                return f"{m.content[0].text[:28]!r}… stop_reason {m.stop_reason}"

            def langchain() -> str:
                from langchain_openai import ChatOpenAI

                llm = ChatOpenAI(model="chat", base_url=srv.url + "/v1", api_key=key, max_tokens=60)
                return f"{llm.invoke('hello from LangChain').content[:28]!r}…"

            def failover() -> str:
                mock.fault("primary", status=503, times=3)
                raw = client.chat.completions.with_raw_response.create(model="chat", messages=msgs, max_tokens=60)
                h = raw.headers
                mock.clear_faults()
                return f"answered by {h['x-hyperion-deployment']} after {h['x-hyperion-attempts']} attempts"

            def budget() -> str:
                team = openai.OpenAI(base_url=srv.url + "/v1", api_key=team_key, max_retries=2)
                for i in range(200):
                    try:
                        team.chat.completions.create(model="chat", messages=msgs, max_tokens=30)
                    except openai.RateLimitError as exc:
                        return f"call {i + 1}: {exc.status_code} {exc.code} (not retried)"
                raise AssertionError("the team budget never refused a call")

            def spend() -> str:
                rows = httpx.get(srv.url + "/admin/v1/spend?by=team", headers={"authorization": f"Bearer {admin}"},
                                 timeout=30).json()["data"]
                return ", ".join(f"{r['group'] or '-'}: {r['requests']} calls ${r['cost_usd']:.6f}" for r in rows)

            step("openai SDK, chat.completions", chat)
            step("openai SDK, streamed", stream)
            step("anthropic SDK, messages on the same route", claude)
            step("LangChain ChatOpenAI(base_url=...)", langchain)
            step("primary down (503): failover over HTTP", failover)
            step("team budget $0.0004/day", budget)
            step("admin API: spend by team", spend)
    finally:
        mock.stop()
        state.cleanup()
    out.write(f"\nserver demo finished in {time.perf_counter() - started:.1f}s\n")
    return 0 if failed == 0 else 1


__all__ = ["run"]
