"""System builders: exact atom counts and compositions, water density, geometric solvation, ions."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openmm")
import torch  # noqa: F401,E402  (docs/known-issues.md: before openmm)

from allegro_bio import systems  # noqa: E402
from allegro_bio.errors import AllegroError  # noqa: E402
from allegro_bio.systems.solvate import SOLUTE_CLEARANCE, ion_counts  # noqa: E402
from fixtures.pdb import peptide_pdb  # noqa: E402


def _min_intermolecular(system) -> tuple[float, float]:
    """(closest O–O, closest any-pair) between different waters, periodic (Å)."""
    from scipy.spatial import cKDTree

    L = np.diag(system.box_A)
    pos = np.mod(system.positions_A, L)
    tree = cKDTree(pos, boxsize=L)
    pairs = tree.query_pairs(2.6, output_type="ndarray")
    pairs = pairs[pairs[:, 0] // 3 != pairs[:, 1] // 3]
    d = pos[pairs[:, 0]] - pos[pairs[:, 1]]
    d = np.linalg.norm(d - np.round(d / L) * L, axis=1)
    oo = (pairs[:, 0] % 3 == 0) & (pairs[:, 1] % 3 == 0)
    return float(d[oo].min()) if oo.any() else 9.9, float(d.min())


@pytest.mark.parametrize("edge", [12.452, 18.0, 20.0, 30.0, 37.0])
def test_water_box_edge_density_and_seams(edge):
    w = systems.water_box(box_edge=edge)
    c = w.composition()
    assert c["n_atoms"] == 3 * c["waters"] == w.n_atoms
    assert c["elements"] == {"H": 2 * c["waters"], "O": c["waters"]}
    assert 0.96 <= c["density_g_cm3"] <= 1.04, c
    oo, any_pair = _min_intermolecular(w)
    assert oo >= 2.5 and any_pair >= 1.6
    np.testing.assert_allclose(np.diag(w.box_A), edge)


@pytest.mark.parametrize("n", [64, 100, 500])
def test_water_box_exact_count(n):
    w = systems.water_box(n_waters=n)
    assert w.composition()["waters"] == n and w.n_atoms == 3 * n
    assert 0.94 <= w.composition()["density_g_cm3"] <= 1.04
    atoms = w.to_ase()
    assert len(atoms) == 3 * n and atoms.pbc.all()
    np.testing.assert_allclose(atoms.cell.lengths(), np.diag(w.box_A))


def test_water_box_bad_input():
    with pytest.raises(AllegroError, match="not both"):
        systems.water_box(n_waters=10, box_edge=20.0)
    with pytest.raises(AllegroError, match="at least 8"):
        systems.water_box(box_edge=5.0)


def test_dhfr_exact(tmp_path):
    s = systems.dhfr()
    c = s.composition()
    assert s.n_atoms == 23558
    assert c["elements"] == {"H": 15267, "O": 7263, "C": 805, "N": 216, "S": 7}
    assert c["waters"] == 7023 and c["protein_residues"] == 159 and c["ions"] == {}
    assert s.formal_charge == -11
    assert systems.formal_charge(s.topology)[0] == -11  # the rules reproduce the prmtop's charges
    np.testing.assert_allclose(np.diag(s.box_A), 61.6447, atol=1e-3)
    assert s.positions.shape == (23558, 3) and len(s.box_vectors) == 3
    assert "23,558 atoms" in s.summary()


def test_factor_ix_exact():
    s = systems.factor_ix()
    c = s.composition()
    assert s.n_atoms == 90906
    assert c["elements"] == {"H": 59533, "O": 28956, "C": 1868, "N": 511, "S": 25, "Ca": 11, "Cl": 2}
    assert c["waters"] == 28358 and c["ions"] == {"CA": 11, "CL": 2}
    assert s.formal_charge == 0
    np.testing.assert_allclose(np.diag(s.box_A), [142.0855, 83.3369, 78.6784], atol=1e-3)


def test_stmv_reduced_same_code_path():
    """One icosahedral copy (the full 60-copy build: ~1.06 M atoms, ~20-40 s, 1.4 GB; docs/systems.md)."""
    s = systems.stmv(copies=1)
    c = s.composition()
    assert s.info["protein_atoms"] == 2266 and s.info["rna_duplexes"] == 1 and s.info["rna_atoms"] == 636
    assert c["protein_residues"] == 147 and c["nucleic_residues"] == 20
    assert s.formal_charge == 0 and c["ions"]["NA"] - c["ions"].get("CL", 0) == -s.info["solute_charge"]
    _assert_solvated(s, s.info["solute_atoms"])


def test_stmv_operators_form_a_group():
    from allegro_bio.systems.builders import _load_operators

    ops = _load_operators()
    assert ops.shape == (60, 3, 3)
    np.testing.assert_allclose(ops @ ops.transpose(0, 2, 1), np.broadcast_to(np.eye(3), ops.shape), atol=1e-6)
    flat = ops.reshape(60, 9)
    prod = (ops[7] @ ops[23]).reshape(9)
    assert np.abs(flat - prod).max(axis=1).min() < 1e-5


def _assert_solvated(s, n_solute):
    from scipy.spatial import cKDTree

    L = np.diag(s.box_A)
    pos = np.mod(s.positions_A, L)
    solute = pos[:n_solute]
    water_idx = [a.index for a in s.topology.atoms() if a.residue.name == "HOH"]
    d, _ = cKDTree(solute, boxsize=L).query(pos[water_idx], k=1)
    assert d.min() >= SOLUTE_CLEARANCE - 1e-6
    assert len(water_idx) > 0


def test_from_pdb_peptide_neutral_and_solvated(tmp_path):
    path, n_heavy = peptide_pdb(tmp_path / "pep.pdb")
    s = systems.from_pdb(path, padding=0.8, ionic_strength=0.15)
    c = s.composition()
    assert c["protein_residues"] == 5
    assert s.info["missing_heavy_atoms_added"] >= 2  # the removed side-chain atom + the C-terminal OXT
    assert s.formal_charge == 0
    n_na, n_cl = ion_counts(s.info["solute_charge"], s.info["waters"] + c["ions"].get("NA", 0) + c["ions"].get("CL", 0), 0.15)
    assert (c["ions"].get("NA", 0), c["ions"].get("CL", 0)) == (n_na, n_cl)
    assert c["elements"]["H"] > 0 and c["waters"] > 100
    _assert_solvated(s, s.info["solute_atoms"])
    # the box: solute extent + 2 × padding
    solute = s.positions_A[: s.info["solute_atoms"]]
    assert s.box_A[0, 0] >= (solute.max(0) - solute.min(0)).max() + 16.0 - 1e-6
    # no ions: charged, still solvated
    s0 = systems.from_pdb(path, padding=0.8, ionic_strength=0.0, neutralize=False)
    assert s0.composition()["ions"] == {} and s0.formal_charge == s.info["solute_charge"]
    out = s.write_pdb(tmp_path / "built.pdb")
    from openmm import app

    assert app.PDBFile(str(out)).topology.getNumAtoms() == s.n_atoms


def test_from_pdb_missing_file(tmp_path):
    with pytest.raises(AllegroError, match="no such structure file"):
        systems.from_pdb(tmp_path / "nope.pdb")


def test_ion_counts():
    assert ion_counts(-11, 5540, 0.15) == (15 + 11, 15)
    assert ion_counts(3, 554, 0.0) == (0, 3)
    assert ion_counts(3, 554, 0.1, neutralize=False) == (1, 1)
