"""A throw-away nginx serving fixed bodies on loopback: the benchmark's upstream.

:class:`FixedNginx` writes its own ``nginx.conf`` into a temp dir (pid file, error log and every temp
path inside it), starts ``nginx -g 'daemon off;'`` in the foreground with one worker on a free
127.0.0.1 port, waits until it answers, and stops it on :meth:`stop` (also when the benchmark dies:
the master gets SIGTERM from the kernel when its parent exits). Each route is an exact ``location``
answering ``return 200 '<body>'`` with a fixed content type, whatever the method (POST included), with
keep-alive on and no access log. :meth:`FixedNginx.requests` reads nginx's own request counter
(``stub_status``) so a caller can prove every call really reached the upstream.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass

from _common import free_port

INSTALL_HINT = "nginx is not installed: apt-get install -y nginx-light   (or: apt-get install -y nginx)"

#: temp-path directives; those the local build lacks are dropped on the first start
_TEMP_DIRECTIVES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
#: characters per config token piece (nginx's limit is 4096 bytes, escapes included)
_PIECE = 1500


class NginxError(RuntimeError):
    """nginx could not be started."""


@dataclass(frozen=True)
class Body:
    content_type: str
    body: str


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (
            p
            for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
            if os.access(p, os.X_OK)
        ),
        None,
    )


def _quote(body: str) -> str:
    """An nginx single-quoted string: ``\\``, ``'`` and line breaks escaped. ``$`` would start a
    variable and nginx has no escape for it, so bodies must not contain one."""
    if "$" in body:
        raise ValueError("nginx 'return' bodies cannot contain '$'")
    return (
        "'" + body.replace("\\", "\\\\").replace("'", "\\'").replace("\r", "\\r").replace("\n", "\\n") + "'"
    )


def _location(path: str, b: Body) -> str:
    """An exact location answering 200 with the body. nginx caps one config token at 4 KB, so longer
    bodies are set in pieces (``set $b0 '...'; set $b1 '...';``) and returned as ``"$b0$b1..."``."""
    pieces = [b.body[i : i + _PIECE] for i in range(0, len(b.body), _PIECE)] or [""]
    lines = [f"        location = {path} {{", f"            default_type {b.content_type};"]
    if len(pieces) == 1:
        lines.append(f"            return 200 {_quote(pieces[0])};")
    else:
        lines += [f"            set $b{i} {_quote(p)};" for i, p in enumerate(pieces)]
        lines.append('            return 200 "' + "".join(f"${{b{i}}}" for i in range(len(pieces))) + '";')
    lines.append("        }")
    return "\n".join(lines)


class FixedNginx:
    """``FixedNginx({"/plain/v1/chat/completions": Body("application/json", "{...}")})``; use as a
    context manager or call :meth:`start` / :meth:`stop`. ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(
        self, routes: Mapping[str, Body], *, cpu: int | None = None, binary: str | None = None,
        proxy_to: str | None = None,
    ) -> None:
        self.routes = dict(routes)
        #: ``http://127.0.0.1:<port>``: every other path is ``proxy_pass``-ed there over pooled keep-alive
        #: connections (the plain reverse proxy a gateway is measured against)
        self.proxy_to = proxy_to
        self.cpu = cpu
        self.binary = binary or find_nginx()
        self.port = 0
        self.dir: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._temp = list(_TEMP_DIRECTIVES)
        self._status = True  # dropped if this build lacks the stub_status module

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def conf(self) -> str:
        d = self.dir
        temp = "\n".join(f"    {t}_temp_path {d}/tmp_{t};" for t in self._temp)
        locs = "\n".join(_location(path, b) for path, b in self.routes.items())
        status = (
            "        location = /nginx_status {\n            stub_status;\n        }" if self._status else ""
        )
        upstream, fallback = "", "        location / {\n            return 404;\n        }"
        if self.proxy_to:
            hostport = self.proxy_to.split("://", 1)[-1].rstrip("/")
            upstream = f"    upstream proxied {{\n        server {hostport};\n        keepalive 512;\n    }}"
            fallback = (
                "        location / {\n            proxy_pass http://proxied;\n            proxy_http_version 1.1;\n"
                '            proxy_set_header Connection "";\n            proxy_buffering off;\n        }'
            )
        return f"""# written by bench/_nginx.py
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    tcp_nodelay on;
    gzip off;
{temp}
{upstream}
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        location = /health {{
            default_type text/plain;
            return 200 'ok';
        }}
{status}
{locs}
{fallback}
    }}
}}
"""

    def start(self, timeout: float = 10.0) -> FixedNginx:
        if self.binary is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.dir = tempfile.mkdtemp(prefix="hyperion-bench-nginx-")
        for attempt in range(6):
            self.port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w", encoding="utf-8") as f:
                f.write(self.conf())
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "-p",
                    self.dir + "/",
                    "-e",
                    f"{self.dir}/error.log",
                    "-c",
                    conf,
                    "-g",
                    "daemon off;",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C reaches us, and we stop nginx ourselves
                preexec_fn=self._preexec,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._answers():
                    return self
                time.sleep(0.02)
            err = self._log_tail()
            self._kill()
            m = re.search(r'unknown directive "(\w+)_temp_path"', err)
            if m and m.group(1) in self._temp:
                self._temp.remove(m.group(1))  # this build lacks that module
                continue
            if 'unknown directive "stub_status"' in err and self._status:
                self._status = False
                continue
            if "Address already in use" in err and attempt < 5:
                continue  # lost the race for the free port
            self._cleanup()
            raise NginxError(f"nginx did not start:\n{err}")
        self._cleanup()
        raise NginxError("nginx did not start (ran out of attempts)")

    def _preexec(self) -> None:
        # the kernel sends SIGTERM to nginx if this process dies (Linux), and nginx gets its own core
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if self.cpu is not None and hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(0, {self.cpu})
            except OSError:
                pass

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def requests(self) -> int | None:
        """Requests nginx has served so far (this query included), or None without ``stub_status``."""
        if not self._status:
            return None
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"GET /nginx_status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        m = re.search(rb"server accepts handled requests\s+\d+\s+\d+\s+(\d+)", data)
        return int(m.group(1)) if m else None

    def _log_tail(self) -> str:
        parts = []
        if self.proc is not None and self.proc.stderr is not None and self.proc.poll() is not None:
            parts.append(self.proc.stderr.read().decode("utf-8", "replace"))
        try:
            with open(os.path.join(self.dir or "", "error.log"), encoding="utf-8", errors="replace") as f:
                parts.append(f.read()[-4000:])
        except OSError:
            pass
        return "\n".join(p for p in parts if p).strip()

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests, then exit
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def _cleanup(self) -> None:
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def stop(self) -> None:
        self._kill()
        self._cleanup()

    def __enter__(self) -> FixedNginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
