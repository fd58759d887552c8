"""The pure part of the ``policy`` strategy: a request's features and which rule they match.

No I/O: the budget utilisation and the wall time are read by the planner and handed in, so the rule
evaluation is unit-tested without a gateway (``tests/unit/test_policy.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any

from ..governance.periods import get_tz
from ..tokens import estimate_prompt_tokens
from ..types import ChatRequest
from .config import PolicyRule, PolicyWhen, parse_hours

_window = lru_cache(maxsize=256)(parse_hours)  # validated at config load; parsed once per window
_zone = lru_cache(maxsize=64)(get_tz)

_IMAGE_PARTS = frozenset({"image_url", "image", "input_image"})


@dataclass(slots=True)
class Features:
    """What rules look at, for one request. ``prompt_tokens`` is computed on first use."""

    req: ChatRequest
    #: Unix seconds (the gateway's clock)
    wall: float
    #: the caller's team budget used (0..1); None: no team, no budget, or not read
    budget_used: float | None = None
    _tokens: int | None = None
    _meta: Mapping[str, Any] | None = None
    _minutes: dict[str, int] = field(default_factory=dict)

    @property
    def prompt_tokens(self) -> int:
        if self._tokens is None:
            self._tokens = estimate_prompt_tokens(self.req)
        return self._tokens

    @property
    def has_tools(self) -> bool:
        return bool(self.req.tools)

    @property
    def has_images(self) -> bool:
        for m in self.req.messages:
            c = m.get("content")
            if isinstance(c, list) and any(isinstance(p, dict) and p.get("type") in _IMAGE_PARTS for p in c):
                return True
        return False

    @property
    def response_format(self) -> str | None:
        rf = self.req.response_format
        kind = rf.get("type") if isinstance(rf, dict) else None
        return kind if isinstance(kind, str) else None

    @property
    def tags(self) -> Sequence[str]:
        c = self.req.caller
        return c.tags if c is not None else ()

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The request's metadata, then the caller's (its key's) on top."""
        if self._meta is None:
            c = self.req.caller
            cm = c.metadata if c is not None else None
            self._meta = {**self.req.metadata, **cm} if cm else self.req.metadata
        return self._meta

    def minute_of_day(self, tz: str) -> int:
        m = self._minutes.get(tz)
        if m is None:
            zone: tzinfo = _zone(tz)
            t = datetime.fromtimestamp(self.wall, zone)
            m = self._minutes[tz] = t.hour * 60 + t.minute
        return m


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def match(when: PolicyWhen | None, f: Features) -> list[str] | None:
    """The matched conditions, each with the request's value (``"prompt_tokens 9120 >= 8000"``), when
    every condition of ``when`` holds; None when one does not. The default rule (None) matches: []."""
    if when is None:
        return []
    why: list[str] = []
    if when.prompt_tokens_gte is not None or when.prompt_tokens_lt is not None:
        n = f.prompt_tokens
        if when.prompt_tokens_gte is not None:
            if n < when.prompt_tokens_gte:
                return None
            why.append(f"prompt_tokens {n} >= {when.prompt_tokens_gte}")
        if when.prompt_tokens_lt is not None:
            if n >= when.prompt_tokens_lt:
                return None
            why.append(f"prompt_tokens {n} < {when.prompt_tokens_lt}")
    if when.has_tools is not None:
        if f.has_tools != when.has_tools:
            return None
        why.append(f"has_tools {str(when.has_tools).lower()}")
    if when.has_images is not None:
        if f.has_images != when.has_images:
            return None
        why.append(f"has_images {str(when.has_images).lower()}")
    if when.response_format is not None:
        rf = f.response_format
        ok = rf in ("json_object", "json_schema") if when.response_format == "any" else rf == when.response_format
        if not ok:
            return None
        why.append(f"response_format {rf}")
    if when.tags_any is not None:
        hit = [t for t in when.tags_any if t in f.tags]
        if not hit:
            return None
        why.append(f"tag {hit[0]}")
    if when.metadata is not None:
        meta = f.metadata
        for k, v in when.metadata.items():
            have = meta.get(k)
            if have is None or have != v or isinstance(have, bool) != isinstance(v, bool):
                return None
            why.append(f"metadata {k}={have}")
    if when.hours is not None:
        start, end = _window(when.hours)
        now = f.minute_of_day(when.tz)
        inside = start <= now < end if start < end else (now >= start or now < end % 1440)
        if not inside:
            return None
        why.append(f"time {_hhmm(now)} {when.tz} in {when.hours}")
    if when.team_budget_used_gte is not None:
        used = f.budget_used
        if used is None or used < when.team_budget_used_gte:
            return None
        why.append(f"team budget used {used:.0%} >= {when.team_budget_used_gte:.0%}")
    return why


def first_match(rules: Sequence[PolicyRule], f: Features) -> tuple[PolicyRule, list[str]] | None:
    """The first rule whose conditions hold, with why; None when none does (and there is no default)."""
    for rule in rules:
        why = match(rule.when, f)
        if why is not None:
            return rule, why
    return None


def needs_budget(rules: Sequence[PolicyRule]) -> bool:
    return any(r.when is not None and r.when.team_budget_used_gte is not None for r in rules)


__all__ = ["Features", "match", "first_match", "needs_budget"]
