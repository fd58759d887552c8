"""The ``word_swap`` guard: two prompts that are the same sentence but for one or two content words.

"How do I sort a list in Python?" and "How do I reverse a list in Python?" embed within 0.1 of each
other with a bag-of-words embedder, and no other guard sees lowercase words. When the content words of
two prompts (stop words and numbers dropped, inflections folded: ``sort``/``sorting``/``sorted``) are
the same sequence but for one run of one or two words replaced by one or two others ("sleeping bag" /
"jacket"), that run is what the question is about, so the prompts ask different things unless the two
runs share a synonym (:data:`SYNONYMS`: delete/remove, symptom/sign, ...). Prompts that differ in more
than that — words added or dropped, reordered, reworded — are left to the distance threshold and the
other guards: a paraphrase rarely keeps every content word but one, and one that only adds a word
("the capital city of France") must still hit.

Pure and I/O-free; extend the synonyms with :func:`register_synonyms`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .lexicon import stem

# fmt: off
#: groups of words a question may use interchangeably (each word matched by its stem)
DEFAULT_SYNONYMS: tuple[tuple[str, ...], ...] = (
    # actions
    ("delete", "remove", "erase"), ("create", "make", "build", "generate"), ("copy", "duplicate", "clone"),
    ("merge", "combine", "join", "concatenate"), ("split", "divide", "separate"), ("check", "verify", "test"),
    ("find", "locate", "search", "look up"), ("begin", "start", "commence"), ("fix", "repair", "solve", "resolve"),
    ("show", "display"), ("change", "modify", "alter", "edit", "update"),
    ("install", "set up", "setup"), ("configure", "set up", "setup"), ("run", "execute", "launch"),
    ("stop", "halt", "terminate", "kill"), ("get", "obtain", "retrieve", "fetch", "acquire"),
    ("calculate", "compute", "work out", "figure out"), ("explain", "describe", "clarify"),
    ("recommend", "suggest", "advise"), ("choose", "pick", "select"), ("use", "utilize", "utilise", "employ"),
    ("need", "require"), ("help", "assist", "aid"), ("learn", "study"), ("improve", "enhance", "boost"),
    ("translate", "say"), ("belong", "own", "owned"), ("cook", "prepare", "make"), ("buy", "purchase"),
    ("send", "transmit"), ("talk", "speak"), ("end", "finish", "complete"), ("keep", "retain", "preserve"),
    ("convert", "transform"), ("save", "store"), ("write", "compose"), ("read", "load", "open"),
    ("reverse", "invert"), ("sort", "order", "arrange"), ("difference", "differ", "distinguish", "tell apart"), ("mean", "signify"),
    # things
    ("symptom", "sign", "indication"), ("way", "method", "approach", "manner"), ("fact", "trivia"),
    ("error", "exception", "mistake"), ("problem", "issue", "trouble"), ("function", "method", "routine"),
    ("folder", "directory"), ("picture", "image", "photo", "photograph"), ("movie", "film"),
    ("car", "automobile", "vehicle"), ("job", "work", "occupation", "career"), ("price", "cost"),
    ("doctor", "physician"), ("kid", "child", "children"), ("shop", "store"), ("trip", "journey", "travel"),
    ("reason", "cause"), ("benefit", "advantage", "pro", "upside"), ("drawback", "disadvantage", "con",
    "downside"), ("tip", "advice", "hint", "suggestion"), ("example", "sample", "instance"),
    ("world", "earth", "planet"), ("answer", "reply", "response"), ("question", "query"), ("rule", "guideline"),
    ("recipe", "dish"), ("meal", "dinner", "lunch", "supper"), ("long", "minute", "hour"), ("plan", "schedule"),
    # qualities
    ("big", "large", "huge"), ("small", "little", "tiny"), ("fast", "quick", "rapid", "speedy"),
    ("slow", "sluggish"), ("cheap", "inexpensive", "affordable", "budget"), ("expensive", "costly", "pricey"),
    ("easy", "simple", "straightforward"), ("hard", "difficult", "tough"), ("good", "great", "nice", "fine"),
    ("best", "ideal", "optimal"), ("fun", "interesting", "cool", "amazing", "fascinating"),
    ("safe", "ok", "okay", "alright", "fine"), ("correct", "right", "proper", "accurate"),
    ("wrong", "incorrect"), ("main", "primary", "principal", "major"), ("common", "typical", "usual",
    "frequent"), ("tall", "high"), ("tallest", "highest"), ("smart", "clever", "intelligent"),
    ("healthy", "nutritious"), ("famous", "well known", "popular", "renowned"), ("quiet", "silent"),
    ("whole", "entire", "full"), ("current", "present"), ("early", "first", "initial"), ("briefly", "quickly"),
)
# fmt: on


class Synonyms:
    """Word -> its synonym group ids, by stem (a word may be in several groups)."""

    def __init__(self, groups: Iterable[Sequence[str]] = ()) -> None:
        self._groups: dict[str, set[int]] = {}
        self._n = 0
        self.add(groups)

    def add(self, groups: Iterable[Sequence[str]]) -> None:
        for group in groups:
            gid = self._n
            self._n += 1
            for word in group:
                for w in word.lower().split():  # a phrase counts by each of its words
                    self._groups.setdefault(stem(w), set()).add(gid)

    def same(self, a: str, b: str) -> bool:
        """Whether two stems name the same thing (equal, or in one synonym group)."""
        if a == b:
            return True
        ga = self._groups.get(a)
        return bool(ga and ga & self._groups.get(b, set()))


SYNONYMS = Synonyms(DEFAULT_SYNONYMS)


def register_synonyms(groups: Iterable[Sequence[str]]) -> None:
    """Add synonym groups to the process-wide lexicon, e.g. ``register_synonyms([("laptop", "notebook")])``."""
    SYNONYMS.add(groups)


def swapped_words(a: Sequence[str], b: Sequence[str], synonyms: Synonyms = SYNONYMS) -> list[tuple[str, str]]:
    """The differing (non-synonym) word pairs when two content-stem sequences are one sentence with one
    run of at most two words replaced by at most two others — the rest equal and in order, the run at
    most half of the longer one; else [] (equal, or different in a way this guard leaves alone).
    Numbers are left out (the ``numbers`` guard's: "3" / "three")."""
    a = [w for w in a if not _is_number(w)]
    b = [w for w in b if not _is_number(w)]
    if a == b or not a or not b:
        return []
    i = 0  # common prefix
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    j = 0  # common suffix (not overlapping the prefix)
    while j < len(a) - i and j < len(b) - i and a[-1 - j] == b[-1 - j]:
        j += 1
    ra, rb = a[i : len(a) - j], b[i : len(b) - j]
    if not ra or not rb or len(ra) > 2 or len(rb) > 2 or 2 * max(len(ra), len(rb)) > max(len(a), len(b)):
        return []  # an insertion or deletion, or more than a swap: a rewording
    if any(synonyms.same(x, y) for x in ra for y in rb):
        return []
    return [(" ".join(ra), " ".join(rb))]


def _is_number(stem_: str) -> bool:
    return stem_[:1].isdigit() or stem_ in _NUMBER_STEMS


_NUMBER_STEMS = frozenset(stem(w) for w in (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
    "million billion dozen half"
).split())


__all__ = ["DEFAULT_SYNONYMS", "SYNONYMS", "Synonyms", "register_synonyms", "swapped_words"]
