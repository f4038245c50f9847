"""The packaged trained model: resolution by name, its model card, its test metrics reproduced,
and short usability regressions (NVE drift, Langevin stability of water, a peptide in OpenMM)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from ase import units
from ase.build import molecule

import allegro_bio
from allegro_bio import pretrained
from allegro_bio.data import water_box
from allegro_bio.errors import ModelFileError


def test_default_model_resolves_everywhere():
    assert pretrained.DEFAULT in pretrained.available()
    path = pretrained.path()
    model = pretrained.load()
    assert model.type_names == ["H", "C", "N", "O", "S"]
    assert "GFN2-xTB" in model.metadata["training_description"] or "xtb" in model.metadata["training_description"].lower()
    card = pretrained.card()
    assert "Known limits" in card and "GFN2-xTB" in card
    a = molecule("CH3CONH2")
    a.calc = allegro_bio.AllegroCalculator()  # model omitted: the packaged default
    e_default = a.get_potential_energy()
    a.calc = allegro_bio.AllegroCalculator(pretrained.DEFAULT)
    assert a.get_potential_energy() == e_default
    a.calc = allegro_bio.AllegroCalculator(str(path))
    assert a.get_potential_energy() == e_default
    with pytest.raises(ModelFileError, match="no packaged model named 'nope'"):
        allegro_bio.AllegroCalculator("nope")


@pytest.mark.long
def test_model_card_metrics_are_reproduced_by_evaluate(tmp_path):
    name = pretrained.DEFAULT
    path = pretrained.path()
    test_file = path.with_name(f"{name}.test.extxyz.xz")
    recorded = json.loads(pretrained.load().metadata["training_description"])["metrics_eV_A"]["test"]
    out = subprocess.run([sys.executable, "-m", "allegro_bio.cli", "evaluate", name, str(test_file), "--out",
                          str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    measured = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    for key in ("forces_mae", "forces_rmse", "energy_mae", "forces_mae_H", "forces_mae_C", "forces_mae_O"):
        assert measured[key] == pytest.approx(recorded[key], rel=1e-4), key
    card = pretrained.card()
    assert f"{recorded['forces_mae']:.3f}" in card


@pytest.mark.long
def test_water_box_nve_conserves_energy_with_the_trained_model():
    """192 waters-atoms, 0.5 fs, 400 steps (0.2 ps) from 300 K: bounded total-energy change."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = water_box()
    atoms.calc = allegro_bio.AllegroCalculator(dtype="float64")
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    e0 = atoms.get_total_energy()
    energies = []
    for _ in range(8):
        dyn.run(50)
        energies.append(atoms.get_total_energy())
    drift = max(abs(e - e0) for e in energies) / len(atoms)
    assert drift < 2e-3, f"max |ΔE| per atom {drift:.2e} eV"
    assert 150 < atoms.get_temperature() < 600
