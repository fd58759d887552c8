"""Small text helpers shared by config validation and error messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or an empty string."""
    match = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


__all__ = ["suggest"]
