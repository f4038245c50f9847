"""``allegro-bio train`` and ``allegro-bio evaluate``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise SystemExit(f"--set expects SECTION.KEY=VALUE, e.g. optim.epochs=5; got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _console_log(quiet: bool) -> None:
    """Show the trainer's per-epoch lines and summary table on stdout (unless ``--quiet``)."""
    import logging
    import sys

    logger = logging.getLogger("allegro_bio.train")
    if quiet or any(getattr(h, "_allegro_console", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._allegro_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def cmd_train(args: argparse.Namespace) -> int:
    from . import load_config, resume, train

    _console_log(args.quiet)

    overrides = _overrides(args.set)
    if args.resume:
        if args.config:
            raise SystemExit("give either CONFIG or --resume RUN_DIR, not both")
        result = resume(args.resume, progress=not args.quiet, **overrides)
    else:
        if not args.config:
            raise SystemExit("allegro-bio train needs a CONFIG file (or --resume RUN_DIR)")
        cfg = load_config(args.config, overrides)
        result = train(cfg, progress=not args.quiet)
    print(f"run directory: {result.run_dir}  (model.pt, log.csv, learning_curve.png, parity_*.png, summary.json)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_files, format_table

    summary = evaluate_files(args.model, args.data, out=args.out, batch_size=args.batch_size, device=args.device,
                             progress=not args.quiet)
    m = summary["metrics"]
    from ..deploy import load

    names = load(args.model).type_names
    print(f"{summary['num_frames']} frames, {summary['num_atoms']} atoms")
    print(format_table({"data": m}, [s for s in names if f"forces_mae_{s}" in m]))
    if args.out:
        print(f"wrote {args.out}/metrics.json and {args.out}/parity.png")
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML configuration (or resume a run) and deploy it")
    p.add_argument("config", nargs="?", help="YAML configuration (see configs/ and `allegro_bio.train.config`)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a configuration value, e.g. --set optim.epochs=5 (JSON values)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="energy/force MAE and RMSE per element of a model on labelled data, parity plots")
    p.add_argument("model", help="deployed model file")
    p.add_argument("data", nargs="+", help="extxyz / ASE db / SPICE HDF5 files")
    p.add_argument("--out", default=None, help="directory for metrics.json and parity.png")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)
