"""What the benchmarks in ``bench/`` share: the house method and its helpers.

The method: every case runs in one process and one event loop, interleaved: each round calls every case
once in a seeded shuffled order, so drift and noise hit all cases alike; warm-up rounds come first
(then the heap is frozen, ``gc.freeze()``); after each call, off the clock, :class:`Settle` waits for
the tasks the call left behind. Results are read as ratios against a baseline measured in the same run,
never against another run's figures. With 2+ CPUs the benchmark is pinned to CPU 0 and its helper
processes (upstream, Redis) to the last CPU; :class:`Noise` reports how much CPU other processes took
meanwhile, since tails are only meaningful on a quiet machine.

Scripts import this as ``from _common import ...`` after putting ``bench/`` on ``sys.path``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import platform
import socket
import statistics
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_PER_NS = {"ms": 1e6, "us": 1e3}


class BenchError(RuntimeError):
    """A measured call did not do what it should (wrong answer, refused, went upstream): the benchmark
    would be timing an error path."""


# -- statistics ----------------------------------------------------------------------------------


def pct(sorted_ns: list[int], q: float, unit: str = "ms") -> float:
    """Nearest-rank percentile of sorted nanoseconds, in ``unit`` (``"ms"`` or ``"us"``)."""
    if not sorted_ns:
        return float("nan")
    idx = min(len(sorted_ns) - 1, max(0, int(round(q / 100.0 * len(sorted_ns) + 0.5)) - 1))
    return sorted_ns[idx] / _PER_NS[unit]


def summary(ns: list[int], unit: str = "ms", digits: int | None = None) -> dict[str, float]:
    """``n``, p50/p90/p99, mean and min of nanosecond samples, keys suffixed with ``unit``
    (``p50_ms`` ...), each rounded to ``digits`` when given."""
    s, per = sorted(ns), _PER_NS[unit]

    def r(x: float) -> float:
        return x if digits is None else round(x, digits)

    return {
        "n": len(s),
        f"p50_{unit}": r(pct(s, 50, unit)),
        f"p90_{unit}": r(pct(s, 90, unit)),
        f"p99_{unit}": r(pct(s, 99, unit)),
        f"mean_{unit}": r(statistics.fmean(s) / per),
        f"min_{unit}": r(s[0] / per),
    }


def summary_us(ns: list[int]) -> dict[str, float]:
    """:func:`summary` in microseconds, rounded to 0.01 µs (the cache and governance benchmarks)."""
    return summary(ns, "us", 2)


class Settle:
    """Off the clock after each call: wait for the tasks the call left behind. litellm leaves two
    logging tasks per call (~0.2 ms of work) that would otherwise run inside the next client's timed
    call; tasks that outlive 50 ms are taken as long-lived workers and not waited for again."""

    def __init__(self) -> None:
        self.known: set[asyncio.Task[Any]] = set()

    def snapshot(self) -> set[asyncio.Task[Any]]:
        return asyncio.all_tasks()

    async def __call__(self, before: set[asyncio.Task[Any]]) -> None:
        left = [t for t in asyncio.all_tasks() if t not in before and t not in self.known and not t.done()]
        if left:
            _, pending = await asyncio.wait(left, timeout=0.05)
            self.known.update(pending)
        await asyncio.sleep(0)


# -- the machine ---------------------------------------------------------------------------------


def pin_to_cpu0(no_pin: bool) -> tuple[int, bool]:
    """(CPU count, pinned): with 2+ CPUs and unless ``no_pin``, pin this process to CPU 0 (before any
    thread starts, so threads inherit it); helpers then go on the last CPU."""
    cpus = os.cpu_count() or 1
    pin = not no_pin and cpus >= 2 and hasattr(os, "sched_setaffinity")
    if pin:
        os.sched_setaffinity(0, {0})
    return cpus, pin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _busy_ticks() -> int | None:
    """Busy CPU ticks of the whole machine so far (Linux ``/proc/stat``), else None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal


def _proc_ticks(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, every thread
    except (OSError, ValueError, IndexError):
        return 0


def _children(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return f.read().split()
    except OSError:
        return []


class Noise:
    """CPU that other processes used while we measured: on a shared machine it explains a noisy tail.
    ``helper_pid`` (and its children) is ours, not noise; append more pids to ``pids`` before entering."""

    def __init__(self, helper_pid: int | None) -> None:
        self.pids = ["self"] + ([str(helper_pid), *_children(helper_pid)] if helper_pid else [])

    def __enter__(self) -> Noise:
        self.load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
        self.busy0, self.own0, self.t0 = _busy_ticks(), sum(map(_proc_ticks, self.pids)), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.t0
        self.busy1, self.own1 = _busy_ticks(), sum(map(_proc_ticks, self.pids))
        self.load1 = os.getloadavg() if hasattr(os, "getloadavg") else None

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"wall_s": self.wall, "loadavg_before": self.load0, "loadavg_after": self.load1}
        if self.busy0 is not None and self.busy1 is not None:
            hz = os.sysconf("SC_CLK_TCK")
            other = max(0, (self.busy1 - self.busy0) - (self.own1 - self.own0)) / hz
            out["other_processes_cpu_s"] = other
            out["other_processes_share"] = other / (self.wall * (os.cpu_count() or 1))
        return out


def wait_quiet(limit_s: float, share: float = 0.10, window_s: float = 3.0) -> float | None:
    """Wait (up to ``limit_s``) until other processes use less than ``share`` of the machine over a
    ``window_s`` window; returns the last share seen (None where /proc/stat is unavailable)."""
    deadline = time.monotonic() + limit_s
    hz, cpus = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    while True:
        b0, o0, t0 = _busy_ticks(), _proc_ticks("self"), time.monotonic()
        if b0 is None:
            return None
        time.sleep(window_s)
        b1, o1 = _busy_ticks() or b0, _proc_ticks("self")
        seen = max(0, (b1 - b0) - (o1 - o0)) / hz / ((time.monotonic() - t0) * cpus)
        if seen < share or time.monotonic() >= deadline:
            return seen
        print(f"  machine busy: other processes at {seen:.0%}; waiting ...", flush=True)


def print_noise(meta: dict[str, Any]) -> None:
    """The short noise line (and a warning above 10%) from ``meta["noise"]``, if measured."""
    n = meta.get("noise", {})
    if "other_processes_share" in n:
        print(f"noise: other processes used {n['other_processes_share']:.0%} of the machine during the run")
        if n["other_processes_share"] > 0.10:
            print("  WARNING: the machine was busy; tails are not representative (--wait-quiet 600)")


# -- run metadata --------------------------------------------------------------------------------


def git_rev(*paths: str) -> str:
    """Short HEAD, ``+dirty`` when ``paths`` (default: the whole checkout) have uncommitted changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", *(["--", *paths] if paths else [])],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def package_versions(pkgs: tuple[str, ...], *, python: bool = False) -> dict[str, str]:
    """Installed version of each package (``"?"`` when missing), after Python's when ``python``."""
    out = {"python": platform.python_version()} if python else {}
    for pkg in pkgs:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    return out


def run_meta(
    cpus: int | None, pinned: bool | None, git: str, versions: dict[str, str], *, python: bool = False
) -> dict[str, Any]:
    """The head of every result's ``meta``: date, cpus, pinned (unless None), python (if asked),
    platform, git, versions; each script adds its own parameters after it."""
    meta: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpus": cpus,
    }
    if pinned is not None:
        meta["pinned"] = pinned
    if python:
        meta["python"] = platform.python_version()
    meta.update(platform=platform.platform(), git=git, versions=versions)
    return meta


# -- command line and output ---------------------------------------------------------------------


def arg_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_common_args(p: argparse.ArgumentParser, *, pin: bool = True, quiet: bool = True) -> None:
    """``--json``, ``--no-pin`` (if ``pin``), ``--strict`` and ``--wait-quiet`` (if ``quiet``)."""
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    if pin:
        p.add_argument(
            "--no-pin", action="store_true", help="do not pin this process and its helpers to separate CPUs"
        )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    if quiet:
        p.add_argument(
            "--wait-quiet",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="first wait up to SECONDS until other processes use < 10%% of the machine (default: do not wait)",
        )


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    """The markdown table of targets: ``| target (goal) | value | PASS/MISS |``."""
    lines = ["| target | result | |", "|---|---|---|"]
    for t in targets:
        lines.append(f"| {t['target']} ({t['goal']}) | {t['value']} | {'PASS' if t['pass'] else 'MISS'} |")
    return lines


def write_json(path: str | None, res: dict[str, Any]) -> None:
    """Write ``res`` to ``path`` (if given) as indented UTF-8 JSON and say so."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")


def exit_code(strict: bool, targets: list[dict[str, Any]]) -> int:
    """1 under ``--strict`` when a target is missed, else 0."""
    return 1 if strict and not all(t["pass"] for t in targets) else 0
