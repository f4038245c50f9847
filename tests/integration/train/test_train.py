"""Training pipeline: readers, statistics, the training-time force path, EMA, SAM, configuration,
a real training run on GFN2-xTB frames, exact resume after a kill, and `allegro-bio evaluate`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

import allegro_bio
from allegro_bio.errors import ConfigError, DataError
from allegro_bio.train import (EMA, SAM, GraphDataset, collate, compute_stats, config_from_dict, load_config, predict,
                               read_frames, smiles_charge)
from allegro_bio.train.data import BOHR, HARTREE
from fixtures import REPO
from fixtures.structures import TYPES, small_triclinic_box, water_cluster
from fixtures.xtb_data import make_frames

ROOT = REPO
TINY_MODEL = {"preset": "small", "type_names": TYPES, "num_tensor_features": 8, "two_body_mlp": [32, 32],
              "latent_mlp": [32], "readout_mlp": [16], "zbl": False}


@pytest.fixture(scope="module")
def xtb_files(tmp_path_factory):
    """240 real GFN2-xTB frames (tblite): rattled water clusters and small molecules, ~10 s of CPU."""
    d = tmp_path_factory.mktemp("xtb")
    frames = make_frames(240, seed=0)
    val = [a for a in frames if int(a.info["config_id"].split("-")[-1]) % 6 == 5]
    train = [a for a in frames if int(a.info["config_id"].split("-")[-1]) % 6 != 5]
    write(d / "train.extxyz", train)
    write(d / "val.extxyz", val)
    return d


def _labelled(atoms: Atoms, energy: float | None = 1.0, forces: np.ndarray | None = None) -> Atoms:
    atoms = atoms.copy()
    kw = {}
    if energy is not None:
        kw["energy"] = energy
    if forces is not None:
        kw["forces"] = forces
    atoms.calc = SinglePointCalculator(atoms, **kw)
    return atoms


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------


def test_extxyz_reader_units_info_and_errors(tmp_path):
    a = _labelled(molecule("CH3OH"), -12.5, np.full((6, 3), 0.25))
    a.info.update(total_charge=0, config_id="m0")
    b = _labelled(molecule("H2O"), -3.0, np.zeros((3, 3)))
    b.info["weight"] = 2.0
    write(tmp_path / "ok.extxyz", [a, b])
    frames = read_frames(tmp_path / "ok.extxyz")
    assert [len(f) for f in frames] == [6, 3]
    assert frames[0].get_potential_energy() == pytest.approx(-12.5)
    assert np.allclose(frames[0].get_forces(), 0.25)
    assert frames[0].info["config_id"] == "m0" and frames[1].info["weight"] == 2.0
    assert frames[1].info["frame_index"] == 1 and frames[1].info["line"] == 6 + 2 + 1

    c = molecule("NH3")
    c.info["energy"] = -5.0  # no forces
    write(tmp_path / "missing.extxyz", [a, b, c])
    with pytest.raises(DataError, match=r"missing\.extxyz, frame 2 \(line 14\).*no 'forces'"):
        read_frames(tmp_path / "missing.extxyz")
    read_frames(tmp_path / "missing.extxyz", require=("energy",))  # fine when the loss needs no forces

    bad = _labelled(molecule("H2O"), -3.0, np.array([[0, 0, np.nan], [0, 0, 0], [0, 0, 0]]))
    write(tmp_path / "nan.extxyz", [a, bad])
    with pytest.raises(DataError, match=r"nan\.extxyz, frame 1.*NaN"):
        read_frames(tmp_path / "nan.extxyz")
    with pytest.raises(DataError, match="not found"):
        read_frames(tmp_path / "nope.extxyz")


def test_ase_db_reader(tmp_path):
    import ase.db

    db = ase.db.connect(tmp_path / "frames.db")
    db.write(_labelled(molecule("CH4"), -24.0, np.ones((5, 3))), config_id="a", total_charge=0)
    db.write(_labelled(molecule("H2O"), -14.0, np.zeros((3, 3))), config_id="b", total_charge=0)
    frames = read_frames(tmp_path / "frames.db")
    assert [a.get_chemical_formula() for a in frames] == ["CH4", "H2O"]
    assert frames[0].get_potential_energy() == -24.0 and np.all(frames[0].get_forces() == 1.0)
    assert frames[1].info["config_id"] == "b"


def write_spice(path: Path) -> dict:
    """A small file in the SPICE layout (bohr, hartree); returns what was written, in eV and Å."""
    import h5py

    rng = np.random.default_rng(0)
    second = molecule("H2O")
    second.translate([2.9, 0.0, 0.0])
    acetate = molecule("CH3COOH")
    del acetate[[k for k, a in enumerate(acetate) if a.symbol == "H" and min(acetate.get_distance(k, o) for o in
                                                                             range(len(acetate)) if acetate[o].symbol == "O") < 1.1]]
    mols = {
        "water dimer": (molecule("H2O") + second,
                        "[O:1]([H:2])[H:3].[O:4]([H:5])[H:6]", "SPICE Water Clusters v1.0"),
        "acetate": (acetate, "[C:1]([H:2])([H:3])([H:4])C(=O)[O-:5]", "SPICE Dipeptides Single Points v1.2"),
        "ethylammonium": (molecule("CH3CH2NH2"), "[C:1]([H:2])([H:3])([H:4])C[NH3+:5]", "SPICE PubChem Set 1"),
    }
    out = {}
    with h5py.File(path, "w") as fh:
        for name, (atoms, smiles, subset) in mols.items():
            n, m = len(atoms), 3
            conf = (atoms.positions[None] + rng.normal(0, 0.02, (m, n, 3))) / BOHR
            grad = rng.normal(0, 0.02, (m, n, 3))
            grad[2, 0, 0] = 0.4  # one frame above the paper's 0.25 Ha/bohr filter
            energy = rng.normal(-100, 1, m)
            g = fh.create_group(name)
            g["atomic_numbers"] = atoms.numbers.astype(np.int16)
            g["conformations"] = conf.astype(np.float32)
            g["dft_total_energy"] = energy
            g["formation_energy"] = energy + 50
            g["dft_total_gradient"] = grad.astype(np.float32)
            g["smiles"] = [smiles.encode()]
            g["subset"] = [subset.encode()]
            out[name] = dict(pos=conf.astype(np.float32).astype(np.float64) * BOHR, e=energy * HARTREE,
                             f=-grad.astype(np.float32).astype(np.float64) * HARTREE / BOHR)
    return out


def test_spice_reader_units_charge_subsets_filter_and_lazy(tmp_path):
    from allegro_bio.train.data import LazySpiceFrames, index_spice

    ref = write_spice(tmp_path / "spice.hdf5")
    frames = read_frames(tmp_path / "spice.hdf5")
    assert len(frames) == 9
    first = frames[0]
    assert first.info["spice_molecule"] == "acetate"  # h5py lists groups alphabetically
    assert np.allclose(first.positions, ref["acetate"]["pos"][0], atol=1e-6)
    assert first.get_potential_energy() == pytest.approx(ref["acetate"]["e"][0])
    assert np.allclose(first.get_forces(), ref["acetate"]["f"][0], atol=1e-5)
    charges = {a.info["spice_molecule"]: a.info["total_charge"] for a in frames}
    assert charges == {"acetate": -1, "ethylammonium": 1, "water dimer": 0}

    kept = read_frames(tmp_path / "spice.hdf5", spice_subsets=["Dipeptides", "Water"], max_force=0.25 * HARTREE / BOHR)
    assert sorted({a.info["spice_molecule"] for a in kept}) == ["acetate", "water dimer"]
    assert len(kept) == 4  # the third conformation of each exceeds 0.25 Ha/bohr
    formation = read_frames(tmp_path / "spice.hdf5", spice_energy="formation_energy")
    assert formation[0].get_potential_energy() == pytest.approx(ref["acetate"]["e"][0] + 50 * HARTREE)

    lazy = LazySpiceFrames(index_spice(tmp_path / "spice.hdf5", ["Dipeptides", "Water"], max_force=0.25 * HARTREE / BOHR))
    assert len(lazy) == 4
    for a, b in zip(lazy, kept):
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.get_forces(), b.get_forces())
    assert smiles_charge("[N+:1]([H:2])([H:3])([H:4])[C@@H:5]([C:6](=[O:7])[O-:8])[H:9]") == 0
    assert smiles_charge("[Ca+2:1]") == 2

    import h5py

    with h5py.File(tmp_path / "broken.hdf5", "w") as fh:
        fh.create_group("x")["atomic_numbers"] = np.array([8, 1, 1])
    with pytest.raises(DataError, match=r"broken\.hdf5, molecule 'x': missing dataset"):
        read_frames(tmp_path / "broken.hdf5")


def test_unknown_element_and_overlap_name_file_and_frame(tmp_path):
    cut = np.full((2, 2), 4.0)
    fe = _labelled(Atoms("FeO", positions=[[0, 0, 0], [0, 0, 2]]), 0.0, np.zeros((2, 3)))
    write(tmp_path / "fe.extxyz", [_labelled(molecule("H2O"), 0.0, np.zeros((3, 3))), fe])
    frames = read_frames(tmp_path / "fe.extxyz")
    with pytest.raises(DataError, match=r"fe\.extxyz, frame 1.*\['Fe'\] not in the model's type_names"):
        GraphDataset(frames, ["H", "O"], cut, 4.0)
    close = _labelled(Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.05]]), 0.0, np.zeros((2, 3)))
    write(tmp_path / "close.extxyz", [close])
    with pytest.raises(DataError, match=r"close\.extxyz, frame 0.*closer than"):
        GraphDataset(read_frames(tmp_path / "close.extxyz"), ["H", "O"], cut, 4.0)


# ---------------------------------------------------------------------------------------------
# statistics and the training-time force path
# ---------------------------------------------------------------------------------------------


def test_stats_recover_per_species_shifts_and_neighbours():
    mu = {"H": -13.6, "C": -1029.0, "O": -2041.0}
    frames = []
    for name in ("CH4", "H2O", "CH3OH", "CO2", "C2H6", "HCOOH"):
        a = molecule(name)
        e = sum(mu[s] for s in a.get_chemical_symbols())
        frames.append(_labelled(a, e, np.zeros((len(a), 3))))
    ds = GraphDataset(frames, ["H", "C", "O"], np.full((3, 3), 4.0), 4.0)
    stats = compute_stats(ds)
    assert np.allclose(stats.per_type_shift, [mu["H"], mu["C"], mu["O"]], atol=1e-8)
    assert stats.energy_rmse_after_shift < 1e-9
    n_pairs = sum(len(a) * (len(a) - 1) for a in frames)  # every pair of these molecules is within 4 Å
    assert stats.avg_num_neighbors == pytest.approx(n_pairs / sum(len(a) for a in frames))
    given = compute_stats(ds, isolated_atom_energies={"H": -10.7, "C": -48.8, "O": -102.5})
    assert given.per_type_shift == (-10.7, -48.8, -102.5)


def test_batched_training_forces_equal_the_deployed_compute(eager64):
    """The training path (batched, gradients w.r.t. pair vectors) gives the deployed model's
    energies, forces and stress for every frame of a mixed batch, periodic included."""
    frames = [water_cluster(4), molecule("CH3CONH2"), small_triclinic_box()]
    for a in frames:
        a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((len(a), 3)))
    ds = GraphDataset(frames, eager64.type_names, eager64.cutoff_matrix.numpy(), eager64.r_max)
    batch = collate([ds[k] for k in range(3)])
    pred = predict(eager64, batch, create_graph=False, stress=True)
    start = 0
    for k, a in enumerate(frames):
        a.calc = allegro_bio.AllegroCalculator(eager64)
        n = len(a)
        assert float(pred.energy[k]) == pytest.approx(a.get_potential_energy(), rel=1e-12, abs=1e-10)
        assert np.allclose(pred.forces[start:start + n].numpy(), a.get_forces(), atol=1e-10)
        if a.pbc.all():
            s = a.get_stress(voigt=False)
            assert np.allclose(pred.stress[k].numpy(), s, atol=1e-10)
        start += n


def test_training_forces_are_differentiable_wrt_weights(eager64):
    a = molecule("CH3OH")
    a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((6, 3)))
    model = allegro_bio.model.clone(eager64)
    ds = GraphDataset([a], model.type_names, model.cutoff_matrix.numpy(), model.r_max)
    pred = predict(model, collate([ds[0]]), create_graph=True)
    pred.forces.pow(2).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert len(grads) > 10 and all(torch.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------------------------------------
# EMA and SAM do what they promise
# ---------------------------------------------------------------------------------------------


def test_ema_follows_the_documented_average():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.99)
    history = [model.weight.detach().clone()]
    expected = model.weight.detach().clone()
    for n in range(30):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        ema.update(model)
        d = min(0.99, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * model.weight.detach()
        history.append(model.weight.detach().clone())
    assert torch.allclose(ema.model.weight, expected, atol=1e-6)
    assert not torch.allclose(ema.model.weight, model.weight)  # evaluated weights are the average, not the raw ones


def test_sam_perturbs_by_rho_times_normalised_gradient():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    sam = SAM(model.parameters(), base, rho=0.05)
    theta = [p.detach().clone() for p in model.parameters()]
    torch.nn.functional.mse_loss(model(x), y).backward()
    g = [p.grad.detach().clone() for p in model.parameters()]
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    assert sam.first_step() == pytest.approx(float(norm), rel=1e-6)
    for p, t, gi in zip(model.parameters(), theta, g):
        assert torch.allclose(p - t, 0.05 * gi / norm, atol=1e-7)
    sam.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    g_adv = [p.grad.detach().clone() for p in model.parameters()]
    sam.second_step()
    for p, t, ga in zip(model.parameters(), theta, g_adv):  # SGD step from θ with the gradient at θ + ε
        assert torch.allclose(p, t - 0.1 * ga, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


def test_config_errors_name_the_key_and_allowed_values(tmp_path):
    ok = {"data": {"train": "x.extxyz"}}
    assert config_from_dict(ok).optim.batch_size == 16
    cases = [
        ({"data": {"train": "x", "trian": 1}}, r"data\.trian.*allowed in 'data'"),
        ({"data": {"train": "x"}, "optim": {"loss": "mae"}}, r"optim\.loss = 'mae'.*\['forces', 'energy_forces'"),
        ({"data": {"train": "x"}, "optim": {"epochs": "ten"}}, r"optim\.epochs must be an integer"),
        ({"data": {"train": "x"}, "model": {"preset": "huge"}}, r"model\.preset = 'huge'.*\['paper', 'small'\]"),
        ({"data": {"train": "x"}, "model": {"layers": 3}}, r"model\.layers.*allowed in 'model'.*num_layers"),
        ({"data": {"train": "x"}, "model": {"l_max": 7}}, r"l_max must be 0, 1, 2 or 3"),
        ({"data": {}}, r"data\.train is required"),
        ({"data": {"train": "x"}, "optimizer": {}}, r"unknown top-level key.*optimizer"),
        ({"data": {"train": "x"}, "optim": {"sam_rho": -1}}, r"sam_rho must be >= 0"),
    ]
    for raw, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            config_from_dict(raw)
    (tmp_path / "bad.yaml").write_text("data: {train: x}\noptim: {scheduler: cosine}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.scheduler = 'cosine'.*plateau"):
        load_config(tmp_path / "bad.yaml")


def test_shipped_configs_are_valid():
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert {p.name for p in configs} >= {"tiny-cpu.yaml", "spice-paper.yaml", "water.yaml"}
    for path in configs:
        cfg = load_config(path)
        assert cfg.data.train
    paper = load_config(ROOT / "configs" / "spice-paper.yaml")
    assert paper.model_preset == "paper" and paper.optim.loss == "forces" and paper.optim.batch_size == 16
    assert paper.optim.lr == 1e-3 and paper.optim.ema_decay == 0.99 and paper.optim.force_normalization == "max"
    assert paper.data.max_force == pytest.approx(0.25 * HARTREE / BOHR, rel=1e-3)


# ---------------------------------------------------------------------------------------------
# real training runs
# ---------------------------------------------------------------------------------------------


def _tiny_config(xtb_files: Path, run_dir: Path, **optim) -> dict:
    o = {"epochs": 8, "batch_size": 8, "lr": 0.003, "loss": "energy_forces", "checkpoint_every": 5, "threads": 1}
    o.update(optim)
    return {"run_dir": str(run_dir), "model": TINY_MODEL, "optim": o,
            "data": {"train": str(xtb_files / "train.extxyz"), "val": str(xtb_files / "val.extxyz"),
                     "test": str(xtb_files / "val.extxyz")}}


@pytest.mark.long
def test_training_reduces_force_error_several_fold_and_evaluate_reproduces_it(xtb_files, tmp_path):
    from allegro_bio.train import Trainer
    from allegro_bio.train.evaluate import evaluate_dataset

    cfg = config_from_dict(_tiny_config(xtb_files, tmp_path / "run", epochs=30, batch_size=4, lr=0.005,
                                        force_normalization="rms", lr_patience=3))
    trainer = Trainer(cfg, progress=False)
    before = evaluate_dataset(trainer.model, trainer.val_set).result()["forces_mae"]
    t0 = time.perf_counter()
    result = trainer.fit()
    minutes = (time.perf_counter() - t0) / 60
    after = result.metrics["val"]["forces_mae"]
    print(f"val force MAE {before:.3f} -> {after:.3f} eV/Å in {minutes:.1f} min")
    assert after < before / 3, (before, after)
    for name in ("model.pt", "log.csv", "learning_curve.png", "parity_val.png", "parity_test.png", "summary.json", "checkpoint.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    meta = allegro_bio.load(result.model_path).metadata
    described = json.loads(meta["training_description"])
    assert described["metrics_eV_A"]["test"]["forces_mae"] == pytest.approx(result.metrics["test"]["forces_mae"])
    # `allegro-bio evaluate` (deployed compute path) reproduces the recorded test metrics
    out = subprocess.run([sys.executable, "-m", "allegro_bio.cli", "evaluate", str(result.model_path),
                          str(xtb_files / "val.extxyz"), "--out", str(tmp_path / "eval"), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    for key in ("forces_mae", "forces_rmse", "energy_mae", "forces_mae_H", "forces_mae_O"):
        assert evaluated[key] == pytest.approx(result.metrics["test"][key], rel=1e-4), key
    assert (tmp_path / "eval" / "parity.png").stat().st_size > 10_000


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "allegro_bio.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)


@pytest.mark.long
def test_resume_after_kill_is_exact(xtb_files, tmp_path):
    """Kill `allegro-bio train` mid-epoch with SIGKILL, resume it, compare with an uninterrupted run."""
    import yaml

    for name in ("full", "killed"):
        raw = _tiny_config(xtb_files, tmp_path / name, epochs=3, checkpoint_every=4, sam_rho=0.01)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    full = _run_cli(["train", str(tmp_path / "full.yaml"), "--quiet"])
    assert full.wait(timeout=600) == 0, full.stdout.read()

    proc = _run_cli(["train", str(tmp_path / "killed.yaml"), "--quiet"])
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                state = torch.load(ckpt, map_location="cpu", weights_only=False)
            except Exception:  # being replaced right now
                time.sleep(0.05)
                continue
            if state["epoch"] >= 1 and state["step_in_epoch"] > 0:  # mid-epoch, past one epoch end
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = (state["epoch"], state["step_in_epoch"])
                break
        time.sleep(0.05)
    assert killed_at is not None, "the run finished before it could be killed mid-epoch"
    assert not (tmp_path / "killed" / "model.pt").exists()
    resumed = _run_cli(["train", "--resume", str(tmp_path / "killed"), "--quiet"])
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()

    a = torch.load(tmp_path / "full" / "checkpoint.pt", map_location="cpu", weights_only=False)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert a["global_step"] == b["global_step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"]["model"][key], b["ema"]["model"][key]), key
    assert [r["val_loss"] for r in a["history"]] == [r["val_loss"] for r in b["history"]]
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    ma = allegro_bio.load(tmp_path / "full" / "model.pt").module.state_dict()
    mb = allegro_bio.load(tmp_path / "killed" / "model.pt").module.state_dict()
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_train_refuses_to_overwrite_a_run_and_resume_needs_one(xtb_files, tmp_path):
    from allegro_bio.train import Trainer

    (tmp_path / "run").mkdir()
    torch.save({}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ConfigError, match="already holds a training run.*--resume"):
        Trainer(config_from_dict(_tiny_config(xtb_files, tmp_path / "run")), progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        Trainer(config_from_dict(_tiny_config(xtb_files, tmp_path / "other")), resume=True, progress=False)


def test_mismatched_force_shape_is_reported(tmp_path):
    from allegro_bio.train.data import check_frame

    a = molecule("H2O")
    a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((2, 3)))
    a.info.update(source_file="f.db", frame_index=4)
    with pytest.raises(DataError, match=r"f\.db, frame 4: forces have shape \(2, 3\), expected \(3, 3\)"):
        check_frame(a)


def test_lazy_spice_training_in_worker_processes(tmp_path):
    """A SPICE file read lazily by a DataLoader worker process trains and deploys."""
    write_spice(tmp_path / "spice.hdf5")
    cfg = config_from_dict({
        "run_dir": str(tmp_path / "run"), "model": dict(TINY_MODEL, type_names=["H", "C", "N", "O"]),
        "data": {"train": str(tmp_path / "spice.hdf5"), "lazy": True, "num_workers": 1, "val_fraction": 0.3,
                 "max_force": 0.25 * HARTREE / BOHR},
        "optim": {"epochs": 1, "batch_size": 2, "threads": 1},
    })
    from allegro_bio.train import train

    result = train(cfg, progress=False)
    assert result.model_path.is_file() and result.epochs_run == 1
    assert np.isfinite(result.metrics["val"]["forces_mae"])
