"""Prompt-injection detection: normalise, then weighted rules; a score in [0, 1] and the rule ids.

Normalisation (only what the text needs): Unicode NFKC, homoglyphs (Cyrillic / Greek look-alikes ->
Latin), zero-width and bidi controls removed, leetspeak decoded in words that mix letters and digits,
HTML/markdown comments exposed, base64 and hex runs decoded and scanned too.

Rules (``RULES``) are phrase patterns with a weight, in English, German, French, Spanish and Chinese,
grouped by technique: instruction override, role hijack, system-prompt extraction, "developer mode"
jailbreaks, payload splitting, and rules for untrusted channels (tool results, retrieved documents)
that address the model directly. They run only on windows around the anchor stems a
:class:`~.scan.Scan` finds, so long benign prompts cost little. The score is a noisy-OR of the fired
weights, scaled by the channel (untrusted channels count more), and damped when the text *talks
about* injection (a tutorial, a quoted example) rather than doing it.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass

from .pii import ADDRESS_STEMS, NAME_STEMS
from .scan import ADDRESS, INJECTION, NAME, Grams, Scan, clusters
from .scan import UNTRUSTED as _UNTRUSTED_STEMS

#: channel -> weight multiplier (the user's own turn is the reference)
CHANNEL_WEIGHT = {"user": 1.0, "system": 0.7, "assistant": 0.7, "tool": 1.35, "document": 1.35}
UNTRUSTED = frozenset({"tool", "document"})

_OBJ_EN = r"(?:instructions?|rules?|guidelines?|directives?|directions|prompts?|system (?:prompt|message)|constraints|" \
          r"polic(?:y|ies)|restrictions|programming|training|context|everything (?:above|before|else)|what you were told)"
_OBJ_DE = r"(?:anweisungen|anweisung|instruktionen|regeln|vorgaben|richtlinien|befehle|systemprompt|prompt|alles)"
_OBJ_FR = r"(?:instructions?|consignes?|règles|regles|directives|prompt|tout ce qui précède)"
_OBJ_ES = r"(?:instrucciones|instrucción|reglas|normas|directrices|indicaciones|prompt|todo lo anterior)"

# (id, weight, pattern) over lower-cased, normalised text
RULES: tuple[tuple[str, float, str], ...] = (
    # instruction override
    ("override.ignore", 0.85, rf"\b(?:ignore|disregard|forget|skip|override|bypass|drop|abandon)\b[\w\s,'-]{{0,40}}?"
                              rf"\b(?:all|any|your|previous|prior|above|earlier|preceding|initial|original|"
                              rf"existing|system|safety|every)\b[\w\s,'-]{{0,30}}?{_OBJ_EN}"),
    ("override.everything", 0.75, r"\b(?:ignore|disregard|forget)\s+(?:everything|all|anything)\s+(?:above|before|prior|"
                                  r"previous|earlier|you (?:were|have been) told)"),
    ("override.ignore_de", 0.85, rf"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*|übergeh\w*)\b[\w\s,äöüß'-]{{0,40}}?"
                                 rf"{_OBJ_DE}"),
    ("override.ignore_fr", 0.85, rf"\b(?:ignore[zs]?|oublie[zs]?|néglige[zs]?|fais abstraction)\b[\w\s,'’éèàç-]{{0,40}}?"
                                 rf"\b(?:les|tes|vos|toutes|tous|ces|la|le|de|des)\b[\w\s,'’éèàç-]{{0,30}}?{_OBJ_FR}"),
    ("override.ignore_es", 0.85, rf"\b(?:ignora\w*|olvida\w*|omite|descarta\w*|haz caso omiso)\b[\w\s,'áéíóúñ-]{{0,40}}?"
                                 rf"{_OBJ_ES}"),
    ("override.new_instructions", 0.55, r"\b(?:new|updated|real|actual|true) (?:instructions|rules|task|orders)\b"
                                        r"\s*(?:are|is|:|follow)|\bfrom now on,? you (?:will|must|are|shall)\b"
                                        r"|\bneue anweisungen\b|\bnouvelles instructions\b|\bnuevas instrucciones\b"
                                        r"|\bab jetzt (?:bist|wirst) du\b|\bà partir de maintenant,? tu\b"
                                        r"|\ba partir de ahora,? (?:eres|serás|debes)\b"),
    ("override.priority", 0.5, r"\b(?:this|these) (?:instructions?|message) (?:override|supersede|take precedence)"
                               r"|\bhighest priority\b.{0,20}\binstruction"),
    # role hijack / jailbreak personas
    ("role.unrestricted", 0.8, r"\b(?:you are|you're|act as|pretend (?:to be|you are)|roleplay as|role-play as|"
                               r"become|du bist|sei|tu es|sois|eres|actúa como|finge ser)\b[\w\s,'-]{0,40}?"
                               r"\b(?:no|without|free of|free from|any|ohne|keine|sans|aucune|sin|ningún|ninguna)"
                               r"\s+(?:restrictions?|limits?|limitations?|filters?|rules|guidelines|ethics|morals|"
                               r"censorship|einschränkungen|grenzen|regeln|filter|restrictions|limites|règles|"
                               r"restricciones|límites|reglas|filtros)"),
    ("role.dan", 0.85, r"\b(?:dan|stan|dude|aim)\b.{0,40}\b(?:do anything now|jailbr(?:oken|eak)|no restrictions|"
                       r"strive to avoid norms)|\bdo anything now\b"),
    ("role.persona_swap", 0.5, r"\b(?:you are no longer|you're no longer|you are not (?:an? )?(?:ai|assistant|chatgpt|"
                               r"claude)|du bist (?:nicht mehr|kein) |tu n'es plus|ya no eres)\b"),
    ("role.uncensored", 0.6, r"\b(?:uncensored|unfiltered|unrestricted|unaligned|amoral|evil (?:ai|assistant|"
                             r"twin|mode)|unzensiert|sans censure|sin censura)\b"),
    ("role.fake_system", 0.6, r"(?:^|\n)\s*(?:\[?system\]?|<\|?system\|?>|###\s*system|system message)\s*[:\]>]"
                              r"|\[system\]\s*:|<\|im_start\|>\s*system|\[/?inst\]|<</?sys>>"),
    # system prompt extraction
    ("extract.system_prompt", 0.75, r"\b(?:reveal|show|print|repeat|output|display|tell me|give me|leak|dump|write out|"
                                    r"what (?:is|are|was|were)|recite|spell out)\b[\w\s,'-]{0,30}?"
                                    r"\b(?:your|initial|hidden|secret|original|system|the (?:system|hidden|initial|secret|original))\s+"
                                    r"(?:system )?(?:prompt|instructions|rules|message|guidelines|configuration)"),
    ("extract.verbatim", 0.6, r"\b(?:repeat|print|output)\b.{0,30}\b(?:above|everything|all text|words)\b.{0,30}"
                              r"\b(?:verbatim|word for word|exactly|starting with|beginning with)\b"),
    ("extract.other", 0.75, r"\b(?:zeig|gib|verrate|wiederhole|nenne)\w*\b.{0,30}\b(?:deinen?|die|den|das)\s+"
                            r"(?:system\s?prompt|systemnachricht|anweisungen|instruktionen)"
                            r"|\b(?:révèle|montre|affiche|répète|donne)\w*\b.{0,30}\b(?:ton|tes|le|les|vos|votre)\s+"
                            r"(?:prompt|instructions|consignes|message système)"
                            r"|\b(?:revela|muestra|muéstrame|repite|dime|dame)\w*\b.{0,30}\b(?:tu|tus|el|las|los)\s+"
                            r"(?:prompt|instrucciones|mensaje del sistema|indicaciones)"),
    # developer mode / jailbreak framing
    ("jailbreak.dev_mode", 0.8, r"\b(?:developer|debug|god|admin|maintenance|sudo|dev|jailbreak) mode\b.{0,80}"
                                r"\b(?:without|no (?:restrictions|filters|rules|limits)|ignore|never refuse|uncensored|"
                                r"unfiltered|confidential|must)"
                                r"|\byou are now in (?:developer|debug|god|admin|dev|sudo) mode\b"
                                r"|\bentwicklermodus\b|\bmode développeur\b|\bmodo desarrollador\b"),
    ("jailbreak.word", 0.45, r"\bjailbr(?:eak|oken)\b"),
    ("jailbreak.hypothetical", 0.35, r"\b(?:hypothetically|in a fictional world|for a novel|imagine)\b.{0,60}"
                                     r"\b(?:no (?:rules|restrictions|filters)|without (?:rules|restrictions|filters)|"
                                     r"illegal|bypass)"),
    ("jailbreak.refusal_suppress", 0.45, r"\b(?:never|do not|don't|must not) (?:refuse|say (?:no|you can't)|apologi[sz]e|"
                                         r"mention (?:that you|policies|guidelines)|add (?:warnings|disclaimers))"),
    # payload splitting / smuggling
    ("split.concat", 0.55, r"\b(?:concatenate|combine|join|append)\b.{0,40}\b(?:strings?|parts?|variables?|a\s*\+\s*b)"
                           r".{0,60}\b(?:execute|follow|run|do|answer|respond)"),
    ("split.vars", 0.55, r"\b[a-z]\s*=\s*['\"][^'\"]{1,40}['\"]\s*[;,]?\s*[a-z]\s*=\s*['\"][^'\"]{1,40}['\"].{0,80}"
                         r"\b(?:[a-z]\s*\+\s*[a-z])"),
    ("split.decode_exec", 0.55, r"\b(?:decode|base64|rot13|reverse)\b.{0,40}\b(?:and|then)\b.{0,20}"
                                r"\b(?:follow|execute|obey|do what it says|run)"),
    # untrusted channels speaking to the model
    ("untrusted.addresses_model", 0.5, r"\b(?:ai|assistant|language model|llm|chatbot|agent|ki|ia)\b[\w\s,]{0,20}"
                                       r"\b(?:must|should|shall|needs? to|are (?:instructed|required) to|will now)\b"
                                       r"|\b(?:note|attention|important|instruction)s? (?:to|for) (?:the )?"
                                       r"(?:ai|assistant|model|llm|agent)\b"),
    ("untrusted.exfiltrate", 0.6, r"\b(?:send|forward|post|upload|exfiltrate|email|transmit|include)\b.{0,60}"
                                  r"\b(?:conversation|chat history|user'?s? (?:data|password|credentials|email)|api keys?|"
                                  r"secrets?|tokens?)\b.{0,60}\b(?:to|at)\b.{0,20}(?:https?://|www\.|@|\burl\b)"
                                  r"|!\[[^\]]*\]\(https?://[^)]*(?:\?|&)[a-z]+=\{"),
    ("untrusted.hide_from_user", 0.5, r"\b(?:do not|don't|never) (?:tell|inform|mention (?:this )?to|reveal (?:this )?to|"
                                      r"show) (?:the )?user\b|\bwithout (?:telling|informing) the user\b"
                                      r"|\bsag(?:e)? dem (?:nutzer|benutzer) nicht\b|\bne dis pas à l'utilisateur\b"
                                      r"|\bno (?:le )?digas al usuario\b"),
    ("untrusted.when_read", 0.45, r"\b(?:when|if) (?:you|an ai|the (?:ai|assistant|model)) (?:read|reads|see|sees|"
                                  r"process|processes|summari[sz]e)s? (?:this|these)\b"),
    # Chinese
    ("zh.override", 0.85, r"(?:忽略|无视|忽视|不要理会|忘记|忘掉)[^。！？\n]{0,12}(?:之前|以上|先前|上面|前面|所有|全部|原来)?"
                          r"[^。！？\n]{0,8}(?:指令|指示|说明|规则|提示|要求)"),
    ("zh.extract", 0.75, r"(?:显示|输出|打印|告诉我|重复|泄露|给我)[^。！？\n]{0,10}(?:系统提示|系统指令|提示词|初始指令|隐藏指令)"),
    ("zh.role", 0.75, r"(?:开发者模式|越狱|没有任何限制|不受任何限制|无限制模式|扮演[^。！？\n]{0,10}没有限制)"),
)

#: stems that send the rules to a window (4+ characters; every rule needs at least one)
STEMS = (
    "ignor", "disregard", "forget", "overrid", "bypass", "vergiss", "vergessen", "missacht", "übergeh", "oublie",
    "néglig", "abstraction", "olvid", "omite", "descart", "caso omiso", "instruc", "anweis", "new rule", "new task",
    "real task", "from now", "ab jetzt", "partir de", "precedence", "supersede", "restrict", "limit", "filter",
    "censor", "ethic", "moral", "einschränk", "grenzen", "règles", "regeln", "reglas", "do anything", "no longer",
    "nicht mehr", "n'es plus", "ya no", "unalign", "evil ", "unzensiert", "<|im", "[inst", "<<sys", "[system",
    "prompt", "verbatim", "word for word", "zeig", "verrat", "wiederhol", "révèl", "montre", "répèt", "revela",
    "muestra", "muéstra", "repite", " mode", "modus", "jailbr", "hypothetic", "refuse", "apologi", "disclaimer",
    "concat", "decode", "base64", "rot13",
)
#: more stems for untrusted channels (text that addresses the model, exfiltration, hiding from the user)
UNTRUSTED_STEMS = (
    "the ai", " ai ", " ai:", " ai,", "assistant", "language model", "llm ", "chatbot", "agent", " ki ", " ki:",
    " ia ", "note to", "note for", "attention", "important", "exfiltr", "forward", "upload", "transmit", "send ",
    "the user", "dem nutzer", "dem benutzer", "utilisateur", "usuario", "when you", "if you", "the model",
)

GRAMS = Grams({INJECTION: STEMS, _UNTRUSTED_STEMS: UNTRUSTED_STEMS})
#: every family in one table: the scan the guard stage builds once per text and shares between detectors
GRAMS_ALL = Grams({INJECTION: STEMS, _UNTRUSTED_STEMS: UNTRUSTED_STEMS, NAME: NAME_STEMS, ADDRESS: ADDRESS_STEMS})

_COMPILED = tuple((rid, w, re.compile(p, re.S)) for rid, w, p in RULES)
_ZH = re.compile(r"[\u4e00-\u9fff]")
_ZH_RULES = tuple(r for r in _COMPILED if r[0].startswith("zh."))
_LATIN_RULES = tuple(r for r in _COMPILED if not r[0].startswith("zh.") and not r[0].startswith("untrusted."))
_UNTRUSTED_RULES = tuple(r for r in _COMPILED if r[0].startswith("untrusted."))

#: talking about injection (security docs, quoted examples): scores are damped
_META = re.compile(
    r"\b(?:prompt injection|injection attacks?|jailbreak attempts?|red[- ]team|attackers? (?:might|may|can|could|often|"
    r"use|write)|for example|e\.g\.|such as|detect(?:ing|s)?|defend(?:ing)? against|prevent(?:ing)?|mitigat\w+|"
    r"classif(?:y|ier)|phrases like|strings like|a (?:common|classic|typical) (?:attack|example|technique)|"
    r"promptinjektion|injection de prompt|inyección de prompt)\b"
)
_QUOTED = re.compile(r"[\"“”'‘’«»`]")

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u202a\u202b\u202c\u202d\u202e"
                                     "\u2066\u2067\u2068\u2069\u200e\u200f"), None)
_HOMOGLYPHS = str.maketrans({
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X",
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ɡ": "g", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "І": "I", "Ѕ": "S", "Ј": "J", "Ү": "Y", "ү": "y", "Һ": "h", "һ": "h", "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "к": "k",
})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_LEET_DIGITS = re.compile(r"[013457@$!]")
_DOMAIN_TAIL = re.compile(r"(?:\.[a-z0-9-]+)*\.[a-z]{2,24}\b")
_LEET_WORD = re.compile(r"\b(?=[a-z]*[0-9@$!][a-z0-9@$!]*\b)(?=[0-9@$!]*[a-z])[a-z0-9@$!]{4,}\b")
_COMMENT = re.compile(r"<!--(.*?)-->|\[//\]: # \((.*?)\)", re.S)
_B64 = re.compile(r"^[A-Za-z0-9+/]{16,}={0,2}$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2}){12,}$")


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    rules: tuple[str, ...]


def normalise(text: str) -> tuple[str, list[str]]:
    """The text as the rules read it, and what normalisation had to undo (``obfuscation`` evidence)."""
    undone: list[str] = []
    if not text.isascii():
        t = unicodedata.normalize("NFKC", text)
        t2 = t.translate(_ZERO_WIDTH)
        if len(t2) != len(t):
            undone.append("zero_width")
        t3 = t2.translate(_HOMOGLYPHS)
        if t3 != t2:
            undone.append("homoglyph")
        text = t3
    return text, undone


class InjectionDetector:
    """Scores text for prompt injection. ``detect(text, channel)`` -> :class:`Verdict`."""

    def detect(self, text: str, channel: str = "user", *, scan: Scan | None = None, _depth: int = 0) -> Verdict:
        """``scan``: a :class:`Scan` of ``text`` with the injection families (``GRAMS`` or ``GRAMS_ALL``)
        that another detector shares; used when normalisation leaves the text as it is."""
        if not text:
            return Verdict(0.0, ())
        norm, undone = normalise(text)
        if scan is None or norm is not text or scan.text is not text:
            scan = Scan(norm, GRAMS)
        text = norm
        low = scan.low
        fired: dict[str, float] = {}
        untrusted = channel in UNTRUSTED
        windows = self._windows(scan, untrusted)
        for a, b in windows:
            self._rules(low, a, b, fired, untrusted)
        if not text.isascii() and _ZH.search(text):
            for rid, w, pat in _ZH_RULES:
                if pat.search(low):
                    fired[rid] = w
        # leetspeak: words mixing letters and digits/symbols, decoded and scanned again
        if len(scan.digits) and _depth == 0:
            # words that decode to something else (not "de89", "mp3": nothing in them is leet)
            # nor e-mail addresses ("doe13@example6.com": personal data, not obfuscation)
            words = [(a, b) for a, b in _leet_words(scan) if _LEET_DIGITS.search(low, a, b)
                     and not ("@" in low[a:b] and _DOMAIN_TAIL.match(low, b))]
            if len(words) >= 2:  # decoded and scanned again around the leet words only
                sub: dict[str, float] = {}
                n = len(low)
                for first, last in clusters([a for a, _ in words], _LEET_REACH):
                    a = low.rfind(" ", 0, max(0, first - _LEET_REACH)) + 1
                    b = low.find(" ", min(n, last + 64 + _LEET_REACH))
                    for rid, w in self._rules_on(low[a : n if b < 0 else b].translate(_LEET), untrusted).items():
                        sub.setdefault(rid, w)
                if sub:
                    for rid, w in sub.items():
                        fired.setdefault(rid, w)
                    fired["obfuscation.leet"] = 0.2
        # hidden comments and encoded payloads are scanned as text too
        if _depth == 0:
            if ("<" in text and "<!--" in text) or ("[" in text and "[//]:" in text):
                for m in _COMMENT.finditer(text):
                    inner = self.detect(m.group(1) or m.group(2) or "", channel, _depth=1)
                    if inner.score:
                        fired.update(dict.fromkeys(inner.rules, 0.5))
                        fired["obfuscation.hidden_comment"] = 0.5
            for a, b in scan.runs(20):
                run = text[a:b]
                decoded = _decode(run)
                if decoded:
                    inner = self.detect(decoded, channel, _depth=1)
                    if inner.score:
                        fired.update(dict.fromkeys(inner.rules, 0.5))
                        fired["obfuscation.encoded"] = 0.55
        if not fired:
            return Verdict(0.0, ())
        if undone:
            for u in undone:
                fired[f"obfuscation.{u}"] = 0.25
        miss = 1.0
        for w in fired.values():
            miss *= 1.0 - min(0.99, w * CHANNEL_WEIGHT.get(channel, 1.0))
        score = 1.0 - miss
        if not untrusted and _META.search(low) and _QUOTED.search(low):
            score *= 0.45  # talks about injection, quoting an example: a tutorial, a question, a report
        return Verdict(round(min(1.0, score), 4), tuple(sorted(fired)))

    @staticmethod
    def _windows(scan: Scan, untrusted: bool) -> list[tuple[int, int]]:
        hits = scan.grams.get(INJECTION)
        if untrusted and _UNTRUSTED_STEMS in scan.grams:
            hits = sorted((hits or []) + scan.grams[_UNTRUSTED_STEMS])
        if not hits:
            return []
        n = len(scan.low)
        return [(max(0, a - 100), min(n, b + 140)) for a, b in clusters(hits, 160)]

    @staticmethod
    def _rules(low: str, a: int, b: int, fired: dict[str, float], untrusted: bool) -> None:
        for rid, w, pat in _LATIN_RULES:
            if rid not in fired and pat.search(low, a, b):
                fired[rid] = w
        if untrusted:
            for rid, w, pat in _UNTRUSTED_RULES:
                if rid not in fired and pat.search(low, a, b):
                    fired[rid] = w

    def _rules_on(self, low: str, untrusted: bool) -> dict[str, float]:
        fired: dict[str, float] = {}
        scan = Scan(low, GRAMS)
        for a, b in self._windows(scan, untrusted):
            self._rules(low, a, b, fired, untrusted)
        return fired


_LEET_REACH = 300  # characters around leet words that are decoded and scanned again
_LEET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789@$!")


def _leet_words(scan: Scan) -> list[tuple[int, int]]:
    """The spans ``_LEET_WORD`` finds in ``scan.low``, searched only in the runs where a letter
    touches a digit or ``@$!`` (every such word has one: :meth:`Scan.touch`)."""
    touch = scan.touch()
    if not touch:
        return []
    low, n = scan.low, len(scan.low)
    spans: set[tuple[int, int]] = set()
    done = -1
    for p in touch:
        if p < done:
            continue
        a = p
        while a > 0 and low[a - 1] in _LEET_CHARS:
            a -= 1
        b = p + 2
        while b < n and low[b] in _LEET_CHARS:
            b += 1
        done = b
        spans.update(m.span() for m in _LEET_WORD.finditer(low, a, min(n, b + 1)))
    return sorted(spans)


def _decode(run: str) -> str | None:
    """A base64 or hex run decoded to mostly printable text, else None."""
    raw: bytes | None = None
    if _HEX.match(run):
        try:
            raw = binascii.unhexlify(run)
        except binascii.Error:
            raw = None
    elif _B64.match(run) and len(run) % 4 == 0:
        try:
            raw = base64.b64decode(run, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if not raw:
        return None
    try:
        out = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(c.isprintable() or c.isspace() for c in out)
    return out if printable >= 0.9 * len(out) and " " in out else None


__all__ = ["InjectionDetector", "Verdict", "RULES", "STEMS", "GRAMS", "GRAMS_ALL", "normalise", "CHANNEL_WEIGHT", "UNTRUSTED"]
