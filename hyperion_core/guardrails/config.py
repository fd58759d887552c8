"""Guardrail settings: a policy per route (``routes.<name>.guardrails``) and gateway-wide named
policies with per-team / per-key overrides (``guardrails:``).

Which policy a request gets: the key's entry in ``guardrails.keys``, else its team's in
``guardrails.teams``, else the route's own. Overrides live in configuration on purpose: a caller
controls its request metadata, so metadata must never be able to switch a guard off.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["redact", "block", "flag", "off"]
Channel = Literal["system", "user", "assistant", "tool", "document"]
PiiType = Literal["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET", "DOB", "ADDRESS", "NAME"]

ALL_TYPES: list[PiiType] = ["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET", "DOB", "ADDRESS", "NAME"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PiiSettings(_Strict):
    """Personal data and secrets in prompts and answers."""

    #: prompts: ``redact`` (typed placeholders such as ``<EMAIL_1>``, restored in the answer), ``block``,
    #: ``flag`` (audit only) or ``off``. Calls made by a framework's own client (``kind: external``) can
    #: only be blocked or flagged: ``redact`` flags them
    action: Action = "redact"
    #: the types checked: EMAIL, PHONE, CARD, IBAN, SSN, IP, SECRET, DOB, ADDRESS, NAME (default: all)
    types: list[PiiType] = Field(default_factory=lambda: list(ALL_TYPES))
    #: per-type action that overrides ``action``, e.g. ``{SECRET: block, NAME: flag}``
    type_actions: dict[PiiType, Action] = Field(default_factory=dict)
    #: message channels scanned: system, user, assistant, tool (tool results), document (retrieved text:
    #: a message named ``document``/``documents``/``context``, or a ``<document>``/``<context>`` block)
    channels: list[Channel] = Field(default_factory=lambda: ["system", "user", "assistant", "tool", "document"])
    #: answers: what to do with personal data the model produced itself (never the caller's own values,
    #: which are restored): ``redact`` (``[EMAIL]``), ``block``, ``flag`` or ``off``. Checks EMAIL, PHONE,
    #: CARD, IBAN, SSN, IP and SECRET; streams are checked incrementally
    output: Action = "flag"
    #: put the caller's values back into the answer (streams too, across chunk boundaries; tool-call
    #: arguments too); off: the caller sees the placeholders
    restore: bool = True
    #: ``builtin`` (no model download) or ``presidio`` (the ``presidio`` extra; its pattern recognisers)
    engine: Literal["builtin", "presidio"] = "builtin"


class InjectionSettings(_Strict):
    """Prompt-injection detection (score in [0, 1] from weighted rules; optional classifier)."""

    #: at or above the threshold: ``block`` (raises ``GuardrailBlockedError``), ``flag`` (audit only) or ``off``
    action: Literal["block", "flag", "off"] = "block"
    #: score (0..1) from which the user's, system and assistant turns count as injection
    threshold: float = Field(default=0.5, ge=0, le=1)
    #: score (0..1) from which tool results and retrieved documents count as injection (untrusted channels
    #: also weigh rules 1.35x and run rules that catch text addressing the model)
    untrusted_threshold: float = Field(default=0.4, ge=0, le=1)
    #: channels scanned (system prompts are the developer's own: not scanned by default)
    channels: list[Channel] = Field(default_factory=lambda: ["user", "tool", "document"])
    #: grey-zone judge: ``module:function`` (a callable ``(text, channel) -> float | bool``, may be async)
    #: or ``route:<name>`` (a small model behind the gateway asked yes/no); unset: rules only
    classifier: str | None = None
    #: scores from here up to the threshold (0..1) are sent to the classifier
    grey_zone: float = Field(default=0.25, ge=0, le=1)
    #: seconds the classifier may take (> 0); past it the rule score stands and the audit says so
    classifier_timeout: float = Field(default=0.5, gt=0)


class GuardrailPolicy(_Strict):
    """What the guards do on a route (or for a team or key): both sections optional."""

    #: PII redaction (absent: off)
    pii: PiiSettings | None = None
    #: prompt-injection detection (absent: off)
    injection: InjectionSettings | None = None


class GuardrailsConfig(_Strict):
    """Gateway-wide guardrail policies and who gets them."""

    #: named policies that ``teams``, ``keys`` and ``external`` refer to
    policies: dict[str, GuardrailPolicy] = Field(default_factory=dict)
    #: team -> policy name; overrides the route's policy for that team's keys
    teams: dict[str, str] = Field(default_factory=dict)
    #: virtual key id -> policy name; overrides the team's and the route's policy
    keys: dict[str, str] = Field(default_factory=dict)
    #: policy name for calls made by a framework's own client (LangChain callback handler, LlamaIndex
    #: instrumentation) on names that are not routes: they can be blocked or flagged, not redacted
    external: str | None = None


__all__ = ["PiiSettings", "InjectionSettings", "GuardrailPolicy", "GuardrailsConfig", "Action", "Channel", "PiiType"]
