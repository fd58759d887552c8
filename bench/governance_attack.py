"""Governance under attack (issue 11): budgets, billing and audit when a key holder tries to get around them.

Every scenario but one runs 4 worker processes x 50 concurrent attackers, each process with its own
``hyperion_core.Gateway`` built from one shared config: ``state.backend: redis`` on ONE real local Redis
(``hyperion_core.redis_server``), virtual keys in Redis (one per process, created once up front by this
process), a hard daily budget on the scenario's team, and one JSONL audit log that all the processes
append to. Upstream is ONE mock provider (``hyperion_core.mock_provider``) in this process, shared over
loopback HTTP; each scenario has its own deployment (faults and counters apart) priced at $5 / $20 per
million input / output tokens so the dollar figures are readable. Each attacker makes a fixed number of
attempts (a refusal does not stop it). Budgets are sized at a fraction of what the attempts would cost if
all were answered (measured first with one unbudgeted probe call), so an attack that slips past the
reservation shows up as overspend.

Scenarios:

S1 streams       every stream is answered, then abandoned: half are read to their last chunk (the one
                 with usage) and ``aclose()``d, a quarter ``aclose()``d after 10 chunks, a quarter
                 cancelled (the task consuming it is cancelled) mid-way
S2 extra params  ``max_completion_tokens=100000`` with ``max_tokens=1`` on a long prompt (3/5 of the
                 attackers), ``model="o1-pro"`` (1/5; must be refused), unknown keys (1/5; refused)
S3 long prompts  2,000 space-separated digits or CJK characters: the provider counts ~2x chars/4
                 tokens (tiktoken ``encoding_for("gpt-4o-mini")``: 2.5-4x)
S4 shared id     every call of every process carries the same caller-chosen ``request_id``
S5 400 at once   one process, 400 concurrent attackers on the Redis state
S6 Redis outage  paced traffic (upstream latency 150 ms); Redis is killed (SIGKILL) mid-traffic and
                 started again on the same port 8 s later. It comes back with its data, as a Redis
                 with persistence does: an RDB snapshot is saved under ``CLIENT PAUSE WRITE`` just
                 before the kill, and the new server loads it before it serves a command. Requests during the outage may be refused (counted
                 by error class); an answered request must still be billed (settle failures are queued
                 and written once Redis is back)

Measured per scenario, after every process has closed its gateway (which writes queued settlements):
overspend = max(ledger spend, billed-by-caller spend) - limit, when positive; answered requests (an
``acomplete`` that returned, or a stream whose last chunk reached the caller); refused requests by error
class; unbilled answered requests: the ledger's settled request count (``spend_report("team")``) and
spend (``governance.status``) against what the callers were answered (``resp.cost``; for a stream read to
its end, the price of the usage its last chunk carried) plus what the abandoned streams were billed (their
audit events); lost audit events = requests made - events in the log (and ``verify()`` of the chain).
Targets (issue 11): overspend $0.00, lost audit events 0, unbilled answered requests 0; also: every
``model=`` override and unknown key refused, no hold left reserved.

    .venv/bin/python bench/governance_attack.py --quick        # fewer attempts per attacker, ~35 s
    .venv/bin/python bench/governance_attack.py --json bench/results/governance_attack.json   # ~45 s
    .venv/bin/python bench/governance_attack.py --only S6 --strict
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # hyperion_core from this checkout
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _common import (  # noqa: E402
    add_common_args,
    arg_parser,
    exit_code,
    git_rev,
    package_versions,
    run_meta,
    targets_table,
    write_json,
)

PRICING = {"input_per_mtok": 5.0, "output_per_mtok": 20.0}
MODEL = "gpt-4o-mini"
OUTAGE_S = 8.0
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
CJK = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从"


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    procs: int
    attackers: int  # per process
    rounds: int  # attempts per attacker (full run); S6 is paced by time instead
    quick_rounds: int
    budget_fraction: float  # limit = fraction x what every attempt would cost if answered


SCENARIOS = (
    Scenario("S1", "streams closed after the last chunk / cancelled mid-way", 4, 50, 4, 2, 0.3),
    Scenario("S2", "extra params: max_completion_tokens, model=o1-pro, unknown keys", 4, 50, 3, 2, 0.5),
    Scenario("S3", "long prompts (digits, CJK) at ~2x chars/4 tokens", 4, 50, 4, 2, 0.5),
    Scenario("S4", "one caller-chosen request_id shared by every call", 4, 50, 3, 2, 0.5),
    Scenario("S5", "400 concurrent requests in one process", 1, 400, 2, 1, 0.5),
    Scenario("S6", "Redis killed for 8 s mid-traffic", 4, 50, 0, 0, 0.6),
)


def words(n: int, seed: str) -> str:
    rnd = random.Random(seed)
    return " ".join(rnd.choice(WORDS) for _ in range(n))


def long_prompt(kind: str, seed: str, n: int = 2000) -> str:
    rnd = random.Random(seed)
    if kind == "digits":
        return " ".join(str(rnd.randrange(10)) for _ in range(n))
    return " ".join(rnd.choice(CJK) for _ in range(n))


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- the attacks (run inside the worker processes) -----------------------------------------------


class Tally:
    """What one worker process saw, caller-side."""

    def __init__(self) -> None:
        self.made = 0
        self.answered = 0
        self.answered_usd = 0.0
        self.refused: Counter[str] = Counter()
        self.samples: dict[str, str] = {}
        self.violations: list[str] = []  # things that must never be answered, answered
        self.stream_to_end: list[str] = []  # request ids of streams read to their last chunk
        self.abandoned: list[str] = []  # request ids of streams closed / cancelled mid-way
        self.answered_in_outage = 0
        self.phases: Counter[str] = Counter()  # S6: answered / refused (by class) before, during, after the outage
        self.last = ""

    def refuse(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.refused[name] += 1
        self.last = name
        self.samples.setdefault(name, str(exc)[:200])

    def out(self) -> dict[str, Any]:
        return {
            "made": self.made, "answered": self.answered, "answered_usd": self.answered_usd,
            "refused": dict(self.refused), "samples": self.samples, "violations": self.violations[:20],
            "violations_n": len(self.violations), "stream_to_end": self.stream_to_end, "abandoned": self.abandoned,
            "answered_in_outage": self.answered_in_outage, "phases": dict(self.phases),
        }


async def _answered(t: Tally, gw: Any, req: Any) -> Any:
    t.made += 1
    try:
        resp = await gw.acomplete(req)
    except Exception as exc:  # noqa: BLE001 - every refusal is counted by class
        t.refuse(exc)
        return None
    t.answered += 1
    t.answered_usd += resp.cost
    return resp


async def attack_streams(gw: Any, job: dict[str, Any], t: Tally, i: int, r: int) -> None:
    route, key = job["route"], job["key"]
    price = gw.route(route).deployments[0].adapter.target.price
    req = gw.request(route, user(f"stream {job['proc']}-{i}-{r}: " + words(60, f"s1-{i}-{r}")), virtual_key=key,
                     max_tokens=300)
    mode = ("to_end", "to_end", "close", "cancel")[(i + r) % 4]
    t.made += 1
    s = gw.astream(req)
    if mode == "to_end":
        try:
            async for chunk in s:
                if chunk.usage is not None:  # the last chunk: the whole answer is here; hang up now
                    t.answered += 1
                    t.answered_usd += price.cost(chunk.usage)
                    t.stream_to_end.append(req.request_id)
                    break
            else:
                t.violations.append("a stream ended without a usage chunk")
            await s.aclose()
        except Exception as exc:  # noqa: BLE001
            t.refuse(exc)
        return
    if mode == "close":
        try:
            n = 0
            async for _ in s:
                n += 1
                if n == 10:
                    break
            await s.aclose()
            t.abandoned.append(req.request_id)
        except Exception as exc:  # noqa: BLE001
            t.refuse(exc)
        return
    got: list[int] = []

    async def consume() -> None:
        async for _ in s:
            got.append(1)

    task = asyncio.ensure_future(consume())
    try:
        while not got and not task.done():
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.02)  # a few chunks in (the deployment sends one word per 2 ms)
        task.cancel()
        await task
    except asyncio.CancelledError:
        t.abandoned.append(req.request_id)
    except Exception as exc:  # noqa: BLE001
        t.refuse(exc)
    else:
        t.violations.append("a stream meant to be cancelled finished first")


async def attack_extra(gw: Any, job: dict[str, Any], t: Tally, i: int, r: int) -> None:
    route, key = job["route"], job["key"]
    mode = i % 5
    if mode <= 2:  # the reservation must count max_completion_tokens, not max_tokens
        req = gw.request(route, user(words(800, f"s2-{job['proc']}-{i}-{r}")), virtual_key=key, max_tokens=1,
                         max_completion_tokens=100_000)
        resp = await _answered(t, gw, req)
        if resp is not None and resp.model != MODEL:
            t.violations.append(f"answered by {resp.model}")
    elif mode == 3:  # the deployment owns the model
        req = gw.request(route, user("hi " + words(5, f"o1-{i}-{r}")), virtual_key=key, max_tokens=50, model="o1-pro")
        if await _answered(t, gw, req) is not None:
            t.violations.append("model='o1-pro' was answered")
    else:  # unknown keys are refused unless the route allows them
        extra = ({"temprature": 0.2}, {"foo_bar": 1}, {"max_tokens_override": 100_000})[(i + r) % 3]
        req = gw.request(route, user("hi " + words(5, f"uk-{i}-{r}")), virtual_key=key, max_tokens=50, **extra)
        if await _answered(t, gw, req) is not None:
            t.violations.append(f"unknown parameter {next(iter(extra))} was answered")


async def attack_long(gw: Any, job: dict[str, Any], t: Tally, i: int, r: int) -> None:
    kind = "digits" if (i + r) % 2 == 0 else "cjk"
    req = gw.request(job["route"], user(long_prompt(kind, f"s3-{job['proc']}-{i}-{r}")), virtual_key=job["key"],
                     max_tokens=16)
    await _answered(t, gw, req)


async def attack_shared_id(gw: Any, job: dict[str, Any], t: Tally, i: int, r: int) -> None:
    req = gw.request(job["route"], user(words(100, f"s4-{job['proc']}-{i}-{r}")), virtual_key=job["key"],
                     max_tokens=200)
    req.request_id = "same"
    await _answered(t, gw, req)


async def attack_plain(gw: Any, job: dict[str, Any], t: Tally, i: int, r: int) -> None:
    req = gw.request(job["route"], user(words(30, f"{job['sid']}-{job['proc']}-{i}-{r}")), virtual_key=job["key"],
                     max_tokens=60)
    await _answered(t, gw, req)


ATTACKS = {"S1": attack_streams, "S2": attack_extra, "S3": attack_long, "S4": attack_shared_id, "S5": attack_plain}


async def worker_main(job: dict[str, Any]) -> dict[str, Any]:
    from hyperion_core import Gateway
    from hyperion_core.tokens import encoding_for

    encoding_for(MODEL)  # the tokenizer the reservation counts with: loaded before the attack starts
    gw = Gateway(job["config"])
    t = Tally()
    Path(job["ready"]).write_text("ready")  # then wait for the driver's go, which says when to start
    go = Path(job["go"])
    while not go.exists():
        await asyncio.sleep(0.01)
    job.update(json.loads(go.read_text()))
    while time.time() < job["start_at"]:
        await asyncio.sleep(0.002)
    t0 = time.monotonic()
    if job["sid"] == "S6":
        end_at, kill_at, back_at = job["end_at"], job["kill_at"], job["back_at"]

        async def paced(i: int) -> None:
            rnd = random.Random(f"{job['proc']}-{i}")
            r = 0
            while time.time() < end_at:
                before, refused = t.answered, sum(t.refused.values())
                started = time.time()
                await attack_plain(gw, job, t, i, r)
                now = time.time()
                phase = "before" if now < kill_at else "outage" if started < back_at else "after"
                if t.answered > before:
                    t.phases[f"answered_{phase}"] += 1
                    if kill_at <= now and started <= back_at:
                        t.answered_in_outage += 1
                elif sum(t.refused.values()) > refused:
                    t.phases[f"refused_{phase}:{t.last}"] += 1
                r += 1
                await asyncio.sleep(rnd.uniform(0.1, 0.5))

        await asyncio.gather(*(paced(i) for i in range(job["attackers"])))
    else:
        attack = ATTACKS[job["sid"]]

        async def attacker(i: int) -> None:
            for r in range(job["rounds"]):
                await attack(gw, job, t, i, r)

        await asyncio.gather(*(attacker(i) for i in range(job["attackers"])))
    wall = time.monotonic() - t0
    pending = gw.services.pending
    queued_before_close = len(pending)
    await gw.aclose()  # flushes the audit log; writes the settlements Redis could not take
    out = t.out()
    out.update(wall_s=wall, pending={"queued_at_end": queued_before_close, "replayed": pending.replayed,
                                     "lost_holds": pending.lost_holds, "left": len(pending)},
               audit=gw.services.audit.metrics if gw.services.audit else {})
    out["audit"] = {k: v for k, v in out["audit"].items() if isinstance(v, (int, float, bool))}
    return out


def worker(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    res = asyncio.run(worker_main(job))
    Path(job["result"]).write_text(json.dumps(res))
    return 0


# -- the driver -----------------------------------------------------------------------------------


def route_config(mock: Any, sid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    provider = {"kind": "openai", "api_key": "sk-bench", "base_url": mock.base_url(f"ga-{sid}", "openai")}
    route = {"deployments": [{"model": f"p{sid}/{MODEL}", "pricing": PRICING}], "retry": {"attempts": 0}}
    return provider, route


def gateway_config(mock: Any, sc: Scenario, redis_url: str, prefix: str, work: Path, limit: float) -> dict[str, Any]:
    provider, route = route_config(mock, sc.id)
    return {
        "providers": {f"p{sc.id}": provider},
        "routes": {sc.id: route},
        "state": {"backend": "redis", "redis_url": redis_url, "prefix": prefix, "path": str(work / "state")},
        "keys": {"required": True, "store": "redis"},
        "governance": {"budgets": [{"scope": "team", "id": sc.id, "period": "daily", "limit_usd": limit,
                                    "alert_thresholds": []}]},
        "audit": {"sink": f"jsonl://{work}/audit-{sc.id}.jsonl", "spool_path": str(work / f"spool-{sc.id}-{{pid}}.jsonl")},
    }


async def probe(mock: Any, sc: Scenario) -> dict[str, Any]:
    """What one answered attempt of the scenario costs (one unbudgeted call, same route and price)."""
    from hyperion_core import Gateway
    from hyperion_core.tokens import encoding_for

    provider, route = route_config(mock, sc.id)
    gw = Gateway({"providers": {f"p{sc.id}": provider}, "routes": {sc.id: route}})
    info: dict[str, Any] = {}
    try:
        if sc.id == "S1":
            resp = await gw.acomplete(sc.id, user("stream probe: " + words(60, "probe")), max_tokens=300)
        elif sc.id == "S2":
            resp = await gw.acomplete(sc.id, user(words(800, "probe")), max_tokens=1, max_completion_tokens=100_000)
        elif sc.id == "S3":
            enc = encoding_for(MODEL)
            for kind in ("digits", "cjk"):
                text = long_prompt(kind, "probe")
                r = await gw.acomplete(sc.id, user(text), max_tokens=16)
                info[kind] = {"chars": len(text), "chars_div_4": len(text) // 4, "tiktoken": len(enc.encode(text)),
                              "provider_prompt_tokens": r.usage.prompt_tokens}
            resp = r
        elif sc.id == "S4":
            resp = await gw.acomplete(sc.id, user(words(100, "probe")), max_tokens=200)
        else:
            resp = await gw.acomplete(sc.id, user(words(30, "probe")), max_tokens=60)
        info.update(cost_usd=resp.cost, prompt_tokens=resp.usage.prompt_tokens,
                    completion_tokens=resp.usage.completion_tokens)
    finally:
        await gw.aclose()
    return info


class Outage:
    """Kill Redis and bring it back on the same port with its data, as a Redis with persistence does:
    writes are paused (``CLIENT PAUSE WRITE``), an RDB snapshot is saved, the server is killed
    (SIGKILL); 8 s later a new server starts on the same port from that snapshot (Redis loads it
    before it serves a command)."""

    def __init__(self, server: Any, work: Path) -> None:
        self.server = server
        self.keep = work / "redis-rdb"
        self.keys = 0

    def kill(self) -> None:
        import shutil

        import redis

        r = redis.Redis(host="127.0.0.1", port=self.server.port)
        r.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")  # nothing lands between the snapshot and the kill
        r.save()
        self.keys = r.dbsize()
        r.close()
        self.keep.mkdir(exist_ok=True)
        shutil.copy(Path(self.server._dir) / "dump.rdb", self.keep / "dump.rdb")
        os.kill(self.server._proc.pid, signal.SIGKILL)
        self.server._proc.wait()
        self.server.stop()

    def restart(self) -> Any:
        from unittest import mock

        from hyperion_core.redis_server import RedisServer

        # RedisServer starts in a fresh temp folder: hand it the one holding the snapshot instead
        with mock.patch("hyperion_core.redis_server.tempfile.mkdtemp", return_value=str(self.keep)):
            self.server = RedisServer(port=self.server.port).start()
        return self.server


async def _again(call: Any, tries: int = 3) -> Any:
    """The driver's own reads: after the Redis restart, its first command on a pooled connection the
    kill closed fails once."""
    for i in range(tries):
        try:
            return await call()
        except Exception:  # noqa: BLE001
            if i == tries - 1:
                raise
            await asyncio.sleep(0.1)


async def run_scenario(sc: Scenario, ctx: dict[str, Any], quick: bool) -> dict[str, Any]:
    from hyperion_core import Gateway
    from hyperion_core.audit import AuditConfig

    mock, work = ctx["mock"], ctx["work"]
    pr = await probe(mock, sc)
    procs, attackers = sc.procs, sc.attackers
    rounds = sc.quick_rounds if quick else sc.rounds
    timeline: dict[str, float] = {}
    if sc.id == "S6":
        pre, post = (2.0, 3.0) if quick else (4.0, 5.0)
        # each attacker: ~0.15 s upstream + ~0.3 s pause per attempt, outside the outage
        potential = procs * attackers * (pre + post) / 0.45 * pr["cost_usd"]
    else:
        billable = 3 / 5 if sc.id == "S2" else 1.0
        potential = procs * attackers * rounds * billable * pr["cost_usd"]
    limit = round(sc.budget_fraction * potential, 4)
    cfg = gateway_config(mock, sc, ctx["redis"].url, ctx["prefix"], work, limit)
    admin = Gateway(cfg)
    keys = [(await admin.keys.create(f"{sc.id}-p{p}", team=sc.id))[0] for p in range(procs)]
    if sc.id == "S1":
        mock.fault(f"ga-{sc.id}", chunk_delay_ms=2)
    if sc.id == "S6":
        mock.fault(f"ga-{sc.id}", latency_ms=150)
    workers = []
    go = work / f"go-{sc.id}.json"
    for p in range(procs):
        jp = work / f"job-{sc.id}-{p}.json"
        job = {"sid": sc.id, "proc": p, "route": sc.id, "key": keys[p], "config": cfg, "attackers": attackers,
               "rounds": rounds, "result": str(work / f"result-{sc.id}-{p}.json"), "ready": f"{jp}.ready", "go": str(go)}
        jp.write_text(json.dumps(job))
        err = open(work / f"worker-{sc.id}-{p}.log", "wb")
        workers.append((subprocess.Popen([sys.executable, __file__, "--worker", str(jp)], stdout=err, stderr=err,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"}), jp, err))
    deadline = time.monotonic() + 120
    while not all(Path(f"{jp}.ready").exists() for _, jp, _ in workers):  # imported, gateway built
        dead = [(proc, jp) for proc, jp, _ in workers if proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            for proc, _, _ in workers:
                proc.kill()
            raise RuntimeError(f"{sc.id}: a worker did not get ready: see {work}/worker-{sc.id}-*.log")
        await asyncio.sleep(0.02)
    start_at = time.time() + 0.2  # every process starts together
    timeline = {"start_at": start_at}
    if sc.id == "S6":
        timeline.update(kill_at=start_at + pre, back_at=start_at + pre + OUTAGE_S, end_at=start_at + pre + OUTAGE_S + post)
    tmp_go = go.with_suffix(".tmp")
    tmp_go.write_text(json.dumps(timeline))
    tmp_go.replace(go)
    outage = None
    t0 = time.monotonic()
    if sc.id == "S6":
        outage = Outage(ctx["redis"], work)
        await asyncio.sleep(max(0.0, timeline["kill_at"] - time.time()))
        outage.kill()
        killed = time.time()
        await asyncio.sleep(max(0.0, timeline["back_at"] - time.time()))
        ctx["redis"] = outage.restart()
        timeline["down_s"] = round(time.time() - killed, 2)
    results = []
    for proc, jp, err in workers:
        try:
            rc = await asyncio.to_thread(proc.wait, 240)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        err.close()
        if rc != 0:
            tail = Path(err.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{sc.id}: worker {jp.name} exited {rc}:\n{tail}")
        results.append(json.loads(Path(str(jp).replace("job-", "result-")).read_text()))
    wall = time.monotonic() - t0
    mock.clear_faults(f"ga-{sc.id}")

    # -- the ledger, after every process wrote what it had queued
    (st,) = await _again(lambda: admin.governance.status({"team": sc.id}))
    rows = {r.group: r for r in await _again(lambda: admin.governance.spend_report("team"))}
    row = rows.get(sc.id)
    await admin.aclose()
    # -- the audit log all the processes appended to
    alog = AuditConfig(sink=cfg["audit"]["sink"]).build()
    events = await alog.query(limit=None)
    report = await alog.verify()
    await alog.aclose()

    agg = Counter()
    refused: Counter[str] = Counter()
    samples: dict[str, str] = {}
    to_end: set[str] = set()
    violations: list[str] = []
    pend = Counter()
    phases: Counter[str] = Counter()
    audit_dropped = 0
    for res in results:
        for k in ("made", "answered", "answered_usd", "answered_in_outage", "violations_n"):
            agg[k] += res[k]
        refused.update(res["refused"])
        for k, v in res["samples"].items():
            samples.setdefault(k, v)
        to_end.update(res["stream_to_end"])
        violations += res["violations"]
        pend.update(res["pending"])
        phases.update(res["phases"])
        audit_dropped += res["audit"].get("dropped", 0)
    abandoned_ids = {a for res in results for a in res["abandoned"]}
    # what the abandoned streams were billed: their audit events (an abandoned stream is "cancelled")
    abandoned_ev = [e for e in events if e.request_id in abandoned_ids]
    abandoned_billed = [e for e in abandoned_ev if e.cost > 0]
    # any other request the ledger should hold: failed or cut after the provider was paid
    other_billed = [e for e in events if e.outcome != "ok" and e.cost > 0 and e.request_id not in to_end
                    and e.request_id not in abandoned_ids]
    expected_usd = agg["answered_usd"] + sum(e.cost for e in abandoned_billed) + sum(e.cost for e in other_billed)
    expected_settles = agg["answered"] + len(abandoned_billed) + len(other_billed)
    ledger_usd, ledger_requests = st.spent_usd, (row.requests if row else 0)
    report_usd = row.cost_usd if row else 0.0
    tol = 1e-6 + 1e-9 * expected_usd
    unbilled_usd = max(0.0, expected_usd - ledger_usd)
    unbilled = max(0, expected_settles - ledger_requests) + sum(1 for e in abandoned_ev if e.cost <= 0)
    if unbilled == 0 and unbilled_usd > tol:
        unbilled = 1  # money missing though the counts agree: at least one answer is not (fully) billed
    spent_true = max(ledger_usd, expected_usd)
    overspend = max(0.0, spent_true - st.limit_usd)
    settle_errors = sum(1 for e in events if "settle_error" in (e.metadata or {}))
    outcomes = Counter(e.outcome for e in events)
    stats = mock.stats().get(f"ga-{sc.id}", {})
    out = {
        "id": sc.id, "title": sc.title, "processes": procs, "attackers_per_process": attackers,
        "attempts_per_attacker": rounds if sc.id != "S6" else "paced", "probe": pr,
        "limit_usd": st.limit_usd, "ledger_spent_usd": round(ledger_usd, 6), "spend_report_usd": round(report_usd, 6),
        "callers_billed_usd": round(expected_usd, 6), "reserved_left_usd": round(st.reserved_usd, 6),
        "overspend_usd": round(overspend, 6), "budget_reached": spent_true >= 0.9 * st.limit_usd or
        refused.get("BudgetExceededError", 0) > 0,
        "made": agg["made"], "answered": agg["answered"], "abandoned_streams": len(abandoned_ids),
        "abandoned_billed": len(abandoned_billed), "abandoned_billed_usd": round(sum(e.cost for e in abandoned_billed), 6),
        "refused": dict(sorted(refused.items())), "refused_total": sum(refused.values()),
        "refusal_samples": samples, "expected_settles": expected_settles, "ledger_requests": ledger_requests,
        "unbilled_answered": unbilled, "unbilled_usd": round(unbilled_usd, 6),
        "audit_events": len(events), "audit_lost": max(0, agg["made"] - len(events)),
        "audit_extra": max(0, len(events) - agg["made"]), "audit_dropped": audit_dropped,
        "audit_outcomes": dict(outcomes), "audit_verify_ok": report.ok, "audit_verify": str(report),
        "violations": agg["violations_n"], "violation_samples": violations[:5],
        "upstream_requests": stats.get("requests", 0), "wall_s": round(wall, 2),
    }
    if sc.id == "S6":
        out.update(timeline={k: (round(v - start_at, 2) if k.endswith("_at") else v) for k, v in timeline.items()
                             if k != "start_at"},
                   keys_restored=outage.keys if outage else 0, answered_during_outage=agg["answered_in_outage"],
                   by_phase=dict(sorted(phases.items())),
                   settle_errors_audited=settle_errors, settlements_written_late=pend["replayed"],
                   late_settlements_without_hold=pend["lost_holds"], settlements_left_queued=pend["left"])
    return out


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    over = sum(r["overspend_usd"] for r in rows)
    lost = sum(r["audit_lost"] + r["audit_extra"] for r in rows)
    broken = [r["id"] for r in rows if not r["audit_verify_ok"]]
    unbilled = sum(r["unbilled_answered"] for r in rows)
    viol = sum(r["violations"] for r in rows)
    left = sum(r["reserved_left_usd"] for r in rows)
    worst = max(rows, key=lambda r: r["overspend_usd"])
    return [
        {"target": "overspend, every scenario", "goal": "$0.00", "value": f"${over:.2f}"
         + (f" (worst {worst['id']}: ${worst['overspend_usd']:.4f})" if over > 0 else ""), "pass": over <= 0},
        {"target": "lost audit events", "goal": "0", "value": f"{lost}" + (f"; chain broken in {','.join(broken)}" if broken
                                                                           else "; every chain verifies"),
         "pass": lost == 0 and not broken},
        {"target": "unbilled answered requests", "goal": "0", "value": str(unbilled), "pass": unbilled == 0},
        {"target": "model override / unknown keys answered", "goal": "0", "value": str(viol), "pass": viol == 0},
        {"target": "holds left reserved after the run", "goal": "$0.00", "value": f"${left:.4f}", "pass": left <= 1e-9},
    ]


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| scenario | requests | answered | refused (by class) | limit $ | spent $ | overspend $ | unbilled | audit lost |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ref = ", ".join(f"{k} {v}" for k, v in r["refused"].items()) or "0"
        ans = f"{r['answered']:,}"
        if r["abandoned_streams"]:
            ans += f" + {r['abandoned_streams']} abandoned ({r['abandoned_billed']} billed)"
        lines.append(f"| {r['id']} {r['title']} | {r['made']:,} | {ans} | {ref} | {r['limit_usd']:.2f} | "
                     f"{r['ledger_spent_usd']:.2f} | {r['overspend_usd']:.2f} | {r['unbilled_answered']} | "
                     f"{r['audit_lost'] + r['audit_extra']} |")
    for r in rows:
        if r["id"] == "S6":
            ph = r["by_phase"]
            after = sum(v for k, v in ph.items() if k.startswith("refused_after:") and "Budget" not in k)
            lines.append("")
            lines.append(f"S6: Redis down {r['timeline']['down_s']} s; {r['answered_during_outage']} requests answered "
                         f"while it was down; {r['settle_errors_audited']} settles failed (each on its audit event) "
                         f"and {r['settlements_written_late']} were written once Redis was back "
                         f"({r['settlements_left_queued']} left queued); {after} refused by the store after the "
                         f"restart (pooled connections the kill had closed)")
    return lines


async def main_async(args: Any, only: set[str] | None) -> list[dict[str, Any]]:
    from hyperion_core.mock_provider import MockProvider
    from hyperion_core.redis_server import RedisServer

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hyperion-attack-") as tmp:
        ctx: dict[str, Any] = {"work": Path(tmp), "prefix": f"ga{uuid.uuid4().hex[:8]}"}
        ctx["redis"] = RedisServer().start()
        ctx["mock"] = MockProvider().start()
        try:
            for sc in SCENARIOS:
                if only and sc.id not in only:
                    continue
                row = await run_scenario(sc, ctx, args.quick)
                rows.append(row)
                extra = ""
                if sc.id == "S6":
                    extra = (f" outage answered={row['answered_during_outage']} settle_errors={row['settle_errors_audited']}"
                             f" written_late={row['settlements_written_late']}")
                print(f"  {sc.id} {sc.title:58} made={row['made']} answered={row['answered']} "
                      f"refused={row['refused_total']} spent=${row['ledger_spent_usd']:.3f}/{row['limit_usd']:.3f} "
                      f"over=${row['overspend_usd']:.4f} unbilled={row['unbilled_answered']} "
                      f"audit_lost={row['audit_lost'] + row['audit_extra']}{extra} ({row['wall_s']} s)", flush=True)
        finally:
            ctx["mock"].stop()
            ctx["redis"].stop()
    return rows


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    p = arg_parser(__doc__)
    add_common_args(p, pin=False, quiet=False)
    p.add_argument("--quick", action="store_true", help="fewer attempts per attacker (~35 s)")
    p.add_argument("--only", help="comma-separated scenario ids (S1..S6)")
    args = p.parse_args()
    only = {s.strip().upper() for s in args.only.split(",")} if args.only else None
    logging.getLogger("hyperion").setLevel(logging.CRITICAL)  # the driver's own admin calls only
    t0 = time.monotonic()
    rows = asyncio.run(main_async(args, only))
    targets = _targets(rows)
    meta = run_meta(os.cpu_count(), None, git_rev("hyperion_core", "bench/governance_attack.py"),
                    package_versions(("redis", "aiohttp", "tiktoken"), python=True))
    meta.update(quick=args.quick, pricing_per_mtok=PRICING, outage_s=OUTAGE_S, audit_sink="jsonl (one file, shared)",
                wall_s=round(time.monotonic() - t0, 1))
    print()
    print("\n".join(_table(rows)))
    print()
    print("\n".join(targets_table(targets)))
    print(f"\nwall time {meta['wall_s']} s")
    write_json(args.json, {"meta": meta, "scenarios": rows, "targets": targets})
    return exit_code(args.strict, targets)


if __name__ == "__main__":
    sys.exit(main())
