"""Ion kinds of the reference-data recipe: charges of carved ion clusters, neutral boxes, splits by
MD group, resume, SCF fallbacks, isolated-species energies and one real GFN2-xTB label."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tblite")
pytest.importorskip("openmm")

from allegro_bio.datagen import ions, label, recipe, sampling  # noqa: E402
from allegro_bio.errors import AllegroError  # noqa: E402

SYMBOL = {z: s for s, (_, z, _) in ions.IONS.items()}


def _tiny_md(salt: str, edge_nm: float = 1.4, n_units: int = 3, seed: int = 1):
    built = ions.build_solution(salt, edge_nm, n_units, seed)
    return sampling.run_md(f"t-{salt}", [300.0, 450.0], seed=seed, segment_steps=30, snapshots_per_segment=1,
                           equilibration_steps=30, built=built)


@pytest.fixture(scope="module")
def solutions():
    """Three formula units of each salt in a 1.4 nm water box, 60 steps of flexible MD."""
    return {salt: _tiny_md(salt) for salt in ions.SALTS}


@pytest.fixture()
def tiny_plans(monkeypatch):
    """Shrink the MD of the ion kinds so a whole recipe runs in seconds."""
    monkeypatch.setattr(ions, "SOLUTION_PLAN", ions.SolutionPlan(segments=3, segment_steps=20, snapshots=1,
                                                                  equilibration_steps=20))
    monkeypatch.setattr(ions, "SOLUTION_CONCENTRATIONS", ((1.0, 1.3),))
    monkeypatch.setattr(ions, "BOX_SNAPSHOTS", 2)
    monkeypatch.setattr(ions, "BOX_SNAPSHOT_EVERY", 10)
    monkeypatch.setattr(ions, "BOX_EQUILIBRATION", 20)
    monkeypatch.setattr(ions, "ION_CLUSTER_ATOMS", (13, 30))


def test_solution_holds_the_requested_ions_and_charges(solutions):
    for salt, (info, snaps) in solutions.items():
        cation, anion, per = ions.SALTS[salt]
        z = info.numbers
        assert np.sum(z == ions.IONS[cation][1]) == 3 and np.sum(z == ions.IONS[anion][1]) == 3 * per
        assert abs(info.charges.sum()) < 1e-6  # neutral
        assert np.isfinite(snaps[-1].positions).all()
    assert ions.formula_units(0.15, 2.8) == 2 and ions.formula_units(1.0, 2.4) == 8
    assert ions.concentration(8, 2.4) == pytest.approx(0.961, abs=1e-3)


def test_bad_input_is_refused_with_a_named_problem():
    with pytest.raises(AllegroError, match="unknown salt"):
        ions.build_solution("LiCl", 1.4, 1, 0)
    with pytest.raises(AllegroError, match="does not fit"):
        ions.formula_units(0.15, 1.0)  # 0.09 formula units
    with pytest.raises(AllegroError, match="does not fit"):
        ions.build_solution("CaCl2", 0.8, 6, 0)  # 18 ions in ~17 waters
    with pytest.raises(AllegroError, match="neither water nor"):
        ions.ion_charge(np.array([8, 1, 1, 6]))
    with pytest.raises(ValueError, match="unknown kinds"):
        recipe.frame_counts(10, ("ion-cluster",))


def test_carved_ion_clusters_have_even_electrons_and_the_ion_charge(solutions):
    rng = np.random.default_rng(0)
    seen_pairs = set()
    for salt, (info, snaps) in solutions.items():
        s = snaps[-1]
        ion_atoms = np.flatnonzero(np.isin(info.numbers, list(ions.ION_CHARGE)))
        pairs = ions.ion_pairs(info, s.positions, s.cell)
        centres = [[int(a)] for a in ion_atoms] + [[a, b] for kind in pairs for a, b, _ in pairs[kind][:2]]
        seen_pairs.update(kind for kind, found in pairs.items() if found)
        for centre in centres:
            c = ions.carve_ions(info, s.positions, s.cell, centre, int(rng.integers(13, 80)))
            assert (int(c.numbers.sum()) - c.charge) % 2 == 0
            # the charge is the sum of the charges of the ions taken (counted from their symbols)
            expected = sum({"Na": 1, "K": 1, "Mg": 2, "Ca": 2, "Cl": -1}[SYMBOL[int(z)]]
                           for z in c.numbers if int(z) in SYMBOL)
            assert c.charge == expected
            assert set(centre) <= set(c.atoms.tolist())  # the centre ion(s) are in the cluster
            res = info.residue_index[c.atoms]
            for r in np.unique(res):  # whole waters and ions
                assert np.isin(np.flatnonzero(info.residue_index == r), c.atoms).all()
            n_o = int(np.sum(c.numbers == 8))
            assert int(np.sum(c.numbers == 1)) == 2 * n_o  # every O has its two H
            d = np.linalg.norm(c.positions[:, None] - c.positions[None], axis=-1) + 10 * np.eye(len(c.numbers))
            assert d.min() > 0.7  # molecules unwrapped consistently (no image overlaps)
            if len(centre) == 2:
                q = [ions.ION_CHARGE[int(info.numbers[a])] for a in centre]
                assert q[0] > 0 > q[1]
    assert "contact" in seen_pairs  # every other formula unit starts as a contact pair


def test_ion_tasks_split_by_group_never_by_frame(tmp_path, tiny_plans):
    kinds = ("ion-water-cluster", "ionic-box")
    tasks = recipe.make_tasks(tmp_path / "md", 40, seed=3, kinds=kinds)
    assert recipe.frame_counts(40, kinds) == {"ion-water-cluster": 30, "ionic-box": 10}
    assert len(tasks) == 40 and len({t.info["frame_id"] for t in tasks}) == 40
    by_group: dict[str, set] = {}
    for t in tasks:
        by_group.setdefault(t.info["group_id"], set()).add(t.info["split"])
        assert (int(t.numbers.sum()) - t.info["total_charge"]) % 2 == 0
        assert t.info["total_charge"] == ions.ion_charge(t.numbers)
        if t.info["source"] == "ionic-box":
            assert t.pbc.all() and t.info["total_charge"] == 0 and t.info["ions"]
            assert 50 <= len(t) <= 100
        else:
            assert not t.pbc.any() and t.info["ion_pair"] in ("none", "contact", "solvent-separated")
    assert all(len(s) == 1 for s in by_group.values())
    systems = {g.split("/")[0] for g in by_group}
    assert {f"ions-{salt}-1M" for salt in ions.SALTS} <= systems and "ionic-box" in systems
    for system in systems:  # ≥ 3 groups: one of them in each split
        groups = [g for g in by_group if g.split("/")[0] == system]
        if len(groups) >= 3:
            assert {next(iter(by_group[g])) for g in groups} == {"train", "val", "test"}
    again = recipe.make_tasks(tmp_path / "md", 40, seed=3, kinds=kinds)  # MD cached (float32): same frames
    assert [a.info["frame_id"] for a in again] == [a.info["frame_id"] for a in tasks]
    assert [a.info["split"] for a in again] == [a.info["split"] for a in tasks]
    for a, b in zip(again, tasks):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-4)


def test_default_kinds_and_mix_are_unchanged():
    assert recipe.KINDS == ("dhfr-protein-cluster", "ala2-cluster", "dhfr-water-cluster", "water-cluster",
                            "water-box")
    assert recipe.frame_counts(3000) == {"dhfr-protein-cluster": 1050, "ala2-cluster": 450,
                                         "dhfr-water-cluster": 300, "water-cluster": 600, "water-box": 600}
    import argparse

    from allegro_bio.datagen import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert tuple(parser.parse_args(["--out", "x"]).kinds) == recipe.KINDS
    assert parser.parse_args(["--out", "x", "--kinds", "ionic-box"]).kinds == ["ionic-box"]


def test_ion_run_resumes_and_finalizes(tmp_path, tiny_plans, monkeypatch):
    out = tmp_path / "run"
    tasks = recipe.prepare(out, 6, seed=4, kinds=("ion-water-cluster",))
    path = out / recipe.LABELLED_FILE
    assert label.label_frames(tasks, path, progress=False, limit=2) == 2
    calls = []
    real = label.label_atoms
    monkeypatch.setattr(label, "label_atoms", lambda a: calls.append(a.info["frame_id"]) or real(a))
    again = recipe.prepare(out, 6, seed=4, kinds=("ion-water-cluster",))  # reads tasks.extxyz back
    assert label.label_frames(again, path, progress=False) == 4
    assert calls == [a.info["frame_id"] for a in tasks[2:]]
    meta = recipe.finalize(out)
    assert meta["n_frames"] == 6 and meta["counts"]["ion-water-cluster"]["total"] == 6
    assert meta["scf_failures"] == [] and meta["scf_hot_retries"] == []
    assert json.loads((out / recipe.METADATA_FILE).read_text())["seed"] == 4


def test_scf_fallback_is_recorded_never_silent(tmp_path, monkeypatch):
    water = np.array([8, 1, 1])
    pos = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    monkeypatch.setattr(label, "SCF_ATTEMPTS", ((None, 1),))  # one iteration never converges
    info: dict = {}
    energy, _ = label.xtb(water, pos, info=info)
    assert info["electronic_temperature_K"] == label.SCF_HOT_TEMPERATURE_K and np.isfinite(energy)
    monkeypatch.setattr(label, "SCF_HOT_MAX_ITER", 1)
    with pytest.raises(label.SCFError):
        label.xtb(water, pos)
    from ase import Atoms

    a = Atoms(numbers=water, positions=pos)
    a.info.update(frame_id="w/0", total_charge=0, split="train", source="water-cluster")
    assert label.label_frames([a], tmp_path / "l.extxyz", progress=False) == 1
    assert (tmp_path / "l.failed.txt").read_text().split() == ["w/0"]


def test_isolated_species_energies_match_tblite():
    for species in ("Na+", "Cl-", "Mg2+", "Ca", "P"):
        assert label.isolated_energy(species) == pytest.approx(label.ISOLATED_ENERGIES_EV[species], abs=1e-3)
    assert set(label.ISOLATED_ENERGIES_EV) == set(label.ISOLATED_SPECIES)
    with pytest.raises(label.LabelError):
        label.isolated_energy("Fe")


def test_real_gfn2_label_of_a_tiny_ion_water_cluster(solutions):
    info, snaps = solutions["NaCl"]
    s = snaps[-1]
    na_all, cl = np.flatnonzero(info.numbers == 11), np.flatnonzero(info.numbers == 17)
    d = np.linalg.norm(ions._mic(s.positions[na_all, None] - s.positions[None, cl], np.diag(s.cell)), axis=-1)
    na = int(na_all[np.argmax(d.min(axis=1))])  # the Na+ that is not in a contact pair
    c = ions.carve_ions(info, s.positions, s.cell, [na], 13)  # Na+ and 4 waters
    assert len(c.numbers) == 13 and c.charge == 1
    from ase import Atoms

    atoms = Atoms(numbers=c.numbers, positions=c.positions)
    atoms.info.update(frame_id="na/0", total_charge=c.charge)
    label.label_atoms(atoms)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.isfinite(forces).all() and np.abs(forces.sum(axis=0)).max() < 1e-3  # no net force on a cluster
    assert "electronic_temperature_K" not in atoms.info and atoms.info["cpu_s"] < 5
    e_water = label.xtb(np.array([8, 1, 1]), np.array([[0, 0, 0], [0.957, 0, 0], [-0.24, 0.927, 0]]))[0]
    binding = energy - label.ISOLATED_ENERGIES_EV["Na+"] - 4 * e_water
    assert -5.0 < binding < -1.0  # Na+ binds four waters by a few eV (gas phase)
    with pytest.raises(label.LabelError):
        label.xtb(c.numbers, c.positions, charge=0)  # the wrong (odd-electron) charge is refused
