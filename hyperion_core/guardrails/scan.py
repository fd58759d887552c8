"""One vectorised pass over a text that tells the detectors where to look.

Python's ``re`` costs 20-150 µs to scan 8 kB (a 2,000-token prompt) per pattern, a keyword
alternation far more, and even ``str.find`` costs ~5 µs per keyword; running every recogniser over
every prompt would cost milliseconds. Instead, :class:`Scan` reads the text once as a numpy array
of bytes (the low byte of each lower-cased code point: exact for Latin-1 text, en/de/fr/es) and
finds the *anchors*: digits, ``@``, ``:`` and ``=``, long token runs (secrets, base64), and the
positions of known 4-grams (the rarest 4 characters of each injection, name and address stem)
through a 64 k-entry hash table read with one unaligned ``uint32`` view. Every 4-gram hit is
verified against the whole stem. The recognisers then run only on small windows around anchors.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_MASK = 0xFFFF
_MULT = np.uint32(0x9E3779B1)
_SHIFT = np.uint32(16)

#: anchor families (bit flags in the 4-gram table); UNTRUSTED: the extra injection stems read only in
#: tool results and retrieved documents
INJECTION, NAME, ADDRESS, UNTRUSTED = 1, 2, 4, 8
_FAMILIES = (INJECTION, NAME, ADDRESS, UNTRUSTED)

#: 4-grams frequent in ordinary prose (en/de/fr/es): a stem is keyed on its rarest 4 characters so
#: that benign text sends few hits to the Python verification loop
_COMMON = frozenset((
    "the ", " the", "ing ", " and", "and ", "tion", " to ", " in ", " for", " is ", "that", "with", "new ", " new",
    "ion ", "ent ", " re", " con", "over", "rest", "part", "limi", "form", "from", "ther", "here", "ever", "ment",
    "ight", "ance", "ence", "ould", "plan", "cove", "ring", "team", "nder", "ourt", "oute", "olic", "lace", "der ",
    "die ", "und ", "ein ", "ich ", "les ", "des ", "que ", "par ", "pour", "los ", "las ", "del ", "una ", "prom",
    "mode", "ode ", " mod", "ompt", "inst", "stru", "truc", "ruct", "ctio", " of ", "ore ", " res", "tric", "some",
    "this", "your", " you", "you ", "will", "have", "ally", "ated", "ting", "ment", "ions", "ness", "quar", "call",
    "name", "sign", "miss", "word", "long", "plus", "alle", "task",
))


_BY_FREQUENCY = " etaoinsrhldcumfpgwybvkxjqz"


def _rarity(g: str) -> int:
    """How unusual a gram is in prose: letters by English frequency; anything else is rare."""
    return sum(_BY_FREQUENCY.find(c) if c in _BY_FREQUENCY else 30 for c in g)


def _key(g: str) -> int:
    """The table slot of a 4-character gram (low byte of each code point, little-endian)."""
    x = int.from_bytes(bytes(ord(c) & 0xFF for c in g), "little")
    return ((x * 0x9E3779B1) & 0xFFFFFFFF) >> 16


class Grams:
    """A set of stems by family, looked up in one vectorised pass."""

    def __init__(self, families: dict[int, Iterable[str]]) -> None:
        self.table: np.ndarray = np.zeros(_MASK + 1, dtype=np.uint8)
        #: 4-gram -> (whole stem, offset of the gram in the stem, family): a hit is verified on the stem
        self.stems: dict[str, list[tuple[str, int, int]]] = {}
        for flag, stems in families.items():
            for stem in stems:
                s = stem.lower()
                assert len(s) >= 4, stem
                off = min(range(len(s) - 3), key=lambda i: (s[i : i + 4] in _COMMON, -_rarity(s[i : i + 4]), i))
                g = s[off : off + 4]
                self.table[_key(g)] |= flag
                self.stems.setdefault(g, []).append((s, off, flag))


def _bytes(low: str) -> tuple[bytes, np.ndarray | None]:
    """One byte per character: Latin-1 where it fits, else the low byte of each code point (and
    the code points themselves)."""
    try:
        return low.encode("latin-1"), None
    except UnicodeEncodeError:
        cp = np.frombuffer(low.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return (cp & np.uint32(0xFF)).astype(np.uint8).tobytes(), cp


class Scan:
    """Anchors of one text (lower-cased copy in ``low``; positions are ``str`` indices)."""

    __slots__ = ("text", "low", "buf", "cp", "arr", "digits", "grams", "_runs", "_touch", "_dl")

    def __init__(self, text: str, grams: Grams | None = None) -> None:
        self.text = text
        low = text.lower()
        if len(low) != len(text):  # a few characters change length when lowered (İ): keep positions
            low = text
        self.low = low
        buf, cp = _bytes(low)
        self.buf = buf
        self.cp = cp
        self.arr = arr = np.frombuffer(buf, dtype=np.uint8)
        if cp is None:
            self.digits = np.flatnonzero((arr - np.uint8(48)) < 10)
        else:  # a low byte 0x30-0x39 may belong to another code point
            self.digits = np.flatnonzero((cp - np.uint32(48)) < 10)
        self._runs: list[tuple[int, int]] | None = None
        self._touch: list[int] | None = None
        self._dl: list[int] | None = None
        self.grams: dict[int, list[int]] = {}
        n = len(buf) - 3
        if grams is not None and n > 0:
            v = np.ndarray((n,), dtype="<u4", buffer=buf, strides=(1,))
            hits = np.flatnonzero(grams.table.take((v * _MULT) >> _SHIFT).astype(bool))  # bool: fast nonzero
            if len(hits):
                stems = grams.stems
                out = self.grams
                found: dict[int, set[int]] = {}
                for p in hits.tolist():
                    cands = stems.get(low[p : p + 4])
                    if cands:
                        for stem, off, flag in cands:
                            q = p - off
                            if q >= 0 and low.startswith(stem, q):
                                found.setdefault(flag, set()).add(q)
                for flag in _FAMILIES:
                    if flag in found:
                        out[flag] = sorted(found[flag])

    def digit_list(self) -> list[int]:
        """``digits`` as a list (read once)."""
        if self._dl is None:
            self._dl = self.digits.tolist()
        return self._dl

    def number_clusters(self, python_below: int = 400) -> list[tuple[int, int, int]]:
        """(first, last, digit count) of each group of digits whose neighbours are at most 4 apart,
        keeping groups of at least 4 digits or spanning at least 4 characters (where a number the
        recognisers validate can be). Plain Python for a few hundred digits (numpy's per-call cost
        dominates there), vectorised beyond."""
        dl = self.digit_list()
        if not dl:
            return []
        if len(dl) < python_below:
            out: list[tuple[int, int, int]] = []
            first = prev = dl[0]
            cnt = 0
            for p in dl:
                if p - prev > 4:
                    if cnt >= 4 or prev - first >= 3:
                        out.append((first, prev, cnt))
                    first, cnt = p, 0
                prev = p
                cnt += 1
            if cnt >= 4 or prev - first >= 3:
                out.append((first, prev, cnt))
            return out
        dig = self.digits
        brk = np.flatnonzero(np.diff(dig) > 4)
        bounds: np.ndarray = np.empty(len(brk) + 2, dtype=np.intp)
        bounds[0], bounds[1:-1], bounds[-1] = -1, brk, len(dl) - 1
        counts = np.diff(bounds)
        firsts, lasts = dig[bounds[:-1] + 1], dig[bounds[1:]]
        keep = np.flatnonzero((counts >= 4) | (lasts - firsts >= 3))
        return list(zip(firsts[keep].tolist(), lasts[keep].tolist(), counts[keep].tolist()))

    def find_all(self, ch: str) -> list[int]:
        out, i, text = [], self.text.find(ch), self.text
        while i >= 0:
            out.append(i)
            i = text.find(ch, i + 1)
        return out

    def runs(self, min_len: int = 16) -> list[tuple[int, int]]:
        """Runs of at least ``min_len`` token characters (letters, digits, ``_-.+/=``): where secrets,
        base64 and hex payloads live. Ordinary words are shorter."""
        if min_len < 16:
            return self._token_runs(min_len)
        if self._runs is None:
            self._runs = self._token_runs(16)
        return [(a, b) for a, b in self._runs if b - a >= min_len]

    def _token_runs(self, min_len: int) -> list[tuple[int, int]]:
        # A run of ``min_len`` (>= 16) characters covers at least three whole aligned 4-byte blocks,
        # none of them holding a space. Such triples (12 characters without a space: rare in prose)
        # are found with a few vectorised operations over the blocks; only the stretches around them
        # are read byte by byte (token characters -> "a", then bytes.find).
        buf, n = self.buf, len(self.buf)
        if n < min_len:
            return []
        if min_len < 16:
            return self._runs_in([(0, n)], min_len)
        blocks = np.frombuffer(buf, dtype="<u4", count=n // 4) ^ _SPACES
        # a zero byte in a block <=> a space in it (the classic has-zero-byte test)
        clear = ((blocks - _ONES) & ~blocks & _HIGHS) == 0
        triple = np.flatnonzero(clear[:-2] & clear[1:-1] & clear[2:])
        if not len(triple):
            return []
        stretches: list[tuple[int, int]] = []
        end = -1
        for k in triple.tolist():
            if 4 * k < end:
                continue
            a = buf.rfind(b" ", 0, 4 * k) + 1
            end = buf.find(b" ", 4 * k + 12)
            if end < 0:
                end = n
            stretches.append((a, end))
        return self._runs_in(stretches, min_len)

    def _runs_in(self, stretches: list[tuple[int, int]], min_len: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        needle = b"a" * min_len
        for a, b in stretches:
            if self.cp is None:
                marks = self.buf[a:b].translate(_TOKEN_MAP)
            else:  # only ASCII characters are token characters
                cp = self.cp[a:b]
                marks = np.where(cp < 128, cp, 0).astype(np.uint8).tobytes().translate(_TOKEN_MAP)
            i = marks.find(needle)
            while i >= 0:
                j = marks.find(b" ", i + min_len)
                if j < 0:
                    j = len(marks)
                out.append((a + i, a + j))
                i = marks.find(needle, j)
        return out

    def touch(self) -> list[int]:
        """Positions ``p`` where a letter and a digit or ``@$!`` meet (``p`` and ``p + 1``): where
        leetspeak words and IBANs (two letters, then check digits) are. A few vectorised boolean
        operations over the text."""
        if self._touch is None:
            codes = self.arr if self.cp is None else self.cp  # code points: only ASCII counts
            digit = (codes - codes.dtype.type(48)) < 10
            for ch in "@$!":
                for i in self.find_all(ch):
                    digit[i] = True
            letter = (codes - codes.dtype.type(97)) < 26
            self._touch = np.flatnonzero((letter[:-1] & digit[1:]) | (digit[:-1] & letter[1:])).tolist()
        return self._touch


_SPACES, _ONES, _HIGHS = np.uint32(0x20202020), np.uint32(0x01010101), np.uint32(0x80808080)
_TOKEN_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.+/="
_TOKEN_MAP = bytes(0x61 if c in _TOKEN_CHARS else 0x20 for c in range(256))


def clusters(positions: Iterable[int], gap: int) -> list[tuple[int, int]]:
    """Group sorted positions into (first, last) clusters whose neighbours are at most ``gap`` apart."""
    out: list[tuple[int, int]] = []
    first = last = -(10**9)
    for p in positions:
        if p - last > gap:
            if last >= 0:
                out.append((first, last))
            first = p
        last = p
    if last >= 0:
        out.append((first, last))
    return out


__all__ = ["Scan", "Grams", "clusters", "INJECTION", "NAME", "ADDRESS", "UNTRUSTED"]
