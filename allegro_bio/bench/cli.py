"""The ``allegro-bio bench`` subcommand: time energy+forces per case and print a table.

With ``--openmm``: time OpenMM MD steps with ``AllegroForce`` per case and backend instead.
Also runnable alone: ``python -m allegro_bio.bench.cli --preset small --cases water192``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..argtypes import add_subcommand, non_negative_int, positive_int
from .cases import CASE_NAMES, DEFAULT_CASES

# Mirrors of openmm_bench constants (not imported: that imports torch; tests/test_bench_openmm.py checks they agree).
OPENMM_CASES = ("water1536", "water6144", "dhfr")
OPENMM_BACKENDS = ("torch", "python")
AOTI_BACKENDS = ("torch-aoti", "python-aoti", "ase-aoti")
SMALL_ATOMS = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench`` (see ``allegro-bio bench --help``)."""
    parser.add_argument("--preset", choices=["small", "paper"], default="small", help="model preset (default: small)")
    parser.add_argument("--cases", nargs="+", choices=CASE_NAMES, default=None, metavar="CASE",
                        help=f"cases to run, any of {' '.join(CASE_NAMES)} (default: all but water1032192; with --openmm: "
                        f"{' '.join(OPENMM_CASES)})")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="model dtype (default: float32)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device (default: cpu)")
    parser.add_argument("--tf32", choices=["off", "on"], default="off",
                        help="with --device cuda: whether float32 matmuls (ours, the reference's, the matmul peak) may "
                        "use TF32 tensor cores (default: off)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed evaluations after 1 warm-up (default: 5; with --openmm: of the raw model)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the records as JSON to PATH")
    parser.add_argument("--seed", type=int, default=0, help="seed of the (untrained) model weights (default: 0)")
    parser.add_argument("--peer", action="store_true",
                        help="also time the reference implementation (nequip + nequip-allegro, pip install "
                        "'allegro_bio[peer]') at the same hyperparameters, side by side, and print our/peer ratios")
    parser.add_argument("--forms", nargs="+", choices=["eager", "torchscript", "compiled", "aoti", "streamed"],
                        default=None,
                        metavar="FORM", help="our forms to time: eager, torchscript (the deployed file), compiled "
                        "(torch.compile, as AllegroCalculator(compile=True); compiles ~15-40 s first), aoti (the "
                        "AOTInductor package save(model, 'model.pt2') writes, as LAMMPS runs it; ~30-60 s to write), "
                        "streamed (eager, the pairs streamed through each layer in tiles: the low-memory evaluation) "
                        "(default: eager; with --peer: eager and torchscript)")
    parser.add_argument("--chunk", type=positive_int, default=None, metavar="PAIRS",
                        help="pairs per chunk of centre atoms (default: the model's, from a 0.5 GB activation budget); "
                        "a large value evaluates unchunked, e.g. to measure memory per pair")
    parser.add_argument("--stream-tile", type=positive_int, default=None, metavar="PAIRS",
                        help="pairs per tile of the 'streamed' form (default: 8192)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="write a plot of time per atom against atoms to PNG")
    omm = parser.add_argument_group("OpenMM throughput (--openmm; small preset, float32; --device for the python and "
                                    "ASE backends)")
    omm.add_argument("--openmm", action="store_true",
                     help="time OpenMM Verlet steps (0.5 fs) of a whole-system AllegroForce instead of raw energy+forces")
    omm.add_argument("--backends", nargs="+",
                     choices=list(OPENMM_BACKENDS) + ["ase", "ase-compiled"] + list(AOTI_BACKENDS),
                     default=list(OPENMM_BACKENDS), metavar="BACKEND",
                     help="AllegroForce backends to time, and/or 'ase' (ASE Langevin with AllegroCalculator), "
                     "'ase-compiled' (the same with compile=True; raw model compiled too), 'torch-aoti' / 'python-aoti' / "
                     "'ase-aoti' (the torch backend / python backend / ASE running the model as an AOTInductor package, "
                     "written first, ~30-60 s) "
                     "(default: torch python)")
    omm.add_argument("--interleave", action="store_true",
                     help="time all --backends of a case in one process, their steps taken in turn (OpenMM backends "
                     "only): ratios between backends that a drifting, shared machine cannot skew")
    omm.add_argument("--platform", default="CPU", help="OpenMM platform name (default: CPU)")
    omm.add_argument("--steps", type=positive_int, default=5, help="timed MD steps after the warm-up (default: 5)")
    omm.add_argument("--warmup", type=non_negative_int, default=None, metavar="STEPS",
                     help=f"untimed MD steps first (default: 2 up to {SMALL_ATOMS} atoms, else 1)")




def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an argparse ``subparsers`` object; dispatch with ``args.func(args)``."""
    return add_subcommand(
        subparsers, "bench", help="time energy+forces on water boxes, DHFR and factor IX (optionally against the reference)",
        description="Time energy+forces (ms per evaluation, atom-steps/s, pairs/s), memory per pair and the share of "
        "the matmul peak of an untrained seeded model, each case in a fresh process; with --peer, side by side with "
        "the reference nequip-allegro at the same hyperparameters. With --openmm: time MD steps (ms/step, ns/day at "
        "0.5 fs) with AllegroForce or ASE's AllegroCalculator against the raw model in the same process.",
        add_arguments=add_arguments, main=main)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark (``--openmm``: the OpenMM one); print the table; write ``--json``.
    Exit status 1 if any case failed, 2 on a bad option combination, else 0."""
    import torch

    from .run import format_table, run_bench

    if getattr(args, "openmm", False):
        return _main_openmm(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but torch sees no CUDA device")
        return 2
    if args.tf32 == "on" and args.device != "cuda":
        print("error: --tf32 on is a mode of CUDA matmuls: add --device cuda")
        return 2
    if args.peer:
        from .peer import peer_available

        if not peer_available():
            print("error: --peer needs the reference implementation: pip install 'allegro_bio[peer]' "
                  "(nequip, nequip-allegro)")
            return 2
    cases = args.cases or list(DEFAULT_CASES)
    forms = args.forms or (["eager", "torchscript"] if args.peer else ["eager"])
    if args.stream_tile is not None and "streamed" not in forms:
        print("error: --stream-tile sets the tile of the 'streamed' form: add --forms ... streamed")
        return 2
    records = run_bench(args.preset, cases, dtype=args.dtype, device=args.device, repeats=args.repeats,
                        threads=args.threads, seed=args.seed, peer=args.peer, forms=forms, chunk=args.chunk,
                        tf32=args.tf32 == "on", stream_tile=args.stream_tile)
    print(format_table(records))
    if args.plot is not None:
        from .plot import plot_scaling

        print(f"wrote {plot_scaling(records, args.plot)}")
    return _finish(args, records)


def _main_openmm(args: argparse.Namespace) -> int:
    from .openmm_bench import format_openmm_table, run_openmm_bench

    if args.preset != "small" or args.dtype != "float32" or args.tf32 != "off":
        print("error: --openmm times the small preset in float32 (drop --preset/--dtype/--tf32)")
        return 2
    if args.device != "cpu" and any(b.startswith("torch") for b in args.backends):
        print("error: the torch backends run on the OpenMM platform's device; --device applies to the python and "
              "ASE backends")
        return 2
    if args.device == "cuda" and not __import__("torch").cuda.is_available():
        print("error: --device cuda requested but torch sees no CUDA device")
        return 2
    if args.interleave and any(b.startswith("ase") for b in args.backends):
        print("error: --interleave times OpenMM backends only (torch, python, torch-aoti, python-aoti), not ASE")
        return 2
    cases = args.cases or list(OPENMM_CASES)
    records = run_openmm_bench(cases, args.backends, platform=args.platform, steps=args.steps, threads=args.threads,
                               device=args.device,
                               seed=args.seed, raw_repeats=args.repeats, warmup=args.warmup,
                               interleave=args.interleave)
    print(format_openmm_table(records))
    return _finish(args, records)


def _finish(args: argparse.Namespace, records: list[dict[str, Any]]) -> int:
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
        print(f"wrote {len(records)} record(s) to {args.json}")
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m allegro_bio.bench.cli")
    _sub = _parser.add_subparsers(dest="command", required=True)
    register(_sub)
    _args = _parser.parse_args(["bench", *__import__("sys").argv[1:]])
    raise SystemExit(_args.func(_args))
