"""Writes notebooks/migration_playbook.ipynb (run it after editing the cells below; the test executes the
notebook itself): ``.venv/bin/python notebooks/_make_migration_playbook.py``."""

from __future__ import annotations

from pathlib import Path

import nbformat

CELLS: list[tuple[str, str]] = [
    ("md", """# Migration playbook: direct calls → shadow for a week → report → promote → failover drill

The checklist a team runs to move an application onto Hyperion, end to end and offline. The notebook
starts Hyperion's **mock provider** (a real HTTP server speaking the OpenAI wire format, with fault
injection) and points everything at it:

1. **Today**: the application calls its provider directly (the `openai` SDK).
2. **Shadow / split for a simulated week**: the gateway in front, the current path marked `direct: true`,
   a cheaper candidate getting a sticky share of the traffic (and some of its calls failing).
3. **The report**: per variant latency, errors, tokens and cost with bootstrap confidence intervals, a
   verdict, and the plots.
4. **Promote**: the config change that makes the winner primary and the old path its passive backup.
5. **Failover drill**: the new primary breaks; requests keep being answered, and a hedge cuts the tail."""),
    ("code", """import logging
import os
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch litellm's price map

import matplotlib

matplotlib.use("Agg")
import io

import matplotlib.pyplot as plt
import openai
import yaml
from IPython.display import Image, display

from hyperion_core import Gateway
from hyperion_core.experiments.promote import promote_diff, promoted
from hyperion_core.mock_provider import MockProvider
from hyperion_core.types import Caller

for noisy in ("httpx", "openai"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

mock = MockProvider().start()          # free port, background thread
print("mock provider at", mock.url)"""),
    ("md", "## 1. Today: direct calls with the openai SDK"),
    ("code", """direct = openai.OpenAI(base_url=mock.base_url("nb-current", "openai"), api_key="sk-mock", max_retries=0)
t0 = time.perf_counter()
for i in range(20):
    answer = direct.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"ticket {i}"}],
                                            max_tokens=32)
print(f"direct: 20 calls, {1000 * (time.perf_counter() - t0) / 20:.1f} ms each")
print(answer.choices[0].message.content[:60])"""),
    ("md", """## 2. The gateway in front, a split for a simulated week

The current deployment is marked `direct: true` (reports label it "direct"). A split sends a sticky 30%
of users to `cheap` (a smaller model at a fraction of the price). The candidate is not perfect: 3% of
its calls fail with a 503; failover answers those from `current`, so the caller never sees the error and
the report lists `current` among variant B's deployments. The records are stamped with a simulated
clock: seven days of traffic in a few seconds."""),
    ("code", """workdir = tempfile.mkdtemp(prefix="hyperion-migration-")
CONFIG = {
    "providers": {
        "current": {"kind": "openai", "api_key": "sk-mock", "base_url": mock.base_url("nb-current", "openai")},
        "cheap": {"kind": "openai", "api_key": "sk-mock", "base_url": mock.base_url("nb-cheap", "openai")},
    },
    "routes": {
        "chat": {
            "deployments": [
                {"model": "current/gpt-4o", "name": "current", "direct": True,
                 "pricing": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}},
                {"model": "cheap/gpt-4o-mini", "name": "cheap",
                 "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}},
            ],
            "retry": {"attempts": 0},
            "split": {"name": "mini-trial", "target": "cheap", "share": 0.3, "sticky": "user"},
        },
    },
}
mock.fault("nb-cheap", status=503, probability=0.03, seed=7)
gw = Gateway(CONFIG)
WEEK_START = 1_767_225_600  # 2026-01-01 00:00 UTC: the simulated week's first day
for day in range(7):
    gw.experiments.now = lambda day=day: WEEK_START + day * 86_400 + 43_200
    for i in range(60):
        await gw.acomplete("chat", [{"role": "user", "content": f"customer question {i % 25}"}],
                           caller=Caller(user=f"user-{(day * 60 + i) % 150}"), max_tokens=32)
await gw.experiments.flush()
records = await gw.experiments.records("mini-trial")
print(len(records), "requests recorded over", len({time.strftime('%a', time.gmtime(r.time)) for r in records}), "days")"""),
    ("md", "## 3. The report"),
    ("code", """report = await gw.experiments.report("mini-trial")
print(report.table())"""),
    ("code", """for fig in report.plot():
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    display(Image(buf.getvalue()))"""),
    ("md", """## 4. Promote

`hyperion experiments promote mini-trial --config hyperion.yaml` prints this diff (`--write` applies it):
B becomes the primary, the old direct path its passive backup, the split goes away."""),
    ("code", """print(promote_diff(CONFIG, "mini-trial", "hyperion.yaml"))
PROMOTED = promoted(CONFIG, "mini-trial")
print("promote:", report.promote)
await gw.aclose()"""),
    ("md", """## 5. Failover drill

On the promoted config: the new primary (`cheap`) goes down (every call a 500). Requests keep being
answered by the backup. Then a hedge (`hedge: {after_ms: 150}`) on a slow primary: the backup's answer
wins instead of waiting 2 s."""),
    ("code", """mock.clear_faults("nb-cheap")
mock.fault("nb-cheap", status=500, times=3)
drill = Gateway(PROMOTED)
for i in range(3):
    r = await drill.acomplete("chat", [{"role": "user", "content": f"during the outage {i}"}], max_tokens=32)
    print(f"answered by {r.deployment} after", [(a.deployment, a.outcome) for a in r.attempts])
await drill.aclose()

hedged_cfg = yaml.safe_load(yaml.safe_dump(PROMOTED))
hedged_cfg["routes"]["chat"]["hedge"] = {"after_ms": 150}
hedged = Gateway(hedged_cfg)
mock.fault("nb-cheap", latency_ms=2000, times=1)
t0 = time.perf_counter()
r = await hedged.acomplete("chat", [{"role": "user", "content": "a slow primary"}], max_tokens=32)
print(f"hedged: answered by {r.deployment} in {1000 * (time.perf_counter() - t0):.0f} ms, hedged={r.decision.hedged}")
print("attempts:", [(a.deployment, a.outcome) for a in r.attempts])
await hedged.aclose()"""),
    ("code", """mock.stop()
print("done")"""),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src in CELLS:
        nb.cells.append(nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src))
    return nb


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "migration_playbook.ipynb"
    nbformat.write(build(), out)
    print(f"wrote {out}")
