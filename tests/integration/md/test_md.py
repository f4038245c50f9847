"""MD runs (both engines): files, restart, blow-up handling, the CLI; analysis against hand-computed values."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("openmm")
import torch  # noqa: F401,E402  (docs/known-issues.md: before openmm)

import allegro_bio  # noqa: E402
from allegro_bio import analysis, md, systems  # noqa: E402
from allegro_bio.errors import AllegroError, ModelFileError, UnknownElementError  # noqa: E402
from fixtures.pdb import peptide_pdb  # noqa: E402

TYPES = ["H", "C", "N", "O", "S"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """Seeded, UNTRAINED model with small forces (σ = 0.002 eV): stable for a few fs, not chemistry."""
    m = allegro_bio.build_model("small", TYPES, seed=0, per_type_scale=(0.002,) * 5, zbl=False)
    return allegro_bio.save(m, tmp_path_factory.mktemp("m") / "model.pt")


@pytest.fixture(scope="module")
def hot_model_file(tmp_path_factory):
    """Untrained model with huge random forces (σ = 3 eV): any run with it explodes."""
    m = allegro_bio.build_model("small", TYPES, seed=0, per_type_scale=(3.0,) * 5, zbl=False)
    return allegro_bio.save(m, tmp_path_factory.mktemp("h") / "hot.pt")


@pytest.fixture(scope="module")
def water():
    return systems.water_box(n_waters=64)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _frames(out):
    import mdtraj

    with mdtraj.open(str(out / "trajectory.dcd")) as fh:
        return len(fh)


@pytest.mark.long
@pytest.mark.parametrize("engine", ["openmm", "ase"])
def test_run_writes_everything_and_restarts(engine, water, model_file, tmp_path):
    out = tmp_path / engine
    r = md.run(water, model_file, engine=engine, steps=10, report_interval=5, out_dir=out, progress=False)
    assert r.summary["status"] == "completed" and r.summary["steps_done"] == 10
    for name in ("topology.pdb", "trajectory.dcd", "state.csv", "summary.json", "temperature.png", "energy.png"):
        assert (out / name).is_file(), name
    rows = _rows(out / "state.csv")
    assert list(rows[0]) == list(md.run.__globals__["CSV_FIELDS"])
    assert [int(x["step"]) for x in rows] == [0, 5, 10] and _frames(out) == 3
    assert 150 < float(rows[0]["temperature_K"]) < 450
    assert r.summary["ns_per_day"] > 0 and r.summary["warning"].startswith("the model is an UNTRAINED")
    # restart: continue to step 20, appending
    r2 = md.run(water, model_file, engine=engine, steps=20, report_interval=5, out_dir=out, progress=False, restart=True)
    rows = _rows(out / "state.csv")
    assert [int(x["step"]) for x in rows] == [0, 5, 10, 15, 20] and _frames(out) == 5
    assert r2.summary["restarted_from_step"] == 10 and r2.summary["steps_done"] == 20
    # restarting from a state exactly continues (NVE is deterministic given the checkpoint)
    json.loads((out / "summary.json").read_text())


@pytest.mark.long
def test_restart_matches_uninterrupted_nve(water, model_file, tmp_path):
    a = md.run(water, model_file, integrator="nve", steps=10, report_interval=5, out_dir=tmp_path / "a", progress=False)
    md.run(water, model_file, integrator="nve", steps=5, report_interval=5, out_dir=tmp_path / "b", progress=False)
    b = md.run(water, model_file, integrator="nve", steps=10, report_interval=5, out_dir=tmp_path / "b", progress=False,
               restart=True)
    ea = float(_rows(tmp_path / "a" / "state.csv")[-1]["potential_kJ_mol"])
    eb = float(_rows(tmp_path / "b" / "state.csv")[-1]["potential_kJ_mol"])
    assert ea == pytest.approx(eb, rel=1e-5, abs=1e-3)
    assert "nve_drift_kJ_mol_per_atom_per_ns" in a.summary and "nve_drift_kJ_mol_per_atom_per_ns" in b.summary


@pytest.mark.long
@pytest.mark.parametrize("engine", ["openmm", "ase"])
def test_exploding_run_stops_with_message_and_keeps_files(engine, water, hot_model_file, tmp_path):
    out = tmp_path / "boom"
    with pytest.raises(md.SimulationUnstableError, match=r"simulation unstable at step \d+ .*temperature .* exceeds") as info:
        md.run(water, hot_model_file, engine=engine, steps=200, report_interval=5, timestep_fs=2.0, out_dir=out,
               progress=False)
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "failed" and s["time_to_failure_ps"] is not None and s["steps_done"] < 200
    assert (out / "state.csv").is_file() and (out / "trajectory.dcd").is_file() and (out / "temperature.png").is_file()
    assert info.value.result.failed
    r = md.run(water, hot_model_file, engine=engine, steps=200, report_interval=5, timestep_fs=2.0, out_dir=out,
               progress=False, raise_on_failure=False)
    assert r.failed


@pytest.mark.long
def test_ase_run_compiled_follows_the_uncompiled_run(water, model_file, tmp_path):
    """engine "ase", compile=True: the same NVE trajectory as uncompiled, to float32 rounding."""
    kw = dict(engine="ase", integrator="nve", steps=6, report_interval=3, progress=False)
    md.run(water, model_file, out_dir=tmp_path / "plain", **kw)
    r = md.run(water, model_file, out_dir=tmp_path / "compiled", compile=True, **kw)
    assert r.summary["status"] == "completed"
    plain, compiled = _rows(tmp_path / "plain" / "state.csv"), _rows(tmp_path / "compiled" / "state.csv")
    for a, b in zip(plain, compiled):
        assert float(b["potential_kJ_mol"]) == pytest.approx(float(a["potential_kJ_mol"]), rel=1e-5, abs=1e-2)
    with pytest.raises(AllegroError, match="engine 'ase'"):
        md.run(water, model_file, engine="openmm", compile=True, out_dir=tmp_path / "x", progress=False)


def test_unknown_elements_named_before_running(model_file, tmp_path):
    with pytest.raises(UnknownElementError, match=r"Ca \(11 atoms\), Cl \(2 atoms\)"):
        md.run(systems.factor_ix(), model_file, steps=1, out_dir=tmp_path, progress=False)
    assert not (tmp_path / "state.csv").exists()


def test_bad_arguments(water, model_file, tmp_path):
    with pytest.raises(AllegroError, match="engine"):
        md.run(water, model_file, engine="gromacs", out_dir=tmp_path)
    with pytest.raises(AllegroError, match="cannot restart"):
        md.run(water, model_file, steps=2, out_dir=tmp_path / "empty", restart=True, progress=False)


@pytest.mark.long
def test_default_model_is_the_packaged_one(water, tmp_path):
    from allegro_bio import pretrained

    if pretrained.available():
        _, info = md.resolve_model(None)
        assert info["path"] == str(pretrained.path())
    else:
        with pytest.raises(ModelFileError, match="--model"):
            md.run(water, None, steps=1, out_dir=tmp_path, progress=False)


@pytest.mark.long
def test_cli_md_pdb_with_rmsd_report(model_file, tmp_path, capsys):
    """`allegro-bio md --pdb`: a 5-residue peptide, no ions (the model knows no Na/Cl), RMSD report."""
    from allegro_bio.cli import main

    pdb, _ = peptide_pdb(tmp_path / "pep.pdb")
    out = tmp_path / "run"
    rc = main(["md", "--pdb", str(pdb), "--padding", "0.45", "--steps", "4", "--report-interval", "2", "--out", str(out),
               "--model", str(model_file), "--no-progress", "--engine", "ase"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["rmsd_backbone_A"]["frames"] == 3 and (out / "rmsd.png").is_file()
    assert s["composition"]["ions"] == {}
    assert "backbone RMSD" in capsys.readouterr().out


@pytest.mark.long
def test_cli_md_exit_status_on_blow_up(hot_model_file, tmp_path, capsys):
    from allegro_bio.cli import main

    rc = main(["md", "--system", "water", "--water-edge", "12.452", "--steps", "50", "--timestep", "2",
               "--report-interval", "5", "--out", str(tmp_path), "--model", str(hot_model_file), "--no-progress"])
    assert rc == 3 and "simulation unstable" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# analysis against hand-computed values
# ------------------------------------------------------------------------------------------

def _two_atom_traj():
    """Backbone N and CA of one ALA: frame 0 at x = ∓1 Å, frame 1 rotated + translated at ∓2 Å."""
    import mdtraj

    top = mdtraj.Topology()
    res = top.add_residue("ALA", top.add_chain())
    top.add_atom("N", mdtraj.element.nitrogen, res)
    top.add_atom("CA", mdtraj.element.carbon, res)
    f0 = np.array([[-1.0, 0, 0], [1.0, 0, 0]])
    rot = np.array([[0, -1.0, 0], [1.0, 0, 0], [0, 0, 1.0]])
    f1 = (2 * f0) @ rot.T + np.array([5.0, -3.0, 2.0])
    return mdtraj.Trajectory(np.stack([f0, f1, f0]) / 10.0, top)


def test_backbone_rmsd_rmsf_rg_by_hand(tmp_path):
    t = _two_atom_traj()
    np.testing.assert_allclose(analysis.backbone_rmsd(t), [0.0, 1.0, 0.0], atol=1e-4)  # each atom 1 Å off
    # mean positions after superposition: ±(1+2+1)/3 = ±4/3; deviations 1/3, 2/3, 1/3 -> sqrt(6/27)
    np.testing.assert_allclose(analysis.rmsf(t, selection="all"), [np.sqrt(6 / 27)] * 2, atol=1e-4)
    np.testing.assert_allclose(analysis.radius_of_gyration(t, selection="all", mass_weighted=False), [1, 2, 1], atol=1e-5)
    mN, mC = 14.007, 12.011  # mass-weighted: sqrt(mN mC) / (mN+mC) * 2 d for atoms 2d apart... = 2 d sqrt(mN mC)/(mN+mC)
    expect = 2 * np.sqrt(mN * mC) / (mN + mC)
    np.testing.assert_allclose(analysis.radius_of_gyration(t, selection="all"), [expect, 2 * expect, expect], rtol=1e-3)
    assert analysis.plot_rmsd(analysis.backbone_rmsd(t), tmp_path / "r.png").is_file()
    assert analysis.plot_rmsf([0.1, 0.2], tmp_path / "f.png").is_file()
    assert analysis.plot_radius_of_gyration([1, 2, 1], tmp_path / "g.png").is_file()


def test_rmsd_from_files(tmp_path):
    t = _two_atom_traj()
    t.save_dcd(str(tmp_path / "t.dcd"))
    t[0].save_pdb(str(tmp_path / "t.pdb"))
    np.testing.assert_allclose(analysis.backbone_rmsd(tmp_path / "t.dcd", topology=tmp_path / "t.pdb"), [0, 1, 0], atol=1e-3)
    with pytest.raises(AllegroError, match="topology is needed"):
        analysis.backbone_rmsd(tmp_path / "t.dcd")


def _log(tmp_path, T, total):
    path = tmp_path / "state.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "time_ps", "potential_kJ_mol", "kinetic_kJ_mol", "total_kJ_mol", "temperature_K", "ns_per_day"])
        for k, (t_, e) in enumerate(zip(T, total)):
            w.writerow([k * 100, k * 0.05, e - 1.0, 1.0, e, t_, 1.0])
    return path


def test_series_drift_and_time_to_failure(tmp_path):
    # total energy rises 2 kJ/mol per ps in a 4-atom system -> 2 * 1000 / 4 = 500 kJ/mol/atom/ns
    path = _log(tmp_path, [300, 310, 305, 299], [10 + 2 * 0.05 * k for k in range(4)])
    assert analysis.nve_drift(path, n_atoms=4) == pytest.approx(500.0)
    t, T = analysis.temperature_series(path)
    np.testing.assert_allclose(t, [0, 0.05, 0.1, 0.15]) and np.testing.assert_allclose(T, [300, 310, 305, 299])
    assert analysis.time_to_failure(path, max_temperature_K=600) is None
    path = _log(tmp_path, [300, 310, 700, float("nan")], [1, 1, 1, 1])
    assert analysis.time_to_failure(path, max_temperature_K=600) == pytest.approx(0.1)
    path = _log(tmp_path, [300, 300, 300], [0.0, 0.5, 9.0])
    assert analysis.time_to_failure(path, 600, n_atoms=2, max_energy_change_kJ_mol_per_atom=1.0) == pytest.approx(0.1)
    assert analysis.plot_temperature(path, tmp_path / "T.png", target_K=300).is_file()
    assert analysis.plot_energy(path, tmp_path / "E.png").is_file()
