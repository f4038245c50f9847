"""Write notebooks/*.ipynb (without outputs); run them with `python notebooks/make_notebooks.py --execute`.

The executed notebooks are committed with their outputs. tests/test_notebooks.py executes them
with the CI parameters (environment variables ALLEGRO_BIO_NB_*).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent

MODEL_CELL = '''import allegro_bio
from allegro_bio import pretrained

# One line to switch: set UNTRAINED = False to use the packaged trained model (allegro_bio.pretrained.path()).
UNTRAINED = not pretrained.available()

if UNTRAINED:
    # A seeded, UNTRAINED network (small random forces, no ZBL): it exercises the pipeline; its
    # energies, forces and trajectories are NOT chemistry.
    net = allegro_bio.build_model("small", ["H", "C", "N", "O", "S"], seed=0, per_type_scale=(0.002,) * 5, zbl=False)
    MODEL = allegro_bio.save(net, "untrained-demo.pt", training_description="untrained (seeded initialisation), notebook demo")
else:
    MODEL = pretrained.path()
print("model:", MODEL, "|", allegro_bio.load(MODEL).metadata["training_description"])'''


def md(text: str):
    return nbf.v4.new_markdown_cell(text)


def code(text: str, tags=()):
    c = nbf.v4.new_code_cell(text)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def protein_rmsd():
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("# Protein stability: backbone RMSD and temperature of an ML MD run\n\n"
           "This notebook builds the solvated DHFR benchmark system (23,558 atoms, the AMBER JAC system), runs a short "
           "Allegro molecular-dynamics simulation with OpenMM, and plots the two quantities the SC'23 Allegro paper uses "
           "to judge stability: the **backbone RMSD** against the first frame and the **temperature**.\n\n"
           "> **Model.** If this installation ships no trained model, the cell below builds a *seeded, untrained* "
           "network. Everything then runs for real, but the trajectory is **not chemistry**: it demonstrates the "
           "pipeline only. The printed `training_description` says which one ran."),
        md("## Parameters\n`SIZE = \"dhfr\"` is the full solvated system. `\"fragment\"` takes the first residues of "
           "DHFR without water (open boundaries): the test suite uses it to execute this notebook quickly."),
        code('import os\n\n'
             'SIZE = os.environ.get("ALLEGRO_BIO_NB_SIZE", "dhfr")            # "dhfr" (23,558 atoms) or "fragment"\n'
             'STEPS = int(os.environ.get("ALLEGRO_BIO_NB_STEPS", "20"))       # MD steps of 0.5 fs\n'
             'REPORT = int(os.environ.get("ALLEGRO_BIO_NB_REPORT", "5"))      # steps between frames\n'
             'ENGINE = os.environ.get("ALLEGRO_BIO_NB_ENGINE", "openmm")      # "openmm" or "ase"',
             tags=["parameters"]),
        code("import torch  # before openmm (docs/known-issues.md)\n" + MODEL_CELL),
        md("## Build the system\n`systems.dhfr()` reads the JAC benchmark shipped with the package (exact atom "
           "count; no force-field templates involved)."),
        code('from allegro_bio import systems\n\n'
             'full = systems.dhfr()\n'
             'print(full.summary())\n'
             'if SIZE == "dhfr":\n'
             '    system = full\n'
             'else:\n'
             '    first = [a.index for a in full.topology.atoms() if a.residue.index < 4]\n'
             '    system = full.subset(first, name="dhfr-fragment")\n'
             'print("simulating:", system.summary())'),
        md("## Run\n`md.run` adds an `AllegroForce` for every atom, draws velocities at 300 K, integrates with a "
           "Langevin thermostat (1/ps) at 0.5 fs and writes the trajectory, the state log and a stability report. "
           "From the shell the same is `allegro-bio md --system dhfr --steps 20 --out runs/dhfr`."),
        code('from allegro_bio import md\n\n'
             'result = md.run(system, MODEL, engine=ENGINE, steps=STEPS, report_interval=REPORT, timestep_fs=0.5,\n'
             '                temperature_K=300, out_dir="runs/protein_rmsd", progress=False)\n'
             's = result.summary\n'
             'print(f"{s[\'steps_done\']} steps = {s[\'simulated_time_ps\']:.3f} ps in {s[\'wall_s\']:.0f} s "\n'
             '      f"({s[\'ns_per_day\']:.3g} ns/day on this machine); status: {s[\'status\']}")\n'
             'print("files:", sorted(p.name for p in result.files.values()))'),
        md("## Backbone RMSD\n`analysis.backbone_rmsd` superposes the backbone (N, CA, C, O) of every frame on frame 0 "
           "and returns the RMSD in Å."),
        code('import numpy as np\nfrom IPython.display import Image\nfrom allegro_bio import analysis\n\n'
             'rmsd = analysis.backbone_rmsd(result.out_dir / "trajectory.dcd", topology=result.out_dir / "topology.pdb")\n'
             'times = analysis.temperature_series(result.out_dir / "state.csv")[0][: len(rmsd)]\n'
             'print("RMSD (Å) per frame:", np.round(rmsd, 4))\n'
             'Image(filename=analysis.plot_rmsd(rmsd, "rmsd.png", times_ps=times, title=f"{system.name}: backbone RMSD vs frame 0"))'),
        md("## Temperature and energies"),
        code('Image(filename=analysis.plot_temperature(result.out_dir / "state.csv", "temperature.png", target_K=300))'),
        code('Image(filename=analysis.plot_energy(result.out_dir / "state.csv", "energy.png"))'),
        md("## How to read these plots\n"
           "- **RMSD** starts at 0 Å by construction. For a stable, folded protein at 300 K it rises over the first "
           "tens of picoseconds and then *plateaus*, typically at 1–3 Å for the backbone; the SC'23 paper shows such "
           "plateaus for DHFR and factor IX over nanoseconds. A curve that keeps climbing means the structure is "
           "drifting or unfolding; a jump means something broke.\n"
           "- **Temperature** fluctuates around the thermostat's 300 K. The relative size of the fluctuations is about "
           "√(2/3N), so it is small for 23,558 atoms and large for a fragment. A steady climb, or values far above the "
           "target, signal that the potential feeds energy into the system: `md.run` stops the run when the "
           "temperature exceeds max(2 × T, T + 300 K), on NaN, or when an atom moves faster than 0.5 Å/fs, and "
           "records that moment as the time-to-failure.\n"
           "- A run of a few femtoseconds, as here, shows only the start of these curves; the stability claims of "
           "the paper need nanoseconds (and a trained model).\n"
           "- With the **untrained** stand-in model, the numbers above say nothing about DHFR: the forces are random "
           "(small) functions of the geometry, so water and protein are held together only by inertia over these "
           "few steps."),
        code('print({k: s[k] for k in ("status", "steps_done", "simulated_time_ps", "ns_per_day", "temperature_mean_K", '
             '"rmsd_backbone_A", "time_to_failure_ps")})\n'
             'print(s.get("warning", "trained model"))'),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def quickstart():
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("# allegro_bio quick start: ASE and OpenMM\n\n"
           "One deployed model file, used from ASE (energies, forces, MD) and from OpenMM (`AllegroForce`), on a "
           "periodic box of water built by `allegro_bio.systems`.\n\n"
           "> If no trained model is packaged, a *seeded, untrained* network stands in: the numbers below are then "
           "not chemistry."),
        code('import os\nWATERS = int(os.environ.get("ALLEGRO_BIO_NB_WATERS", "64"))   # molecules in the box\n'
             'STEPS = int(os.environ.get("ALLEGRO_BIO_NB_STEPS", "20"))', tags=["parameters"]),
        code("import torch  # before openmm (docs/known-issues.md)\n" + MODEL_CELL),
        md("## A system\nEvery builder returns one object with the OpenMM topology, positions and box, and "
           "converters."),
        code('from allegro_bio import systems\n\nbox = systems.water_box(n_waters=WATERS)\nprint(box.summary())\n'
             'atoms = box.to_ase()\natoms'),
        md("## ASE: energy, forces, stress, MD"),
        code('from allegro_bio import AllegroCalculator\n\n'
             'atoms.calc = AllegroCalculator(MODEL)\n'
             'print("energy (eV):", atoms.get_potential_energy())\n'
             'print("max |force| (eV/Å):", abs(atoms.get_forces()).max())\n'
             'print("stress (eV/Å³, Voigt):", atoms.get_stress().round(5))'),
        code('from ase import units\nfrom ase.md.langevin import Langevin\nfrom ase.md.velocitydistribution import MaxwellBoltzmannDistribution\n'
             'import numpy as np\n\n'
             'MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))\n'
             'dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=np.random.default_rng(1))\n'
             'dyn.run(STEPS)\nprint(f"after {STEPS} steps: T = {atoms.get_temperature():.0f} K")'),
        md("## OpenMM: `AllegroForce` in a System\nPositions in nm, energies in kJ/mol at this boundary."),
        code('import openmm\nfrom openmm import app, unit\nfrom allegro_bio import AllegroForce\n\n'
             'system = openmm.System()\n'
             'for atom in box.topology.atoms():\n    system.addParticle(atom.element.mass)\n'
             'system.setDefaultPeriodicBoxVectors(*box.box_vectors)\n'
             'system.addForce(AllegroForce(MODEL, box.topology))\n'
             'sim = app.Simulation(box.topology, system, openmm.LangevinMiddleIntegrator(300, 1.0, 0.0005),\n'
             '                     openmm.Platform.getPlatformByName("CPU"))\n'
             'sim.context.setPositions(box.positions)\n'
             'sim.context.setVelocitiesToTemperature(300, 0)\n'
             'e0 = sim.context.getState(getEnergy=True).getPotentialEnergy()\n'
             'sim.step(STEPS)\n'
             'print("potential energy:", e0, "->", sim.context.getState(getEnergy=True).getPotentialEnergy())'),
        md("## The same as one call, with a stability report\n`allegro_bio.md.run` does the above and writes "
           "`trajectory.dcd`, `state.csv`, `summary.json` and plots (`allegro-bio md` from the shell)."),
        code('from allegro_bio import md, analysis\n\n'
             'r = md.run(box, MODEL, steps=STEPS, report_interval=max(1, STEPS // 4), out_dir="runs/quickstart", progress=False)\n'
             'print(r.summary["status"], r.summary["steps_done"], "steps,", f"{r.summary[\'ns_per_day\']:.3g} ns/day")\n'
             'from IPython.display import Image\nImage(filename=analysis.plot_temperature(r.out_dir / "state.csv", "temperature.png", target_K=300))'),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


NOTEBOOKS = {"protein_rmsd.ipynb": protein_rmsd, "quickstart.ipynb": quickstart}


def execute(path: Path, cwd: Path, timeout: int = 3600) -> None:
    from nbclient import NotebookClient

    nb = nbf.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    nbf.write(nb, path)


if __name__ == "__main__":
    for name, make in NOTEBOOKS.items():
        nbf.write(make(), HERE / name)
        print("wrote", HERE / name)
    if "--execute" in sys.argv:
        work = HERE / "_run"
        work.mkdir(exist_ok=True)
        for name in NOTEBOOKS:
            execute(HERE / name, work)
            print("executed", name)
