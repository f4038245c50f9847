"""The ``allegro-bio datagen`` subcommand: regenerate (or extend) the GFN2-xTB reference data.

Also runnable alone: ``python -m allegro_bio.datagen.cli --out ref --frames 200``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from ..argtypes import add_subcommand
from .recipe import ALL_KINDS, ION_KIND_FRACTIONS, KINDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``datagen`` (see ``allegro-bio datagen --help``)."""
    parser.add_argument("--out", type=Path, required=True, help="work directory (MD cache, tasks, labelled frames)")
    parser.add_argument("--frames", type=int, default=3000, help="frames in all (default: 3000)")
    parser.add_argument("--seed", type=int, default=2025, help="seed of every random choice (default: 2025)")
    parser.add_argument("--kinds", nargs="+", choices=ALL_KINDS, default=list(KINDS), metavar="KIND",
                        help=f"frame kinds, any of {' '.join(ALL_KINDS)} (default: {' '.join(KINDS)}, in the "
                        f"default mix; the ion kinds {' '.join(ION_KIND_FRACTIONS)} are opt-in)")
    parser.add_argument("--dest", type=Path, default=None,
                        help="where the split files and metadata.json go (default: --out)")
    parser.add_argument("--finalize-every", type=int, default=500, metavar="N",
                        help="rewrite the split files after every N new frames (default: 500; 0: only at the end)")
    parser.add_argument("--finalize-only", action="store_true",
                        help="only write the split files from the frames labelled so far")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``datagen`` subcommand to an argparse ``subparsers`` object; dispatch with ``args.func(args)``."""
    return add_subcommand(
        subparsers, "datagen", help="generate GFN2-xTB reference data (MD → capped clusters and water boxes → tblite)",
        description="Sample amber14/flexible-TIP3P MD of DHFR, alanine dipeptide and water at 300-600 K, carve "
        "capped charge-consistent clusters and small periodic water boxes, label them with GFN2-xTB (tblite) and "
        "write train/val/test extxyz.xz split by MD segment. Opt-in ion kinds (--kinds ion-water-cluster ionic-box): "
        "Na+/K+/Mg2+/Ca2+/Cl- water clusters and small periodic salt boxes from NaCl, KCl, CaCl2, MgCl2 MD. "
        "Resumable: rerun the same command to continue.",
        add_arguments=add_arguments, main=main)


def main(args: argparse.Namespace) -> int:
    """Run the recipe (or only finalise); print the composition. Exit status 0."""
    from .recipe import composition_markdown, finalize, generate

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = "allegro-bio datagen " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else ""
    if args.finalize_only:
        meta = finalize(args.out, args.dest, command=command)
    else:
        meta = generate(args.out, args.frames, args.seed, tuple(args.kinds), progress=not args.no_progress,
                        finalize_every=args.finalize_every, dest=args.dest, command=command)
    print(f"{meta['n_frames']} frames ({meta['method']}), {meta['xtb_cpu_hours']} CPU-h of xTB, atoms per frame "
          f"{meta['atoms_per_frame']['min']}-{meta['atoms_per_frame']['max']}")
    print(composition_markdown(meta))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m allegro_bio.datagen.cli")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
