"""The mutable state of one mock provider: faults, scripted rules and stats.

Shared between the aiohttp handlers (server thread) and the in-process control
methods of ``MockProvider`` (any thread); each part carries its own lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .faults import FaultBook
from .rules import RuleBook
from .stats import Stats


@dataclass(slots=True)
class MockState:
    faults: FaultBook = field(default_factory=FaultBook)
    rules: RuleBook = field(default_factory=RuleBook)
    stats: Stats = field(default_factory=Stats)
    #: validate request bodies as the real APIs do (see ``strict``); False accepts anything parseable
    strict: bool = True

    def reset(self) -> None:
        """Clear faults, rules and stats (the ``strict`` switch is configuration: it is kept)."""
        self.faults.clear()
        self.rules.clear()
        self.stats.reset()
