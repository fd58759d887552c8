"""The opposites lexicon used by the ``opposites`` cache guard, and the stemmer it matches with.

Entries are words or short phrases ("log in" / "log out"); both the lexicon and the texts are compared
after :func:`stem`, so "buying" matches "buy" and "decreased" matches "decrease". The built-in pairs are
in :data:`DEFAULT_PAIRS`; add your own with :func:`hyperion_core.cache.guards.register_opposites`
(process-wide) or build an :class:`Opposites` of your own and pass it to ``check_guards``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ConfigError

# Irregular forms folded onto the form the suffix rules produce for the base word.
_IRREGULAR = {
    "bought": "buy", "sold": "sell", "won": "win", "lost": "lose", "went": "go", "lent": "lend",
    "sent": "send", "men": "man", "women": "woman", "children": "child", "began": "begin",
    "begun": "begin", "rose": "rise", "risen": "rise", "fell": "fall", "fallen": "fall", "grew": "grow",
    "shrank": "shrink", "froze": "freeze", "frozen": "freeze", "wrote": "write", "written": "write",
    "hid": "hide", "hidden": "hide", "shown": "show", "does": "do", "did": "do", "done": "do",
    "was": "is", "were": "are", "has": "have", "had": "have", "used": "use", "uses": "use",
}
# Words the suffix rules would mangle into another word ("evening" -> "even", "news" -> "new").
_KEEP = frozenset({
    "evening", "morning", "during", "string", "spring", "nothing", "something", "anything", "everything",
    "news", "series", "species", "always", "best", "better", "worse", "left", "read", "less", "unless",
    "is", "bus", "gas", "yes", "lens", "physics", "mathematics", "economics", "red", "bed",
    "speed", "need", "seed", "feed", "ceiling", "thing", "king", "ring", "bring", "sing", "wing",
})
_VOWELS = set("aeiou")


def stem(word: str) -> str:
    """A deliberately small suffix stripper: enough to match inflections, never a dictionary."""
    w = word.lower()
    if w in _KEEP:
        return w
    w = _IRREGULAR.get(w, w)
    n = len(w)
    if n > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif n > 5 and w.endswith("ing"):
        w = w[:-3]
    elif n > 4 and w.endswith("ied"):
        w = w[:-3] + "y"
    elif n > 4 and w.endswith("ed"):
        w = w[:-2]
    elif n > 5 and w.endswith("ly"):
        w = w[:-2]
    elif n > 4 and w.endswith(("ses", "xes", "zes", "ches", "shes")):
        w = w[:-2]
    elif n > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in _VOWELS and w[-1] not in "lsz":
        w = w[:-1]  # winning -> winn -> win, stopped -> stopp -> stop
    return w


def stem_phrase(phrase: str) -> str:
    return " ".join(stem(w) for w in phrase.lower().split())


# fmt: off
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    # trade, money, games
    ("buy", "sell"), ("buyer", "seller"), ("purchase", "sell"), ("lend", "borrow"), ("lender", "borrower"),
    ("deposit", "withdraw"), ("credit", "debit"), ("profit", "loss"), ("gain", "loss"), ("gain", "lose"),
    ("win", "lose"), ("winner", "loser"), ("victory", "defeat"), ("bullish", "bearish"), ("bull", "bear"),
    ("cheap", "expensive"), ("cheaper", "pricier"), ("cheapest", "priciest"), ("rich", "poor"),
    ("overvalued", "undervalued"), ("overestimate", "underestimate"), ("overweight", "underweight"),
    ("income", "expense"), ("asset", "liability"), ("import", "export"),
    ("importer", "exporter"), ("send", "receive"), ("sender", "recipient"), ("sender", "receiver"),
    # time and order
    ("before", "after"), ("prior", "after"), ("first", "last"), ("earliest", "latest"), ("early", "late"),
    ("earlier", "later"), ("next", "previous"), ("start", "stop"), ("start", "end"), ("start", "finish"),
    ("begin", "end"), ("beginning", "end"), ("open", "close"), ("opening", "closing"), ("arrive", "depart"),
    ("arrival", "departure"), ("enter", "exit"), ("entry", "exit"), ("entrance", "exit"),
    ("sunrise", "sunset"), ("day", "night"), ("morning", "evening"), ("past", "future"),
    ("oldest", "newest"), ("old", "new"), ("older", "newer"), ("oldest", "youngest"), ("old", "young"),
    ("older", "younger"), ("forward", "backward"), ("forwards", "backwards"), ("ancient", "modern"),
    # quantity and degree
    ("increase", "decrease"), ("increase", "reduce"), ("raise", "lower"), ("rise", "fall"),
    ("grow", "shrink"), ("expand", "shrink"), ("expand", "collapse"), ("maximum", "minimum"),
    ("max", "min"), ("maximize", "minimize"), ("maximise", "minimise"), ("highest", "lowest"),
    ("high", "low"), ("higher", "lower"), ("largest", "smallest"), ("large", "small"),
    ("larger", "smaller"), ("biggest", "smallest"), ("big", "small"), ("bigger", "smaller"),
    ("most", "least"), ("more", "less"), ("more", "fewer"), ("many", "few"), ("plus", "minus"),
    ("add", "subtract"), ("addition", "subtraction"), ("multiply", "divide"), ("multiplication", "division"),
    ("long", "short"), ("longer", "shorter"), ("longest", "shortest"), ("fast", "slow"),
    ("faster", "slower"), ("fastest", "slowest"), ("speed up", "slow down"), ("best", "worst"),
    ("better", "worse"), ("good", "bad"), ("strong", "weak"), ("stronger", "weaker"), ("strongest", "weakest"),
    ("hard", "soft"), ("hard", "easy"), ("easy", "difficult"), ("simple", "complex"), ("heavy", "light"),
    ("heavier", "lighter"), ("thick", "thin"), ("wide", "narrow"), ("deep", "shallow"), ("full", "empty"),
    ("loud", "quiet"), ("hot", "cold"), ("hotter", "colder"), ("hottest", "coldest"), ("warm", "cold"),
    ("heat", "cool"), ("heating", "cooling"), ("freeze", "thaw"), ("freeze", "melt"), ("wet", "dry"),
    ("raw", "cooked"), ("dark", "light"), ("dark mode", "light mode"), ("beginner", "advanced"),
    ("beginner", "expert"), ("junior", "senior"), ("upper", "lower"), ("uppercase", "lowercase"),
    ("upper case", "lower case"), ("ascending", "descending"), ("asc", "desc"), ("even", "odd"),
    ("positive", "negative"), ("finite", "infinite"), ("absolute", "relative"),
    ("scale up", "scale down"), ("zoom in", "zoom out"), ("upgrade", "downgrade"), ("upvote", "downvote"),
    ("round up", "round down"), ("floor", "ceil"), ("floor", "ceiling"), ("overflow", "underflow"),
    # place and direction
    ("above", "below"), ("top", "bottom"), ("left", "right"), ("north", "south"), ("east", "west"),
    ("inside", "outside"), ("inner", "outer"), ("internal", "external"), ("indoor", "outdoor"),
    ("inbound", "outbound"), ("incoming", "outgoing"), ("ingress", "egress"), ("upstream", "downstream"),
    ("upload", "download"), ("uploading", "downloading"), ("push", "pull"), ("local", "remote"),
    ("local", "global"), ("horizontal", "vertical"), ("horizontally", "vertically"), ("row", "column"),
    ("prefix", "suffix"), ("head", "tail"), ("frontend", "backend"), ("front end", "back end"),
    ("source", "destination"), ("online", "offline"), ("public", "private"), ("domestic", "international"),
    # actions
    ("encrypt", "decrypt"), ("encryption", "decryption"), ("encode", "decode"), ("encoder", "decoder"),
    ("compress", "decompress"), ("serialize", "deserialize"), ("serialise", "deserialise"),
    ("input", "output"), ("read", "write"), ("reader", "writer"), ("add", "remove"), ("add", "delete"),
    ("insert", "delete"), ("create", "delete"), ("create", "destroy"), ("append", "prepend"),
    ("include", "exclude"), ("inclusive", "exclusive"), ("merge", "split"), ("join", "split"),
    ("join", "leave"), ("attach", "detach"), ("show", "hide"), ("accept", "reject"), ("accept", "decline"),
    ("approve", "reject"), ("approve", "deny"), ("allow", "deny"), ("allow", "block"), ("allow", "forbid"),
    ("allow", "prohibit"), ("permit", "forbid"), ("permitted", "prohibited"), ("grant", "revoke"),
    ("enable", "disable"), ("enabled", "disabled"), ("connect", "disconnect"), ("agree", "disagree"),
    ("like", "dislike"), ("love", "hate"), ("appear", "disappear"), ("approve", "disapprove"),
    ("continue", "discontinue"), ("trust", "distrust"), ("assemble", "disassemble"), ("mount", "unmount"),
    ("install", "uninstall"), ("lock", "unlock"), ("subscribe", "unsubscribe"), ("follow", "unfollow"),
    ("undo", "redo"), ("login", "logout"), ("log in", "log out"), ("sign in", "sign out"),
    ("check in", "check out"), ("opt in", "opt out"), ("turn on", "turn off"), ("switch on", "switch off"),
    ("inhale", "exhale"), ("attack", "defend"), ("offense", "defense"), ("offensive", "defensive"),
    ("succeed", "fail"), ("success", "failure"), ("pass", "fail"), ("remember", "forget"),
    ("include", "omit"), ("whitelist", "blacklist"), ("allowlist", "denylist"), ("ban", "unban"),
    # qualities
    ("true", "false"), ("valid", "invalid"), ("visible", "invisible"), ("active", "inactive"),
    ("active", "passive"), ("correct", "incorrect"), ("right", "wrong"), ("complete", "incomplete"),
    ("accurate", "inaccurate"), ("secure", "insecure"), ("safe", "dangerous"), ("formal", "informal"),
    ("direct", "indirect"), ("dependent", "independent"), ("consistent", "inconsistent"),
    ("possible", "impossible"), ("mutable", "immutable"), ("mature", "immature"), ("legal", "illegal"),
    ("logical", "illogical"), ("regular", "irregular"), ("relevant", "irrelevant"),
    ("rational", "irrational"), ("reversible", "irreversible"), ("normal", "abnormal"),
    ("symmetric", "asymmetric"), ("synchronous", "asynchronous"), ("sync", "async"), ("static", "dynamic"),
    ("strict", "lenient"), ("strict", "loose"), ("tight", "loose"), ("lazy", "eager"), ("explicit", "implicit"),
    ("optimistic", "pessimistic"), ("objective", "subjective"), ("qualitative", "quantitative"),
    ("concrete", "abstract"), ("literal", "figurative"), ("singular", "plural"), ("lossy", "lossless"),
    ("fifo", "lifo"), ("healthy", "unhealthy"), ("acidic", "alkaline"), ("acid", "base"),
    ("anode", "cathode"), ("male", "female"), ("man", "woman"), ("boy", "girl"), ("adult", "child"),
    ("husband", "wife"), ("mother", "father"), ("son", "daughter"), ("brother", "sister"),
    ("student", "teacher"), ("employer", "employee"), ("landlord", "tenant"), ("predator", "prey"),
    ("benefit", "risk"), ("advantage", "disadvantage"), ("pro", "con"), ("strength", "weakness"),
    ("synonym", "antonym"), ("numerator", "denominator"), ("sunny", "rainy"), ("sweet", "sour"),
)
# fmt: on


class Opposites:
    """A symmetric word/phrase -> opposites map, keyed by stemmed forms."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._map: dict[str, set[str]] = {}
        self.max_words = 1
        self.add(pairs)

    def add(self, pairs: Iterable[tuple[str, str]]) -> None:
        for pair in pairs:
            a, b = pair
            if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
                raise ConfigError(f"an opposite pair is two non-empty strings, got {pair!r}")
            ka, kb = stem_phrase(a), stem_phrase(b)
            if ka == kb:
                raise ConfigError(f"{a!r} and {b!r} stem to the same form {ka!r}; they cannot be opposites")
            self._map.setdefault(ka, set()).add(kb)
            self._map.setdefault(kb, set()).add(ka)
            self.max_words = max(self.max_words, ka.count(" ") + 1, kb.count(" ") + 1)

    def discard(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Forget pairs (a pair that is wrong for your domain); unknown pairs are ignored."""
        for a, b in pairs:
            ka, kb = stem_phrase(a), stem_phrase(b)
            for x, y in ((ka, kb), (kb, ka)):
                opp = self._map.get(x)
                if opp is not None:
                    opp.discard(y)
                    if not opp:
                        del self._map[x]

    def get(self, key: str) -> set[str] | None:
        return self._map.get(key)

    def copy(self) -> Opposites:
        new = Opposites()
        new._map = {k: set(v) for k, v in self._map.items()}
        new.max_words = self.max_words
        return new

    def __contains__(self, key: str) -> bool:
        return stem_phrase(key) in self._map

    def __len__(self) -> int:
        return len(self._map)


DEFAULT_OPPOSITES = Opposites(DEFAULT_PAIRS)
