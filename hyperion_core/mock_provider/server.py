"""The aiohttp application, its routes, and the ways to run it.

Routes (each also exists under a ``/{deployment}`` prefix; without one the
deployment is ``default``)::

    POST /v1/chat/completions                     OpenAI chat (JSON / SSE)
    POST /v1/embeddings                           OpenAI embeddings
    GET  /v1/models                               OpenAI model list
    POST /v1/messages                             Anthropic Messages (JSON / SSE)
    POST /{v1beta|v1alpha|v1}/models/{model}:{method}
         method = generateContent | streamGenerateContent | embedContent | batchEmbedContents
    *    /_mock/...                               control API (see ``admin``)

* :func:`create_app` builds the application around a :class:`~.state.MockState`.
* :class:`MockProvider` runs it on its own event loop in a daemon thread
  (``start()`` returns once listening; port 0 picks a free port) and exposes
  the control surface as thread-safe methods acting on the state directly.
* :func:`serve` runs it in the foreground (the ``hyperion mock-provider`` CLI).

The server runs with the access log off and handler cancellation on, so a
client that disconnects (for instance from a ``hang`` fault) frees its handler.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from . import anthropic_wire, openai_wire
from .admin import add_admin_routes
from .common import wire_base_url
from .faults import Fault
from .handlers import Handlers
from .rules import Rule
from .state import MockState

STATE_KEY = web.AppKey("mock_state", MockState)
_GEMINI_VERSIONS = "{ver:v1beta|v1alpha|v1}"
_SHUTDOWN_TIMEOUT_S = 0.25


def create_app(state: MockState | None = None) -> web.Application:
    state = state or MockState()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    add_admin_routes(app, state)
    h = Handlers(state)

    async def openai_chat(request: web.Request) -> web.StreamResponse:
        return await h.chat(request, openai_wire)

    async def openai_embed(request: web.Request) -> web.StreamResponse:
        return await h.embed(request, openai_wire)

    async def anthropic_messages(request: web.Request) -> web.StreamResponse:
        return await h.chat(request, anthropic_wire)

    for prefix in ("", "/{dep}"):
        app.router.add_post(f"{prefix}/v1/chat/completions", openai_chat)
        app.router.add_post(f"{prefix}/v1/embeddings", openai_embed)
        app.router.add_get(f"{prefix}/v1/models", h.models)
        app.router.add_post(f"{prefix}/v1/messages", anthropic_messages)
        app.router.add_post(f"{prefix}/{_GEMINI_VERSIONS}/models/{{tail}}", h.gemini)
    return app


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start listening; returns the runner and the bound port."""
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, runner.addresses[0][1]


def _root_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class MockProvider:
    """A mock provider server running in a background thread.

    >>> with MockProvider() as mock:
    ...     mock.fault("primary", kind="rate_limit", retry_after=1, times=1)
    ...     base = mock.base_url("primary", "openai")
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, strict: bool = True) -> None:
        self.host = host
        self._port = port
        self.state = MockState(strict=strict)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._start_error: BaseException | None = None

    # --------------------------------------------------------------- lifecycle

    def start(self) -> MockProvider:
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="hyperion-mock-provider", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._start_error is not None:
            self._thread = None
            raise self._start_error
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._runner, self._port = loop.run_until_complete(
                start_site(create_app(self.state), self.host, self._port)
            )
        except BaseException as exc:  # surfaced to the thread calling start()
            self._start_error = exc
            loop.close()
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> MockProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return _root_url(self.host, self._port)

    def base_url(self, deployment: str = "default", wire: str = "openai") -> str:
        return wire_base_url(self.url, deployment, wire)

    # ----------------------------------------------------------------- control

    def fault(self, deployment: str = "*", **spec: Any) -> str:
        return self.state.faults.add(Fault.from_dict({"deployment": deployment, **spec}))

    def faults(self) -> list[dict[str, Any]]:
        return self.state.faults.list()

    def clear_faults(self, deployment: str | None = None) -> int:
        return self.state.faults.clear(deployment)

    def script(
        self,
        match: str,
        content: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        json: Any = None,
        deployment: str | None = None,
        times: int | None = None,
    ) -> str:
        rule = Rule(
            match, deployment=deployment, content=content, tool_calls=tool_calls, json=json, times=times
        )
        return self.state.rules.add(rule)

    def rules(self) -> list[dict[str, Any]]:
        return self.state.rules.list()

    def clear_rules(self) -> int:
        return self.state.rules.clear()

    def stats(self) -> dict[str, dict[str, Any]]:
        return self.state.stats.snapshot()

    def reset(self) -> None:
        self.state.reset()

    @property
    def strict(self) -> bool:
        """True (the default): bodies the real APIs refuse get their 400; settable at runtime."""
        return self.state.strict

    @strict.setter
    def strict(self, on: bool) -> None:
        self.state.strict = bool(on)


def serve(host: str = "127.0.0.1", port: int = 8765, *, strict: bool = True) -> None:
    """Run the mock provider in the foreground until interrupted (Ctrl-C); ``strict=False`` = ``--lenient``."""

    async def main() -> None:
        runner, bound = await start_site(create_app(MockState(strict=strict)), host, port)
        root = _root_url(host, bound)
        mode = "strict" if strict else "lenient"
        print(f"Hyperion mock provider listening on {root} ({mode} request validation)", flush=True)
        for wire in ("openai", "anthropic", "gemini"):
            print(f"  {wire:<9} base URL: {wire_base_url(root, '<deployment>', wire)}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
