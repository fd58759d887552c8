"""Correctness guards for semantic cache hits: pure, I/O-free checks that two prompts ask the same thing.

Embedding distance alone cannot decide a hit: every embedder we tried puts "from A to B" and "from B to
A" within 0.005 of each other, and a bag-of-words model like wordllama puts them at exactly 0. So a
semantic candidate is served only if :func:`check_guards` passes. Each guard is on by default and can be
turned off per route (``enabled={"entities": False}``):

``numbers``    equal multisets of numbers: integers, decimals, thousands separators, percentages,
               negative numbers, number words (one..twenty, tens, hundred, thousand ...) and ordinals
               ("15% of 80" is not "15% of 90"; "twelve percent" is "12%"). Numbers inside dates and
               times are the ``dates`` guard's.
``dates``      equal multisets of dates, years, months, days, weekdays, times of day, quarters, seasons
               and relative days ("tomorrow", "next week"); "July 4th, 1976" is "1976-07-04".
``quoted``     every quoted string or code span of one prompt ('...', "...", `...`, fenced blocks)
               appears in the other (quoted or not, case-insensitively).
``negation``   the same number of negation cues (not, no, never, n't, without, cannot, none, nor ...).
``role_swap``  no two shared words trade places across a relational word ("from A to B" / "from B to
               A", "X before Y" / "Y before X", "faster than"), and no pure swap of two shared words
               around a third ("Does Google own YouTube" / "Does YouTube own Google").
``opposites``  no word whose opposite is in the other prompt but not in its own (buy/sell, before/after,
               open/close, maximum/minimum, import/export, ... see :mod:`.lexicon`; also un-/non-
               prefixes: safe/unsafe, null/non-null). Extend with :func:`register_opposites`.
``word_swap``  not the same sentence but for one or two content words ("How do I sort a list" / "How
               do I reverse a list"; lowercase words no other guard sees), unless the words are
               synonyms or inflections (see :mod:`.word_swap`; extend with ``register_synonyms``).
``entities``   the same names and identifiers: capitalised words not at the start of a sentence,
               acronyms, dotted/underscored/camelCase identifiers ("Paris" is not "Rome"). A word that
               is capitalised only because it starts a sentence counts only when the other prompt
               brings a name of its own ("Tesla stock" / "Nvidia stock").

Normalisation: Unicode (NFKC, curly quotes and dashes), case, punctuation and contractions ("doesn't"
-> "does not", "Australia's" -> "Australia"). The analysis of a text is memoised (an LRU of 2,048
texts), so checking one query against several candidates analyses it once; a guard's comparison then
costs a few microseconds.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property, lru_cache

from ..errors import ConfigError
from .lexicon import DEFAULT_OPPOSITES, Opposites, stem
from .word_swap import register_synonyms, swapped_words

__all__ = [
    "GUARD_NAMES", "GuardResult", "check_guards", "register_opposites", "register_synonyms", "analyze", "Opposites",
]

GUARD_NAMES: tuple[str, ...] = (
    "numbers", "dates", "quoted", "negation", "role_swap", "opposites", "entities", "word_swap",
)


@dataclass(frozen=True, slots=True)
class GuardResult:
    """The verdict on one (query, cached prompt) pair. ``passed`` is true when no enabled guard failed;
    ``passed_guards`` and ``failed`` name the enabled guards in :data:`GUARD_NAMES` order (disabled
    guards are in neither)."""

    passed: bool
    passed_guards: tuple[str, ...]
    failed: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.passed


def register_opposites(pairs: Iterable[tuple[str, str]]) -> None:
    """Add opposite pairs (words or short phrases) to the process-wide default lexicon, e.g.
    ``register_opposites([("long", "short"), ("check in", "check out")])``. For a per-route lexicon
    pass ``opposites=`` to :func:`check_guards` instead."""
    DEFAULT_OPPOSITES.add(pairs)


def check_guards(
    query: str,
    cached: str,
    enabled: Mapping[str, bool] | None = None,
    *,
    opposites: Opposites | None = None,
) -> GuardResult:
    """Run every enabled guard on the incoming ``query`` and a ``cached`` prompt. ``enabled`` maps guard
    names to on/off; names left out stay on; an unknown name is a :class:`ConfigError`."""
    if enabled:
        unknown = [k for k in enabled if k not in _CHECKS]
        if unknown:
            raise ConfigError(f"unknown cache guard(s) {unknown}; known: {list(GUARD_NAMES)}")
    a, b = analyze(query), analyze(cached)
    lex = DEFAULT_OPPOSITES if opposites is None else opposites
    ok: list[str] = []
    bad: list[str] = []
    for name in GUARD_NAMES:
        if enabled and not enabled.get(name, True):
            continue
        check = _CHECKS[name]
        passed = check(a, b, lex) if name == "opposites" else check(a, b)
        (ok if passed else bad).append(name)
    return GuardResult(not bad, tuple(ok), tuple(bad))


# -- normalisation ------------------------------------------------------------------------------

_CHAR_MAP = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2033": '"', "\u00ab": '"', "\u00bb": '"', "\u2013": " - ", "\u2014": " - ", "\u2212": "-",
    "\u00a0": " ",
})
_CANNOT_RE = re.compile(r"\b(can)not\b", re.I)
_CONTRACTIONS = (
    (re.compile(r"\b(ca)n't\b", re.I), r"\1n not"),
    (re.compile(r"\b(wo)n't\b", re.I), "will not"),
    (re.compile(r"\b(sha)n't\b", re.I), r"\1ll not"),
    (re.compile(r"\b(ai)n't\b", re.I), "is not"),
    (_CANNOT_RE, r"\1 not"),
    (re.compile(r"(?<=\w)n't\b", re.I), " not"),
    (re.compile(r"(?<=\w)'re\b", re.I), " are"),
    (re.compile(r"(?<=\w)'m\b", re.I), " am"),
    (re.compile(r"(?<=\w)'ll\b", re.I), " will"),
    (re.compile(r"(?<=\w)'ve\b", re.I), " have"),
    (re.compile(r"(?<=\w)'d\b", re.I), " would"),
    (re.compile(r"(?<=\w)'s\b", re.I), ""),
    (re.compile(r"(?<=s)'(?=\s|$|[,.;:!?])"), ""),
)
_WORD_RE = re.compile(r"[^\W\d_]+|\d+(?:\.\d+)?")
_NEG_PREFIX_RE = re.compile(r"\b(non|un)-(?=[a-z])")
_WS_RE = re.compile(r"\s+")
_QUOTE_RES = (
    re.compile(r"```(?:[\w+.-]*\n)?(.*?)```", re.S),
    re.compile(r"`([^`\n]+)`"),
    re.compile(r'"([^"\n]+)"'),
    re.compile(r"(?<![\w'])'([^'\n]+?)'(?![\w'])"),
)
_QUOTE_CHARS = str.maketrans({'"': " ", "`": " ", "'": " "})


def _expand(text: str) -> str:
    if "'" not in text:
        return _CANNOT_RE.sub(r"\1 not", text)
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    return text


def _squash(text: str) -> str:
    return _WS_RE.sub(" ", text.casefold().translate(_QUOTE_CHARS)).strip()


def _find_word(needle: str, hay: str) -> bool:
    """``needle`` occurs in ``hay`` with no letter or digit glued to either end."""
    if not needle:
        return True
    start = hay.find(needle)
    n = len(needle)
    while start != -1:
        before = hay[start - 1] if start else " "
        after = hay[start + n] if start + n < len(hay) else " "
        if not before.isalnum() and not after.isalnum():
            return True
        start = hay.find(needle, start + 1)
    return False


# -- vocabularies -------------------------------------------------------------------------------

_STOPWORDS = frozenset("""
a an the and or but if then else so as at in on of for with about into onto from to by than before after
over under above below between among through during without within via per across along around toward towards
is are was were be been being am do does did done doing have has had having will would shall should can could
may might must ought i me my mine myself you your yours yourself we us our ours they them their theirs he him
his she her hers it its itself this that these those there here what which who whom whose when where why how
whether not no nor never any some all each every both either neither other another such same more most
very too just only also even still again ever really quite rather please thanks thank hi hello hey ok okay
up down out off s t way get got give me let make tell explain show write help want need like use using
""".split())
#: stop words that still name the action of a question ("is it safe to use / eat sushi"): kept as content
#: words by the word-swap guard
_SWAP_KEEP = frozenset(("use", "using"))
_MARKERS = frozenset("""
to from into onto than before after by over under above below toward towards per then minus instead
""".split())
# "X or Y" / "Y or X": a swap across these does not change the question
_SYMMETRIC = frozenset("and or nor vs versus with between plus either both".split())
_NEGATIONS = frozenset("not no never without none nobody nothing nowhere neither nor".split())
_SENTENCE_STARTERS = frozenset("""
explain write give list show tell summarize summarise translate convert compare describe create generate
make find calculate compute define recommend suggest help please rewrite fix draft compose book schedule set
get add remove delete install check name provide outline identify plan build design implement is are was
were do does did can could should would will shall may might must what which who whom whose when where why
how whether if in on at for to from with by of the a an my our your their his her its this that these those
there here i we you they he she it yes no not hey hi hello thanks thank ok okay so and but or also then now
just quick simple best good new top cheap easy fast anyone someone any some all every each other another
one two three four five six seven eight nine ten first second third next last let lets use using run running
answer say create tips ways steps reasons ideas examples
""".split())
_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12, "jan": 1, "feb": 2, "mar": 3, "apr": 4,
    "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12,
}
_WEEKDAYS = {
    "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
    "saturday": "sat", "sunday": "sun", "mon": "mon", "tue": "tue", "tues": "tue", "wed": "wed",
    "thu": "thu", "thur": "thu", "thurs": "thu", "fri": "fri", "sat": "sat", "sun": "sun",
}
_SEASONS = {"spring": "spring", "summer": "summer", "autumn": "autumn", "fall": "autumn", "winter": "winter"}
_ENTITY_SKIP = frozenset(
    {"i", "am", "pm", "a.m", "p.m", "ok", "okay", "faq", "eli5", "tldr", "asap", "fyi", "btw", "imo", "e.g",
     "i.e", "etc", "vs", "aka"}
    | set(_MONTHS) | set(_WEEKDAYS) | set(_SEASONS)
)

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000, "trillion": 1_000_000_000_000}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50, "hundredth": 100, "thousandth": 1000,
}
_ONE_NOT_NUMBER_BEFORE = frozenset("which the this that any every no some each another only someone anyone a".split())
_ONE_NOT_NUMBER_AFTER = frozenset("of another or by is are that who which thing".split())
_SECOND_ORDINAL_AFTER = frozenset("the its his her their my your our every".split())

# -- dates --------------------------------------------------------------------------------------

_MONTH_ALT = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATE_RES = (
    ("iso", re.compile(r"(?<![\d.])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d])")),
    ("ymd", re.compile(r"(?<![\d.])(\d{4})/(\d{1,2})/(\d{1,2})(?![\d])")),
    ("dmy", re.compile(r"(?<![\d.])(\d{1,2})[/.](\d{1,2})[/.](\d{4}|\d{2})(?![\d.])")),
    ("time12", re.compile(r"(?<![\d:.])(\d{1,2})(?::(\d{2}))?(?::\d{2})?\s*([ap])\.?\s?m\b\.?", re.I)),
    ("time24", re.compile(r"(?<![\d:.])(\d{1,2}):(\d{2})(?::\d{2})?(?![\d:])")),
    ("oclock", re.compile(r"(?<![\d.])(\d{1,2})\s*o'?clock\b", re.I)),
    ("month", re.compile(
        rf"(?:(?<![\d.]){_DAY}\s+(?:of\s+)?)?\b({_MONTH_ALT})\b\.?"
        rf"(?:\s+{_DAY}\b(?![:\d]))?(?:,?\s+(\d{{4}})\b)?", re.I)),
)
_YEAR_RE = re.compile(r"(?<![\d,.$\u20ac\u00a3#-])(1\d{3}|20\d{2}|21\d{2})(s)?(?![\d%]|[.,]\d)(?:\s+([A-Za-z]+))?")
_YEAR_SUFFIX_OK = frozenset("ad bc bce ce and or to through until".split())
_RELATIVE_RE = re.compile(
    r"\b(today|tonight|tomorrow|yesterday)\b|\b(this|next|last|coming|previous)\s+"
    r"(week|weekend|month|year|quarter|morning|afternoon|evening|night|monday|tuesday|wednesday|thursday|"
    r"friday|saturday|sunday|spring|summer|autumn|fall|winter|semester)\b",
    re.I,
)
_WEEKDAY_RE = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?\b", re.I)
_WEEKDAY_ABBR_RE = re.compile(rf"\b(Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)\b\.?,?\s+(?=\d|(?i:{_MONTH_ALT})\b)")
_QUARTER_RE = re.compile(r"\b[Qq]([1-4])\b")
_SEASON_RE = re.compile(r"\b(spring|summer|autumn|fall|winter)\b", re.I)
_CONTEXT_SEASONS = frozenset({"spring", "fall"})  # also a framework, a coil, a verb: need "in", "this" ...
_SEASON_CONTEXT = frozenset("in this next last the during early late mid every each of until since by".split())
_AMBIGUOUS_MONTHS = frozenset({"may", "march"})
_MONTH_CONTEXT = frozenset("in of during since until till by before after early late mid next last this every "
                           "from through".split())
_DATE_HINT = re.compile(
    r"\d|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun|today|tonight|"
    r"tomorrow|yesterday|this|next|last|coming|previous|noon|midday|midnight|spring|summer|autumn|fall|"
    r"winter|q[1-4]\b)", re.I)
_NOON_RE = re.compile(r"\b(noon|midday|midnight)\b", re.I)

# -- numbers ------------------------------------------------------------------------------------

_NUM_RE = re.compile(
    r"(?<![\w.])(-)?[$\u20ac\u00a3\u00a5]?(\d[\d,]*(?:\.\d+)*)"
    r"(\s?%|\s?percent\b|\s?per\s?cent\b|k\b|st\b|nd\b|rd\b|th\b)?"
)
_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+")
_PERCENT_AFTER_RE = re.compile(r"\s?(?:%|percent\b|per\s?cent\b)")
_TOKEN_RE = re.compile(r"[a-z]+|[^\sa-z]")
_NUMBER_WORD_HINT = re.compile(
    r"\b(?:" + "|".join(sorted({*_UNITS, *_TENS, *_SCALES, *_ORDINALS, "hundred", "dozen"}, key=len, reverse=True))
    + r")\b"
)


def _canon_number(digits: str, frac: str = "") -> str:
    """Leading zeros go, written decimals stay: '007' -> '7', '3.10' stays '3.10' (a version, maybe)."""
    return str(int(digits)) + frac


def _thousand_times(value: str) -> str:
    v = Decimal(value) * 1000
    return str(int(v)) if v == v.to_integral_value() else format(v.normalize(), "f")


def _parse_numeral(raw: str) -> list[str]:
    """'300,000' -> ['300000']; '1,2,3' -> ['1', '2', '3']; '6.50' -> ['6.5']; '1.2.3' -> ['1.2.3']."""
    if "," in raw:
        if _THOUSANDS_RE.fullmatch(raw.split(".", 1)[0]):
            head, _, tail = raw.partition(".")
            return [_canon_number(head.replace(",", ""), "." + tail if tail else "")]
        return [x for part in raw.split(",") if part for x in _parse_numeral(part)]
    if raw.count(".") > 1:
        return [raw]
    head, _, tail = raw.partition(".")
    return [_canon_number(head, "." + tail if tail else "")]


# -- the analysed text --------------------------------------------------------------------------


class _Text:
    """A prompt analysed for the guards; each feature is computed on first use."""

    def __init__(self, text: str) -> None:
        self.raw = text
        self.norm = unicodedata.normalize("NFKC", text).translate(_CHAR_MAP)
        self.expanded = _expand(self.norm)
        self.lower = _NEG_PREFIX_RE.sub(r"\1", self.expanded.lower())

    @cached_property
    def search(self) -> str:
        return _squash(self.norm)

    @cached_property
    def tokens(self) -> frozenset[str]:
        """Lower-cased identifier-like tokens and their dotted parts (fast entity look-ups)."""
        toks = set(_ENTITY_RE.findall(self.lower))
        parts = [part for t in toks if "." in t for part in t.split(".")]
        return frozenset(toks.union(parts))

    @cached_property
    def words(self) -> tuple[str, ...]:
        return tuple(_WORD_RE.findall(self.lower))

    @cached_property
    def stems(self) -> tuple[str, ...]:
        return tuple(stem(w) for w in self.words)

    @cached_property
    def content(self) -> tuple[str, ...]:
        """Stems of the content words (stop words dropped), in order (for the word-swap guard)."""
        return tuple(s for w, s in zip(self.words, self.stems) if w not in _STOPWORDS or w in _SWAP_KEEP)

    @cached_property
    def keys(self) -> frozenset[str]:
        s = self.stems
        grams = set(s)
        grams.update(f"{s[i]} {s[i + 1]}" for i in range(len(s) - 1))
        grams.update(f"{s[i]} {s[i + 1]} {s[i + 2]}" for i in range(len(s) - 2))
        return frozenset(grams)

    @cached_property
    def negated(self) -> tuple[tuple[str, str], ...]:
        """(negated form, base) stems for un-/non- words: 'unsafe' -> ('unsaf', 'saf')."""
        out = []
        for w in self.words:
            if w.startswith("non") and len(w) >= 6 and not w.startswith(("none", "nonce", "nonsens")):
                out.append((stem(w), stem(w[3:])))
            elif (w.startswith("un") and len(w) >= 5 and not w.startswith(("under", "uni", "unless", "until",
                                                                               "unto", "uncle"))):
                out.append((stem(w), stem(w[2:])))
        return tuple(out)

    @cached_property
    def quoted(self) -> tuple[str, ...]:
        if not any(c in self.norm for c in "'\"`"):
            return ()
        found = []
        for pattern in _QUOTE_RES:
            for m in pattern.finditer(self.norm):
                q = _squash(m.group(1))
                if q:
                    found.append(q)
        return tuple(found)

    @cached_property
    def _dates(self) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
        text = self.expanded
        if not _DATE_HINT.search(text):
            return (), ()
        items: list[str] = []
        spans: list[tuple[int, int]] = []
        taken = bytearray(len(text))

        def free(s: int, e: int) -> bool:
            return not any(taken[s:e])

        def take(s: int, e: int, mask: bool = True) -> None:
            taken[s:e] = b"\x01" * (e - s)
            if mask:
                spans.append((s, e))

        if any(c.isdigit() for c in text):
            for kind, pattern in _DATE_RES[:-1]:
                for m in pattern.finditer(text):
                    if not free(*m.span()):
                        continue
                    g = m.groups()
                    if kind in ("iso", "ymd"):
                        items += [f"year:{int(g[0])}", f"month:{int(g[1])}", f"day:{int(g[2])}"]
                    elif kind == "dmy":
                        items.append(f"date:{int(g[0])}/{int(g[1])}/{int(g[2])}")
                    elif kind == "time12":
                        h = int(g[0]) % 12 + (12 if g[2].lower() == "p" else 0)
                        items.append(f"time:{h:02d}:{int(g[1] or 0):02d}")
                    elif kind == "time24":
                        items.append(f"time:{int(g[0]):02d}:{int(g[1]):02d}")
                    else:  # o'clock
                        items.append(f"time:{int(g[0]) % 12:02d}:00")
                    take(*m.span())
        for m in _DATE_RES[-1][1].finditer(text):
            if not free(*m.span(2)):
                continue
            day1, month, day2, year = m.groups()
            word = month.lower()
            has_number = bool(day1 or day2 or year)
            if not has_number:
                prev = text[: m.start(2)].split()[-1:]
                prev_word = prev[0].lower().strip(",.;:") if prev else ""
                capital = month[0].isupper() and not _sentence_initial(text, m.start(2))
                if word in _AMBIGUOUS_MONTHS and not (capital or prev_word in _MONTH_CONTEXT):
                    continue
                if len(word) <= 4 and word not in ("may", "june", "july") and not month[0].isupper():
                    continue
                if word == "may" and not (prev_word in _MONTH_CONTEXT or capital):
                    continue
            items.append(f"month:{_MONTHS[word]}")
            day = day1 or day2
            if day:
                items.append(f"day:{int(day)}")
            if year:
                items.append(f"year:{int(year)}")
            take(*(m.span() if has_number else m.span(2)), mask=has_number)
        for m in _YEAR_RE.finditer(text):
            if not free(m.start(1), m.end(1)):
                continue
            follower = (m.group(3) or "").lower()
            if m.group(2):
                items.append(f"decade:{m.group(1)}")
            elif not follower or follower in _YEAR_SUFFIX_OK:
                items.append(f"year:{int(m.group(1))}")
        for m in _RELATIVE_RE.finditer(text):
            if m.group(1):
                items.append(f"rel:{m.group(1).lower()}")
            else:
                items.append(f"rel:{m.group(2).lower()}-{_SEASONS.get(m.group(3).lower(), m.group(3).lower())}")
        for m in _WEEKDAY_RE.finditer(text):
            items.append(f"weekday:{_WEEKDAYS[m.group(1).lower()]}")
        for m in _WEEKDAY_ABBR_RE.finditer(text):
            if not _sentence_initial(text, m.start()):
                items.append(f"weekday:{_WEEKDAYS[m.group(1).lower()]}")
        for m in _QUARTER_RE.finditer(text):
            items.append(f"quarter:{m.group(1)}")
        for m in _NOON_RE.finditer(text):
            items.append("time:00:00" if m.group(1).lower() == "midnight" else "time:12:00")
        for m in _SEASON_RE.finditer(text):
            word = m.group(1).lower()
            prev = text[: m.start()].split()[-1:]
            if word not in _CONTEXT_SEASONS or (prev and prev[0].lower() in _SEASON_CONTEXT):
                items.append(f"season:{_SEASONS[word]}")
        return tuple(sorted(items)), tuple(spans)

    @cached_property
    def dates(self) -> tuple[str, ...]:
        return self._dates[0]

    @cached_property
    def numbers(self) -> tuple[str, ...]:
        text = self.expanded
        spans = self._dates[1]
        if spans:
            chars = list(text)
            for s, e in spans:
                chars[s:e] = " " * (e - s)
            text = "".join(chars)
        low = text.lower()
        out: list[str] = []
        if any(c.isdigit() for c in low):
            for m in _NUM_RE.finditer(low):
                neg, raw, suffix = m.groups()
                values = _parse_numeral(raw.rstrip(","))
                suffix = (suffix or "").strip()
                if suffix == "k":
                    values[-1] = _thousand_times(values[-1])
                elif suffix in ("st", "nd", "rd", "th"):
                    values[-1] = "#" + values[-1]
                elif suffix:
                    values[-1] += "%"
                if neg:
                    values[0] = "-" + values[0]
                out += values
        out += _number_words(low)
        return tuple(sorted(out))

    @cached_property
    def negations(self) -> int:
        words = self.words
        count = 0
        for i, w in enumerate(words):
            if w in _NEGATIONS:
                nxt = words[i + 1] if i + 1 < len(words) else ""
                prev = words[i - 1] if i else ""
                if (w == "not" and nxt == "only") or (w == "no" and (nxt in ("matter", "doubt") or "yes" in
                                                                     (prev, nxt))):
                    continue
                count += 1
        return count

    @cached_property
    def items(self) -> tuple[tuple[str, bool, int], ...]:
        """(stem, is a relational marker, word index) of content words and relational markers, in order
        (for the role-swap guard)."""
        out = []
        for i, (w, s) in enumerate(zip(self.words, self.stems)):
            if w in _MARKERS:
                out.append((w, True, i))
            elif w not in _STOPWORDS:
                out.append((s, False, i))
        return tuple(out)

    @cached_property
    def _entities(self) -> tuple[frozenset[str], frozenset[str]]:
        text = self.expanded
        letters = [c for c in text if c.isalpha()]
        shouting = sum(c.isupper() for c in letters) > len(letters) * 0.6
        strong: set[str] = set()
        weak: set[str] = set()
        for m in _ENTITY_RE.finditer(text):
            tok = m.group(0).rstrip(".")
            low = tok.lower()
            if low in _ENTITY_SKIP or (low[-1:] == "s" and low[:-1] in _ENTITY_SKIP):  # "Sundays"
                continue
            ident = ("_" in tok or "." in tok or tok.endswith(("++", "#")) or any(c.isdigit() for c in tok)
                     or _CAMEL_RE.search(tok) is not None)
            if ident:
                strong.add(low)
                continue
            if shouting or not tok[0].isupper():
                continue
            if tok.isupper() and len(tok) >= 2:
                strong.add(low)
            elif _sentence_initial(text, m.start()):
                if low not in _SENTENCE_STARTERS and low not in _STOPWORDS:
                    weak.add(low)
            else:
                strong.add(low)
        return frozenset(strong), frozenset(weak - strong)


_ENTITY_RE = re.compile(r"(?<![\w.])[^\W\d_][\w]*(?:(?:\.|::)[^\W\d_][\w]*)*(?:\+\+|#)?")
_CAMEL_RE = re.compile(r"[a-z][A-Z]")
_OPENERS = "\"'`([{*-#>\u2022 \t"


def _sentence_initial(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in _OPENERS:
        i -= 1
    return i < 0 or text[i] in ".!?:;\n"


def _number_words(low: str) -> list[str]:
    """Numbers written as words: 'twenty-five' -> '25', 'three hundred' -> '300', 'the third' -> '#3',
    'twelve percent' -> '12%'. 'one' as a pronoun ("which one") and 'second' as a unit are skipped."""
    if not _NUMBER_WORD_HINT.search(low):
        return []
    out: list[str] = []
    tokens = [(m.group(0), m.start(), m.end()) for m in _TOKEN_RE.finditer(low)]
    total = current = 0
    active = False
    last_kind = ""
    end = 0

    def flush() -> None:
        nonlocal total, current, active, last_kind
        if active:
            value = str(total + current)
            if _PERCENT_AFTER_RE.match(low, end):
                value += "%"
            out.append(value)
        total = current = 0
        active = False
        last_kind = ""

    n = len(tokens)
    for i, (tok, _s, e) in enumerate(tokens):
        prev = tokens[i - 1][0] if i else ""
        nxt = tokens[i + 1][0] if i + 1 < n else ""
        if tok in _UNITS:
            if tok == "one" and not active and (prev in _ONE_NOT_NUMBER_BEFORE or nxt in _ONE_NOT_NUMBER_AFTER):
                flush()
                continue
            if last_kind == "unit" or (last_kind == "tens" and _UNITS[tok] >= 10):
                flush()
            current += _UNITS[tok]
            active, last_kind, end = True, "unit", e
        elif tok in _TENS:
            if last_kind in ("unit", "tens"):
                flush()
            current += _TENS[tok]
            active, last_kind, end = True, "tens", e
        elif tok == "hundred" and (active or prev == "a"):
            current = (current or 1) * 100
            active, last_kind, end = True, "scale", e
        elif tok in _SCALES and (active or prev == "a"):
            total += (current or 1) * _SCALES[tok]
            current = 0
            active, last_kind, end = True, "scale", e
        elif tok == "dozen":
            flush()
            out.append("12")
        elif tok in _ORDINALS:
            if tok == "second" and prev not in _SECOND_ORDINAL_AFTER:
                flush()
                continue
            if tok == "first" and (nxt in ("", ",", ".", ";", "!", "?") or prev == "at"
                                   or (nxt == "of" and i + 2 < n and tokens[i + 2][0] == "all")):
                flush()
                continue
            value = _ORDINALS[tok]
            if active and last_kind in ("tens", "scale"):
                value += total + current
            total = current = 0
            active = False
            last_kind = ""
            out.append(f"#{value}")
        elif tok == "-" and active:
            continue
        elif tok == "and" and last_kind == "scale":
            continue
        else:
            flush()
    flush()
    return out


@lru_cache(maxsize=2048)
def analyze(text: str) -> _Text:
    """The memoised analysis of one prompt (features are computed lazily, per guard)."""
    return _Text(text)


# -- the guards ---------------------------------------------------------------------------------


def _numbers(a: _Text, b: _Text) -> bool:
    return a.numbers == b.numbers


def _dates(a: _Text, b: _Text) -> bool:
    return a.dates == b.dates


def _quoted(a: _Text, b: _Text) -> bool:
    return all(_find_word(q, b.search) for q in a.quoted) and all(_find_word(q, a.search) for q in b.quoted)


def _negation(a: _Text, b: _Text) -> bool:
    return a.negations == b.negations


def _role_swap(a: _Text, b: _Text) -> bool:
    """False when shared words trade places across a shared relational word (x r y -> y r x), or when
    the shared words are the same sequence but for two non-adjacent ones that swapped places."""
    kb: dict[tuple[str, int], int] = {}
    seen: dict[str, int] = {}
    for i, (s, _m, _w) in enumerate(b.items):
        k = seen.get(s, 0)
        seen[s] = k + 1
        kb[(s, k)] = i
    seen = {}
    shared: list[tuple[int, bool]] = []
    where: list[int] = []
    for s, m, w in a.items:
        k = seen.get(s, 0)
        seen[s] = k + 1
        pos = kb.get((s, k))
        if pos is not None:
            shared.append((pos, m))
            where.append(w)
    n = len(shared)
    if n < 3:
        return True
    # x r y in a, y r x in b: some content word before the marker r in a comes after it in b, and some
    # content word after r in a comes before it in b (prefix max / suffix min keep this linear)
    suffix_min = [n] * (n + 1)
    for j in range(n - 1, -1, -1):
        p, m = shared[j]
        suffix_min[j] = suffix_min[j + 1] if m else min(suffix_min[j + 1], p)
    prefix_max = -1
    for j, (pj, marker) in enumerate(shared):
        if marker and prefix_max > pj and suffix_min[j + 1] < pj:
            return False
        if not marker:
            prefix_max = max(prefix_max, pj)
    order = sorted(range(n), key=lambda i: shared[i][0])
    moved = [i for i in range(n) if order[i] != i]
    if len(moved) == 2:
        i, j = moved
        symmetric = any(w in _SYMMETRIC for w in a.words[where[i] + 1: where[j]])
        if j - i >= 2 and not shared[i][1] and not shared[j][1] and not symmetric:
            return False
    return True


def _opposites(a: _Text, b: _Text, lex: Opposites) -> bool:
    return _no_opposite(a, b, lex) and _no_opposite(b, a, lex)


def _no_opposite(a: _Text, b: _Text, lex: Opposites) -> bool:
    ka, kb = a.keys, b.keys
    for key in ka:
        opp = lex.get(key)
        if opp:
            for o in opp:
                if o in kb and not (o in ka and key in kb):
                    return False
    for neg, base in a.negated:
        if base in kb and neg not in kb and base not in ka:
            return False
    return True


def _mentions(t: _Text, entity: str) -> bool:
    return entity in t.tokens or _find_word(entity, t.search)


def _entities(a: _Text, b: _Text) -> bool:
    sa, wa = a._entities
    sb, wb = b._entities
    if any(not _mentions(b, e) for e in sa) or any(not _mentions(a, e) for e in sb):
        return False
    a_extra = any(not _mentions(b, e) for e in wa)
    b_extra = any(not _mentions(a, e) for e in wb)
    return not (a_extra and b_extra)


def _word_swap(a: _Text, b: _Text) -> bool:
    return not swapped_words(a.content, b.content)


_CHECKS = {
    "numbers": _numbers,
    "dates": _dates,
    "quoted": _quoted,
    "negation": _negation,
    "role_swap": _role_swap,
    "opposites": _opposites,
    "entities": _entities,
    "word_swap": _word_swap,
}
