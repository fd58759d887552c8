"""Guardrails: PII redaction and prompt-injection detection, built in, offline and measured.

The GuardIn and GuardOut stages of the pipeline (``hyperion_core.stages``) apply a route's
``guardrails:`` policy (:class:`GuardrailPolicy`) to every request, whatever its door:

* :mod:`.pii` — recognisers with validation (Luhn, mod-97, SSN ranges, ``phonenumbers``, ...);
* :mod:`.masking` — reversible typed placeholders (``<EMAIL_1>``), restored in answers and streams;
* :mod:`.injection` — normalisation, then weighted multilingual rules: a score and rule ids;
* :mod:`.scan` — the one vectorised pass that tells them where to look (why they stay fast);
* :mod:`.engine` — policies per route, team and key; block / redact / flag; audit records.

Only the configuration models are imported eagerly (the gateway's config needs them); the
detectors load on first use, so a gateway without guardrails never pays for them.
"""

from __future__ import annotations

from typing import Any

from .config import GuardrailPolicy, GuardrailsConfig, InjectionSettings, PiiSettings

_LAZY = {
    "PiiDetector": ".pii", "Finding": ".pii", "TYPES": ".pii",
    "InjectionDetector": ".injection", "Verdict": ".injection",
    "Masker": ".masking", "StreamGuard": ".masking",
    "Guardrails": ".engine",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'hyperion_core.guardrails' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod, __name__), name)


__all__ = ["GuardrailPolicy", "GuardrailsConfig", "InjectionSettings", "PiiSettings", *_LAZY]
