"""The ``allegro-bio md`` subcommand: build a system, run ML MD, write the stability report.

Examples::

    allegro-bio md --system dhfr --steps 2000 --timestep 0.5 --temperature 300 --out runs/dhfr
    allegro-bio md --pdb protein.pdb --steps 1000 --out runs/protein --model model.pt
    allegro-bio md --system dhfr --steps 4000 --out runs/dhfr --restart      # continue to step 4000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..argtypes import add_subcommand, positive_int

SYSTEMS = ("water", "dhfr", "factor_ix", "stmv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``md`` (see ``allegro-bio md --help``)."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--system", choices=SYSTEMS, help="a built-in system (see docs/systems.md)")
    what.add_argument("--pdb", type=Path, metavar="FILE",
                      help="your protein (PDB/PDBx): PDBFixer completes and protonates it, then it is solvated")
    parser.add_argument("--model", default=None, metavar="PATH_OR_NAME",
                        help="deployed model file or packaged model name (default: the packaged model)")
    parser.add_argument("--steps", type=positive_int, default=1000, help="total MD steps (default: 1000)")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs (default: 0.5; no constraints)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default: 300)")
    parser.add_argument("--integrator", choices=["langevin", "nve"], default="langevin")
    parser.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps (default: 1)")
    parser.add_argument("--engine", choices=["openmm", "ase"], default="openmm")
    parser.add_argument("--compile", action="store_true",
                        help="--engine ase: evaluate through torch.compile (~0.5-0.6x the time per "
                        "evaluation after a ~11-40 s compile; needs g++)")
    parser.add_argument("--report-interval", type=positive_int, default=50,
                        help="steps between frames, log rows, checkpoints and stability checks (default: 50)")
    parser.add_argument("--format", choices=["dcd", "xtc"], default="dcd", help="trajectory format (default: dcd)")
    parser.add_argument("--out", type=Path, default=Path("md_run"), help="output folder (default: ./md_run)")
    parser.add_argument("--restart", action="store_true", help="continue from the checkpoint in --out up to --steps")
    parser.add_argument("--water-edge", type=float, default=30.0, help="--system water: cube edge in Å (default: 30)")
    parser.add_argument("--padding", type=float, default=1.0, help="--pdb: solvent padding in nm (default: 1.0)")
    parser.add_argument("--ionic-strength", type=float, default=0.15,
                        help="--pdb: NaCl molarity (default 0.15; ignored, with counter-ions, when the model knows no Na/Cl)")
    parser.add_argument("--ph", type=float, default=7.0, help="--pdb: pH for protonation (default: 7)")
    parser.add_argument("--max-temperature", type=float, default=None,
                        help="K; stop when exceeded (default: max(2 × T, T + 300))")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (default: CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")



def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``md`` subcommand to an argparse ``subparsers`` object; dispatch with ``args.func(args)``."""
    return add_subcommand(
        subparsers, "md", help="build a system and run ML molecular dynamics with a stability report",
        description="Build a system (built-in or your PDB), run Allegro MD (OpenMM or ASE) with a progress bar, "
        "write trajectory, state log (CSV), checkpoints, and a stability report (RMSD/temperature PNGs, "
        "summary.json). A run that blows up stops with a message and keeps its files (exit status 3).",
        add_arguments=add_arguments, main=main)


def _build(args: argparse.Namespace, type_names: list[str]):
    from .. import systems

    ions_ok = {"Na", "Cl"} <= set(type_names)
    if args.pdb is not None:
        if not ions_ok:
            print(f"note: the model knows {' '.join(type_names)} only (no Na/Cl): solvating without ions "
                  "(the net charge is left; PME-free ML MD does not need neutrality)", file=sys.stderr)
        return systems.from_pdb(args.pdb, padding=args.padding, ph=args.ph, seed=args.seed,
                                ionic_strength=args.ionic_strength if ions_ok else 0.0, neutralize=ions_ok)
    if args.system == "water":
        return systems.water_box(box_edge=args.water_edge)
    if args.system == "stmv" and not ions_ok:
        return systems.stmv(ionic_strength=0.0)
    return systems.BUILDERS[args.system]()


def main(args: argparse.Namespace) -> int:
    """Run; exit status 0 (completed), 3 (the run became unstable), 2 (bad input, via the caller)."""
    import time

    import torch

    from .run import SimulationUnstableError, StabilityLimits, check_elements, resolve_model, run

    if args.threads:
        torch.set_num_threads(args.threads)
    model, info = resolve_model(args.model)
    if info["untrained"]:
        print("WARNING: the model is an UNTRAINED (seeded) network: this run demonstrates the pipeline, "
              "its trajectory is not chemistry.", file=sys.stderr)
    t0 = time.perf_counter()
    system = _build(args, info["type_names"])
    print(f"built in {time.perf_counter() - t0:.1f} s: {system.summary()}")
    check_elements(system, info["type_names"])
    try:
        result = run(system, model, engine=args.engine, integrator=args.integrator, timestep_fs=args.timestep,
                     temperature_K=args.temperature, steps=args.steps, report_interval=args.report_interval,
                     out_dir=args.out, restart=args.restart, friction_per_ps=args.friction,
                     trajectory_format=args.format, limits=StabilityLimits(max_temperature_K=args.max_temperature),
                     seed=args.seed, platform=args.platform, progress=not args.no_progress,
                     compile=args.compile)
    except SimulationUnstableError as exc:
        print(f"allegro-bio md: {exc}", file=sys.stderr)
        return 3
    s = result.summary
    rmsd = s.get("rmsd_backbone_A")
    print(f"done: {s['steps_done']} steps, {s['simulated_time_ps']:.3f} ps, {s['ns_per_day'] or float('nan'):.4g} ns/day, "
          f"T = {s['temperature_mean_K']:.1f} ± {s['temperature_std_K']:.1f} K"
          + (f", backbone RMSD {rmsd['final']:.3f} Å at {rmsd['time_ps']:.3f} ps (max {rmsd['max']:.3f})" if rmsd else ""))
    print(f"wrote {result.out_dir}: " + ", ".join(sorted(Path(p).name for p in result.files.values()))
          + (", " + ", ".join(s["plots"].values()) if s.get("plots") else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="allegro-bio md")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
