"""DESIGN.md §3 physics suite, run on the eager network, the deployed file and the ASE calculator,
in float64 (tight) and float32 (loose)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

import allegro_bio
from allegro_bio import testing as T

from fixtures.structures import organic, small_triclinic_box, water_cluster

# (atol, rtol) of exact identities (invariance, images) and of finite differences, per dtype
EXACT = {"float64": (1e-9, 1e-9), "float32": (2e-4, 2e-5)}
FD = {"float64": dict(delta=1e-4, atol=1e-6, rtol=1e-5), "float32": dict(delta=1e-3, atol=2e-2, rtol=2e-3)}


def test_forces_are_minus_energy_gradient(form):
    f, dtype = form
    T.assert_forces_match_finite_differences(f, organic(), **FD[dtype])
    T.assert_forces_match_finite_differences(f, small_triclinic_box(), atoms_to_check=3, **FD[dtype])


def test_rotation_reflection_translation_permutation(form):
    f, dtype = form
    atol, rtol = EXACT[dtype]
    T.assert_invariant(f, organic(), atol=atol, rtol=rtol)
    T.assert_invariant(f, small_triclinic_box(), atol=atol * 10, rtol=rtol)


def test_strict_locality(form):
    f, dtype = form
    atol, rtol = (1e-10, 0.0) if dtype == "float64" else (1e-5, 1e-6)  # float32: summation-order rounding only
    T.assert_strictly_local(f, water_cluster(4), r_max=4.0, atol=atol, rtol=rtol)


def test_periodic_images_in_cell_smaller_than_twice_cutoff(form):
    f, dtype = form
    atoms = small_triclinic_box()
    assert min(atoms.cell.lengths()) < 2 * 4.0
    atol, rtol = EXACT[dtype]
    T.assert_periodic_images(f, atoms, repeat=(2, 1, 1), atol=atol * 10, rtol=rtol)
    T.assert_wrap_invariant(f, atoms, atol=atol * 10, rtol=rtol)


def test_molecule_split_across_the_boundary(form):
    f, dtype = form
    mol = water_cluster(3)
    mol.cell = np.diag([15.0, 15.0, 15.0])
    mol.pbc = True
    mol.center()
    ref = f(mol)
    split = mol.copy()
    split.positions -= mol.positions[0] + [0.2, 0.1, 0.0]  # atom 0 sits near the corner: the molecule straddles faces
    split.wrap()
    got = f(split)
    atol, rtol = EXACT[dtype]
    np.testing.assert_allclose(got.energy, ref.energy, atol=atol, rtol=rtol)
    np.testing.assert_allclose(got.forces, ref.forces, atol=atol * 10, rtol=rtol)


def test_stress_matches_finite_strain(form):
    f, dtype = form
    if dtype == "float64":
        T.assert_stress_matches_strain(f, small_triclinic_box(), delta=1e-5, atol=1e-7, rtol=1e-5)
    else:
        T.assert_stress_matches_strain(f, small_triclinic_box(), delta=1e-3, atol=1e-4, rtol=1e-2)


def test_isolated_atom_gives_its_shift():
    shifts = (-13.6, -1029.0, -1484.0, -2041.0, -10830.0)
    model = allegro_bio.build_model("small", ["H", "C", "N", "O", "S"], dtype="float64", per_type_shift=shifts)
    f = T.evaluator(model)
    for k, s in enumerate(["H", "C", "N", "O", "S"]):
        e = f(Atoms(s, positions=[[0.0, 0.0, 0.0]]))
        assert e.energy == pytest.approx(shifts[k], abs=1e-12)
        assert np.all(e.forces == 0)


def test_smooth_at_cutoff(eager64):
    f = T.evaluator(eager64)
    dimer = Atoms("CO", positions=[[0, 0, 0], [3.0, 0, 0]])
    T.assert_smooth_at_cutoff(f, dimer, cutoff=4.0, eps=1e-4, atol=1e-7)


def test_per_ordered_pair_cutoffs():
    """Centre H sees O only within 1.25 Å; centre O sees H up to 4 Å."""
    model = allegro_bio.build_model("small", ["H", "O"], dtype="float64", per_edge_type_cutoff={"H": {"O": 1.25}})
    f = T.evaluator(model)
    ref = f(Atoms("HO", positions=[[0, 0, 0], [1.6, 0, 0]]))
    got = f(Atoms("HO", positions=[[0, 0, 0], [2.4, 0.5, 0]]))
    assert got.energies[0] == pytest.approx(ref.energies[0], abs=1e-12)  # E_H: O is beyond 1.25 Å both times
    assert abs(got.energies[1] - ref.energies[1]) > 1e-6  # E_O: H is inside 4 Å
    T.assert_smooth_at_cutoff(f, Atoms("HO", positions=[[0, 0, 0], [1.0, 0, 0]]), cutoff=4.0, atol=1e-7)
    T.assert_forces_match_finite_differences(f, Atoms("HOH", positions=[[0, 0, 0], [1.1, 0.2, 0], [1.5, 1.2, 0.3]]))


def test_dummy_pdb_cell_is_not_periodic(eager64):
    f = T.evaluator(eager64)
    mol = water_cluster(5)
    ref = f(mol)
    dummy = mol.copy()
    dummy.cell = np.eye(3)
    dummy.pbc = True
    with pytest.warns(UserWarning, match="dummy unit cell"):
        got = f(dummy)
    assert got.energy == pytest.approx(ref.energy, abs=1e-10)


def test_mixed_pbc_slab(form):
    f, dtype = form
    atoms = small_triclinic_box()
    atoms.pbc = [True, True, False]
    atol, rtol = EXACT[dtype]
    T.assert_wrap_invariant(f, atoms, atol=atol * 10, rtol=rtol)
    T.assert_forces_match_finite_differences(f, atoms, atoms_to_check=2, **FD[dtype])


def test_float32_agrees_with_float64(eager64, eager32):
    a = organic()
    e64, e32 = T.evaluator(eager64)(a), T.evaluator(eager32)(a)
    assert e32.energy == pytest.approx(e64.energy, rel=1e-5)
    np.testing.assert_allclose(e32.forces, e64.forces, atol=1e-3 * np.abs(e64.forces).max())


def test_chunked_evaluation_is_exact(eager64):
    from allegro_bio.model import clone

    a = small_triclinic_box().repeat((2, 1, 1))
    ref = T.evaluator(eager64)(a)
    chunked = clone(eager64)
    chunked.max_edges_per_chunk = 50
    got = T.evaluator(chunked)(a)
    assert got.energy == pytest.approx(ref.energy, abs=1e-9)
    np.testing.assert_allclose(got.forces, ref.forces, atol=1e-10)
    np.testing.assert_allclose(got.stress, ref.stress, atol=1e-12)


@pytest.mark.parametrize("layers,zbl", [(1, True), (2, False), (3, True)])
def test_streamed_evaluation_is_exact(layers, zbl):
    """Pairs streamed through each layer in tiles give the whole-array evaluation's energies,
    forces and stress, for any number of layers, with and without ZBL, in chunks or not."""
    import torch

    from allegro_bio.model import clone

    model = allegro_bio.build_model("small", ("H", "C", "N", "O", "S"), seed=2, dtype="float64", num_layers=layers,
                                    zbl=zbl, avg_num_neighbors=8.0)
    with torch.no_grad():  # scale and shift per species, so their gradients are exercised
        model.net.per_type_scale.copy_(torch.linspace(0.5, 1.5, 5, dtype=torch.float64))
        model.net.per_type_shift.copy_(torch.linspace(-1.0, 1.0, 5, dtype=torch.float64))
    a = small_triclinic_box().repeat((2, 1, 1))
    ref = T.evaluator(model)(a)
    for tile, chunk in ((37, model.max_edges_per_chunk), (10**6, model.max_edges_per_chunk), (37, 200)):
        streamed = clone(model)
        streamed.stream_tile, streamed.max_edges_per_chunk = tile, chunk
        got = T.evaluator(streamed)(a)
        assert got.energy == pytest.approx(ref.energy, abs=1e-9)
        np.testing.assert_allclose(got.energies, ref.energies, atol=1e-10)
        np.testing.assert_allclose(got.forces, ref.forces, atol=1e-10)
        np.testing.assert_allclose(got.stress, ref.stress, atol=1e-12)
