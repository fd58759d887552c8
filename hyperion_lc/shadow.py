"""``HyperionShadow``: mirror traffic to a second model while the current one keeps answering.

For the migration checklist: wrap the model a chain uses today and name the candidate (a
``HyperionChat`` or any runnable)::

    llm = HyperionShadow(primary=ChatOpenAI(...), shadow=HyperionChat(model="chat", config=...))
    chain = prompt | llm | StrOutputParser()          # answers come from the primary, as before
    ...
    print(llm.table())                                 # side by side: latency, cost, errors, agreement

Contract: the caller gets exactly what the primary returns (or raises), as fast as the primary alone.
The shadow starts at the same moment in the background — a worker thread for sync calls, a task for
async calls, in a fresh context so it is not traced as part of the caller's run — and is never awaited
by the caller; its errors and its slowness are recorded, never raised. At most ``max_pending`` shadow
calls run at once (beyond that a request is not mirrored and counts as ``skipped``); ``timeout`` seconds
bound an async shadow call. ``sample_rate`` mirrors that fraction of requests.

Each mirrored request becomes a :class:`ShadowRecord` once both sides are done: latency, cost (from
``response_metadata["cost"]`` for ``HyperionChat``, else priced from the usage and model name), error,
deployment and cache tier per side, and ``agreement`` (0..1) between the answers.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import itertools
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig

from hyperion_core.doors import usage_from
from hyperion_core.experiments.stage import text_agreement
from hyperion_core.pricing import lookup as price_lookup
from hyperion_core.types import Usage


@dataclass(slots=True, frozen=True)
class SideResult:
    """One side of a mirrored request. ``latency_ms`` to the whole answer; ``cost`` in USD (None when
    unknown); ``error``: ``"ErrorClass: message"`` or None; ``status``: ok | error | timeout | skipped."""

    status: str
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost: float | None = None
    error: str | None = None
    deployment: str | None = None
    cache_tier: str | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(slots=True, frozen=True)
class ShadowRecord:
    """A request seen by both sides. ``agreement`` is None unless both answered."""

    index: int
    started_at: float  # epoch seconds
    primary: SideResult
    shadow: SideResult
    agreement: float | None
    agree: bool | None

    def row(self) -> dict[str, Any]:
        p, s = self.primary, self.shadow
        return {
            "index": self.index,
            "started_at": self.started_at,
            "primary_status": p.status,
            "primary_latency_ms": p.latency_ms,
            "primary_cost": p.cost,
            "primary_deployment": p.deployment,
            "primary_cache": p.cache_tier,
            "primary_error": p.error,
            "shadow_status": s.status,
            "shadow_latency_ms": s.latency_ms,
            "shadow_cost": s.cost,
            "shadow_deployment": s.deployment,
            "shadow_cache": s.cache_tier,
            "shadow_error": s.error,
            "agreement": self.agreement,
            "agree": self.agree,
        }


# -- answers -------------------------------------------------------------------------------------


def answer_text(out: Any) -> str:
    """The comparable text of an output: a message's text (tool calls as ``name(args)``), a string, or
    the repr of anything else."""
    if isinstance(out, BaseMessage):
        calls = getattr(out, "tool_calls", None) or []
        text = out.text if isinstance(out.text, str) else str(out.text)
        if calls:
            text += " " + " ".join(f"{c['name']}({sorted(c['args'].items())})" for c in calls)
        return text
    if isinstance(out, str):
        return out
    return repr(out)


def _cost(out: Any) -> float | None:
    meta = getattr(out, "response_metadata", None) or {}
    if isinstance(meta.get("cost"), (int, float)):
        return float(meta["cost"])
    um = getattr(out, "usage_metadata", None)
    model = meta.get("model_name")
    if not um or not model:
        return None
    price = price_lookup(meta.get("model_provider") or "openai", model)
    if not price.known:
        return None
    return price.cost(usage_from(um, "langchain") or Usage())


def _side(out: Any, latency_ms: float, ttft_ms: float | None = None) -> SideResult:
    meta = getattr(out, "response_metadata", None) or {}
    return SideResult(
        "ok",
        round(latency_ms, 3),
        None if ttft_ms is None else round(ttft_ms, 3),
        _cost(out),
        None,
        meta.get("deployment"),
        meta.get("cache_tier"),
        answer_text(out),
    )


def _failed(exc: BaseException, latency_ms: float, status: str = "error") -> SideResult:
    return SideResult(status, round(latency_ms, 3), error=f"{type(exc).__name__}: {exc}"[:300])


SKIPPED = SideResult("skipped")


@dataclass(slots=True)
class _Pending:
    index: int
    started_at: float
    primary: SideResult | None = None
    shadow: SideResult | None = None
    done: bool = field(default=False)


# -- the runnable ----------------------------------------------------------------------------------


class HyperionShadow(Runnable[Any, Any]):
    """The primary answers; the shadow is mirrored in the background (see the module docstring).

    ``compare(primary_text, shadow_text) -> 0..1`` (default :func:`text_agreement`); an answer pair
    agrees when its score is at least ``agree_threshold``. ``shadow_config``: the ``RunnableConfig`` for
    shadow calls (by default none: the caller's callbacks and tracing are not applied to the shadow).
    """

    def __init__(
        self,
        primary: Runnable[Any, Any],
        shadow: Runnable[Any, Any],
        *,
        compare: Callable[[str, str], float] = text_agreement,
        agree_threshold: float = 0.8,
        sample_rate: float = 1.0,
        timeout: float = 60.0,
        max_pending: int = 64,
        max_records: int = 10_000,
        shadow_config: RunnableConfig | None = None,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate: must be within [0, 1]")
        self.primary = primary
        self.shadow = shadow
        self.compare = compare
        self.agree_threshold = agree_threshold
        self.sample_rate = sample_rate
        self.timeout = timeout
        self.max_pending = max_pending
        self.shadow_config = shadow_config
        self._records: deque[ShadowRecord] = deque(maxlen=max_records)
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._shared = _Shared()
        self._futures: set[Future[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def skipped(self) -> int:
        """Requests not mirrored (sampling or ``max_pending``)."""
        return self._shared.skipped

    @skipped.setter
    def skipped(self, value: int) -> None:
        self._shared.skipped = value

    @property
    def _executor(self) -> ThreadPoolExecutor | None:
        return self._shared.executor

    @_executor.setter
    def _executor(self, value: ThreadPoolExecutor | None) -> None:
        self._shared.executor = value

    # -- tools and structured output: both sides get the same binding, one report ----------------------

    def _derive(self, primary: Runnable[Any, Any], shadow: Runnable[Any, Any]) -> HyperionShadow:
        """A shadow of ``primary`` / ``shadow`` sharing this one's settings, records and workers."""
        new = copy.copy(self)
        new.primary, new.shadow = primary, shadow
        return new

    def bind_tools(self, tools: Any, **kwargs: Any) -> HyperionShadow:
        """Both sides with ``tools`` bound (so a shadow can wrap an agent's model); one shared report."""
        return self._derive(
            _side_call(self.primary, "bind_tools", tools, **kwargs),
            _side_call(self.shadow, "bind_tools", tools, **kwargs),
        )

    def with_structured_output(self, schema: Any = None, **kwargs: Any) -> HyperionShadow:
        """Both sides shaped by ``schema``; answers compare by their repr. One shared report."""
        return self._derive(
            _side_call(self.primary, "with_structured_output", schema, **kwargs),
            _side_call(self.shadow, "with_structured_output", schema, **kwargs),
        )

    def __repr__(self) -> str:
        return f"HyperionShadow(primary={self.primary!r}, shadow={self.shadow!r})"

    # -- bookkeeping ----------------------------------------------------------------------------------

    def _new(self) -> _Pending:
        return _Pending(next(self._counter), time.time())

    def _mirror_wanted(self) -> bool:
        if self.sample_rate < 1.0 and self._rng.random() >= self.sample_rate:
            return False
        return len(self._futures) + len(self._tasks) < self.max_pending

    def _settle(
        self, p: _Pending, *, primary: SideResult | None = None, shadow: SideResult | None = None
    ) -> None:
        with self._lock:
            if primary is not None:
                p.primary = primary
            if shadow is not None:
                p.shadow = shadow
            if p.done or p.primary is None or p.shadow is None:
                return
            p.done = True
        a, b = p.primary, p.shadow
        score = None
        if a.ok and b.ok:
            try:
                score = round(float(self.compare(a.text, b.text)), 4)
            except Exception:  # noqa: BLE001 - a broken comparator must not break anything
                score = None
        self._records.append(
            ShadowRecord(
                p.index, p.started_at, a, b, score, None if score is None else score >= self.agree_threshold
            )
        )

    # -- the shadow side -------------------------------------------------------------------------------

    def _launch_sync(self, p: _Pending, input: Any) -> None:
        if not self._mirror_wanted():
            self.skipped += 1
            self._settle(p, shadow=SKIPPED)
            return
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hyperion-shadow")
        fut = self._executor.submit(contextvars.Context().run, self._shadow_sync, p, input)
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)

    def _shadow_sync(self, p: _Pending, input: Any) -> None:
        t0 = time.perf_counter()
        try:
            out = self.shadow.invoke(input, self.shadow_config)
        except BaseException as exc:  # noqa: BLE001 - recorded, never raised
            self._settle(p, shadow=_failed(exc, (time.perf_counter() - t0) * 1000.0))
            return
        self._settle(p, shadow=_side(out, (time.perf_counter() - t0) * 1000.0))

    def _launch_async(self, p: _Pending, input: Any) -> None:
        if not self._mirror_wanted():
            self.skipped += 1
            self._settle(p, shadow=SKIPPED)
            return
        loop = asyncio.get_running_loop()
        task = contextvars.Context().run(loop.create_task, self._shadow_async(p, input))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shadow_async(self, p: _Pending, input: Any) -> None:
        t0 = time.perf_counter()
        try:
            out = await asyncio.wait_for(self.shadow.ainvoke(input, self.shadow_config), self.timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            self._settle(p, shadow=_failed(exc, (time.perf_counter() - t0) * 1000.0, "timeout"))
            return
        except asyncio.CancelledError as exc:
            self._settle(p, shadow=_failed(exc, (time.perf_counter() - t0) * 1000.0, "cancelled"))
            raise
        except BaseException as exc:  # noqa: BLE001 - recorded, never raised
            self._settle(p, shadow=_failed(exc, (time.perf_counter() - t0) * 1000.0))
            return
        self._settle(p, shadow=_side(out, (time.perf_counter() - t0) * 1000.0))

    # -- the primary side: Runnable API --------------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        p = self._new()
        self._launch_sync(p, input)
        t0 = time.perf_counter()
        try:
            out = self.primary.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._settle(p, primary=_failed(exc, (time.perf_counter() - t0) * 1000.0))
            raise
        self._settle(p, primary=_side(out, (time.perf_counter() - t0) * 1000.0))
        return out

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        p = self._new()
        self._launch_async(p, input)
        t0 = time.perf_counter()
        try:
            out = await self.primary.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._settle(p, primary=_failed(exc, (time.perf_counter() - t0) * 1000.0))
            raise
        self._settle(p, primary=_side(out, (time.perf_counter() - t0) * 1000.0))
        return out

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        p = self._new()
        self._launch_sync(p, input)
        t0 = time.perf_counter()
        first: float | None = None
        acc: Any = None
        try:
            for chunk in self.primary.stream(input, config, **kwargs):
                if first is None:
                    first = time.perf_counter()
                acc = _add(acc, chunk)
                yield chunk
        except BaseException as exc:
            self._settle(p, primary=_failed(exc, (time.perf_counter() - t0) * 1000.0))
            raise
        end = time.perf_counter()
        self._settle(
            p, primary=_side(acc, (end - t0) * 1000.0, None if first is None else (first - t0) * 1000.0)
        )

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        p = self._new()
        self._launch_async(p, input)
        t0 = time.perf_counter()
        first: float | None = None
        acc: Any = None
        try:
            async for chunk in self.primary.astream(input, config, **kwargs):
                if first is None:
                    first = time.perf_counter()
                acc = _add(acc, chunk)
                yield chunk
        except BaseException as exc:
            self._settle(p, primary=_failed(exc, (time.perf_counter() - t0) * 1000.0))
            raise
        end = time.perf_counter()
        self._settle(
            p, primary=_side(acc, (end - t0) * 1000.0, None if first is None else (first - t0) * 1000.0)
        )

    # -- waiting and reporting ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Shadow calls still running."""
        return len(self._futures) + len(self._tasks)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait (sync) for the running shadow calls of sync requests; True if none is left."""
        futs = list(self._futures)
        if futs:
            wait_futures(futs, timeout=timeout)
        return not self._futures

    async def adrain(self, timeout: float | None = None) -> bool:
        """Wait for every running shadow call (async and sync); True if none is left."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        futs = list(self._futures)
        if futs:
            await asyncio.get_running_loop().run_in_executor(None, wait_futures, futs, timeout)
        return not self.pending

    @property
    def records(self) -> list[ShadowRecord]:
        return list(self._records)

    def report(self) -> list[dict[str, Any]]:
        """One flat row per mirrored request (see :meth:`ShadowRecord.row`)."""
        return [r.row() for r in self._records]

    def summary(self) -> dict[str, Any]:
        """Per side: requests, errors, p50/p95 latency (ms), total cost (USD; None if unknown); and the
        agreement rate over requests both sides answered."""
        recs = list(self._records)

        def side(get: Callable[[ShadowRecord], SideResult]) -> dict[str, Any]:
            results = [get(r) for r in recs if get(r).status != "skipped"]
            lat = sorted(x.latency_ms for x in results if x.ok and x.latency_ms is not None)
            costs = [x.cost for x in results if x.ok]
            return {
                "requests": len(results),
                "errors": sum(1 for x in results if not x.ok),
                "p50_ms": _pct(lat, 0.50),
                "p95_ms": _pct(lat, 0.95),
                "cost_usd": None if not costs or any(c is None for c in costs) else round(sum(costs), 8),  # type: ignore[arg-type]
            }

        scored = [r for r in recs if r.agreement is not None]
        return {
            "records": len(recs),
            "skipped": self.skipped,
            "primary": side(lambda r: r.primary),
            "shadow": side(lambda r: r.shadow),
            "agreement_rate": None
            if not scored
            else round(sum(1 for r in scored if r.agree) / len(scored), 4),
            "mean_agreement": None if not scored else round(statistics.fmean(r.agreement for r in scored), 4),  # type: ignore[misc]
        }

    def table(self) -> str:
        """The summary as a plain-text side-by-side table."""
        s = self.summary()

        def fmt(v: Any, spec: str = "") -> str:
            return "-" if v is None else format(v, spec)

        rows = [
            ("requests", fmt(s["primary"]["requests"]), fmt(s["shadow"]["requests"])),
            ("errors", fmt(s["primary"]["errors"]), fmt(s["shadow"]["errors"])),
            ("p50 latency ms", fmt(s["primary"]["p50_ms"], ".1f"), fmt(s["shadow"]["p50_ms"], ".1f")),
            ("p95 latency ms", fmt(s["primary"]["p95_ms"], ".1f"), fmt(s["shadow"]["p95_ms"], ".1f")),
            ("cost USD", fmt(s["primary"]["cost_usd"], ".6f"), fmt(s["shadow"]["cost_usd"], ".6f")),
        ]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len("primary"), *(len(r[1]) for r in rows))
        w2 = max(len("shadow"), *(len(r[2]) for r in rows))
        lines = [f"{'':<{w0}}  {'primary':>{w1}}  {'shadow':>{w2}}"]
        lines += [f"{a:<{w0}}  {b:>{w1}}  {c:>{w2}}" for a, b, c in rows]
        agree = s["agreement_rate"]
        lines.append(
            f"agreement: {'-' if agree is None else f'{agree:.0%}'} of {sum(1 for r in self._records if r.agreement is not None)}"
            f" answered pairs (threshold {self.agree_threshold:g}); not mirrored: {s['skipped']}"
        )
        return "\n".join(lines)

    def close(self) -> None:
        """Stop the worker threads (running shadow calls finish first)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


@dataclass(slots=True)
class _Shared:
    """What a shadow and the ones derived from it (``bind_tools``, ``with_structured_output``) share."""

    executor: ThreadPoolExecutor | None = None
    skipped: int = 0


def _side_call(side: Runnable[Any, Any], method: str, *args: Any, **kwargs: Any) -> Runnable[Any, Any]:
    fn = getattr(side, method, None)
    if fn is None:
        raise NotImplementedError(f"HyperionShadow.{method}: {type(side).__name__} has no {method}()")
    return fn(*args, **kwargs)


def _add(acc: Any, chunk: Any) -> Any:
    if acc is None:
        return chunk
    try:
        return acc + chunk
    except TypeError:
        return chunk


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[i], 3)


__all__ = ["HyperionShadow", "ShadowRecord", "SideResult", "text_agreement", "answer_text"]
