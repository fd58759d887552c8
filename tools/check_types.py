"""mypy as a gate that only tightens.

The core's contract modules are checked strictly (``[tool.mypy]`` overrides in pyproject.toml). The rest
of the packages are checked with mypy's defaults against a baseline of the errors they had when the gate
was introduced (``tools/mypy_baseline.txt``, counted per file, error code and message so that moving
lines does not matter): a new error fails; a fixed one is reported, with the command that rewrites the
baseline (``python tools/check_types.py --update``), so it only ever shrinks.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tools" / "mypy_baseline.txt"
PACKAGES = ("hyperion_core", "hyperion_lc", "hyperion_li")
_LINE = re.compile(r"^(?P<file>[^:]+):\d+: error: (?P<msg>.*?)\s+\[(?P<code>[a-z\-]+)\]$")


def run_mypy() -> tuple[collections.Counter[str], str]:
    p = subprocess.run(
        [sys.executable, "-m", "mypy", *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=False
    )
    found: collections.Counter[str] = collections.Counter()
    for line in p.stdout.splitlines():
        m = _LINE.match(line)
        if m:
            msg = re.sub(r"\d+", "N", m["msg"])  # line numbers inside messages move too
            found[f"{m['file']} [{m['code']}] {msg}"] += 1
    if p.returncode not in (0, 1) or (p.returncode == 1 and not found):
        raise SystemExit(f"mypy did not run:\n{p.stdout}\n{p.stderr}")
    return found, p.stdout


def load() -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    if BASELINE.exists():
        for line in BASELINE.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                n, _, key = line.partition(" ")
                out[key] = int(n)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--update", action="store_true", help="rewrite the baseline to the current errors")
    args = ap.parse_args()
    found, raw = run_mypy()
    if args.update:
        lines = ["# mypy errors allowed in the non-strict modules (count, file, code, message); only shrinks"]
        lines += [f"{n} {k}" for k, n in sorted(found.items())]
        BASELINE.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{BASELINE.relative_to(ROOT)}: {sum(found.values())} errors in the baseline")
        return 0
    base = load()
    new = {k: n - base.get(k, 0) for k, n in found.items() if n > base.get(k, 0)}
    fixed = {k: base[k] - found.get(k, 0) for k in base if found.get(k, 0) < base[k]}
    if new:
        print("mypy: new errors (fix them; the baseline only shrinks):")
        for k, n in sorted(new.items()):
            print(f"  +{n} {k}")
        print(raw)
        return 1
    if fixed:  # good news, not a failure: say how to shrink the baseline
        print(f"mypy: {sum(fixed.values())} baseline error(s) fixed: run `python tools/check_types.py --update`")
    print(f"mypy: ok ({sum(found.values())} baseline errors left, strict modules clean)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
