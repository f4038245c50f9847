"""Execute the notebooks with CI-sized parameters (environment variables ALLEGRO_BIO_NB_*)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = REPO / "notebooks"
CI_PARAMETERS = {
    "protein_rmsd.ipynb": {"ALLEGRO_BIO_NB_SIZE": "fragment", "ALLEGRO_BIO_NB_STEPS": "4", "ALLEGRO_BIO_NB_REPORT": "2"},
    "quickstart.ipynb": {"ALLEGRO_BIO_NB_WATERS": "64", "ALLEGRO_BIO_NB_STEPS": "4"},
}


@pytest.mark.notebook
@pytest.mark.parametrize("name", sorted(CI_PARAMETERS))
def test_notebook_executes(name, tmp_path, monkeypatch):
    for key, value in CI_PARAMETERS[name].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    if name == "protein_rmsd.ipynb":
        assert any("image/png" in o.get("data", {}) for o in outputs)  # the RMSD / temperature plots
        assert (tmp_path / "runs" / "protein_rmsd" / "summary.json").is_file()


def test_committed_notebooks_have_outputs():
    for name in CI_PARAMETERS:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        if not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
            pytest.skip(f"{name} saved without outputs (run notebooks/make_notebooks.py --execute)")
        assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
