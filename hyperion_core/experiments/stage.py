"""The Experiment stage: a split's variant chosen before admission, a shadow mirrored after the answer,
and a record per variant (see the package docstring)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..pipeline import CHAT, STREAM, RequestContext, Stage
from ..types import Caller, RouteDecision
from .store import Record

if TYPE_CHECKING:
    from ..routing import RouteState
    from .api import Experiments

log = logging.getLogger("hyperion.experiments")
_WORD = re.compile(r"\w+", re.UNICODE)


def text_agreement(a: str, b: str) -> float:
    """1.0 for the same text (case and whitespace aside), else the Jaccard overlap of their words."""
    na, nb = " ".join(a.lower().split()), " ".join(b.lower().split())
    if na == nb:
        return 1.0
    wa, wb = set(_WORD.findall(na)), set(_WORD.findall(nb))
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def bucket(name: str, subject: str) -> float:
    """A stable position in [0, 1) for ``subject`` in experiment ``name`` (the same in every process,
    unlike ``hash()``); a share ``s`` sends the subjects below ``s`` to variant B."""
    h = hashlib.blake2b(f"{name}\0{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def split_name(rname: str, cfg: Any) -> str:
    return cfg.name or f"{rname}-split"


def shadow_name(rname: str, cfg: Any) -> str:
    return cfg.name or f"{rname}-shadow"


class Experiment(Stage):
    """After GuardIn, before Admit (a split that moves a request to another route is priced there)."""

    name = "experiment"

    def __init__(self, parts: Any) -> None:
        self.parts = parts
        self.api: Experiments | None = None  # set by the gateway (records, kill switch, shadow calls)
        self.rng = random.Random()

    def applies(self, rs: RouteState | None, kind: str) -> bool:
        return rs is not None and kind in (CHAT, STREAM) and (rs.cfg.split is not None or rs.cfg.shadow is not None)

    async def before(self, ctx: RequestContext) -> None:
        rs, api = ctx.rs, self.api
        assert rs is not None and api is not None
        sp = rs.cfg.split
        if sp is None:
            return
        name = split_name(rs.name, sp)
        if not sp.enabled or api.stopped(name):
            return
        c = ctx.req.caller or Caller()
        subject = c.key_id if sp.sticky == "key" else c.user if sp.sticky == "user" else None
        subject = subject or ctx.req.request_id  # no key / user: each request on its own
        variant = "b" if bucket(name, subject) < sp.share else "a"
        if variant == "b":
            deps = {d.name: d for d in rs.deployments}
            if sp.target in deps:
                first = deps[sp.target]
                ctx.plan = [first, *(d for d in rs.deployments if d is not first)]
                reason = f"experiment {name}: variant b (deployment {sp.target}, share {sp.share:g})"
            else:
                target = self.parts.route(sp.target)
                ctx.rs = target
                ctx.req = replace(ctx.req, route=target.name)  # the caller's request object stays as it was
                reason = f"experiment {name}: variant b (route {sp.target}, share {sp.share:g})"
        else:
            reason = f"experiment {name}: variant a (share of b {sp.share:g})"
        ctx.decision = RouteDecision(strategy="split", reason=reason, variant=variant, experiment=name)
        ctx.note("experiment", f"{name}:{variant}")  # on the audit event too

    async def after(self, ctx: RequestContext) -> None:
        api = self.api
        assert api is not None
        tag = ctx.notes.get("experiment") if ctx.notes else None
        if tag is not None:
            name, _, variant = tag.rpartition(":")
            api.record(primary_record(ctx, name, variant, api.labels, api.now()))
        rs = self.parts.routes.get(ctx.req.route) if ctx.rs is None else ctx.rs
        sh = rs.cfg.shadow if rs is not None else None
        if sh is None or ctx.error is not None or ctx.response is None or ctx.response.cache is not None:
            return
        if ctx.req.caller is not None and ctx.req.caller.internal:
            return  # never shadow a shadow (or the gateway's own calls)
        if self.rng.random() >= sh.sample:
            return
        api.mirror(shadow_name(rs.name, sh), sh, ctx)


def primary_record(ctx: RequestContext, name: str, variant: str, labels: dict[str, str], at: float) -> Record:
    resp, err = ctx.response, ctx.error
    latency = (time.perf_counter() - ctx.perf) * 1000.0
    if resp is not None and err is None:
        return Record(name, variant, at, resp.latency_ms or latency, True, None, resp.ttft_ms,
                      resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.cost, resp.deployment,
                      labels.get(resp.deployment))
    billed = ctx.billed
    return Record(name, variant, at, latency, False, type(err).__name__ if err else "Unknown",
                  cost=billed[1] if billed else 0.0, deployment=billed[2] if billed else None)


async def run_shadow(api: Experiments, name: str, cfg: Any, ctx: RequestContext) -> None:
    """The mirrored call: the primary's request on ``cfg.target`` as an internal caller whose spend is
    budget subject key ``shadow:<name>``; its record carries the answers' agreement."""
    primary = ctx.response
    assert primary is not None
    req, started = ctx.req, api.now()
    caller = Caller(key_id=f"shadow:{name}", team=None, user=None, tags=("shadow",), internal=True)
    t0 = time.perf_counter()
    try:
        resp = await api.gateway.acomplete(cfg.target, list(req.messages), caller=caller,
                                           max_tokens=req.max_tokens, temperature=req.temperature,
                                           tools=req.tools, response_format=req.response_format)
    except Exception as exc:  # noqa: BLE001 - a shadow's failure is a record, never the caller's error
        api.record(Record(name, "b", started, (time.perf_counter() - t0) * 1000.0, False, type(exc).__name__))
        api.record(shadow_primary(name, ctx, api.labels, started))
        return
    a, b = primary.content or "", resp.content or ""
    agreement = text_agreement(a, b)
    similarity = await embedded_similarity(api, a, b)
    judged = await judge(api, name, cfg, req.messages, a, b, caller)
    api.record(shadow_primary(name, ctx, api.labels, started, agreement, a == b))
    api.record(Record(name, "b", started, resp.latency_ms, True, None, resp.ttft_ms, resp.usage.prompt_tokens,
                      resp.usage.completion_tokens, resp.cost, resp.deployment, api.labels.get(resp.deployment),
                      agreement, a == b, similarity, judged))


async def embedded_similarity(api: Experiments, a: str, b: str) -> float | None:
    """Cosine similarity of the two answers with the response cache's embedder (None without one)."""
    cache = api.gateway.cache
    embedder = getattr(cache, "embedder", None) if cache is not None else None
    if embedder is None or not a or not b:
        return None
    try:
        vecs = np.asarray(await embedder.embed([a, b]), dtype=float)
    except Exception as exc:  # noqa: BLE001 - a comparison is optional
        log.warning("shadow similarity not computed: %s: %s", type(exc).__name__, exc)
        return None
    na, nb = np.linalg.norm(vecs[0]), np.linalg.norm(vecs[1])
    return float(np.clip(vecs[0] @ vecs[1] / (na * nb), -1.0, 1.0)) if na and nb else None


JUDGE_PROMPT = (
    "Two assistants answered the same conversation. Reply with one number from 0 to 1: how well answer B "
    "agrees in substance with answer A (1: same meaning, 0: contradicts or misses the point).\n\n"
    "Last user turn:\n{question}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"
)
_NUMBER = re.compile(r"\b(?:0(?:\.\d+)?|1(?:\.0+)?)\b")


async def judge(api: Experiments, name: str, cfg: Any, messages: list[Any], a: str, b: str,
                caller: Caller) -> float | None:
    """The judge route's agreement score for a pair, within ``judge_timeout`` (None: no judge, a
    timeout, a failure, or a reply without a number in [0, 1])."""
    if cfg.judge is None:
        return None
    question = next((m.get("content") for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), "")
    prompt = JUDGE_PROMPT.format(question=str(question)[:4000], a=a[:4000], b=b[:4000])
    try:
        resp = await asyncio.wait_for(api.gateway.acomplete(cfg.judge, [{"role": "user", "content": prompt}],
                                                            caller=caller, max_tokens=8, temperature=0),
                                      cfg.judge_timeout)
    except Exception as exc:  # noqa: BLE001 - timeouts included: the pair simply has no judge score
        log.warning("shadow judge %s: %s", cfg.judge, type(exc).__name__)
        return None
    m = _NUMBER.search(resp.content or "")
    return float(m.group(0)) if m else None


def shadow_primary(name: str, ctx: RequestContext, labels: dict[str, str], at: float,
                   agreement: float | None = None, exact: bool | None = None) -> Record:
    r = primary_record(ctx, name, "a", labels, at)
    return Record(r.experiment, r.variant, r.time, r.latency_ms, r.ok, r.error_class, r.ttft_ms, r.prompt_tokens,
                  r.completion_tokens, r.cost, r.deployment, r.label, agreement, exact)


__all__ = ["Experiment", "bucket", "run_shadow", "text_agreement"]
