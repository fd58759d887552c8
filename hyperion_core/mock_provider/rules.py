"""Scripted reply rules: "when the prompt matches X, answer Y".

A rule is ``{match, deployment?, content?, tool_calls?, json?, times?}``:

* ``match`` is a regular expression searched (``re.search``) in the prompt
  (the last user message's text, see ``content.conversation_prompt``);
* ``deployment`` restricts the rule to one deployment (``None``/``"*"`` = any);
* ``tool_calls`` (``[{name, arguments: dict}]``) makes the reply call tools,
  otherwise ``json`` (any JSON value, serialised) or ``content`` (a string)
  becomes the reply text;
* ``times`` expires the rule after that many uses.

Rules are checked in insertion order and the first match wins.
:class:`RuleBook` is thread-safe: the server thread takes rules while test code
adds or clears them from another thread.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from .common import new_id

_FIELDS = ("match", "deployment", "content", "tool_calls", "json", "times")


@dataclass(slots=True)
class Rule:
    match: str
    deployment: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    json: Any = None
    times: int | None = None
    id: str = field(default_factory=new_id)
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.match)
        if self.content is None and self.tool_calls is None and self.json is None:
            raise ValueError("a rule needs content, tool_calls or json")
        for call in self.tool_calls or ():
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ValueError("each tool call needs a name")
            if not isinstance(call.get("arguments", {}), dict):
                raise ValueError("tool call arguments must be an object")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1")

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Rule:
        unknown = set(spec) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        if not isinstance(spec.get("match"), str):
            raise ValueError("a rule needs a 'match' regex string")
        return cls(**spec)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _FIELDS}
        out["id"] = self.id
        return out

    def applies(self, prompt: str, deployment: str) -> bool:
        if self.deployment not in (None, "*", deployment):
            return False
        return self.pattern.search(prompt) is not None


class RuleBook:
    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()

    def add(self, rule: Rule) -> str:
        with self._lock:
            self._rules.append(rule)
        return rule.id

    def clear(self) -> int:
        with self._lock:
            removed = len(self._rules)
            self._rules.clear()
        return removed

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_dict() for rule in self._rules]

    def take(self, prompt: str, deployment: str) -> Rule | None:
        """The first rule matching ``prompt`` on ``deployment``; counts one use against ``times``."""
        if not self._rules:  # lock-free fast path for the common benchmark case
            return None
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.applies(prompt, deployment):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            del self._rules[i]
                    return rule
        return None
