"""notebooks/migration_playbook.ipynb runs top to bottom (offline, against the mock provider it starts)
on this virtualenv's interpreter, and shows each step of the migration checklist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "migration_playbook.ipynb"
KERNEL = "hyperion-migration-venv"


@pytest.fixture
def kernel_spec(tmp_path, monkeypatch):
    """A kernelspec for this interpreter, found through JUPYTER_PATH (see tests/lc/test_lc_notebook.py)."""
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL, display_name="Hyperion venv", prefix=str(tmp_path))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    assert sys.executable in (tmp_path / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json").read_text()
    return KERNEL


def test_the_generator_and_the_notebook_agree():
    sys.path.insert(0, str(NOTEBOOK.parent))
    try:
        from _make_migration_playbook import build
    finally:
        sys.path.pop(0)
    import nbformat

    on_disk = nbformat.read(NOTEBOOK, as_version=4)
    assert [c.source for c in on_disk.cells] == [c.source for c in build().cells]


def test_the_migration_playbook_runs_and_shows_each_step(kernel_spec):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=kernel_spec, timeout=180, startup_timeout=60, allow_errors=False,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    def text(cell) -> str:
        return "".join(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)

    code = [c for c in nb.cells if c.cell_type == "code"]
    out = "\n".join(text(c) for c in code)
    assert "direct: 20 calls" in out
    assert "420 requests recorded over 7 days" in out
    m = re.search(r"\| requests \| (\d+) \| (\d+) \|", out)
    assert m and int(m.group(1)) + int(m.group(2)) == 420 and int(m.group(2)) > 0
    assert "| deployments | current (direct) | cheap, current (direct) |" in out  # B's 503s failed over
    assert "| latency p50 ms [95% CI] |" in out
    assert "verdict: B costs" in out and "less per request" in out
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # latency CDFs, cost per day, agreement
    assert "-    split:" in out and "+    strategy: failover" in out
    assert out.count("answered by current after [('cheap', 'error'), ('current', 'ok')]") == 3
    assert "hedged: answered by current" in out and "hedged=True" in out
    assert "('cheap', 'cancelled')" in out
    assert out.rstrip().endswith("done")
