"""An experiment's report: per variant latency / TTFT / errors / tokens / cost / agreement with bootstrap
confidence intervals, B against A, and a verdict. Plain dataclasses (no DataFrame); ``plot()`` draws the
latency CDFs, cost per day and the agreement histogram with matplotlib (imported when called)."""

from __future__ import annotations

import base64
import io
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .store import Record

#: below this many requests per variant the verdict says so instead of deciding
MIN_N = 30
#: bootstrap resamples draw from at most this many values per variant (a uniform subsample)
BOOT_CAP = 5_000
#: a shadow's answers agree "enough" at this mean agreement
AGREE_OK = 0.8


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def fmt(self, digits: int = 1, unit: str = "") -> str:
        return f"{self.value:.{digits}f}{unit} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class VariantStats:
    variant: str
    n: int
    deployments: dict[str, int]
    labels: tuple[str, ...]
    error_rate: float
    errors: dict[str, int]
    latency_p50: Interval | None
    latency_p95: Interval | None
    latency_p99: float | None
    ttft_p50: float | None
    prompt_tokens_mean: float
    completion_tokens_mean: float
    cost_per_request: Interval | None
    cost_by_day: dict[str, float]
    agreement_mean: float | None
    exact_rate: float | None
    similarity_mean: float | None
    judge_mean: float | None
    latencies: tuple[float, ...] = field(repr=False, default=())
    agreements: tuple[float, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class ExperimentReport:
    name: str
    kind: str  # "split" | "shadow"
    route: str
    a: VariantStats
    b: VariantStats
    cost_change: Interval | None  # B's cost per request over A's, minus 1 (-0.3: 30% cheaper)
    p95_delta_ms: Interval | None  # B's p95 latency minus A's
    verdict: str
    promote: bool

    def table(self) -> str:
        """The side-by-side table (Markdown)."""
        rows = [("requests", str(self.a.n), str(self.b.n)),
                ("deployments", _deps(self.a), _deps(self.b)),
                ("latency p50 ms [95% CI]", _iv(self.a.latency_p50), _iv(self.b.latency_p50)),
                ("latency p95 ms [95% CI]", _iv(self.a.latency_p95), _iv(self.b.latency_p95)),
                ("latency p99 ms", _num(self.a.latency_p99), _num(self.b.latency_p99)),
                ("TTFT p50 ms", _num(self.a.ttft_p50), _num(self.b.ttft_p50)),
                ("error rate", f"{self.a.error_rate:.1%}", f"{self.b.error_rate:.1%}"),
                ("errors", _errs(self.a), _errs(self.b)),
                ("tokens in / out (mean)", f"{self.a.prompt_tokens_mean:.0f} / {self.a.completion_tokens_mean:.0f}",
                 f"{self.b.prompt_tokens_mean:.0f} / {self.b.completion_tokens_mean:.0f}"),
                ("cost per request USD [95% CI]", _iv(self.a.cost_per_request, 7), _iv(self.b.cost_per_request, 7)),
                ("cost total USD", f"{sum(self.a.cost_by_day.values()):.6f}", f"{sum(self.b.cost_by_day.values()):.6f}")]
        if self.b.agreement_mean is not None:
            rows.append(("agreement with A (mean / exact)", "-",
                         f"{self.b.agreement_mean:.2f} / {self.b.exact_rate or 0:.0%}"))
        if self.b.similarity_mean is not None:
            rows.append(("embedding similarity with A (mean)", "-", f"{self.b.similarity_mean:.3f}"))
        if self.b.judge_mean is not None:
            rows.append(("judge score (mean)", "-", f"{self.b.judge_mean:.2f}"))
        out = [f"experiment {self.name} ({self.kind} on route {self.route})", "",
               "| | A | B |", "|---|---:|---:|"]
        out += [f"| {k} | {x} | {y} |" for k, x, y in rows]
        return "\n".join(out + ["", f"verdict: {self.verdict}"])

    def plot(self) -> list[Any]:
        """Three matplotlib figures: latency CDFs per variant, cost per day, agreement histogram."""
        import matplotlib.pyplot as plt

        figs = []
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for v in (self.a, self.b):
            if v.latencies:
                xs = np.sort(np.asarray(v.latencies))
                ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=f"{v.variant.upper()} ({_deps(v)})")
        ax.set(xlabel="latency ms", ylabel="share of requests", title=f"{self.name}: latency CDF")
        ax.legend()
        figs.append(fig)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        days = sorted(set(self.a.cost_by_day) | set(self.b.cost_by_day))
        idx = np.arange(len(days))
        ax.bar(idx - 0.2, [self.a.cost_by_day.get(d, 0.0) for d in days], 0.4, label="A")
        ax.bar(idx + 0.2, [self.b.cost_by_day.get(d, 0.0) for d in days], 0.4, label="B")
        ax.set_xticks(idx, days, rotation=30)
        ax.set(ylabel="USD", title=f"{self.name}: cost per day")
        ax.legend()
        figs.append(fig)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(self.b.agreements or [0.0], bins=20, range=(0, 1))
        ax.set(xlabel="agreement with A", ylabel="requests", title=f"{self.name}: answer agreement")
        figs.append(fig)
        for f in figs:
            f.tight_layout()
        return figs

    def html(self) -> str:
        """A self-contained HTML page: the table and the three plots (PNG, inline)."""
        import matplotlib.pyplot as plt

        imgs = []
        for fig in self.plot():
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90)
            plt.close(fig)
            imgs.append(f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')
        table = self.table().replace("&", "&amp;").replace("<", "&lt;")
        return (f"<!doctype html><meta charset=utf-8><title>{self.name}</title><pre>{table}</pre>"
                + "".join(imgs))


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def _iv(iv: Interval | None, digits: int = 1) -> str:
    return "-" if iv is None else iv.fmt(digits)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _deps(v: VariantStats) -> str:
    names = ", ".join(v.deployments) or "-"
    return f"{names} ({'/'.join(v.labels)})" if v.labels else names


def _errs(v: VariantStats) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(v.errors.items())) or "-"


def _boot(values: np.ndarray, stat: Any, rng: np.random.Generator, resamples: int) -> tuple[float, float]:
    if len(values) > BOOT_CAP:
        values = rng.choice(values, BOOT_CAP, replace=False)
    draws = rng.integers(0, len(values), size=(resamples, len(values)))
    stats = stat(values[draws], axis=1)
    lo, hi = np.quantile(stats, [0.025, 0.975])
    return float(lo), float(hi)


def _pct(q: float) -> Any:
    return lambda x, axis: np.percentile(x, q, axis=axis)


def variant_stats(variant: str, rows: list[Record], rng: np.random.Generator, resamples: int) -> VariantStats:
    ok = [r for r in rows if r.ok]
    lat = np.asarray([r.latency_ms for r in ok], dtype=float)
    cost = np.asarray([r.cost for r in rows], dtype=float)
    p50 = p95 = cpr = None
    if len(lat):
        p50 = Interval(float(np.percentile(lat, 50)), *_boot(lat, _pct(50), rng, resamples))
        p95 = Interval(float(np.percentile(lat, 95)), *_boot(lat, _pct(95), rng, resamples))
    if len(cost):
        cpr = Interval(float(cost.mean()), *_boot(cost, np.mean, rng, resamples))
    days: dict[str, float] = {}
    for r in rows:
        day = time.strftime("%Y-%m-%d", time.gmtime(r.time))
        days[day] = days.get(day, 0.0) + r.cost
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    agree = [r.agreement for r in rows if r.agreement is not None]
    exact = [r.exact for r in rows if r.exact is not None]
    return VariantStats(
        variant=variant,
        n=len(rows),
        deployments=dict(Counter(r.deployment for r in rows if r.deployment)),
        labels=tuple(sorted({r.label for r in rows if r.label})),
        error_rate=(len(rows) - len(ok)) / len(rows) if rows else 0.0,
        errors=dict(Counter(r.error_class or "Unknown" for r in rows if not r.ok)),
        latency_p50=p50,
        latency_p95=p95,
        latency_p99=float(np.percentile(lat, 99)) if len(lat) else None,
        ttft_p50=float(np.median(ttft)) if ttft else None,
        prompt_tokens_mean=float(np.mean([r.prompt_tokens for r in ok])) if ok else 0.0,
        completion_tokens_mean=float(np.mean([r.completion_tokens for r in ok])) if ok else 0.0,
        cost_per_request=cpr,
        cost_by_day=dict(sorted(days.items())),
        agreement_mean=float(np.mean(agree)) if agree and variant == "b" else None,
        exact_rate=float(np.mean(exact)) if exact and variant == "b" else None,
        similarity_mean=_mean([r.similarity for r in rows if r.similarity is not None]),
        judge_mean=_mean([r.judge for r in rows if r.judge is not None]),
        latencies=tuple(lat.tolist()),
        agreements=tuple(agree) if variant == "b" else (),
    )


def build_report(name: str, kind: str, route: str, records: list[Record], *, seed: int = 0,
                 resamples: int = 1000) -> ExperimentReport:
    """Per-variant statistics with 95% bootstrap intervals (``seed``: the same records give the same
    report), B's cost per request relative to A's and its p95 latency difference (both bootstrapped),
    and the verdict: promote B when it is not more expensive, its p95 is not worse by more than 10%
    (or the interval includes no change), it fails no more often (within 1 point), and a shadow's
    answers agree with A's (mean agreement >= 0.8)."""
    rng = np.random.default_rng(seed)
    a = variant_stats("a", [r for r in records if r.variant == "a"], rng, resamples)
    b = variant_stats("b", [r for r in records if r.variant == "b"], rng, resamples)
    cost_change = p95_delta = None
    ca = np.asarray([r.cost for r in records if r.variant == "a"], dtype=float)
    cb = np.asarray([r.cost for r in records if r.variant == "b"], dtype=float)
    if len(ca) and len(cb) and ca.mean() > 0:
        ratios = _paired_boot(ca, cb, lambda x, y: y.mean(axis=1) / x.mean(axis=1) - 1, rng, resamples)
        cost_change = Interval(float(cb.mean() / ca.mean() - 1), *ratios)
    la, lb = np.asarray(a.latencies), np.asarray(b.latencies)
    if len(la) and len(lb):
        deltas = _paired_boot(la, lb, lambda x, y: np.percentile(y, 95, axis=1) - np.percentile(x, 95, axis=1),
                              rng, resamples)
        p95_delta = Interval(float(np.percentile(lb, 95) - np.percentile(la, 95)), *deltas)
    verdict, promote = decide(a, b, cost_change, p95_delta)
    return ExperimentReport(name, kind, route, a, b, cost_change, p95_delta, verdict, promote)


def _paired_boot(x: np.ndarray, y: np.ndarray, stat: Any, rng: np.random.Generator,
                 resamples: int) -> tuple[float, float]:
    x = rng.choice(x, BOOT_CAP, replace=False) if len(x) > BOOT_CAP else x
    y = rng.choice(y, BOOT_CAP, replace=False) if len(y) > BOOT_CAP else y
    xs = x[rng.integers(0, len(x), size=(resamples, len(x)))]
    ys = y[rng.integers(0, len(y), size=(resamples, len(y)))]
    lo, hi = np.quantile(stat(xs, ys), [0.025, 0.975])
    return float(lo), float(hi)


def decide(a: VariantStats, b: VariantStats, cost: Interval | None, p95: Interval | None) -> tuple[str, bool]:
    if a.n < MIN_N or b.n < MIN_N:
        return f"not enough data yet (A {a.n}, B {b.n} requests; {MIN_N} each needed)", False
    parts = []
    cheaper = cost is None or cost.high <= 0 or cost.value <= 0
    if cost is not None:
        word = "less" if cost.value < 0 else "more"
        parts.append(f"B costs {abs(cost.value):.0%} {word} per request (95% CI {cost.low:+.0%} to {cost.high:+.0%})")
    slower = False
    if p95 is not None and a.latency_p95 is not None:
        slower = p95.low > 0 and p95.value > 0.1 * a.latency_p95.value
        parts.append(f"p95 latency {p95.value:+.1f} ms (CI {p95.low:+.1f} to {p95.high:+.1f})")
    failing = b.error_rate > a.error_rate + 0.01
    parts.append(f"errors {b.error_rate:.1%} vs {a.error_rate:.1%}")
    # the strongest measure there is: a judge's score, else embedding similarity, else word overlap
    measures = (("judge score", b.judge_mean), ("similarity", b.similarity_mean), ("agreement", b.agreement_mean))
    label, score = next(((k, v) for k, v in measures if v is not None), ("agreement", None))
    disagree = score is not None and score < AGREE_OK
    if score is not None:
        parts.append(f"{label} {score:.2f}")
    promote = cheaper and not slower and not failing and not disagree
    why = [w for w, bad in (("more expensive", not cheaper), ("slower", slower), ("fails more", failing),
                            ("answers differ", disagree)) if bad]
    return "; ".join(parts) + (": promote B" if promote else f": keep A ({', '.join(why)})"), promote


__all__ = ["ExperimentReport", "Interval", "VariantStats", "build_report", "decide", "variant_stats"]
