"""The ``allegro-bio`` command: deploy, quickstart, bench, train, evaluate (and the subcommands of other modules)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .argtypes import non_negative_int

#: σ (eV) of the quickstart's seeded, untrained model: small enough that its random forces
#: stay ~1 eV/Å so a short MD run is resolvable. It is not a trained potential.
QUICKSTART_SCALE = 0.002


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overrides(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for item in pairs:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE (JSON value), got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def cmd_deploy(args: argparse.Namespace) -> int:
    """Build a seeded (untrained) model from a preset and write the deployed file."""
    import torch

    import allegro_bio

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device} requested but torch sees no CUDA device")
        return 2
    if args.source is not None:
        from allegro_bio.deploy import redeploy

        path = redeploy(args.source, args.out, allow_tf32=None if args.tf32 is None else args.tf32 == "on",
                        device=args.device, stream_tile=args.stream_tile)
        how = "compiled into an AOTInductor package" if path.suffix == ".pt2" else "in this version's network code"
        print(f"wrote {path}: the weights, config and training description of {args.source} {how}")
        return 0
    model = allegro_bio.build_model(args.preset, args.types, seed=args.seed, dtype=args.dtype,
                                    **_overrides(args.set)).to(args.device)
    if args.stream_tile is not None:  # argparse has checked it (non_negative_int)
        model.stream_tile = args.stream_tile
    path = allegro_bio.save(model, args.out, training_description=args.description, allow_tf32=args.tf32 == "on")
    print(f"wrote {path}  ({args.preset} preset, types {' '.join(model.type_names)}, {model.num_weights():,} weights, "
          f"{args.dtype}, seed {args.seed}; {args.description})")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Evaluate a periodic water box with the packaged model (or a seeded untrained one) in ASE, run a short NVE check."""
    import numpy as np
    from ase import units
    from ase.io import write
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    import allegro_bio
    from allegro_bio.data import water_box

    from allegro_bio import pretrained

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.untrained or not pretrained.available():
        print("allegro-bio quickstart: the model below is a SEEDED, UNTRAINED network; its energies are not chemistry.")
        print("The run exercises the real pipeline: deploy -> load -> ASE -> MD.\n")
        n_types = 5
        model = allegro_bio.build_model(
            "small", ["H", "C", "N", "O", "S"], seed=0, per_type_scale=(QUICKSTART_SCALE,) * n_types, zbl=False
        )
        path = allegro_bio.save(model, out / "model.pt", training_description="untrained quickstart model (seed 0)")
        print(f"1. deployed {path} ({model.num_weights():,} weights)")
    else:
        name = args.model or pretrained.DEFAULT
        path = pretrained.path(name)
        loaded = pretrained.load(name)
        n_weights = sum(p.numel() for p in loaded.module.parameters())
        print(f"allegro-bio quickstart with the packaged model '{name}' (GFN2-xTB-trained Allegro, {n_weights:,} weights;")
        print(f"model card: {path.with_suffix('.md')})\n")
        print(f"1. loaded {path}")

    atoms = water_box(tuple(args.repeat))
    atoms.calc = allegro_bio.AllegroCalculator(str(path))
    t0 = time.perf_counter()
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    ms = (time.perf_counter() - t0) * 1e3
    print(f"2. water box, {len(atoms)} atoms, {atoms.calc.n_pairs:,} ordered pairs within 4 Å: "
          f"E = {energy:.4f} eV, max|F| = {np.abs(forces).max():.3f} eV/Å, "
          f"pressure = {-stress[:3].mean() / units.GPa:.3f} GPa, first evaluation {ms:.0f} ms")

    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=args.timestep * units.fs)
    e0 = atoms.get_total_energy()
    traj = out / "nve.extxyz"
    t0 = time.perf_counter()
    rows = []
    for step in range(0, args.steps + 1, max(1, args.steps // 10)):
        if step:
            dyn.run(max(1, args.steps // 10))
        etot = atoms.get_total_energy()
        rows.append(dict(step=dyn.nsteps, time_fs=dyn.nsteps * args.timestep, total_eV=etot,
                         temperature_K=atoms.get_temperature()))
        write(traj, atoms, append=bool(step))
    elapsed = time.perf_counter() - t0
    drift = abs(rows[-1]["total_eV"] - e0)
    print(f"3. NVE {args.steps} steps of {args.timestep} fs: total energy change {drift:.2e} eV "
          f"({drift / len(atoms):.1e} eV/atom), T {rows[0]['temperature_K']:.0f} -> {rows[-1]['temperature_K']:.0f} K, "
          f"{elapsed / max(args.steps, 1) * 1e3:.0f} ms/step")
    summary = dict(model=str(path), n_atoms=len(atoms), n_pairs=atoms.calc.n_pairs, energy_eV=energy,
                   max_force_eV_per_A=float(np.abs(forces).max()), nve=rows, nve_total_energy_change_eV=drift)
    (out / "quickstart.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out / 'quickstart.json'} and the trajectory {traj}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from allegro_bio import __version__
    from allegro_bio.model import available_presets

    parser = argparse.ArgumentParser(prog="allegro-bio", description="Allegro potentials for biomolecular simulation")
    parser.add_argument("--version", action="version", version=f"allegro-bio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("deploy", help="write a deployed model file (from a preset, seeded and untrained; or --from an older file)")
    p.add_argument("out", help="output model file: model.pt (TorchScript: ASE, OpenMM, LAMMPS) or model.pt2 (AOTInductor "
                   "package compiled for this machine, ~30-60 s, needs g++: ASE, OpenMM, LAMMPS; "
                   "2.5x faster there on CPU)")
    p.add_argument("--preset", default="small", choices=available_presets())
    p.add_argument("--types", nargs="+", default=["H", "C", "N", "O", "S"], help="element symbols, in type order")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help='override a config field (JSON value), e.g. --set r_max=5.0 --set \'per_edge_type_cutoff={"H": 3.0}\'')
    p.add_argument("--description", default="untrained (seeded initialisation)", help="training description metadata")
    p.add_argument("--tf32", choices=["on", "off"], default=None,
                   help="the file's allow_tf32 metadata: whether float32 matmuls may use TF32 on CUDA when it runs "
                   "(ASE, OpenMM and LAMMPS apply it; default: off, or the --from file's setting)")
    p.add_argument("--device", default="cpu",
                   help="device a .pt2 package is compiled for, e.g. cuda (default: cpu; a .pt file runs anywhere)")
    p.add_argument("--from", dest="source", default=None, metavar="MODEL",
                   help="re-write the existing model file MODEL with this version's network code (same weights and "
                   "metadata; files from older versions then run at this version's speed), or compile it to a .pt2 "
                   "package; only --tf32, --device and --stream-tile apply with it")
    p.add_argument("--stream-tile", type=non_negative_int, default=None, metavar="PAIRS",
                   help="write a .pt file that evaluates in the streamed, low-memory way: the pairs go through each "
                   "layer PAIRS at a time (e.g. 8192): small preset, 6,144 waters, 1.5 kB per pair instead of 9.5 kB unchunked, "
                   "at 1.4-1.8x the time of the default chunked evaluation; 0: off "
                   "(default: off, or the --from file's setting)")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("quickstart", help="evaluate a water box with the packaged model (ASE) and run a short NVE check")
    p.add_argument("--out", default="quickstart", help="output directory (default: ./quickstart)")
    p.add_argument("--repeat", type=int, nargs=3, default=[2, 2, 2], help="copies of the 64-water box (default 2 2 2: 1,536 atoms)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--timestep", type=float, default=0.25, help="fs")
    p.add_argument("--model", default=None, help="packaged model name (default: the default packaged model)")
    p.add_argument("--untrained", action="store_true", help="use a seeded, untrained network instead of the packaged model")
    p.set_defaults(func=cmd_quickstart)

    from allegro_bio.bench import cli as bench_cli

    bench_cli.register(sub)
    from allegro_bio.lammps import cli as lammps_cli
    lammps_cli.register(sub)
    from allegro_bio.datagen import cli as datagen_cli
    datagen_cli.register(sub)
    from allegro_bio.train import cli as train_cli

    train_cli.register(sub)
    from allegro_bio.md import cli as md_cli
    md_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # our typed input errors derive from ValueError: show the message, not a traceback
        from allegro_bio.errors import AllegroError

        if isinstance(exc, AllegroError):
            print(f"allegro-bio: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
