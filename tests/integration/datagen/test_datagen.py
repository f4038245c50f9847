"""Reference-data generator: carving, charges, xTB labels, resume, splits, and the shipped data set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.io import read

pytest.importorskip("tblite")

from allegro_bio.datagen import fragments, label, read_frames, read_reference, recipe, reference_path, sampling  # noqa: E402,E501


def _angstrom(quantity) -> np.ndarray:
    from openmm import unit

    return np.array(quantity.value_in_unit(unit.angstrom))


@pytest.fixture(scope="module")
def dhfr():
    """DHFR in water (23,558 atoms) at its openmmtools coordinates: info, units, positions, cell (Å)."""
    top, pos, system = sampling.build("dhfr")
    info = sampling.system_info("dhfr", top, system)
    cell = np.array([_angstrom(v) for v in system.getDefaultPeriodicBoxVectors()])
    return info, fragments.units(info), _angstrom(pos), cell


def _clusters(dhfr, n=25, seed=0):
    info, parts, pos, cell = dhfr
    rng = np.random.default_rng(seed)
    protein = np.flatnonzero(~info.is_water & (info.numbers > 1))
    sulfur = np.flatnonzero(info.numbers == 16)
    centres = list(rng.choice(protein, n - 3)) + list(sulfur[:3])
    return [fragments.carve(info, parts, pos, cell, int(c), int(rng.integers(20, 91))) for c in centres]


@pytest.mark.long
def test_carving_keeps_waters_whole_and_caps_at_1_09(dhfr):
    info, parts, pos, cell = dhfr
    for c in _clusters(dhfr):
        taken = set(c.atoms.tolist())
        res = info.residue_index[c.atoms[info.is_water[c.atoms]]]
        for r in np.unique(res):  # every water in the cluster is complete (O, H, H)
            assert np.isin(np.flatnonzero(info.residue_index == r), c.atoms).all()
        # no cut bond other than an allowed C–C one
        for i, j in info.bonds:
            if (i in taken) != (j in taken):
                assert info.numbers[i] == 6 and info.numbers[j] == 6
        n_real = len(c.atoms)
        assert len(c.numbers) == n_real + c.n_caps and (c.numbers[n_real:] == 1).all()
        if c.n_caps:
            d = np.linalg.norm(c.positions[n_real:, None] - c.positions[None, :n_real], axis=-1)
            nearest = d.min(axis=1)
            np.testing.assert_allclose(nearest, fragments.CAP_DISTANCE, atol=1e-6)
            assert (c.numbers[:n_real][d.argmin(axis=1)] == 6).all()
        # no two atoms overlap (caps do not clash)
        dd = np.linalg.norm(c.positions[:, None] - c.positions[None], axis=-1) + 10 * np.eye(len(c.numbers))
        assert dd.min() > 0.8


@pytest.mark.long
def test_cluster_charge_is_even_electron_and_the_residue_sum(dhfr):
    info, parts, _, _ = dhfr
    assert parts.charge.sum() == -11  # JAC DHFR: formal charge −11, no ions
    charged = 0
    for c in _clusters(dhfr, n=40, seed=1):
        assert (int(c.numbers.sum()) - c.charge) % 2 == 0
        # independent check: round the force-field charge of each residue's atoms inside the cluster
        res = info.residue_index[c.atoms]
        per_res = np.bincount(res, weights=info.charges[c.atoms])
        assert c.charge == int(np.rint(per_res[np.unique(res)]).sum())
        charged += c.charge != 0
    assert charged > 0


def test_xtb_forces_match_finite_differences():
    atoms = Atoms("OH2CH4", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [3.2, 0.1, 0.2],
                                        [4.29, 0.1, 0.2], [2.84, 1.1, 0.4], [2.84, -0.3, -0.75], [2.84, -0.4, 0.9]])
    energy, forces = label.xtb(atoms.numbers, atoms.positions)
    h = 1e-3
    for i, k in [(0, 0), (3, 1), (5, 2)]:
        e = []
        for s in (h, -h):
            p = atoms.positions.copy()
            p[i, k] += s
            e.append(label.xtb(atoms.numbers, p)[0])
        assert abs(-(e[0] - e[1]) / (2 * h) - forces[i, k]) < 2e-3
    assert np.isfinite(energy) and energy < 0
    with pytest.raises(label.LabelError):
        label.xtb(atoms.numbers, atoms.positions, charge=1)  # odd electron count is refused


def _tasks(n):
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        a = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        a.positions += rng.normal(0, 0.03, (3, 3))
        a.info.update(frame_id=f"t/{i}", total_charge=0, split="train", source="water-cluster")
        out.append(a)
    return out


@pytest.mark.long
def test_labelling_resumes_without_redoing_or_losing_frames(tmp_path, monkeypatch):
    path = tmp_path / "labelled.extxyz"
    assert label.label_frames(_tasks(5), path, progress=False, limit=2) == 2
    first = path.read_text()
    with open(path, "a") as fh:  # a run killed in the middle of writing a frame
        fh.write(first.splitlines(keepends=True)[0] + first.splitlines(keepends=True)[1])
    calls = []
    real = label.label_atoms
    monkeypatch.setattr(label, "label_atoms", lambda a: calls.append(a.info["frame_id"]) or real(a))
    assert label.label_frames(_tasks(5), path, progress=False) == 3
    assert calls == ["t/2", "t/3", "t/4"]
    frames = read(path, ":")
    assert [a.info["frame_id"] for a in frames] == [f"t/{i}" for i in range(5)]
    assert path.read_text().startswith(first)
    assert all(np.isfinite(a.get_forces()).all() for a in frames)


def test_splits_never_share_a_group():
    groups = [f"dhfr/seg{i:03d}" for i in range(20)] + [f"water-box/r{i:04d}" for i in range(7)] + ["ala2/seg000"]
    splits = recipe.assign_splits(groups * 2, seed=5)
    assert set(splits) == set(groups)
    dhfr = [splits[g] for g in groups[:20]]
    assert dhfr.count("val") == 2 and dhfr.count("test") == 2
    assert splits == recipe.assign_splits(groups, seed=5)


@pytest.fixture(scope="module")
def shipped():
    meta_path = reference_path("metadata")
    if not meta_path.exists():
        pytest.skip("no shipped reference data set")
    meta = json.loads(meta_path.read_text())
    data = {s: read_reference(s) for s in ("train", "val", "test")}
    # plain ase.io.read gives the same frames (read_reference only decompresses into memory first)
    import io
    import lzma

    with lzma.open(reference_path("val"), "rt") as fh:
        plain = read(io.StringIO(fh.read()), ":", format="extxyz")
    assert [a.info["frame_id"] for a in plain] == [a.info["frame_id"] for a in data["val"]]
    np.testing.assert_array_equal(plain[0].get_forces(), data["val"][0].get_forces())
    return meta, data


def test_shipped_dataset_reads_back_with_labels_and_documented_counts(shipped):
    meta, data = shipped
    assert sum(len(v) for v in data.values()) == meta["n_frames"]
    for split, frames in data.items():
        assert len(frames) == meta["split_totals"][split]
        counts: dict[str, int] = {}
        for a in frames:
            assert a.info["split"] == split and a.info["method"] == meta["method"]
            assert set(a.get_chemical_symbols()) <= {"H", "C", "N", "O", "S"}
            q = int(a.info["total_charge"])
            assert (int(a.numbers.sum()) - q) % 2 == 0
            assert np.isfinite(a.get_potential_energy()) and a.get_forces().shape == (len(a), 3)
            assert a.pbc.all() == (a.info["source"] == "water-box")
            counts[a.info["source"]] = counts.get(a.info["source"], 0) + 1
        assert counts == {k: v[split] for k, v in meta["counts"].items() if v[split]}


def test_shipped_dataset_has_no_source_configuration_in_two_splits(shipped):
    _, data = shipped
    for key in ("config_id", "group_id"):
        seen = {s: {a.info[key] for a in frames} for s, frames in data.items()}
        assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"] and not seen["val"] & seen["test"]
    assert all(len(v) for v in data.values())


@pytest.mark.long
def test_cli_recipe_end_to_end_on_water_boxes(tmp_path, capsys):
    """The whole recipe (MD → tasks → xTB → split files) on 4 periodic water boxes, via the CLI."""
    from allegro_bio import cli

    out = tmp_path / "ref"
    assert cli.main(["datagen", "--out", str(out), "--frames", "4", "--seed", "1", "--kinds", "water-box",
                     "--no-progress"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["n_frames"] == 4 and meta["counts"]["water-box"]["total"] == 4 and meta["seed"] == 1
    frames = read_frames(out / "train.extxyz.xz")
    assert all(a.pbc.all() and a.info["total_charge"] == 0 and len(a) % 3 == 0 for a in frames)
    # rerunning the same command labels nothing new
    assert cli.main(["datagen", "--out", str(out), "--frames", "4", "--seed", "1", "--kinds", "water-box",
                     "--no-progress"]) == 0
    assert len(read(out / "labelled.extxyz", ":")) == 4
    assert "4 frames" in capsys.readouterr().out


def test_docstring_examples():
    import doctest

    import allegro_bio.datagen

    result = doctest.testmod(allegro_bio.datagen)
    assert result.failed == 0 and result.attempted > 0
