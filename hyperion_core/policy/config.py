"""Config of the ``policy`` strategy: ordered rules (``routes.<r>.policy``), each a ``when`` over
request features and the deployments it ``use``\\ s. Validation names the place and the problem::

    routes.chat.policy[2].when: unknown feature 'prompt_token_gte' (did you mean 'prompt_tokens_gte'?)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._text import suggest

#: a deployment's quality score for one task, 0..1
QualityScore = Annotated[float, Field(ge=0, le=1)]

#: how a rule's deployments are ordered among themselves
ThenStrategy = Literal["failover", "weighted", "lowest_latency", "lowest_cost", "quality"]

_HOURS = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-3]|24):([0-5]\d)\s*$")


def parse_hours(text: str) -> tuple[int, int]:
    """``"09:00-17:30"`` -> (540, 1050) minutes after midnight; ``end < start`` wraps past midnight."""
    m = _HOURS.match(text)
    if not m or (m.group(3) == "24" and m.group(4) != "00"):
        raise ValueError(f"expected 'HH:MM-HH:MM' in 24-hour time (e.g. '09:00-17:30'), got {text!r}")
    start, end = int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4))
    if start == end % 1440:
        raise ValueError(f"{text!r} starts and ends at the same time: an empty (or whole-day) window; drop hours instead")
    return start, end


def _known(data: Any, cls: type[BaseModel], what: str) -> Any:
    if isinstance(data, Mapping):
        fields = set(cls.model_fields)
        for key in data:
            if key not in fields:
                raise ValueError(f"unknown {what} '{key}'" + (suggest(str(key), fields) or f" ({', '.join(sorted(fields))})"))
    return data


class PolicyWhen(BaseModel):
    """Conditions over the request; a rule matches when all the ones given hold."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: the prompt's estimated tokens (about 4 characters a token) are at least this many
    prompt_tokens_gte: int | None = Field(default=None, ge=0)
    #: the prompt's estimated tokens are fewer than this
    prompt_tokens_lt: int | None = Field(default=None, gt=0)
    #: the request passes tools (true) / passes none (false)
    has_tools: bool | None = None
    #: a message has an image part (true) / none has (false)
    has_images: bool | None = None
    #: the request's ``response_format``: ``json_object``, ``json_schema`` or ``any`` (either)
    response_format: Literal["json_object", "json_schema", "any"] | None = None
    #: the caller carries at least one of these tags
    tags_any: list[str] | None = Field(default=None, min_length=1)
    #: each of these caller / request metadata values equals the one given
    metadata: dict[str, str | int | float | bool] | None = Field(default=None, min_length=1)
    #: a time-of-day window ``"HH:MM-HH:MM"`` in ``tz`` (the gateway's clock), start included, end
    #: excluded; ``"22:00-06:00"`` wraps past midnight
    hours: str | None = None
    #: IANA time zone of ``hours`` (``UTC`` default)
    tz: str = "UTC"
    #: the caller's team has used at least this fraction (0..1) of its budget (settled spend over the
    #: limit, the highest of the team's budgets; read at most every few seconds per team). A caller
    #: with no team, or a team with no budget, does not match
    team_budget_used_gte: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _features(cls, data: Any) -> Any:
        return _known(data, cls, "feature")

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is not None:
            parse_hours(v)
        return v

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        from ..governance.periods import get_tz

        try:
            get_tz(v)
        except Exception:  # noqa: BLE001 - any failure to resolve is an unknown zone
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as 'Europe/Berlin')") from None
        return v


class PolicyRule(BaseModel):
    """One rule of a ``policy`` route: when its conditions hold, ``use`` these deployments."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: the rule's name (unique in the route; it is on the response's ``decision.rule``)
    name: str = Field(min_length=1)
    #: conditions that must all hold; absent: the default rule (matches everything; it comes last)
    when: PolicyWhen | None = None
    #: the deployments (their names in the route) this rule sends the request to
    use: list[str] = Field(min_length=1)
    #: how ``use`` is ordered: ``failover`` (as listed), ``weighted``, ``lowest_latency``, ``lowest_cost``
    #: or ``quality`` (the route's ``quality_margin``)
    then: ThenStrategy = "failover"
    #: ``rest``: the route's other deployments follow as failover backups; ``none``: only ``use``
    fallback: Literal["rest", "none"] = "rest"

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        return _known(data, cls, "key")


def route_policy_problems(rname: str, route: Any) -> list[str]:
    """Cross-checks of one route's ``policy`` / ``quality`` settings (config validation)."""
    where = f"routes.{rname}"
    problems: list[str] = []
    names = [d.id for d in route.deployments]
    rules: list[PolicyRule] | None = route.policy
    if route.strategy == "policy" and not rules:
        problems.append(f"{where}.policy: strategy 'policy' needs rules (a list of name / when / use)")
    if rules and route.strategy != "policy":
        problems.append(f"{where}.policy: rules only apply with strategy 'policy' (the route's is '{route.strategy}')")
    seen: set[str] = set()
    for i, rule in enumerate(rules or ()):
        at = f"{where}.policy[{i}]"
        if rule.name in seen:
            problems.append(f"{at}.name: duplicate rule '{rule.name}'")
        seen.add(rule.name)
        for j, dep in enumerate(rule.use):
            if dep not in names:
                problems.append(f"{at}.use[{j}]: unknown deployment '{dep}'" + (suggest(dep, names) or f" (deployments: {', '.join(names)})"))
        if len(set(rule.use)) != len(rule.use):
            problems.append(f"{at}.use: a deployment is listed twice")
        if rule.when is None and i != len(rules or ()) - 1:
            problems.append(f"{at}.when: only the last rule may omit 'when' (the default rule); rules after it could never match")
        w = rule.when
        if w is not None:
            lo, hi = w.prompt_tokens_gte, w.prompt_tokens_lt
            if lo is not None and hi is not None and hi <= lo:
                problems.append(f"{at}.when.prompt_tokens_lt: {hi} is not above prompt_tokens_gte {lo}: no prompt could match")
            if w.tz != "UTC" and w.hours is None:
                problems.append(f"{at}.when.tz: only used with 'hours' (set hours, or drop tz)")
            if not w.model_fields_set - {"tz"}:
                problems.append(f"{at}.when: no conditions (omit 'when' for the default rule)")
        if rule.then == "weighted" and not any(d.weight > 0 for d in route.deployments if d.id in rule.use):
            problems.append(f"{at}.then: 'weighted' needs a deployment of 'use' with a weight above 0")
    return problems


__all__ = ["PolicyWhen", "PolicyRule", "QualityScore", "ThenStrategy", "parse_hours", "route_policy_problems"]
