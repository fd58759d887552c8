"""``MockProviderClient``: the ``MockProvider`` control methods over HTTP.

For a mock provider running in another process (``hyperion mock-provider``);
talks to the ``/_mock`` admin API (see ``admin``) with the standard library
only. Method names and arguments mirror :class:`~.server.MockProvider`.
"""

from __future__ import annotations

import json as jsonlib
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .common import wire_base_url


class MockProviderError(RuntimeError):
    """The admin API rejected a call (e.g. an invalid fault spec)."""


class MockProviderClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None, query: dict[str, str] | None = None) -> Any:
        url = f"{self.url}/_mock/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if payload is None else jsonlib.dumps(payload).encode()
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return jsonlib.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise MockProviderError(
                f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None

    def base_url(self, deployment: str = "default", wire: str = "openai") -> str:
        return wire_base_url(self.url, deployment, wire)

    def health(self) -> bool:
        return self._call("GET", "health").get("status") == "ok"

    def fault(self, deployment: str = "*", **spec: Any) -> str:
        return self._call("POST", "faults", {"deployment": deployment, **spec})["id"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")

    def clear_faults(self, deployment: str | None = None) -> int:
        query = {"deployment": deployment} if deployment is not None else None
        return self._call("DELETE", "faults", query=query)["removed"]

    def script(
        self,
        match: str,
        content: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        json: Any = None,
        deployment: str | None = None,
        times: int | None = None,
    ) -> str:
        spec = {
            "match": match,
            "content": content,
            "tool_calls": tool_calls,
            "json": json,
            "deployment": deployment,
            "times": times,
        }
        return self._call("POST", "rules", {k: v for k, v in spec.items() if v is not None})["id"]

    def rules(self) -> list[dict[str, Any]]:
        return self._call("GET", "rules")

    def clear_rules(self) -> int:
        return self._call("DELETE", "rules")["removed"]

    def stats(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "stats")

    def strict(self, on: bool | None = None) -> bool:
        """Whether bodies are validated as the real APIs do; ``on`` switches it first."""
        if on is None:
            return self._call("GET", "strict")["strict"]
        return self._call("POST", "strict", {"strict": bool(on)})["strict"]

    def reset(self) -> None:
        self._call("POST", "reset")
