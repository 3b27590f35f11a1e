"""The quickstart notebook runs top to bottom in a real Jupyter kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_quickstart_notebook_runs(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    # the notebook's own sizes, made smaller: what is tested is that it runs
    nb.cells[1].source = nb.cells[1].source.replace(
        "N_OBJECTS, EPOCHS = 400, 4", "N_OBJECTS, EPOCHS = 200, 1"
    )
    assert "N_OBJECTS, EPOCHS = 200, 1" in nb.cells[1].source
    # the notebook shows the dashboard: on for its kernel, on loopback, any free port
    monkeypatch.setenv("CATBUILDER_CLUSTER__DASHBOARD", "127.0.0.1:0")
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    errors = [o for outs in outputs.values() for o in outs if o.get("output_type") == "error"]
    assert errors == []
    text = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for outs in outputs.values()
        for o in outs
    )
    assert "dashboard: http://127.0.0.1:" in text  # the dashboard, on loopback
    assert "accuracy" in text and 'Unit("deg")' in text
    assert any("image/png" in o.get("data", {}) for outs in outputs.values() for o in outs)
    assert (tmp_path / "cnn.model" / "catbuilder-model.json").is_file()
    assert (tmp_path / "plots" / "roc.png").is_file()
