"""Deterministic JSON synthesis from a JSON schema, seeded by the prompt.

``synthesize(schema, prompt)`` returns a value valid against ``schema`` for the
subset of JSON Schema that LLM tool/response schemas use:

* ``$ref`` into ``#/$defs`` / ``#/definitions`` (any local JSON pointer),
  ``const``, ``enum`` (first value), ``anyOf``/``oneOf`` (first non-null
  branch), ``allOf`` (properties merged).
* integer/number -> the first number in the prompt (else 1), clamped to
  ``minimum``/``maximum``; string -> a word taken from the prompt (or a fixed
  value for ``date``/``date-time``/``email``/``uri`` formats); boolean -> true;
  null -> null; array -> ``max(1, minItems)`` synthesised items; object ->
  its ``required`` properties, or all properties when none are required.
* Gemini/OpenAPI upper-case types (``OBJECT``, ``STRING``) are accepted.

Recursive schemas are cut off at a fixed depth (objects become ``{}``, arrays ``[]``).
"""

from __future__ import annotations

import re
from typing import Any

_MAX_DEPTH = 12
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "email": "mock@example.com",
    "uri": "https://example.com/mock",
    "url": "https://example.com/mock",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def first_number(prompt: str) -> int | float | None:
    m = _NUMBER.search(prompt)
    if m is None:
        return None
    text = m.group()
    return float(text) if "." in text else int(text)


def prompt_word(prompt: str) -> str:
    """The last capitalised word not starting a sentence (a likely name), else the last 3+ letter word."""
    last_long = None
    last_name = None
    for m in _WORD.finditer(prompt):
        word = m.group()
        before = prompt[: m.start()].rstrip()
        if word[0].isupper() and before and before[-1] not in ".!?:":
            last_name = word
        if len(word) >= 3:
            last_long = word
    return last_name or last_long or "mock"


class _Synth:
    __slots__ = ("root", "number", "word")

    def __init__(self, root: dict[str, Any], prompt: str) -> None:
        self.root = root
        self.number = first_number(prompt)
        self.word = prompt_word(prompt)

    def value(self, schema: Any, depth: int = 0) -> Any:
        if not isinstance(schema, dict):
            return None
        if "$ref" in schema:
            return self.value(self._resolve(schema["$ref"]), depth + 1) if depth < _MAX_DEPTH else None
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                return self.value(_first_non_null(schema[key]), depth + 1)
        if schema.get("allOf"):
            return self.value(self._merge(schema["allOf"]), depth + 1)
        kind = _type_of(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind in ("integer", "number"):
            return self._number(schema, kind)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return _FORMATS.get(str(schema.get("format", "")).lower(), self.word)

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties") or {}
        if depth >= _MAX_DEPTH:
            return {}
        wanted = schema.get("required") or list(props)
        return {name: self.value(props.get(name, {}), depth + 1) for name in wanted}

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        if depth >= _MAX_DEPTH:
            return []
        count = max(1, int(schema.get("minItems", 1) or 1))
        return [self.value(schema.get("items", {}), depth + 1) for _ in range(count)]

    def _number(self, schema: dict[str, Any], kind: str) -> int | float:
        value: int | float = 1 if self.number is None else self.number
        if kind == "integer":
            value = int(value)
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, (int, float)) and value < low:
            value = low
        if isinstance(high, (int, float)) and value > high:
            value = high
        return value

    def _merge(self, parts: list[Any]) -> Any:
        resolved = [self._resolve(p["$ref"]) if isinstance(p, dict) and "$ref" in p else p for p in parts]
        dicts = [p for p in resolved if isinstance(p, dict)]
        if len(dicts) == 1 or not any("properties" in p for p in dicts):
            return dicts[0] if dicts else {}
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in dicts:
            merged["properties"].update(part.get("properties") or {})
            merged["required"].extend(part.get("required") or [])
        return merged

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in ref[1:].strip("/").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                return {}
        return node


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _first_non_null(options: list[Any]) -> Any:
    for option in options:
        if not (isinstance(option, dict) and str(option.get("type", "")).lower() == "null"):
            return option
    return options[0]


def synthesize(schema: dict[str, Any] | None, prompt: str) -> Any:
    """A JSON value valid against ``schema``; numbers and words come from ``prompt``."""
    if not schema:
        return {}
    return _Synth(schema, prompt).value(schema)
