"""notebooks/llamaindex_quickstart.ipynb runs top to bottom, offline, on this checkout's virtualenv."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "llamaindex_quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    # a kernelspec for *this* interpreter, so a fresh machine needs no `ipykernel install`
    spec = tmp_path / "kernels" / "hyperion-li"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "hyperion (this venv)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name="hyperion-li", timeout=60, startup_timeout=60,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # raises on a cell error

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "retrieved: porto" in text  # the RAG query found the right passage
    assert "answer:    Tool result: Sunny and 21C in Lisbon" in text  # the agent used its tool
    assert "answered by anthropic-backup" in text  # ... and failed over mid-run
    assert "embeddings" in text and "chat" in text  # the spend table has both routes
    assert "ok       chat" in text and "audit chain intact: True" in text
    assert any("image/png" in o.get("data", {}) for o in outputs if o.output_type == "display_data")  # the plot
