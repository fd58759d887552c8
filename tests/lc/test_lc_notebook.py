"""notebooks/langchain_quickstart.ipynb runs top to bottom (offline, against the mock provider it
starts itself) on this virtualenv's interpreter, and shows what it promises."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "langchain_quickstart.ipynb"
KERNEL = "hyperion-lc-venv"


@pytest.fixture
def kernel_spec(tmp_path, monkeypatch):
    """A kernelspec for *this* interpreter (the venv's), found through JUPYTER_PATH: works on a fresh
    CI machine with no kernel installed, and never picks up another Python's ``python3`` kernel."""
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL, display_name="Hyperion venv", prefix=str(tmp_path))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    spec_file = tmp_path / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    assert sys.executable in spec_file.read_text()
    return KERNEL


def test_quickstart_notebook_runs_and_shows_its_results(kernel_spec):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=kernel_spec,
        timeout=120,
        startup_timeout=60,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    def text(cell) -> str:
        return "".join(
            o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")) for o in cell.outputs
        )

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    out = "\n".join(text(c) for c in code)
    assert "Mock answer to: How do I rotate my API key?" in out  # both chains answered
    assert "answered by anthropic-backup" in out  # failover during the outage
    assert "semantic hit" in out and "miss -> upstream" in out  # a hit and a guarded near miss
    assert "refused -> " in out and "daily budget" in out  # the budget refusal
    assert "budget_exceeded" in out and "ok" in out  # audit rows
    assert "p50 latency ms" in out and "agreement:" in out  # the shadow report
    assert "HyperionRateLimitError: [(" in out and "429" in out  # typed error after failover ...
    assert "fallback answer: Mock answer to: Which plan am I on?" in out  # ... and with_fallbacks uses it
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the one plot, inline
    assert out.rstrip().endswith("done")
