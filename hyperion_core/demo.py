"""``hyperion demo``: a scripted outage a person can follow, on embedded defaults.

Starts the mock provider on a free port, builds a gateway from ``examples/hyperion.yaml`` (no Redis),
and walks through normal traffic, a primary outage with failover, the breaker opening and a half-open
probe restoring the primary, a 429 cooldown, a streamed answer with its time to first token, a stream
cut mid-way and resumed on the backup, weighted traffic and an embedding call.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from .errors import BudgetExceededError, HyperionError
from .gateway import Gateway
from .types import ChatResponse, EmbeddingResponse

_COLS = ("#", "step", "answered by", "attempts", "latency", "tokens in/out", "cost $")


def _default_config() -> Path:
    local = Path("examples/hyperion.yaml")
    if local.exists():
        return local
    return Path(__file__).resolve().parent.parent / "examples" / "hyperion.yaml"


def _attempts(resp: ChatResponse | EmbeddingResponse) -> str:
    cache = getattr(resp, "cache", None)
    if cache is not None:
        sim = f", similarity {cache.similarity:.2f}" if cache.similarity is not None else ""
        return f"cache {cache.tier} hit{sim}, saved ${cache.cost_saved:.6f}"
    parts = []
    for a in resp.attempts:
        what = "ok" if a.outcome == "ok" else (a.status or (a.error_class or "error").removesuffix("Error"))
        parts.append(f"{a.deployment.split('-')[0]}:{what}")
    return " > ".join(parts)


class _Table:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.rows: list[tuple[str, ...]] = []
        self.widths = [3, 31, 17, 50, 9, 13, 10]

    def header(self) -> None:
        self._line(_COLS)
        self.out.write("  ".join("-" * w for w in self.widths) + "\n")

    def _line(self, cells: tuple[str, ...]) -> None:
        self.out.write("  ".join(str(c)[:w].ljust(w) for c, w in zip(cells, self.widths)).rstrip() + "\n")
        self.out.flush()

    def add(self, step: str, resp: ChatResponse | EmbeddingResponse, extra: str = "") -> None:
        u = resp.usage
        row = (
            str(len(self.rows) + 1),
            step,
            resp.deployment,
            _attempts(resp) + extra,
            f"{resp.latency_ms:7.1f}ms",
            f"{u.prompt_tokens}/{u.completion_tokens}",
            f"{resp.cost:.6f}",
        )
        self.rows.append(row)
        self._line(row)

    def note(self, text: str) -> None:
        self.out.write(f"    {text}\n")
        self.out.flush()


async def _scenario(gw: Gateway, mock: Any, out: TextIO) -> dict[str, Any]:
    t = _Table(out)
    failed = 0
    q = "Explain circuit breakers in one paragraph."

    async def ask(step: str, prompt: str = q, route: str = "chat", **kw: Any) -> ChatResponse | None:
        nonlocal failed
        try:
            resp = await gw.acomplete(route, [{"role": "user", "content": prompt}], **kw)
        except HyperionError as exc:
            failed += 1
            t.note(f"FAILED {step}: {exc}")
            return None
        t.add(step, resp)
        return resp

    def state() -> str:
        return gw.health()["chat"]["openai-primary"]["state"]

    t.header()
    for i in range(3):
        await ask("normal traffic", f"{q} ({i})")

    mock.fault("primary", kind="unavailable")
    t.note("!! the primary (OpenAI) starts answering 503")
    for i in range(5):
        await ask("primary down -> failover", f"{q} (outage {i})")
    t.note(f"primary breaker: {state()} (skipped without a call while open)")

    mock.clear_faults("primary")
    t.note("primary recovered; waiting out the 2 s breaker cooldown...")
    await asyncio.sleep(2.05)
    await ask("half-open probe", f"{q} (probe)")
    t.note(f"primary breaker: {state()}")

    mock.fault("primary", kind="rate_limit", retry_after=1, times=1)
    await ask("429 Retry-After=1 -> cooldown", f"{q} (burst)")
    await ask("primary cooling down", f"{q} (burst 2)")

    await asyncio.sleep(1.0)  # let the primary's 429 cooldown pass
    started = time.perf_counter()
    stream = gw.astream("chat", [{"role": "user", "content": "Stream a short story about failover."}])
    ttft = None
    chunks = 0
    async for _ in stream:
        chunks += 1
        ttft = ttft if ttft is not None else (time.perf_counter() - started) * 1000.0
    assert stream.response is not None
    t.add("streamed answer", stream.response, f"  (ttft {ttft:.1f}ms, {chunks} chunks)")

    mock.fault("primary", cut_after_chunks=5, times=1)
    stream = gw.astream("chat", [{"role": "user", "content": "Stream the story again, please."}])
    text = "".join([c.content async for c in stream])
    resp = stream.response
    assert resp is not None
    t.add("stream cut at chunk 5 -> resumed", resp)
    t.note(
        f"resumed by {', '.join(resp.resumed_by) or '-'}; the caller saw one stream of "
        f"{len(text.split())} words: {text[:60]}..."
    )

    served: Counter[str] = Counter()
    for i in range(12):
        r = await gw.acomplete("chat-weighted", [{"role": "user", "content": f"weighted {i}"}])
        served[r.deployment] += 1
    t.note(f"weighted route, 12 requests (3:1): {dict(served)}")

    emb = await gw.aembed("embeddings", ["failover", "circuit breaker"])
    t.add(f"embeddings ({len(emb.vectors)}x{len(emb.vectors[0])})", emb)

    await ask("cache: first ask", "What is the capital city of France?", "assistant")
    await ask("cache: same question", "What is the capital city of France?", "assistant")
    await ask("cache: paraphrase", "Tell me: what is the capital city of France", "assistant")
    await ask("cache: new question", "What is 15% of 80?", "assistant")
    await ask("cache: 15% of 90 != 80: guard", "What is 15% of 90?", "assistant")

    key, rec = await gw.keys.create("demo", team="demo-team")
    t.note(f"virtual key {rec.key_id} (team demo-team, daily budget $0.0004) created; spending it down:")
    refused = None
    for i in range(40):
        try:
            resp = await gw.acomplete(
                "chat",
                [{"role": "user", "content": f"budgeted question {i}"}],
                virtual_key=key,
                max_tokens=40,
            )
        except BudgetExceededError as exc:
            refused = exc
            break
        if i < 2:
            t.add("governed (key + budget)", resp)
    t.note(f"refused after {i} answers: {refused}")
    rows = await gw.spend_report("team")
    t.note("spend by team: " + ", ".join(f"{r.group} ${r.cost_usd:.6f} ({r.requests} req)" for r in rows))
    events = await gw.audit.query(limit=1000)
    report = await gw.audit.verify()
    outcomes = Counter(e.outcome for e in events)
    t.note(
        f"audit log: {len(events)} events {dict(outcomes)}; hash chain {'intact' if report.ok else 'BROKEN'}"
    )

    total = sum(float(r[-1]) for r in t.rows)
    out.write(f"\n{len(events)} requests audited, {failed} failed, total cost ${total:.6f}\n")
    return {"failed": failed if refused is not None and report.ok else failed + 1, "rows": len(t.rows)}


def run(config: str | Path | None = None, out: TextIO = sys.stdout) -> int:
    from .mock_provider import MockProvider

    started = time.perf_counter()
    mock = MockProvider().start()
    state = tempfile.TemporaryDirectory(prefix="hyperion-demo-")
    try:
        path = Path(config) if config else _default_config()
        gw = Gateway.from_file(path, env={"HYPERION_MOCK_URL": mock.url, "HYPERION_STATE": state.name})
        out.write(f"Hyperion demo — config {path}, mock provider at {mock.url}\n\n")

        async def main() -> dict[str, Any]:
            try:
                return await _scenario(gw, mock, out)
            finally:
                await gw.aclose()

        result = asyncio.run(main())
    finally:
        mock.stop()
        state.cleanup()
    out.write(f"demo finished in {time.perf_counter() - started:.1f}s\n")
    return 0 if result["failed"] == 0 else 1


__all__ = ["run"]
