"""Route settings of experiments: ``shadow:`` (mirror a sample in the background) and ``split:`` (send a
sticky share of live traffic to variant B)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._text import suggest


class ShadowConfig(BaseModel):
    """Mirror a sample of a route's requests to ``target`` after the primary answered (never delaying,
    failing or billing the primary: the shadow's spend goes to the budget subject key
    ``shadow:<name>``, which a ``governance.budgets`` entry may bound)."""

    model_config = ConfigDict(extra="forbid")

    #: the experiment's name (reports, budget subject ``shadow:<name>``); default ``<route>-shadow``
    name: str | None = None
    #: the route the sample is mirrored to
    target: str
    #: share of requests mirrored, 0..1
    sample: float = Field(default=0.1, ge=0, le=1)
    #: shadow calls in flight at most; beyond that a sample is dropped (and counted), never queued
    max_pending: int = Field(default=64, ge=1)
    #: a route whose model scores each answer pair's agreement (0..1), billed to ``shadow:<name>``
    judge: str | None = None
    #: seconds the judge may take per pair (then the pair has no judge score)
    judge_timeout: float = Field(default=10.0, gt=0)


class SplitConfig(BaseModel):
    """Send ``share`` of live traffic to variant B (``target``: a deployment of this route, or another
    route), sticky per ``sticky`` subject by a stable hash; ``enabled: false`` (or
    ``Gateway.experiments.stop(name)``) sends everything to A."""

    model_config = ConfigDict(extra="forbid")

    #: the experiment's name (reports, the kill switch); default ``<route>-split``
    name: str | None = None
    #: variant B: a deployment name of this route, or another route's name
    target: str
    #: share of subjects on variant B, 0..1
    share: float = Field(default=0.1, ge=0, le=1)
    #: what keeps a caller on one variant: its ``key``, its ``user``, or nothing (each ``request``)
    sticky: Literal["key", "user", "request"] = "key"
    #: the kill switch in config: false sends every request to A
    enabled: bool = True




def experiment_problems(rname: str, route: Any, routes: Mapping[str, Any]) -> list[str]:
    """What is wrong with a route's ``shadow`` / ``split`` (config validation)."""
    out: list[str] = []
    sh, sp = route.shadow, route.split
    if (sh is not None or sp is not None) and route.kind != "chat":
        out.append(f"routes.{rname}: shadow and split are for chat routes")
    if sh is not None:
        if sh.target not in routes:
            out.append(f"routes.{rname}.shadow.target: unknown route '{sh.target}'" + suggest(sh.target, set(routes)))
        elif sh.target == rname:
            out.append(f"routes.{rname}.shadow.target: a route cannot shadow itself")
        elif routes[sh.target].kind != "chat":
            out.append(f"routes.{rname}.shadow.target: route '{sh.target}' is not a chat route")
        if sh.judge is not None and sh.judge not in routes:
            out.append(f"routes.{rname}.shadow.judge: unknown route '{sh.judge}'" + suggest(sh.judge, set(routes)))
    if sp is not None:
        deps = {d.id for d in route.deployments}
        if sp.target not in deps and sp.target not in routes:
            out.append(f"routes.{rname}.split.target: '{sp.target}' is neither a deployment of this route nor a route"
                       + suggest(sp.target, deps | set(routes)))
        elif sp.target == rname:
            out.append(f"routes.{rname}.split.target: a route cannot split to itself")
        elif sp.target in deps and len(deps) < 2:
            out.append(f"routes.{rname}.split.target: variant A needs another deployment than '{sp.target}'")
    return out


__all__ = ["ShadowConfig", "SplitConfig", "experiment_problems"]
