"""ASE MD and optimisers with the calculator (a seeded, untrained model: these test the numerics —
energy conservation and descent — not the chemistry)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

import allegro_bio

from fixtures.structures import small_triclinic_box, water_cluster


def _gentle_model(dtype: str = "float64", scale: float = 0.02):
    # untrained weights give forces of O(100) eV/Å at σ = 1 eV; a small σ keeps the motion resolvable
    return allegro_bio.build_model("small", ["H", "O"], seed=2, dtype=dtype, per_type_scale=(scale, scale), zbl=False)


def _nve_drift(timestep_fs: float, duration_fs: float = 20.0) -> tuple[float, float]:
    atoms = small_triclinic_box().repeat((2, 2, 2))
    atoms.calc = allegro_bio.AllegroCalculator(_gentle_model(scale=0.002))
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    e0 = atoms.get_total_energy()
    totals, kinetic = [], []
    for _ in range(int(round(duration_fs / timestep_fs / 10))):
        dyn.run(10)
        totals.append(atoms.get_total_energy())
        kinetic.append(atoms.get_kinetic_energy())
    return float(np.max(np.abs(np.array(totals) - e0))), float(np.ptp(kinetic))


def test_nve_energy_error_is_second_order_in_timestep():
    """Velocity Verlet on conservative forces: the energy error falls ~4× per halving of dt
    (measured: 8.6e-4 eV at 0.2 fs, 1.3e-4 eV at 0.1 fs; 96 atoms, 20 fs)."""
    coarse, _ = _nve_drift(0.2)
    fine, kinetic_swing = _nve_drift(0.1)
    assert fine < coarse / 3.0, (coarse, fine)
    assert fine < 1e-3 * kinetic_swing


def test_bfgs_lowers_energy_and_forces():
    atoms = water_cluster(3)
    atoms.calc = allegro_bio.AllegroCalculator(_gentle_model())
    e0, f0 = atoms.get_potential_energy(), np.abs(atoms.get_forces()).max()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=200)
    assert atoms.get_potential_energy() < e0
    assert np.abs(atoms.get_forces()).max() < min(0.05, f0)


def test_results_cached_between_property_calls():
    atoms = water_cluster(2)
    calc = allegro_bio.AllegroCalculator(_gentle_model("float32"))
    atoms.calc = calc
    atoms.get_potential_energy()
    atoms.get_forces()
    assert calc.n_pairs > 0
    assert set(calc.results) >= {"energy", "free_energy", "energies", "forces"}
    assert np.isclose(calc.results["energies"].sum(), calc.results["energy"])


def test_calculator_verlet_list_is_exact_and_searches_rarely():
    """AllegroCalculator's Verlet list (pairs within r_max + skin, searched again after an atom moved
    skin/2 or the cell changed) gives at every step what a fresh search gives, across a drift, an
    atom wrapped to the other side of the box and a barostat-like cell scaling; stress included."""
    from allegro_bio.data import water64

    model = _gentle_model("float64")
    cached, fresh = allegro_bio.AllegroCalculator(model, skin=0.6), allegro_bio.AllegroCalculator(model, skin=0.0)
    atoms = water64().repeat((2, 1, 1))
    rng = np.random.default_rng(1)
    velocity = rng.normal(0.0, 5e-3, atoms.positions.shape)  # Å per step: ~0.02 Å max
    for step in range(30):
        atoms.positions += velocity
        if step == 12:
            atoms.positions[5] += atoms.cell[0]  # wrapped into the neighbouring image: same physics
        if step == 20:
            atoms.set_cell(atoms.cell * 1.002, scale_atoms=True)
        got, ref = [], []
        for calc, out in ((cached, got), (fresh, ref)):
            a = atoms.copy()
            a.calc = calc
            stress = a.get_stress()  # first: one evaluation gives all three
            out.extend([a.get_potential_energy(), a.get_forces(), stress])
        assert got[0] == pytest.approx(ref[0], rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=1e-12 * np.abs(ref[1]).max())
        np.testing.assert_allclose(got[2], ref[2], rtol=0, atol=1e-12 * np.abs(ref[2]).max())
        assert cached.n_pairs == fresh.n_pairs  # pairs within r_max, not the skin's extra pairs
    assert fresh.neighbors.searches == 30
    assert 3 <= cached.neighbors.searches <= 15, cached.neighbors.searches
