"""Run the server inside a test: a real uvicorn server on a free loopback port, in a background thread.

    with ServerThread(create_app(gateway)) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=key)
        ...
        srv.call(gateway.audit.aflush())   # a coroutine on the server's own loop

Real sockets, real HTTP, the same uvicorn the ``hyperion serve`` command runs; only the process is
shared with the test. :func:`free_port` and :func:`wait_until_up` help tests that start
``hyperion serve`` as a process.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout: float = 60.0, proc: Any = None) -> None:
    """Poll ``url`` (``/healthz``) until it answers 200; raise naming the problem after ``timeout`` s
    (or as soon as ``proc``, a ``subprocess.Popen``, has exited)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server process exited with code {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s (last error: {last})")


class ServerThread:
    """A uvicorn server for ``app`` on 127.0.0.1 (a free port) in a daemon thread with its own loop."""

    def __init__(self, app: Any, *, graceful_timeout: float = 30.0) -> None:
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=graceful_timeout)
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"hyperion-server-{self.port}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # noqa: BLE001 - reported by start()/stop()
            self.error = exc
        finally:
            loop.close()

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the server did not start: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not start within {timeout:g} s")
            time.sleep(0.01)
        return self

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        """Run ``coro`` on the server's loop (where the gateway lives) and return its result."""
        assert self.loop is not None
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the server did not stop within {timeout:g} s")
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ServerThread", "free_port", "wait_until_up"]
