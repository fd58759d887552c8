"""The response cache: hit latency per tier, savings on a replayed workload, answer quality.

Three parts, one run, one process (the mock provider and the Redis servers are other processes):

1. **Hit latency** through ``Gateway.acomplete``, end to end, for every tier at two sizes (10k and
   100k entries in the tier by default), next to a provider round trip to the mock provider in the same
   run (the same gateway and route with ``CacheControl(no_cache=True)``):

   * ``L1``            memory gateway, route with L1 only;
   * ``L2 (Redis)``    Redis gateway, route with L2 only (L1 off, so every hit is a Redis ``GET``);
   * ``semantic mem``  memory gateway, route with L1 + semantic (in-process NumPy store);
   * ``semantic Redis`` Redis gateway, route with L1 + L2 + semantic (redisvl index, FLAT, cosine):
     a semantic hit there pays for the L1 and L2 misses before it, as it would in production.

   Each size has its own gateway and, on Redis, its own Redis server, so "10k entries" means 10k.
   The tiers are filled before anything is timed, through ``gw.cache.store`` (the path a miss takes),
   with synthetic answers; the fill time is reported, not mixed into any latency. Every entry is in the
   same tenant scope and semantic partition, the worst case for the semantic search: it compares the
   query with all 10k / 100k vectors.

   Prompts are built so that each timed request hits the entry it was meant to: entry ``i`` is
   "Write a short poem about A, B, C and D." (a distinct set of four words per entry); the semantic query
   is a light paraphrase ("Please write a short poem about A, B, C and D") chosen, before the run, among
   the entries whose paraphrase is within the route's threshold, passes the guards and has entry ``i``
   as its nearest neighbour among all entries. During the run every timed response is checked: the tier
   (``resp.cache.tier``) and the content (entry ``i``'s answer, or the mock's answer for the provider
   round trip); one wrong response aborts the run. The mock provider's request counter proves that only
   the provider round trips went upstream.

   Measurement as in ``overhead.py``: rounds call every case once in a seeded shuffled order, after
   warm-up rounds; the heap (with the filled tiers) is frozen (``gc.freeze()``); with 2+ CPUs this
   process is pinned to CPU 0 (with one BLAS thread, see below) and the mock provider and Redis servers
   to the last CPU. Redis-side time per command comes from ``INFO commandstats`` deltas; a breakdown of
   a semantic hit on Redis (embed, exact-tier misses, vector search, guards) is timed separately after
   the interleaved phase, and ``--index-probe`` times the same vector query on the cache's FLAT index,
   without its tag filter, and on an HNSW index built over the same hashes for the probe.

   The query selection also records, per query, the nearest *other* entry (it shares three of the four
   words): whether it is within the threshold and passes every guard, i.e. whether the cache would have
   served that entry's answer had the intended one not been there. A batch of fills during which Redis
   failed (a command over the 0.25 s socket timeout on a busy machine) is stored again and counted.

2. **Replayed workload**: N requests (default 1,000) drawn from 200 prompt families with Zipf
   repetition (s = 1.0); a share (default 30%) of them use one of four paraphrase templates of the
   family's base prompt. Replayed sequentially against the mock with the cache off, on (memory: L1 +
   semantic) and on (Redis: L1 + L2 + semantic): upstream calls (the mock's counter), dollars paid
   (sum of ``resp.cost``) and saved (sum of ``resp.cache.cost_saved``), hits per tier, and wrong
   answers (a hit whose content answers another family's prompt).

3. **Quality**: wrong answers and paraphrase recall on the near-miss pair sets
   (``tests/data/near_miss*.jsonl``), guards on and off: end to end through a Gateway with the
   route's default semantic settings (the embedder's recommended threshold: wordllama 0.22, MiniLM
   0.15; each pair in its own ``CacheControl.namespace``;
   A is asked, then B; a hit on a near-miss pair is a wrong answer), for wordllama and MiniLM; next to
   ``bench/cache_quality.py``'s figures (re-run into a temporary file, or ``--quality-from`` a saved
   JSON), which include redisvl's ``SemanticCache`` at its default threshold with the same embedder.

Usage::

    .venv/bin/python bench/cache.py                     # 10k and 100k entries, 2,000 rounds (~3 min)
    .venv/bin/python bench/cache.py --quick             # 1k and 10k entries, 300 rounds, saved quality (~20 s)
    .venv/bin/python bench/cache.py --index-probe --json bench/results/cache.json   # + FLAT vs HNSW (~30 s more)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "--no-pin" not in sys.argv[1:]:
    # This process is pinned to one CPU (below). OpenBLAS would still start one worker thread per CPU,
    # and its workers spin after every BLAS call (the semantic tier's matrix-vector product, the
    # embedder's norms): on a shared core that spinning lands in whatever is timed next (measured: a
    # 10k x 256 product right after a 100k x 256 one took 7.7 ms at p90 instead of 0.34 ms). One
    # BLAS thread, set before NumPy loads; --no-pin keeps the library defaults.
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # hyperion_core from this checkout

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    BenchError,
    Noise,
    add_common_args,
    arg_parser,
    exit_code,
    git_rev,
    package_versions,
    pin_to_cpu0,
    print_noise,
    run_meta,
    summary_us,
    targets_table,
    wait_quiet,
    write_json,
)

perf_ns = time.perf_counter_ns
MODEL = "gpt-4o-mini"
REDISVL_DEFAULT = 0.1
STRICT = ("numbers", "dates", "quoted")


# -- helper processes ----------------------------------------------------------------------------


def _pin(pid: int, cpu: int | None) -> None:
    if cpu is not None:
        try:
            os.sched_setaffinity(pid, {cpu})
        except OSError:
            pass


class MockProcess:
    """The mock provider (``hyperion_core.mock_provider.serve``) in its own process; the control
    surface through ``MockProviderClient`` (HTTP admin API)."""

    def __init__(self, cpu: int | None) -> None:
        from hyperion_core.mock_provider.client import MockProviderClient
        from hyperion_core.redis_server import free_port

        self.port = free_port()
        code = f"from hyperion_core.mock_provider import serve; serve('127.0.0.1', {self.port})"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _pin(self.proc.pid, cpu)
        self.client = MockProviderClient(f"http://127.0.0.1:{self.port}")
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_mock/health", timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the mock provider did not start") from None
                time.sleep(0.05)

    def base_url(self, dep: str) -> str:
        return self.client.base_url(dep, "openai")

    def requests(self, dep: str | None = None) -> int:
        st = self.client.stats()
        if dep is None:
            return sum(v.get("requests", 0) for v in st.values())
        return st.get(dep, {}).get("requests", 0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_redis(cpu: int | None) -> Any:
    from hyperion_core.redis_server import RedisServer

    server = RedisServer().start()
    proc = getattr(server, "_proc", None)
    if proc is not None:
        _pin(proc.pid, cpu)
    return server


async def commandstats(client: Any) -> dict[str, dict[str, float]]:
    raw = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): v for k, v in raw.items()}


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    out = {}
    for cmd, a in after.items():
        b = before.get(cmd, {"calls": 0, "usec": 0})
        calls = int(a["calls"]) - int(b["calls"])
        if calls > 0:
            usec = float(a["usec"]) - float(b["usec"])
            out[cmd] = {"calls": calls, "usec_per_call": round(usec / calls, 2)}
    return out


# -- prompts -------------------------------------------------------------------------------------

# 64 plain lower-case words (the mock provider's filler words): no names, numbers or dates, so the
# guards have nothing to object to between an entry and its paraphrase.
WORDS = (
    "alpha",
    "amber",
    "anchor",
    "atlas",
    "beacon",
    "birch",
    "breeze",
    "canyon",
    "cedar",
    "cobalt",
    "comet",
    "coral",
    "delta",
    "dune",
    "echo",
    "ember",
    "falcon",
    "fern",
    "fjord",
    "flint",
    "galaxy",
    "garnet",
    "glacier",
    "harbor",
    "hazel",
    "horizon",
    "indigo",
    "iris",
    "jade",
    "juniper",
    "kestrel",
    "lagoon",
    "lantern",
    "lilac",
    "maple",
    "meadow",
    "meteor",
    "mosaic",
    "nectar",
    "nova",
    "oasis",
    "onyx",
    "orchid",
    "pebble",
    "pine",
    "prairie",
    "quartz",
    "quill",
    "raven",
    "reef",
    "ridge",
    "saffron",
    "sage",
    "sierra",
    "summit",
    "tundra",
    "umber",
    "valley",
    "velvet",
    "willow",
    "zenith",
    "zephyr",
    "orbit",
    "timber",
)
ENTRY = "Write a short poem about {}, {}, {} and {}."
QUERY = "Please write a short poem about {}, {}, {} and {}"


def word_sets(n: int, seed: int = 1) -> list[tuple[str, ...]]:
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    out: list[tuple[str, ...]] = []
    while len(out) < n:
        c = tuple(sorted(rng.sample(range(len(WORDS)), 4)))
        if c not in seen:
            seen.add(c)
            out.append(tuple(WORDS[j] for j in c))
    return out


def entry_answer(i: int, words: tuple[str, ...]) -> str:
    body = " ".join(WORDS[(i * 7 + k * 13) % len(WORDS)] for k in range(60))
    return f"Poem {i} on {', '.join(words)}: {body}."


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- gateways ------------------------------------------------------------------------------------


def provider(mock: MockProcess, dep: str) -> dict[str, Any]:
    return {"kind": "openai", "api_key": "sk-bench", "base_url": mock.base_url(dep)}


def latency_gateway(mock: MockProcess, n: int, redis_url: str | None) -> Any:
    """One gateway per size and backend. Memory: routes ``l1`` (L1 only) and ``sem`` (L1 +
    semantic). Redis: ``l2`` (L2 only) and ``sem`` (L1 + L2 + semantic)."""
    from hyperion_core import Gateway

    cap = {"max_entries": 2 * n}
    off = {"enabled": False}
    dep = [{"model": f"p/{MODEL}"}]
    if redis_url is None:
        routes = {
            "l1": {"deployments": dep, "cache": {"l1": cap, "l2": off}},
            "sem": {"deployments": dep, "cache": {"semantic": {"enabled": True, **cap}}},
        }
        state: dict[str, Any] = {"backend": "memory"}
    else:
        routes = {
            "l2": {"deployments": dep, "cache": {"l1": off}},
            "sem": {"deployments": dep, "cache": {"semantic": {"enabled": True}}},
        }
        state = {"backend": "redis", "redis_url": redis_url, "prefix": f"bench{n}"}
    for r in routes.values():
        r["retry"] = {"attempts": 0}
    return Gateway(
        {
            "providers": {"p": provider(mock, "latency")},
            "routes": routes,
            "state": state,
            "cache": {"embedder": "wordllama"},
        }
    )


def effective_threshold(gw: Any, route: str) -> float:
    """The distance threshold a route's semantic lookups use (unset = the embedder's recommendation)."""
    t = gw.route(route).cfg.cache.semantic.threshold
    return t if t is not None else getattr(gw.cache.embedder, "recommended_threshold", 0.1)


def synthetic_response(gw: Any, req: Any, content: str) -> Any:
    from hyperion_core.types import ChatResponse, Usage

    rs = gw.route(req.route)
    price = rs.deployments[0].adapter.target.price
    usage = Usage(len(req.messages[-1]["content"].split()) + 3, len(content.split()))
    return ChatResponse(
        request_id=req.request_id,
        route=req.route,
        deployment=rs.deployments[0].name,
        model=MODEL,
        content=content,
        tool_calls=(),
        finish_reason="stop",
        usage=usage,
        cost=price.cost(usage),
        attempts=(),
        latency_ms=0.0,
    )


async def prefill(gw: Any, route: str, sets: list[tuple[str, ...]], concurrency: int) -> tuple[float, int]:
    """Store one entry per word set through ``gw.cache.store``, ``concurrency`` at a time; a batch
    during which Redis failed (e.g. a command over the 0.25 s socket timeout on a busy machine) is
    stored again after the backend's back-off. Returns (seconds, batches stored again)."""
    settings = gw.route(route).cfg.cache
    cache = gw.cache
    backoff = cache.backend_config.outage_backoff
    t0 = time.perf_counter()

    def failures() -> int:
        m = cache.metrics
        return m.backend_errors + m.backend_skipped

    async def one(i: int) -> bool:
        req = gw.request(route, user(ENTRY.format(*sets[i])))
        return await cache.store(req, synthetic_response(gw, req, entry_answer(i, sets[i])), settings)

    n = len(sets)
    again = 0
    for lo in range(0, n, concurrency):
        for attempt in range(6):
            before = failures()
            ok = await asyncio.gather(*(one(i) for i in range(lo, min(n, lo + concurrency))))
            if all(ok) and failures() == before:
                break
            if attempt == 5:
                raise BenchError(f"pre-fill of route {route} keeps failing: {cache.metrics.as_dict()}")
            again += 1
            await asyncio.sleep(backoff + 0.05)
    return time.perf_counter() - t0, again


def pick_semantic_queries(
    sets: list[tuple[str, ...]], need: int, threshold: float, seed: int
) -> tuple[list[int], dict[str, Any]]:
    """Entries whose paraphrase query (QUERY) has that entry as its nearest neighbour among all
    entries, within ``threshold`` (minus a margin) and passing every guard."""
    from hyperion_core.cache.embedders import WordLlamaEmbedder
    from hyperion_core.cache.guards import check_guards

    emb = WordLlamaEmbedder()
    mat = emb.embed_sync([ENTRY.format(*s) for s in sets])
    order = list(range(len(sets)))
    random.Random(seed).shuffle(order)
    picked: list[int] = []
    tried = 0
    dists: list[float] = []
    others: list[float] = []  # distance from each picked query to the nearest *other* entry
    other_passing = 0  # ... and how often that other entry is within the threshold and passes the guards
    for lo in range(0, len(order), 512):
        batch = order[lo : lo + 512]
        qs = [QUERY.format(*sets[i]) for i in batch]
        qv = emb.embed_sync(qs)
        d = 1.0 - qv @ mat.T
        for row, i, q in zip(d, batch, qs):
            tried += 1
            two = np.argpartition(row, 1)[:2]
            two = two[np.argsort(row[two])]
            if two[0] == i and row[i] <= threshold - 0.01 and check_guards(q, ENTRY.format(*sets[i])).passed:
                picked.append(i)
                dists.append(float(row[i]))
                j = int(two[1])
                others.append(float(row[j]))
                other_passing += bool(row[j] <= threshold and check_guards(q, ENTRY.format(*sets[j])).passed)
            if len(picked) >= need:
                break
        if len(picked) >= need:
            break
    if len(picked) < need:
        raise BenchError(f"only {len(picked)} of {need} semantic queries qualify")
    return picked, {
        "threshold": threshold,
        "tried": tried,
        "picked": len(picked),
        "distance_median": round(statistics.median(dists), 4),
        "distance_max": round(max(dists), 4),
        "nearest_other_entry_distance_median": round(statistics.median(others), 4),
        "nearest_other_entry_within_threshold_and_passing_guards": other_passing,
    }


# -- the interleaved latency phase ---------------------------------------------------------------


@dataclass
class Case:
    name: str
    tier: str | None  # expected resp.cache.tier (None: a provider round trip)
    call: Callable[[int], Awaitable[Any]]
    expect: Callable[[int], str]
    indexes: list[int]
    size: int | None = None
    backend: str = "memory"
    samples: list[int] = field(default_factory=list)
    checked: int = 0


async def run_latency(cases: list[Case], warmup: int, iterations: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    names = [c.name for c in cases]
    by_name = {c.name: c for c in cases}
    for r in range(warmup + iterations):
        if r == warmup:
            gc.collect()
            gc.freeze()
        order = names[:]
        rng.shuffle(order)
        for name in order:
            c = by_name[name]
            i = c.indexes[r % len(c.indexes)]
            t0 = perf_ns()
            resp = await c.call(i)
            t1 = perf_ns()
            tier = resp.cache.tier if resp.cache is not None else None
            if tier != c.tier:
                raise BenchError(
                    f"{c.name}: request {r} was served by {tier or 'the provider'}, expected "
                    f"{c.tier or 'the provider'}"
                )
            want = c.expect(i)
            if resp.content != want:
                raise BenchError(f"{c.name}: request {r} got {resp.content!r:.80}, expected {want!r:.80}")
            c.checked += 1
            if r >= warmup:
                c.samples.append(t1 - t0)


async def semantic_breakdown(
    gw: Any, route: str, sets: list[tuple[str, ...]], indexes: list[int], n: int
) -> dict[str, Any]:
    """The parts of a semantic hit on Redis, timed one at a time (the same calls the cache makes)."""
    from hyperion_core.cache.guards import analyze, check_guards
    from hyperion_core.cache.keys import semantic_partition_key, semantic_text

    cache = gw.cache
    settings = gw.route(route).cfg.cache
    sem = settings.semantic
    threshold = effective_threshold(gw, route)
    parts: dict[str, list[int]] = {
        k: [] for k in ("exact_misses", "embed", "vector_search", "guards", "whole_lookup")
    }
    for j, i in enumerate(indexes[:n]):
        text = QUERY.format(*sets[i]) + " " * (1 + j % 5)  # a new text: embedder and guard caches cold
        req = gw.request(route, user(text))
        k = cache.keys(req, settings)
        t0 = perf_ns()
        miss = await cache._exact(route, k, settings)
        t1 = perf_ns()
        vec = await cache._embed(semantic_text(req))
        t2 = perf_ns()
        store = cache._semantic_store_for(route, settings, vec.shape[0])
        cands = await store.search(
            vec, scope=k.sh, partition=semantic_partition_key(req, k.scope), threshold=threshold, k=sem.top_k
        )
        t3 = perf_ns()
        analyze.cache_clear()
        ok = check_guards(text, cands[0].prompt).passed if cands else False
        t4 = perf_ns()
        if miss is not None or not ok or cands[0].answer.content != entry_answer(i, sets[i]):
            raise BenchError(
                f"breakdown: entry {i} was not a clean semantic hit (exact hit: {miss is not None}, "
                f"candidates: {[(c.prompt, round(c.distance, 4)) for c in cands]}, guards: {ok}, "
                f"cache metrics: {cache.metrics.as_dict()})"
            )
        t5 = perf_ns()
        hit = await cache.lookup(gw.request(route, user(text + " ")), settings)
        t6 = perf_ns()
        if hit is None or hit.info.tier != "semantic":
            raise BenchError(f"breakdown: entry {i} lookup missed")
        for key, ns in (
            ("exact_misses", t1 - t0),
            ("embed", t2 - t1),
            ("vector_search", t3 - t2),
            ("guards", t4 - t3),
            ("whole_lookup", t6 - t5),
        ):
            parts[key].append(ns)
    return {k: summary_us(v) for k, v in parts.items()}


async def index_probe(
    gw: Any, route: str, sets: list[tuple[str, ...]], indexes: list[int], url: str, n: int = 50
) -> dict[str, Any]:
    """Where the vector search's time goes on Redis: the query the cache sends (the same redisvl
    ``VectorQuery``: KNN 3 among the entries whose scope AND partition tags match) on the cache's FLAT
    index, the same KNN without the tag filter, and the same query on an HNSW index built over the
    same hashes for this probe (then dropped; the entries stay). Server-side time from ``INFO
    commandstats``, client-side round trip through redis-py."""
    import redis
    from redisvl.query import VectorQuery
    from redisvl.query.filter import Tag

    from hyperion_core.cache.keys import semantic_partition_key

    cache = gw.cache
    settings = gw.route(route).cfg.cache
    store = cache._semantic_store_for(route, settings, cache.embedder.dim)
    client = redis.Redis.from_url(url)
    probe = f"{store.name}:probe-hnsw"
    out: dict[str, Any] = {"flat_index": store.name}
    t0 = time.perf_counter()
    client.execute_command(
        "FT.CREATE",
        probe,
        "ON",
        "HASH",
        "PREFIX",
        "1",
        f"{store.name}:",
        "SCHEMA",
        "scope",
        "TAG",
        "partition",
        "TAG",
        "vector",
        "VECTOR",
        "HNSW",
        "6",
        "TYPE",
        "FLOAT32",
        "DIM",
        str(store.dim),
        "DISTANCE_METRIC",
        "COSINE",
    )
    try:
        while True:
            info = client.ft(probe).info()
            if str(info.get("indexing", "0")) in ("0", "0.0") and int(info.get("num_docs", 0)) >= len(sets):
                break
            if time.perf_counter() - t0 > 300:
                raise BenchError("the HNSW probe index took over 5 minutes to build")
            time.sleep(0.25)
        out["hnsw_build_s"] = round(time.perf_counter() - t0, 1)
        queries = []
        for i in indexes[:n]:
            text = QUERY.format(*sets[i])
            req = gw.request(route, user(text))
            k = cache.keys(req, settings)
            vec = (await cache._embed(text)).astype(np.float32).tobytes()
            tags = (Tag("scope") == k.sh) & (Tag("partition") == semantic_partition_key(req, k.scope))
            queries.append((i, vec, tags))
        variants = {
            "FLAT, scope + partition filter (as the cache sends)": (store.name, True),
            "FLAT, no filter": (store.name, False),
            "HNSW, scope + partition filter": (probe, True),
        }
        for label, (index, filtered) in variants.items():
            xs = []
            s0 = client.info("commandstats").get("cmdstat_FT.SEARCH", {"calls": 0, "usec": 0})
            found = 0
            for i, vec, tags in queries:
                q = VectorQuery(
                    vec,
                    "vector",
                    return_fields=["prompt"],
                    num_results=3,
                    filter_expression=tags if filtered else None,
                )
                t = perf_ns()
                res = client.ft(index).search(q.query, query_params=q.params)
                xs.append(perf_ns() - t)
                docs = res.docs if hasattr(res, "docs") else res.get("results", [])
                first = docs[0] if docs else None
                prompt = (
                    getattr(first, "prompt", None)
                    if first is not None and not isinstance(first, dict)
                    else (first or {}).get("extra_attributes", {}).get("prompt")
                )
                if isinstance(prompt, bytes):
                    prompt = prompt.decode()
                found += prompt == ENTRY.format(*sets[i])
            s1 = client.info("commandstats")["cmdstat_FT.SEARCH"]
            out[label] = {
                "client_p50_us": summary_us(xs)["p50_us"],
                "server_usec_per_call": round((s1["usec"] - s0["usec"]) / (s1["calls"] - s0["calls"]), 1),
                "nearest_is_the_intended_entry": f"{found}/{len(queries)}",
            }
    finally:
        client.execute_command("FT.DROPINDEX", probe)
        client.close()
    return out


async def latency_phase(
    args: argparse.Namespace, mock: MockProcess, servers: dict[int, Any]
) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from hyperion_core import CacheControl
    from hyperion_core.mock_provider.content import answer_for

    largest = max(args.sizes)
    all_sets = word_sets(largest)
    rounds = args.warmup + args.iterations
    out: dict[str, Any] = {
        "sizes": args.sizes,
        "prefill": {},
        "prefill_batches_stored_again": {},
        "entries": {},
        "query_selection": {},
    }
    errors_during_prefill: dict[int, tuple[int, int]] = {}
    gws: dict[tuple[str, int], Any] = {}
    cases: list[Case] = []
    for n in args.sizes:
        sets = all_sets[:n]
        gm = gws[("memory", n)] = latency_gateway(mock, n, None)
        gr = gws[("redis", n)] = latency_gateway(mock, n, servers[n].url)
        threshold = effective_threshold(gm, "sem")
        if threshold != effective_threshold(gr, "sem"):
            raise BenchError("the memory and Redis semantic routes use different thresholds")
        out["semantic_threshold"] = threshold
        t0 = time.perf_counter()
        picked, sel = pick_semantic_queries(sets, min(n, rounds), threshold, seed=n)
        sel["seconds"] = round(time.perf_counter() - t0, 2)
        out["query_selection"][str(n)] = sel
        print(f"pre-fill {n:,} entries per tier ...", flush=True)
        pf = {
            "L1": await prefill(gm, "l1", sets, 1),
            "semantic mem (+L1)": await prefill(gm, "sem", sets, 1),
            "L2 (Redis)": await prefill(gr, "l2", sets, args.prefill_concurrency),
            "semantic Redis (+L1, L2)": await prefill(gr, "sem", sets, args.prefill_concurrency),
        }
        out["prefill"][str(n)] = {k: round(v[0], 2) for k, v in pf.items()}
        out["prefill_batches_stored_again"][str(n)] = {k: v[1] for k, v in pf.items()}
        print(
            "  "
            + ", ".join(
                f"{k} {v[0]:.1f} s" + (f" ({v[1]} batches again)" if v[1] else "") for k, v in pf.items()
            ),
            flush=True,
        )
        errs = gr.cache.metrics
        errors_during_prefill[n] = (errs.backend_errors, errs.backend_skipped)
        rc = aioredis.Redis.from_url(servers[n].url)
        (sem_store,) = gr.cache._sem_redis.values()
        info = await rc.execute_command("FT.INFO", sem_store.name)
        if not isinstance(info, dict):
            info = dict(zip(info[::2], info[1::2]))
        info = {(k.decode() if isinstance(k, bytes) else k): v for k, v in info.items()}
        l2_keys = 0
        async for _ in rc.scan_iter(match=f"bench{n}:cache:*", count=10_000):
            l2_keys += 1
        out["entries"][str(n)] = {
            "L1": len(gm.cache.l1("l1")),
            "semantic mem": len(gm.cache._sem_memory["sem"]),
            "redis semantic index docs": int(info["num_docs"]),
            "redis L2 keys (l2 + sem routes)": l2_keys,
            "redis dbsize": await rc.dbsize(),
        }
        await rc.aclose()
        ent = out["entries"][str(n)]
        if (
            ent["L1"] != n
            or ent["semantic mem"] != n
            or ent["redis semantic index docs"] != n
            or l2_keys != 2 * n
        ):
            raise BenchError(f"pre-fill of {n} entries is incomplete: {ent}")

        def expect_entry(i: int, sets: list[tuple[str, ...]] = sets) -> str:
            return entry_answer(i, sets[i])

        rng = random.Random(n)
        exact_idx = [rng.randrange(n) for _ in range(rounds)]

        def call(
            gw: Any, route: str, fmt: str, sets: list[tuple[str, ...]] = sets
        ) -> Callable[[int], Awaitable[Any]]:
            async def go(i: int) -> Any:
                return await gw.acomplete(route, user(fmt.format(*sets[i])))

            return go

        cases += [
            Case(f"L1 @ {n:,}", "l1", call(gm, "l1", ENTRY), expect_entry, exact_idx, n),
            Case(f"L2 (Redis) @ {n:,}", "l2", call(gr, "l2", ENTRY), expect_entry, exact_idx, n, "redis"),
            Case(f"semantic mem @ {n:,}", "semantic", call(gm, "sem", QUERY), expect_entry, picked, n),
            Case(
                f"semantic Redis @ {n:,}",
                "semantic",
                call(gr, "sem", QUERY),
                expect_entry,
                picked,
                n,
                "redis",
            ),
        ]

    # the provider round trip: same gateway and route as L1 at the smallest size, cache bypassed
    gm0 = gws[("memory", min(args.sizes))]
    bypass = CacheControl(no_cache=True)
    prompts = [f"Write a short poem about request number {k}." for k in range(rounds)]

    async def upstream(k: int) -> Any:
        return await gm0.acomplete("l1", user(prompts[k]), cache=bypass)

    cases.insert(
        0,
        Case(
            "provider round trip (cache bypassed)",
            None,
            upstream,
            lambda k: answer_for(prompts[k]),
            list(range(rounds)),
        ),
    )
    clients = {n: aioredis.Redis.from_url(servers[n].url) for n in args.sizes}
    before = {n: await commandstats(c) for n, c in clients.items()}
    up0 = mock.requests()
    print(
        f"interleaved: {args.warmup} warm-up + {args.iterations} rounds x {len(cases)} cases ...", flush=True
    )
    t0 = time.perf_counter()
    await run_latency(cases, args.warmup, args.iterations)
    wall = time.perf_counter() - t0
    gc.unfreeze()
    upstream_calls = mock.requests() - up0
    redis_cmds = {str(n): stats_delta(before[n], await commandstats(c)) for n, c in clients.items()}
    if upstream_calls != rounds:
        raise BenchError(
            f"{upstream_calls} upstream requests during the latency phase, expected {rounds} "
            "(the provider round trips only)"
        )
    for (kind, n), g in gws.items():
        m = g.cache.metrics
        if (
            (m.backend_errors, m.backend_skipped) != errors_during_prefill.get(n, (0, 0))
            and kind == "redis"
            or m.embed_errors
        ):
            raise BenchError(f"cache errors during the run: {m.as_dict()}")
    print("semantic hit on Redis, part by part ...", flush=True)
    breakdown = {}
    for n in args.sizes:
        sets = all_sets[:n]
        picked = cases[[c.name for c in cases].index(f"semantic Redis @ {n:,}")].indexes
        b0 = await commandstats(clients[n])
        breakdown[str(n)] = await semantic_breakdown(gws[("redis", n)], "sem", sets, picked, args.breakdown)
        breakdown[str(n)]["redis_side"] = stats_delta(b0, await commandstats(clients[n]))
        if args.index_probe and n == largest:
            print(f"index probe at {n:,} entries: FLAT vs HNSW ...", flush=True)
            breakdown[str(n)]["index_probe"] = await index_probe(
                gws[("redis", n)], "sem", sets, picked, servers[n].url
            )
    for c in clients.values():
        await c.aclose()
    for g in gws.values():
        await g.aclose()

    out["cases"] = {
        c.name: {
            "tier": c.tier or "provider",
            "size": c.size,
            "backend": c.backend,
            "verified": c.checked,
            **summary_us(c.samples),
        }
        for c in cases
    }
    out["upstream_requests_during_phase"] = upstream_calls
    out["redis_commandstats"] = redis_cmds
    out["semantic_redis_breakdown"] = breakdown
    out["wall_s"] = round(wall, 1)
    return out


# -- the replayed workload -----------------------------------------------------------------------

TOPICS = (
    "photosynthesis",
    "the water cycle",
    "compound interest",
    "plate tectonics",
    "black holes",
    "the immune system",
    "supply and demand",
    "natural selection",
    "the greenhouse effect",
    "inflation",
    "machine learning",
    "blockchain technology",
    "quantum entanglement",
    "the theory of relativity",
    "DNA replication",
    "the nitrogen cycle",
    "ocean tides",
    "volcanic eruptions",
    "the stock market",
    "opportunity cost",
    "recursion in programming",
    "public key cryptography",
    "the TCP handshake",
    "garbage collection",
    "database indexing",
    "the French Revolution",
    "the Roman Empire",
    "the Industrial Revolution",
    "the Cold War",
    "the Renaissance",
    "cloud formation",
    "lightning",
    "rainbows",
    "the northern lights",
    "earthquakes",
    "how vaccines work",
    "antibiotic resistance",
    "the circulatory system",
    "how muscles grow",
    "sleep cycles",
    "the placebo effect",
    "cognitive dissonance",
    "confirmation bias",
    "the Dunning-Kruger effect",
    "classical conditioning",
    "how airplanes fly",
    "how rockets reach orbit",
    "how batteries store energy",
    "how solar panels work",
    "how nuclear reactors work",
    "the Pythagorean theorem",
    "prime numbers",
    "calculus derivatives",
    "probability distributions",
    "matrix multiplication",
    "the Big Bang",
    "dark matter",
    "the life cycle of stars",
    "exoplanets",
    "the Doppler effect",
    "how the internet works",
    "DNS resolution",
    "HTTP cookies",
    "load balancing",
    "content delivery networks",
    "object oriented programming",
    "functional programming",
    "unit testing",
    "version control with git",
    "continuous integration",
    "the separation of powers",
    "how elections work",
    "the electoral college",
    "federalism",
    "judicial review",
    "impressionist painting",
    "baroque music",
    "the sonnet form",
    "magical realism",
    "the hero's journey",
    "how coffee is roasted",
    "sourdough fermentation",
    "the Maillard reaction",
    "how cheese is made",
    "why bread rises",
    "coral reef ecosystems",
    "animal migration",
    "bee pollination",
    "food chains",
    "deforestation",
    "the Krebs cycle",
    "protein folding",
    "enzyme catalysis",
    "cell division",
    "the nervous system",
    "Keynesian economics",
    "comparative advantage",
    "monetary policy",
    "tariffs",
    "the gig economy",
    "how GPS works",
    "how touchscreens work",
    "how noise cancelling headphones work",
    "how microwaves heat food",
    "how refrigerators work",
    "the scientific method",
    "peer review",
    "statistical significance",
    "correlation and causation",
    "Bayesian reasoning",
    "stoic philosophy",
    "utilitarianism",
    "existentialism",
    "the trolley problem",
    "Plato's allegory of the cave",
    "the Silk Road",
    "the printing press",
    "the invention of the telephone",
    "the Apollo program",
    "the Manhattan Project",
    "how hurricanes form",
    "El Nino",
    "ocean acidification",
    "permafrost thaw",
    "the ozone layer",
    "neural networks",
    "gradient descent",
    "overfitting",
    "decision trees",
    "reinforcement learning",
    "container orchestration",
    "microservices",
    "message queues",
    "rate limiting",
    "caching strategies",
    "the Fibonacci sequence",
    "the golden ratio",
    "fractals",
    "game theory",
    "the prisoner's dilemma",
    "how credit scores work",
    "index funds",
    "mortgage amortization",
    "diversification",
    "bond yields",
    "the Great Wall of China",
    "the pyramids of Giza",
    "Stonehenge",
    "Machu Picchu",
    "the Colosseum",
    "how languages evolve",
    "the origin of writing",
    "sign languages",
    "bilingualism",
    "pidgin languages",
    "meditation",
    "intermittent fasting",
    "aerobic exercise",
    "the gut microbiome",
    "circadian rhythms",
    "how wind turbines work",
    "geothermal energy",
    "hydrogen fuel cells",
    "carbon capture",
    "smart grids",
    "the Olympic Games",
    "the offside rule in football",
    "how marathons are timed",
    "the physics of a curveball",
    "chess openings",
    "how bridges carry loads",
    "skyscraper foundations",
    "reinforced concrete",
    "suspension bridges",
    "earthquake resistant buildings",
    "the Higgs boson",
    "superconductivity",
    "the photoelectric effect",
    "entropy",
    "the uncertainty principle",
    "copyright law",
    "patents",
    "trademarks",
    "open source licenses",
    "fair use",
    "jazz improvisation",
    "the twelve bar blues",
    "how orchestras tune",
    "music theory scales",
    "hip hop sampling",
    "the Mars rovers",
    "the International Space Station",
    "the James Webb telescope",
    "solar eclipses",
    "the phases of the moon",
    "volcanic islands",
    "glaciers",
    "desert ecosystems",
    "rainforest canopies",
    "river deltas",
)
BASE = "Explain {} in simple terms."
# four paraphrase templates of different reach: with wordllama at its default threshold (0.22), measured
# against the 200 base prompts, 100%, 98%, 72% and 76% of them are within the threshold
PARAPHRASES = (
    "Explain {} simply.",
    "Can you explain {} in simple terms?",
    "Could you explain {} in plain terms?",
    "Give me a simple explanation of {}.",
)


def workload(n: int, families: int, share: float, zipf_s: float, seed: int) -> list[tuple[int, int]]:
    """(family, form) per request; form 0 is the base prompt, 1..4 a paraphrase."""
    rng = random.Random(seed)
    weights = [1.0 / (r + 1) ** zipf_s for r in range(families)]
    fams = rng.choices(range(families), weights=weights, k=n)
    return [(f, rng.randrange(1, len(PARAPHRASES) + 1) if rng.random() < share else 0) for f in fams]


def form_text(family: int, form: int) -> str:
    return (BASE if form == 0 else PARAPHRASES[form - 1]).format(TOPICS[family])


async def replay(
    mock: MockProcess, mode: str, reqs: list[tuple[int, int]], redis_url: str | None
) -> dict[str, Any]:
    from hyperion_core import Gateway
    from hyperion_core.mock_provider.content import answer_for

    dep = f"workload-{mode}"
    route: dict[str, Any] = {"deployments": [{"model": f"p/{MODEL}"}], "retry": {"attempts": 0}}
    cfg: dict[str, Any] = {"providers": {"p": provider(mock, dep)}, "routes": {"chat": route}}
    if mode != "off":
        route["cache"] = {"semantic": {"enabled": True}}
    if mode == "redis":
        cfg["state"] = {"backend": "redis", "redis_url": redis_url, "prefix": f"wl{os.getpid()}"}
    gw = Gateway(cfg)
    answers = {f: {answer_for(form_text(f, k)) for k in range(len(PARAPHRASES) + 1)} for f, _ in reqs}
    up0 = mock.requests(dep)
    tiers: Counter[str] = Counter()
    paid = saved = 0.0
    wrong = 0
    para_total = para_cached = para_semantic = 0
    t0 = time.perf_counter()
    for f, form in reqs:
        resp = await gw.acomplete("chat", user(form_text(f, form)))
        paid += resp.cost
        tier = resp.cache.tier if resp.cache is not None else "upstream"
        tiers[tier] += 1
        if resp.cache is not None:
            saved += resp.cache.cost_saved
            if resp.content not in answers[f]:
                wrong += 1
        if form:
            para_total += 1
            para_cached += resp.cache is not None
            para_semantic += tier == "semantic"
    wall = time.perf_counter() - t0
    upstream = mock.requests(dep) - up0
    metrics = gw.cache.metrics.as_dict() if gw.cache is not None else None
    await gw.aclose()
    if upstream != tiers["upstream"]:
        raise BenchError(
            f"workload {mode}: {upstream} upstream requests, {tiers['upstream']} responses not from cache"
        )
    return {
        "upstream_calls": upstream,
        "hits": {k: v for k, v in tiers.items() if k != "upstream"},
        "paid_usd": paid,
        "saved_usd": saved,
        "wrong_answers": wrong,
        "paraphrased_requests": para_total,
        "paraphrased_served_from_cache": para_cached,
        "paraphrased_served_by_semantic": para_semantic,
        "wall_s": round(wall, 2),
        "cache_metrics": metrics,
    }


async def workload_phase(args: argparse.Namespace, mock: MockProcess, redis_url: str) -> dict[str, Any]:
    reqs = workload(args.workload_requests, len(TOPICS), args.paraphrase_share, args.zipf, seed=7)
    out: dict[str, Any] = {
        "requests": len(reqs),
        "families": len(TOPICS),
        "zipf_s": args.zipf,
        "paraphrase_share": args.paraphrase_share,
        "families_seen": len({f for f, _ in reqs}),
        "distinct_texts": len(set(reqs)),
        "paraphrased": sum(1 for _, k in reqs if k),
        "base_template": BASE,
        "paraphrase_templates": list(PARAPHRASES),
        "model": MODEL,
        "modes": {},
    }
    for mode in ("off", "memory", "redis"):
        print(f"workload: {len(reqs)} requests, cache {mode} ...", flush=True)
        out["modes"][mode] = await replay(mock, mode, reqs, redis_url)
    off = out["modes"]["off"]["paid_usd"]
    for m in out["modes"].values():
        m["saved_share_of_uncached_spend"] = m["saved_usd"] / off if off else None
    return out


# -- quality -------------------------------------------------------------------------------------

DATASETS = {
    "main": ROOT / "tests/data/near_miss.jsonl",
    "holdout": ROOT / "tests/data/near_miss_holdout.jsonl",
}


def load_pairs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def score(pairs: list[dict[str, Any]], hits: list[bool]) -> dict[str, Any]:
    near = [(p, h) for p, h in zip(pairs, hits) if p["kind"] == "near_miss"]
    para = [(p, h) for p, h in zip(pairs, hits) if p["kind"] == "paraphrase"]
    by_cat: Counter[str] = Counter()
    for p, h in near:
        by_cat[p["category"]] += int(h)
    return {
        "wrong": sum(h for _, h in near),
        "near_misses": len(near),
        "wrong_strict": sum(by_cat[c] for c in STRICT),
        "wrong_by_category": dict(by_cat),
        "wrong_ids": [p["id"] for p, h in near if h],
        "recalled": sum(h for _, h in para),
        "paraphrases": len(para),
    }


async def quality_gateway(mock: MockProcess, embedder: str) -> dict[str, Any]:
    """Each pair set through a Gateway (memory backend, route defaults: the embedder's threshold, top 3, every
    guard on / every guard off), A then B in the pair's own namespace."""
    from hyperion_core import CacheControl, Gateway
    from hyperion_core.cache.guards import GUARD_NAMES
    from hyperion_core.mock_provider.content import answer_for

    dep = f"quality-{embedder}"
    base = {"deployments": [{"model": f"p/{MODEL}"}], "retry": {"attempts": 0}}
    gw = Gateway(
        {
            "providers": {"p": provider(mock, dep)},
            "routes": {
                "guards_on": {**base, "cache": {"semantic": {"enabled": True}}},
                "guards_off": {
                    **base,
                    "cache": {"semantic": {"enabled": True, "guards": dict.fromkeys(GUARD_NAMES, False)}},
                },
            },
            "cache": {"embedder": embedder},
        }
    )
    out: dict[str, Any] = {
        "embedder": gw.cache.embedder.name,
        "threshold": effective_threshold(gw, "guards_on"),
    }
    try:
        for ds, path in DATASETS.items():
            if not path.exists():
                continue
            pairs = load_pairs(path)
            res: dict[str, Any] = {}
            for route in ("guards_off", "guards_on"):
                hits = []
                for p in pairs:
                    cc = CacheControl(namespace=f"{route}:{p['id']}")
                    first = await gw.acomplete(route, user(p["a"]), cache=cc)
                    if first.cache is not None:
                        raise BenchError(f"quality: {p['id']} A was a hit in a fresh namespace")
                    second = await gw.acomplete(route, user(p["b"]), cache=cc)
                    hit = second.cache is not None
                    if hit and second.content != answer_for(p["a"]):
                        raise BenchError(f"quality: {p['id']} hit with an unexpected answer")
                    hits.append(hit)
                res[route] = score(pairs, hits) | {"hit_ids": [p["id"] for p, h in zip(pairs, hits) if h]}
            out[ds] = res
    finally:
        await gw.aclose()
    return out


def run_cache_quality(path: Path | None) -> tuple[dict[str, Any], str]:
    """``bench/cache_quality.py``'s results: re-run into a temporary file (``path`` None) or read."""
    if path is not None:
        return json.loads(path.read_text()), str(
            path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cache_quality.json"
        all_cpus = set(range(os.cpu_count() or 1))
        preexec = (lambda: os.sched_setaffinity(0, all_cpus)) if hasattr(os, "sched_setaffinity") else None
        subprocess.run(
            [sys.executable, str(HERE / "cache_quality.py"), "--json", str(out)],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            preexec_fn=preexec,
        )
        return json.loads(out.read_text()), "re-run in this run (bench/cache_quality.py)"


def quality_summary(cq: dict[str, Any]) -> dict[str, Any]:
    """The rows of cache_quality that this report needs."""
    keep = ("wrong", "near_misses", "wrong_strict", "recalled", "paraphrases", "wrong_by_category")
    out: dict[str, Any] = {}
    for ds, d in cq["datasets"].items():
        for emb, er in d["embedders"].items():
            row: dict[str, Any] = {}
            t = er["sweep"].get(f"{REDISVL_DEFAULT:g}")
            if t:
                row["own_0.1_guards_off"] = {k: t["guards_off"][k] for k in keep}
                row["own_0.1_guards_on"] = {k: t["guards_on"][k] for k in keep}
            if er.get("redisvl"):
                row["redisvl_default"] = {k: er["redisvl"][k] for k in keep} | {
                    "vectorizer": er["redisvl"]["vectorizer"]
                }
            for name, m in (er.get("recall_matched") or {}).items():
                if m:
                    row[f"recall_matched ({name})"] = {
                        "threshold": m["threshold"],
                        **{k: m["guards_on"][k] for k in keep},
                    }
            out.setdefault(ds, {})[emb] = row
    return out


def agreement(gateway: dict[str, Any], cq: dict[str, Any]) -> dict[str, Any]:
    """Do the Gateway's hits equal what cache_quality's per-pair distances and the guards predict at
    the same threshold? (Each pair is alone in its namespace, so top-k plays no part.)"""
    from hyperion_core.cache.guards import check_guards
    from hyperion_core.cache.semantic import EPS

    out: dict[str, Any] = {}
    for emb, g in gateway.items():
        for ds, path in DATASETS.items():
            dist = cq.get("datasets", {}).get(ds, {}).get("embedders", {}).get(emb, {}).get("distance")
            if ds not in g or not dist:
                continue
            pairs = load_pairs(path)
            off = {p["id"] for p in pairs if dist.get(p["id"], 9) <= g["threshold"] + EPS}
            on = {p["id"] for p in pairs if p["id"] in off and check_guards(p["b"], p["a"]).passed}
            diff = sorted(
                (off ^ set(g[ds]["guards_off"]["hit_ids"])) | (on ^ set(g[ds]["guards_on"]["hit_ids"]))
            )
            out[f"{ds}/{emb}"] = {"agrees": not diff, "differing_pairs": diff}
    return out


async def quality_phase(args: argparse.Namespace, mock: MockProcess) -> dict[str, Any]:
    out: dict[str, Any] = {"gateway": {}}
    embedders = ["wordllama"]
    try:
        from hyperion_core.cache.embedders import _require_minilm_extra

        _require_minilm_extra()
        embedders.append("minilm")
    except ImportError as exc:
        out["minilm_skipped"] = str(exc)
    for emb in embedders:
        print(f"quality through the Gateway: {emb} ...", flush=True)
        out["gateway"][emb] = await quality_gateway(mock, emb)
    if args.quality_from != "skip":
        print("quality: bench/cache_quality.py ...", flush=True)
        cq, source = run_cache_quality(None if args.quality_from == "rerun" else Path(args.quality_from))
        out["cache_quality_source"] = source
        out["cache_quality"] = quality_summary(cq)
        out["gateway_agrees_with_cache_quality"] = agreement(out["gateway"], cq)
    return out


# -- report --------------------------------------------------------------------------------------


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    cases = res["latency"]["cases"]
    big = max(res["latency"]["sizes"])

    def worst(prefix: str) -> tuple[float, str]:
        rows = [(v["p50_us"], k) for k, v in cases.items() if k.startswith(prefix)]
        return max(rows)

    l1, l1n = worst("L1 @")
    l2, l2n = worst("L2 (Redis) @")
    sem = cases[f"semantic Redis @ {big:,}"]["p50_us"]
    rows = [
        ("L1 hit p50 end to end through Gateway", f"{l1:.1f} µs ({l1n})", "< 50 µs", l1 < 50),
        ("Redis exact (L2) hit p50", f"{l2 / 1000:.3f} ms ({l2n})", "< 1 ms", l2 < 1000),
        (f"semantic hit p50 at {big:,} entries on Redis", f"{sem / 1000:.2f} ms", "< 5 ms", sem < 5000),
    ]
    q = res.get("quality")
    if q:
        strict = []
        for emb, g in q["gateway"].items():
            for ds in DATASETS:
                if ds in g:
                    strict.append(
                        (f"{ds}/{emb} Gateway {g['threshold']:g}", g[ds]["guards_on"]["wrong_strict"])
                    )
        for ds, d in (q.get("cache_quality") or {}).items():
            for emb, row in d.items():
                for name, v in row.items():
                    if name.startswith("recall_matched"):
                        strict.append((f"{ds}/{emb} {v['threshold']:g}", v["wrong_strict"]))
        total = sum(v for _, v in strict)
        bad = [k for k, v in strict if v]
        rows.append(
            (
                "wrong answers on number, date and quoted-string pairs (guards on)",
                f"{total} in {len(strict)} configurations" + (f" ({', '.join(bad)})" if bad else ""),
                "0",
                total == 0,
            )
        )
    return [{"target": t, "value": v, "goal": g, "pass": bool(p)} for t, v, g, p in rows]


def fmt_q(s: dict[str, Any]) -> str:
    return f"{s['wrong']}/{s['near_misses']} ({s['wrong_strict']}) · {s['recalled']}/{s['paraphrases']}"


def markdown(res: dict[str, Any]) -> str:
    m, lat = res["meta"], res["latency"]
    cases = lat["cases"]
    prov = cases["provider round trip (cache bypassed)"]
    lines = [
        f"Cache hit latency through `Gateway.acomplete`, end to end ({m['cpus']} CPUs, Python {m['python']}, "
        f"embedder wordllama, route default threshold {lat['semantic_threshold']:g}; {m['iterations']} interleaved rounds after "
        f"{m['warmup']} warm-up; local Redis {m['redis_version']} on loopback, one server per size; "
        f"`bench/cache.py`, {m['date'][:10]}). Every timed response was checked: tier and content.",
        "",
        "| case | entries | p50 µs | p90 µs | p99 µs | vs provider p50 |",
        "|---|---:|---:|---:|---:|---:|",
        f"| provider round trip to the mock (cache bypassed) | — | {prov['p50_us']:.1f} | {prov['p90_us']:.1f} | "
        f"{prov['p99_us']:.1f} | 1.00x |",
    ]
    for name, v in cases.items():
        if v["tier"] == "provider":
            continue
        label = name.rpartition(" @ ")[0]
        lines.append(
            f"| {label} | {v['size']:,} | {v['p50_us']:.1f} | {v['p90_us']:.1f} | {v['p99_us']:.1f} | "
            f"{v['p50_us'] / prov['p50_us']:.2f}x |"
        )
    big = str(max(lat["sizes"]))
    br = lat["semantic_redis_breakdown"].get(big)
    if br:
        rs = br["redis_side"]
        ft = rs.get("FT.SEARCH", {}).get("usec_per_call")
        lines += [
            "",
            f"A semantic hit on Redis at {int(big):,} entries, part by part (p50 µs): L1 + L2 misses "
            f"{br['exact_misses']['p50_us']:.0f}, embedding {br['embed']['p50_us']:.0f}, vector search "
            f"{br['vector_search']['p50_us']:.0f} (of which Redis-side `FT.SEARCH` {ft:.0f}), guards "
            f"{br['guards']['p50_us']:.0f}; whole lookup {br['whole_lookup']['p50_us']:.0f}.",
        ]
        ip = br.get("index_probe")
        if ip:
            lines += [
                "",
                "The same vector query, Redis-side µs per call (client round trip p50 µs): "
                + "; ".join(
                    f"{k} {v['server_usec_per_call']:.0f} ({v['client_p50_us']:.0f})"
                    for k, v in ip.items()
                    if isinstance(v, dict)
                )
                + f". The HNSW index (built for this probe in {ip['hnsw_build_s']} s) found "
                f"the intended entry first for {ip['HNSW, scope + partition filter']['nearest_is_the_intended_entry']} "
                "queries.",
            ]
    pf = lat["prefill"]
    lines += [
        "",
        "Pre-fill (not timed in any latency): "
        + "; ".join(
            f"{int(n):,} entries: " + ", ".join(f"{k} {v:.1f} s" for k, v in d.items()) for n, d in pf.items()
        )
        + ".",
    ]
    w = res.get("workload")
    if w:
        lines += [
            "",
            f"Replayed workload: {w['requests']:,} requests over {w['families']} prompt families (Zipf s={w['zipf_s']:g}; "
            f"{w['families_seen']} families and {w['distinct_texts']} distinct texts seen; {w['paraphrased']} requests "
            f"paraphrased with one of {len(w['paraphrase_templates'])} templates), sequential, against the mock "
            f"({w['model']} prices):",
            "",
            "| cache | upstream calls | L1 hits | L2 hits | semantic hits | paraphrased requests from cache (semantic) | paid $ | saved $ | saved / uncached spend | wrong answers |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for mode, v in w["modes"].items():
            h = v["hits"]
            share = v["saved_share_of_uncached_spend"]
            lines.append(
                f"| {mode} | {v['upstream_calls']:,} | {h.get('l1', 0)} | {h.get('l2', 0)} | {h.get('semantic', 0)} | "
                f"{v['paraphrased_served_from_cache']}/{v['paraphrased_requests']} ({v['paraphrased_served_by_semantic']}) | "
                f"{v['paid_usd']:.6f} | "
                f"{v['saved_usd']:.6f} | {share:.1%} | {v['wrong_answers']} |"
            )
        lines.append("")
        lines.append(
            f"Fewest upstream calls possible: {w['families_seen']} with a perfect semantic tier (one per family "
            f"seen), {w['distinct_texts']} with exact matching alone (one per distinct text). Wrong answers: a hit "
            "whose content answers another family's prompt."
        )
    q = res.get("quality")
    if q:
        lines += [
            "",
            "Quality on the near-miss sets: wrong answers / near-misses (of them numbers + dates + quoted) · "
            'paraphrases recalled. "Gateway" rows are measured end to end (route defaults: the embedder\'s '
            "recommended threshold, top 3; each pair alone in its namespace); "
            f"the others come from `bench/cache_quality.py` ({q.get('cache_quality_source', 'not run')}).",
            "",
            "| set | embedder | configuration | result |",
            "|---|---|---|---|",
        ]
        cq = q.get("cache_quality") or {}
        for ds in DATASETS:
            for emb, g in q["gateway"].items():
                if ds not in g:
                    continue
                row = cq.get(ds, {}).get(emb, {})
                if "redisvl_default" in row:
                    lines.append(
                        f"| {ds} | {emb} | redisvl `SemanticCache`, default threshold 0.1 | "
                        f"{fmt_q(row['redisvl_default'])} |"
                    )
                t = g["threshold"]
                lines.append(
                    f"| {ds} | {emb} | Gateway, default {t:g}, guards off | {fmt_q(g[ds]['guards_off'])} |"
                )
                lines.append(
                    f"| {ds} | {emb} | **Gateway, default {t:g}, guards on** | {fmt_q(g[ds]['guards_on'])} |"
                )
                for name, v in row.items():
                    if name.startswith("recall_matched"):
                        ref = name.partition("(")[2].rstrip(")")
                        lines.append(
                            f"| {ds} | {emb} | {v['threshold']:g}, guards on (recall ≥ {ref}) | {fmt_q(v)} |"
                        )
        ag = q.get("gateway_agrees_with_cache_quality")
        if ag:
            bad = {k: v["differing_pairs"] for k, v in ag.items() if not v["agrees"]}
            lines += [
                "",
                "Pair by pair, the Gateway's hits equal what `cache_quality.py`'s distances and the guards "
                "predict at the same threshold"
                + (f", except: {bad}." if bad else " (every set and embedder)."),
            ]
    lines += ["", *targets_table(res["targets"])]
    return "\n".join(lines)


def print_report(res: dict[str, Any]) -> None:
    lat = res["latency"]
    print()
    print(f"cache hit latency ({res['meta']['iterations']} rounds, {lat['wall_s']} s):")
    print(f"  {'case':<42} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'verified':>9}")
    for name, v in lat["cases"].items():
        print(f"  {name:<42} {v['p50_us']:9.1f} {v['p90_us']:9.1f} {v['p99_us']:9.1f} {v['verified']:9d}")
    for n, b in lat["semantic_redis_breakdown"].items():
        print(
            f"  semantic Redis @ {int(n):,}, parts p50 µs: "
            + ", ".join(
                f"{k} {v['p50_us']:.0f}" for k, v in b.items() if k not in ("redis_side", "index_probe")
            )
            + f"; Redis-side FT.SEARCH {b['redis_side'].get('FT.SEARCH', {}).get('usec_per_call', 0):.0f} µs"
        )
    print_noise(res["meta"])
    print("targets:")
    for t in res["targets"]:
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']:<66} {t['value']} (goal {t['goal']})")
    print()
    print("markdown:")
    print(markdown(res))


# -- main ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, mock: MockProcess, servers: dict[int, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {"latency": await latency_phase(args, mock, servers)}
    if args.workload_requests:
        res["workload"] = await workload_phase(args, mock, servers[min(args.sizes)].url)
    if args.quality:
        res["quality"] = await quality_phase(args, mock)
    return res


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument(
        "--quick", action="store_true", help="1k and 10k entries, 300 rounds, saved quality figures"
    )
    p.add_argument(
        "--sizes", help="entries per tier, comma-separated (default 10000,100000; --quick 1000,10000)"
    )
    p.add_argument("--iterations", type=int, help="measured rounds (default 2000; --quick 300)")
    p.add_argument("--warmup", type=int, help="warm-up rounds (default 200; --quick 50)")
    p.add_argument("--breakdown", type=int, default=300, help="semantic-on-Redis hits timed part by part")
    p.add_argument(
        "--index-probe",
        action="store_true",
        help="also time the semantic search on an HNSW index built over the largest Redis tier",
    )
    p.add_argument(
        "--prefill-concurrency", type=int, default=32, help="concurrent stores while filling Redis"
    )
    p.add_argument("--workload-requests", type=int, default=1000, help="replayed requests (0 = skip)")
    p.add_argument("--paraphrase-share", type=float, default=0.3)
    p.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of the prompt popularity")
    p.add_argument("--no-quality", dest="quality", action="store_false", help="skip the quality part")
    p.add_argument(
        "--quality-from",
        help="'rerun' bench/cache_quality.py (default), 'skip' it, or a saved JSON "
        "(default with --quick: bench/results/cache_quality.json)",
    )
    add_common_args(p)
    a = p.parse_args(argv)
    a.sizes = (
        [int(x) for x in a.sizes.split(",")]
        if a.sizes
        else ([1000, 10_000] if a.quick else [10_000, 100_000])
    )
    a.iterations = a.iterations or (300 if a.quick else 2000)
    a.warmup = a.warmup if a.warmup is not None else (50 if a.quick else 200)
    if a.quality_from is None:
        a.quality_from = str(HERE / "results/cache_quality.json") if a.quick else "rerun"
    if min(a.sizes) < 2 * (a.iterations + a.warmup):
        print(
            f"note: {min(a.sizes)} entries < 2 x rounds: semantic queries repeat (embedder cache warm)",
            file=sys.stderr,
        )
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus, pin = pin_to_cpu0(args.no_pin)
    helper_cpu = cpus - 1 if pin else None
    versions = package_versions(("redis", "redisvl", "wordllama", "numpy", "orjson"))
    meta = run_meta(cpus, pin, git_rev("hyperion_core"), versions, python=True)
    meta.update({
        "quick": args.quick,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "sizes": args.sizes,
        "order": "each round calls every case once in a seeded shuffled order",
        "gc": "frozen after warm-up (gc.freeze), with the filled tiers in the frozen heap",
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "library default"),
    })
    if args.wait_quiet > 0:
        meta["quiet_before_start"] = wait_quiet(args.wait_quiet)
    mock = None
    servers: dict[int, Any] = {}
    try:
        mock = MockProcess(helper_cpu)
        for n in args.sizes:
            servers[n] = start_redis(helper_cpu)
        import redis

        meta["redis_version"] = redis.Redis.from_url(servers[args.sizes[0]].url).info("server")[
            "redis_version"
        ]
        noise = Noise(mock.proc.pid)
        noise.pids += [str(s._proc.pid) for s in servers.values() if getattr(s, "_proc", None)]
        with noise:
            res = asyncio.run(run(args, mock, servers))
        meta["noise"] = noise.report()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if mock is not None:
            mock.stop()
        for s in servers.values():
            s.stop()
    res = {"meta": meta, **res}
    res["targets"] = targets(res)
    print_report(res)
    write_json(args.json, res)
    return exit_code(args.strict, res["targets"])


if __name__ == "__main__":
    sys.exit(main())
