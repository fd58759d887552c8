"""Per-deployment request counters (thread-safe).

``Stats.snapshot()`` returns ``{deployment: counters}`` where counters are::

    requests            requests received (all provider endpoints)
    by_endpoint         {"chat" | "embeddings" | "models": n}
    by_wire             {"openai" | "anthropic" | "gemini": n}
    by_status           {"200": n, "429": n, ...} for responses actually started
    streams             streamed chat responses started
    streams_cut         streams closed early by ``cut_after_chunks``
    bodies_cut          non-stream bodies closed half-way by ``cut_after_chunks``
    malformed           responses carrying invalid JSON on purpose
    hung                requests held open by ``hang``
    faults_applied      requests hit by any fault
    refused             bodies refused by strict validation (400 in the wire's format)
    last_refusal        the error message of the latest refusal ("" if none)
    last_messages       the texts of the latest chat request as received: ``[[role, text], ...]``
                        (the system prompt first, as ``system``): what the provider saw
    prompt_tokens       usage reported to clients (chat + embeddings)
    completion_tokens
"""

from __future__ import annotations

import copy
import threading
from typing import Any

_COUNTERS = (
    "requests",
    "streams",
    "streams_cut",
    "bodies_cut",
    "malformed",
    "hung",
    "faults_applied",
    "refused",
    "prompt_tokens",
    "completion_tokens",
)


def _empty() -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(_COUNTERS, 0)
    out.update(by_endpoint={}, by_wire={}, by_status={}, last_refusal="", last_messages=[])
    return out


class Stats:
    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _entry(self, deployment: str) -> dict[str, Any]:
        entry = self._data.get(deployment)
        if entry is None:
            entry = self._data[deployment] = _empty()
        return entry

    def request(self, deployment: str, wire: str, endpoint: str) -> None:
        with self._lock:
            entry = self._entry(deployment)
            entry["requests"] += 1
            entry["by_wire"][wire] = entry["by_wire"].get(wire, 0) + 1
            entry["by_endpoint"][endpoint] = entry["by_endpoint"].get(endpoint, 0) + 1

    def status(self, deployment: str, status: int) -> None:
        key = str(status)
        with self._lock:
            by_status = self._entry(deployment)["by_status"]
            by_status[key] = by_status.get(key, 0) + 1

    def add(self, deployment: str, **counters: int) -> None:
        with self._lock:
            entry = self._entry(deployment)
            for name, n in counters.items():
                entry[name] += n

    def refusal(self, deployment: str, message: str) -> None:
        with self._lock:
            entry = self._entry(deployment)
            entry["refused"] += 1
            entry["last_refusal"] = message

    def received(self, deployment: str, system: str, messages: list[tuple[str, str]]) -> None:
        with self._lock:
            self._entry(deployment)["last_messages"] = [["system", system]] * bool(system) + [list(m) for m in messages]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._data)

    def reset(self) -> None:
        with self._lock:
            self._data.clear()
