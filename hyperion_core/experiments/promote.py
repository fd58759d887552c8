"""``hyperion experiments promote``: the config change that makes an experiment's variant B the
primary and the old path its passive backup (strategy ``failover``), as a unified diff of the YAML."""

from __future__ import annotations

import copy
import difflib
from typing import Any

import yaml

from ..errors import InvalidRequestError


def promoted(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """``raw`` (the config file's mapping) with experiment ``name`` promoted: a split's deployment goes
    first in its route; a split's or shadow's target route's deployments take the route over, with the
    route's old first deployment kept as the backup. The experiment's own setting is removed."""
    out = copy.deepcopy(raw)
    for rname, route in (out.get("routes") or {}).items():
        for kind in ("split", "shadow"):
            exp = route.get(kind)
            if not isinstance(exp, dict) or (exp.get("name") or f"{rname}-{kind}") != name:
                continue
            target, deps = exp["target"], list(route.get("deployments") or [])
            ids = [d.get("name") or d.get("model") for d in deps]
            if kind == "split" and target in ids:
                first = deps[ids.index(target)]
                route["deployments"] = [first, *(d for d in deps if d is not first)]
            else:
                new = copy.deepcopy((out["routes"].get(target) or {}).get("deployments") or [])
                taken = {d.get("name") or d.get("model") for d in new}
                old = deps[0] if deps else None
                backup = [old] if old is not None and (old.get("name") or old.get("model")) not in taken else []
                route["deployments"] = new + backup
            route["strategy"] = "failover"
            del route[kind]
            return out
    raise InvalidRequestError(f"no route of this config runs experiment '{name}'")


def promote_diff(raw: dict[str, Any], name: str, path: str = "hyperion.yaml") -> str:
    before = yaml.safe_dump(raw, sort_keys=False)
    after = yaml.safe_dump(promoted(raw, name), sort_keys=False)
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{path}", f"b/{path}"))


__all__ = ["promote_diff", "promoted"]
