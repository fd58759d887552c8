"""Routing strategies that read the request: ``policy`` (ordered rules over request features) and
``quality`` (the cheapest deployment whose score for the task is within a margin of the best).

Config models: :mod:`.config` (imported by the gateway config, so light); the pure feature
evaluation: :mod:`.features`; quality selection and the score store: :mod:`.quality`; the per-request
planners the Call stage asks: :mod:`.planner`.
"""

from __future__ import annotations

from .config import PolicyRule, PolicyWhen, route_policy_problems

__all__ = ["PolicyRule", "PolicyWhen", "route_policy_problems"]
