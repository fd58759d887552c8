"""Optional engine: Microsoft Presidio's pattern recognisers (``pip install hyperion-gateway[presidio]``).

Only the regex/checksum recognisers are used (no spaCy model is loaded or downloaded); NAME and
ADDRESS, which Presidio finds with its NLP model, are not available through this engine.
"""

from __future__ import annotations

from .pii import Finding, _overlap_free

#: our type -> Presidio entity
ENTITIES = {"EMAIL": "EMAIL_ADDRESS", "PHONE": "PHONE_NUMBER", "CARD": "CREDIT_CARD", "IBAN": "IBAN_CODE",
            "SSN": "US_SSN", "IP": "IP_ADDRESS", "DOB": "DATE_TIME"}


class PresidioDetector:
    """Presidio's predefined pattern recognisers behind the :class:`~.pii.PiiDetector` interface."""

    def __init__(self, types: tuple[str, ...] = tuple(ENTITIES), *, threshold: float = 0.5) -> None:
        try:
            from presidio_analyzer import predefined_recognizers as pr
        except ImportError as exc:  # pragma: no cover - depends on the extra
            from ..errors import ConfigError

            raise ConfigError("guardrails engine 'presidio' needs the presidio extra: "
                              "pip install 'hyperion-gateway[presidio]'") from exc
        classes = {"EMAIL": pr.EmailRecognizer, "PHONE": pr.PhoneRecognizer, "CARD": pr.CreditCardRecognizer,
                   "IBAN": pr.IbanRecognizer, "SSN": pr.UsSsnRecognizer, "IP": pr.IpRecognizer,
                   "DOB": pr.DateRecognizer}
        import tldextract  # Presidio's e-mail check: use the bundled suffix list, never fetch one

        tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())
        self.types = tuple(t for t in types if t in classes)
        self.recognizers = [(t, classes[t]()) for t in self.types]
        self.threshold = threshold
        self._back = {v: k for k, v in ENTITIES.items()}

    def detect(self, text: str, scan: object = None) -> list[Finding]:
        found: list[Finding] = []
        for typ, rec in self.recognizers:
            for r in rec.analyze(text, entities=[ENTITIES[typ]], nlp_artifacts=None):
                if r.score >= self.threshold:
                    found.append(Finding(r.start, r.end, typ))
        return _overlap_free(found)


__all__ = ["PresidioDetector", "ENTITIES"]
