"""The notebooks in ``notebooks/`` run from top to bottom (jupytext percent files, nbclient).

They run on their fast configuration (``CKMODEL_NOTEBOOK_FAST=1``: real sampling, few
draws), in a temporary folder, and must leave the outputs they promise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.py"))
#: What each notebook must leave in its output folder.
OUTPUTS = {"01_fit_and_report": ["fit.nc", "report.html"],
           "02_exposure_response": ["er_1.nc", "er_4.nc", "report.html"],
           "03_dose_selection": ["selection.nc", "operating_characteristics.csv",
                                 "report.html"]}


def test_there_are_notebooks_and_each_names_its_outputs():
    assert NOTEBOOKS
    assert {p.stem for p in NOTEBOOKS} <= set(OUTPUTS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    monkeypatch.setenv("CKMODEL_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("CKMODEL_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = jupytext.read(path)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=dict(os.environ))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []
    for name in OUTPUTS[path.stem]:
        out = tmp_path / "out" / name
        assert out.is_file() and out.stat().st_size > 0, out
