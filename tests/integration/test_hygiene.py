"""What a library must not do to its host program: leave unclosed sessions behind, or reconfigure
the application's logging. Each runs in a fresh interpreter, as a user's program would."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_repeated_asyncio_run_leaves_no_unclosed_session(mock):
    """Each asyncio.run() loop that made a call got a pooled session that was never closed: aiohttp
    printed "Unclosed client session" for every one (OpenAILike prints none)."""
    out = run(f"""
        import asyncio, gc
        from hyperion_core import Gateway
        gw = Gateway({{"providers": {{"p": {{"kind": "openai", "api_key": "k",
                                        "base_url": "{mock.base_url('hyg', 'openai')}"}}}},
                      "routes": {{"chat": {{"deployments": [{{"model": "p/gpt-4o-mini"}}]}}}}}})
        for _ in range(3):
            r = asyncio.run(gw.acomplete("chat", [{{"role": "user", "content": "hi"}}]))
            assert r.content
        async def stream():
            return "".join([c.content async for c in gw.astream("chat", [{{"role": "user", "content": "hi"}}])])
        assert asyncio.run(stream())
        gc.collect()
        print("ok")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert "Unclosed" not in out.stderr and "unclosed" not in out.stderr, out.stderr


def test_the_default_embedder_leaves_the_root_logger_alone():
    """wordllama calls logging.basicConfig(INFO) on import: the host's root logger must not change."""
    out = run("""
        import asyncio, logging
        root = logging.getLogger()
        before = (list(root.handlers), root.level)
        from hyperion_core.cache.embedders import WordLlamaEmbedder
        vec = asyncio.run(WordLlamaEmbedder().embed(["hello world"]))
        assert len(vec[0]) == 256
        assert (list(root.handlers), root.level) == before, (root.handlers, root.level)
        logging.getLogger("app").info("must stay silent at WARNING")
        print("ok")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok" and "must stay silent" not in out.stderr
