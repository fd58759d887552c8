"""Generate ``wire_schemas.json`` (the strict mock's request schemas) from the official SDKs' request types.

Run from a dev install (``pip install -e .[dev]``)::

    python -m hyperion_core.mock_provider._gen_schema           # rewrite the shipped file
    python -m hyperion_core.mock_provider._gen_schema --check   # exit 1 if the shipped file is stale

Sources, read by introspection (never by hand-written field lists):

* OpenAI: ``openai.types.chat.completion_create_params.CompletionCreateParams{Non,}Streaming`` and
  ``openai.types.embedding_create_params.EmbeddingCreateParams`` (TypedDicts: ``typing.get_type_hints``,
  ``__required_keys__``, ``Literal``, nested TypedDicts, ``PropertyInfo`` aliases).
* Anthropic: ``anthropic.types.message_create_params.MessageCreateParams{Non,}Streaming``.
* Gemini: the ``google-genai`` pydantic models (``Content``, ``Tool``, ``ToolConfig``, ``SafetySetting``,
  ``GenerateContentConfig``, ``EmbedContentConfig``); each field is accepted under its snake_case name and
  its camelCase alias, as the REST API does. Which ``GenerateContentConfig`` fields go top level and which
  into ``generationConfig`` is read from the SDK's own Gemini-API request converter. The embedding
  envelopes are not SDK types: their handful of names is listed in :data:`GEMINI_ENVELOPES`, with their
  types taken from the SDK models.

Supplements (documented, kept tiny): :data:`ANTHROPIC_SAMPLING` — ``temperature``/``top_p``/``top_k``, which
the API still accepts for the models that have them although the SDK stopped typing them in 1.0; and an
OpenAI assistant message also accepts the fields of the response's ``ChatCompletionMessage`` (``annotations``,
``audio``, ...), as the API does when a client echoes an answer back into the history.

The output is a JSON document ``{"sdk_versions", "defs", "endpoints"}``; a *spec* is ``"any" | "str" | "int" |
"num" | "bool" | "null" | {"lit": [...]} | {"list": spec} | {"map": spec} | {"ref": name} | {"any_of":
[spec, ...]}``; a def is ``{"fields": {wire name: spec}, "required": [...]}`` (closed: other keys are
unknown fields). Gemini defs also carry ``"case_insensitive_enums": true``.
"""

from __future__ import annotations

import argparse
import collections.abc
import enum
import json
import os
import sys
import types
import typing
from importlib import metadata
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("wire_schemas.json")

#: sampling parameters the Anthropic API accepts on models that support them (not typed by SDK >= 1.0)
ANTHROPIC_SAMPLING: dict[str, Any] = {"temperature": "num", "top_p": "num", "top_k": "int"}

#: Gemini request fields whose SDK type is a client-side convenience union (str, callables, ...): the REST
#: type is the model named here
GEMINI_REST_TYPES: dict[str, tuple[str, bool]] = {
    "contents": ("Content", True),
    "systemInstruction": ("Content", False),
    "tools": ("Tool", True),
    "toolConfig": ("ToolConfig", False),
    "safetySettings": ("SafetySetting", True),
    "responseSchema": ("Schema", False),
    "speechConfig": ("SpeechConfig", False),
}

#: Gemini embedding envelopes (not SDK types): REST name -> (genai model, scalar or "Model.field"; is list)
GEMINI_ENVELOPES: dict[str, dict[str, Any]] = {
    "EmbedContentRequest": {
        "fields": {
            "model": ("str", False),
            "content": ("Content", False),
            "task_type": ("EmbedContentConfig.task_type", False),
            "title": ("str", False),
            "output_dimensionality": ("int", False),
        },
        "required": ["content"],
    },
    "BatchEmbedContentsRequest": {
        "fields": {"requests": ("EmbedContentRequest", True)},
        "required": ["requests"],
    },
}

_SCALARS: dict[Any, str] = {
    str: "str",
    int: "int",
    float: "num",
    bool: "bool",
    bytes: "str",
    type(None): "null",
}
_LISTS = (list, tuple, set, frozenset, collections.abc.Iterable, collections.abc.Sequence)
_MAPS = (dict, collections.abc.Mapping)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _union(specs: list[Any]) -> Any:
    flat: list[Any] = []
    for s in specs:
        for item in s["any_of"] if isinstance(s, dict) and "any_of" in s else [s]:
            if item not in flat:
                flat.append(item)
    if "any" in flat:
        return "any"
    lits = [s for s in flat if isinstance(s, dict) and "lit" in s]
    if "str" in flat:  # Union[str, Literal["gpt-4o", ...]]: the literals only document known values
        flat = [s for s in flat if s not in lits or not all(isinstance(v, str) for v in s["lit"])]
        lits = [s for s in flat if isinstance(s, dict) and "lit" in s]
    if len(lits) > 1:  # one literal set
        values = [v for s in lits for v in s["lit"]]
        flat = [s for s in flat if s not in lits] + [{"lit": list(dict.fromkeys(values))}]
    return flat[0] if len(flat) == 1 else {"any_of": flat}


class Generator:
    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ TypedDicts (openai, anthropic)

    def _td_name(self, td: type) -> str:
        module = td.__module__.replace(".types.", ".").replace("._", ".")
        return (
            f"{module.split('.')[0]}.{td.__qualname__}" if self._unique(td) else f"{module}.{td.__qualname__}"
        )

    def _unique(self, td: type) -> bool:
        return td.__qualname__ not in {"Function", "Metadata", "ResponseFormat", "Source", "Content"} and (
            td.__qualname__.endswith("Param")
        )

    def typeddict(self, td: type, extra: dict[str, Any] | None = None) -> str:
        name = self._td_name(td)
        if name in self.defs:
            return name
        self.defs[name] = {}  # placeholder: recursion-safe
        hints = typing.get_type_hints(td, include_extras=True)
        fields: dict[str, Any] = {}
        required: list[str] = []
        for key, tp in hints.items():
            wire = key
            for meta in getattr(_strip_required(tp), "__metadata__", ()):
                wire = getattr(meta, "alias", None) or wire
            fields[wire] = self.spec(tp)
            if _is_required(tp, td):
                required.append(wire)
        fields.update(extra or {})
        self.defs[name] = {"fields": fields, "required": sorted(required)}
        return name

    def merged(self, name: str, *tds: type, extra: dict[str, Any] | None = None) -> str:
        """One def from several TypedDicts (e.g. the streaming and non-streaming create params)."""
        fields: dict[str, list[Any]] = {}
        required: set[str] | None = None
        for td in tds:
            d = self.defs[self.typeddict(td)]
            for k, s in d["fields"].items():
                fields.setdefault(k, []).append(s)
            required = set(d["required"]) if required is None else required & set(d["required"])
        out = {k: _union(v) for k, v in fields.items()}
        out.update(extra or {})
        self.defs[name] = {"fields": out, "required": sorted(required or ())}
        return name

    # ------------------------------------------------------------------ pydantic models (google-genai)

    def model(self, cls: type) -> str:
        name = f"gemini.{cls.__name__}"
        if name in self.defs:
            return name
        self.defs[name] = {}
        fields: dict[str, Any] = {}
        for key, f in cls.model_fields.items():
            if key == "http_options":  # SDK-side transport options, never sent
                continue
            spec = self.spec(f.annotation)
            fields[key] = spec
            fields[f.alias or _camel(key)] = spec
        self.defs[name] = {"fields": fields, "required": [], "case_insensitive_enums": True}
        return name

    def envelope(self, name: str, genai: Any) -> str:
        env = GEMINI_ENVELOPES[name]
        fields: dict[str, Any] = {}
        for key, (kind, is_list) in env["fields"].items():
            if kind in _SCALAR_NAMES:
                spec: Any = kind
            elif kind in GEMINI_ENVELOPES:
                spec = {"ref": f"gemini.{kind}"}
            elif "." in kind:
                cls_name, attr = kind.split(".")
                spec = self.spec(getattr(genai, cls_name).model_fields[attr].annotation)
            else:
                spec = {"ref": self.model(getattr(genai, kind))}
            spec = {"list": spec} if is_list else spec
            fields[key] = spec
            fields[_camel(key)] = spec
        required = [r for k in env["required"] for r in (k, _camel(k))]
        self.defs[f"gemini.{name}"] = {
            "fields": fields,
            "required": sorted(set(env["required"])),
            "required_any_spelling": sorted(set(required)),
            "case_insensitive_enums": True,
        }
        return f"gemini.{name}"

    def generate_content(self, genai: Any) -> str:
        """``GenerateContentRequest`` as the SDK sends it to the Gemini API: the REST names are read from the
        SDK's own request converter (``models._GenerateContent{Parameters,Config}_to_mldev``), the types from
        ``GenerateContentConfig`` (or :data:`GEMINI_REST_TYPES` where the SDK type is a client-side union)."""
        import inspect
        import re

        from google.genai import models

        def names(fn: Any, target: str) -> list[str]:
            return re.findall(rf"setv\(\s*{target},\s*\['(\w+)'\]", inspect.getsource(fn))

        config_fields = genai.GenerateContentConfig.model_fields

        def typed(camel: str) -> Any:
            if camel in GEMINI_REST_TYPES:
                kind, is_list = GEMINI_REST_TYPES[camel]
                ref = {"ref": self.model(getattr(genai, kind))}
                return {"list": ref} if is_list else ref
            return self.spec(config_fields[_snake(camel)].annotation)

        gen_fields: dict[str, Any] = {}
        for camel in names(models._GenerateContentConfig_to_mldev, "to_object"):
            gen_fields[camel] = gen_fields[_snake(camel)] = typed(camel)
        self.defs["gemini.GenerationConfig"] = {
            "fields": gen_fields,
            "required": [],
            "case_insensitive_enums": True,
        }
        fields: dict[str, Any] = {"model": "str"}
        top = names(models._GenerateContentParameters_to_mldev, "to_object")
        top += names(models._GenerateContentConfig_to_mldev, "parent_object")
        for camel in top:
            spec = {"ref": "gemini.GenerationConfig"} if camel == "generationConfig" else typed(camel)
            fields[camel] = fields[_snake(camel)] = spec
        self.defs["gemini.GenerateContentRequest"] = {
            "fields": fields,
            "required": ["contents"],
            "required_any_spelling": ["contents"],
            "case_insensitive_enums": True,
        }
        return "gemini.GenerateContentRequest"

    # ------------------------------------------------------------------ types

    def spec(self, tp: Any) -> Any:
        tp = _strip_required(tp)
        if hasattr(tp, "__metadata__"):  # Annotated
            return self.spec(typing.get_args(tp)[0])
        if tp in _SCALARS:
            return _SCALARS[tp]
        if tp is Any or tp is object:
            return "any"
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Literal:
            return {"lit": [a.value if isinstance(a, enum.Enum) else a for a in args]}
        if origin is typing.Union or origin is types.UnionType:
            return _union([self.spec(a) for a in args])
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"lit": [m.value for m in tp]}
        if origin in _MAPS or tp in _MAPS:
            return {"map": self.spec(args[1]) if len(args) == 2 else "any"}
        if origin in _LISTS or tp in _LISTS or getattr(origin, "__name__", "") == "SequenceNotStr":
            return {"list": self.spec(args[0]) if args else "any"}
        if typing.is_typeddict(tp) or _te_is_typeddict(tp):
            return {"ref": self.typeddict(tp)}
        if isinstance(tp, type) and hasattr(tp, "model_fields"):
            return {"ref": self.model(tp)}
        if isinstance(tp, type) and tp.__name__ in ("datetime", "date", "timedelta"):
            return "str"
        if origin in (typing.IO, os.PathLike) or tp in (typing.IO, os.PathLike):  # files: base64 text
            return "str"
        if isinstance(tp, typing.TypeVar):
            return "any"
        if isinstance(tp, type) and issubclass(tp, (str, bytes)):  # PathLike-free str subclasses
            return "str"
        raise TypeError(f"_gen_schema: no mapping for type {tp!r}; extend Generator.spec")


def _is_required(tp: Any, td: type) -> bool:
    """``__required_keys__`` is empty under ``from __future__ import annotations``: read the wrappers."""
    name = getattr(typing.get_origin(tp), "_name", None) or getattr(typing.get_origin(tp), "__name__", None)
    if name == "Required":
        return True
    return bool(getattr(td, "__total__", True)) and name != "NotRequired"


def _te_is_typeddict(tp: Any) -> bool:
    import typing_extensions as te

    return te.is_typeddict(tp)


_SCALAR_NAMES = frozenset({"str", "int", "num", "bool"})


def _strip_required(tp: Any) -> Any:
    """``Required[X]`` / ``NotRequired[X]`` / ``ReadOnly[X]`` -> ``X`` (keeps ``Annotated``)."""
    import typing_extensions as te

    wrappers = {te.Required, te.NotRequired, te.ReadOnly, typing.Required, typing.NotRequired}
    while typing.get_origin(tp) in wrappers:
        tp = typing.get_args(tp)[0]
    return tp


def generate() -> dict[str, Any]:
    from anthropic.types import message_create_params as anthropic_params
    from google.genai import types as genai
    from openai.types import embedding_create_params
    from openai.types.chat import ChatCompletionAssistantMessageParam, ChatCompletionMessage
    from openai.types.chat import completion_create_params as openai_params

    g = Generator()
    assistant = g.defs[g.typeddict(ChatCompletionAssistantMessageParam)]
    for key in ChatCompletionMessage.model_fields:  # a response message echoed back is accepted
        assistant["fields"].setdefault(key, "any")
    endpoints = {
        "openai.chat": g.merged(
            "openai.ChatCompletionCreateParams",
            openai_params.CompletionCreateParamsNonStreaming,
            openai_params.CompletionCreateParamsStreaming,
        ),
        "openai.embeddings": g.typeddict(embedding_create_params.EmbeddingCreateParams),
        "anthropic.messages": g.merged(
            "anthropic.MessageCreateParams",
            anthropic_params.MessageCreateParamsNonStreaming,
            anthropic_params.MessageCreateParamsStreaming,
            extra=ANTHROPIC_SAMPLING,
        ),
    }
    g.envelope("EmbedContentRequest", genai)
    endpoints["gemini.generateContent"] = g.generate_content(genai)
    endpoints["gemini.embedContent"] = "gemini.EmbedContentRequest"
    endpoints["gemini.batchEmbedContents"] = g.envelope("BatchEmbedContentsRequest", genai)
    versions = {p: metadata.version(p) for p in ("openai", "anthropic", "google-genai")}
    return {"sdk_versions": versions, "endpoints": endpoints, "defs": dict(sorted(g.defs.items()))}


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the shipped file differs")
    args = parser.parse_args(argv)
    text = render(generate())
    if args.check:
        if OUT.read_text() != text:
            print(
                f"{OUT.name} is stale: re-run python -m hyperion_core.mock_provider._gen_schema",
                file=sys.stderr,
            )
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
