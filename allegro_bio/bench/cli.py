"""The ``allegro-bio bench`` subcommand: time energy+forces per case and print a table.

Also runnable alone: ``python -m allegro_bio.bench.cli --preset small --cases water192``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .cases import CASE_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench`` (see ``allegro-bio bench --help``)."""
    parser.add_argument("--preset", choices=["small", "paper"], default="small", help="model preset (default: small)")
    parser.add_argument("--cases", nargs="+", choices=CASE_NAMES, default=list(CASE_NAMES), metavar="CASE",
                        help=f"cases to run, any of {' '.join(CASE_NAMES)} (default: all)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="model dtype (default: float32)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device (default: cpu)")
    parser.add_argument("--repeats", type=_positive, default=5, help="timed evaluations after 1 warm-up (default: 5)")
    parser.add_argument("--threads", type=_positive, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the records as JSON to PATH")
    parser.add_argument("--seed", type=int, default=0, help="seed of the (untrained) model weights (default: 0)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an argparse ``subparsers`` object; dispatch with ``args.func(args)``."""
    parser = subparsers.add_parser(
        "bench", help="time energy+forces of the model on water boxes and DHFR",
        description="Time energy+forces (ms per evaluation, atom-steps/s, pairs/s) and peak memory of an untrained "
        "seeded model, each case in a fresh process.",
    )
    add_arguments(parser)
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table; write ``--json``. Exit status 1 if any case failed, else 0."""
    import torch

    from .run import format_table, run_bench

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but torch sees no CUDA device")
        return 2
    records = run_bench(args.preset, args.cases, dtype=args.dtype, device=args.device, repeats=args.repeats,
                        threads=args.threads, seed=args.seed)
    print(format_table(records))
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
