"""Package a finished training run as a named model of :mod:`allegro_bio.pretrained`.

``python -m allegro_bio.pretrained.package RUN_DIR --name NAME [--usability JSON]`` copies the
run's ``model.pt`` to ``allegro_bio/pretrained/NAME.pt``, its test split to
``NAME.test.extxyz.xz`` (so the card's metrics can be re-measured with ``allegro-bio evaluate``),
and writes the model card ``NAME.md`` from the run's ``summary.json``, ``config.yaml`` and
``log.csv`` plus the measured usability numbers (JSON written by the stability runs).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import lzma
import shutil
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


def _table(metrics: dict[str, float], names: list[str]) -> str:
    rows = ["| element | force MAE (eV/Å) | force RMSE (eV/Å) |", "|---|---|---|"]
    for s in names:
        if f"forces_mae_{s}" in metrics:
            rows.append(f"| {s} | {metrics[f'forces_mae_{s}']:.3f} | {metrics[f'forces_rmse_{s}']:.3f} |")
    rows.append(f"| all | {metrics['forces_mae']:.3f} | {metrics['forces_rmse']:.3f} |")
    return "\n".join(rows)


def write_card(run_dir: Path, name: str, usability: dict[str, Any] | None, data_note: str, hardware: str) -> str:
    import yaml

    summary = json.loads((run_dir / "summary.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    with open(run_dir / "log.csv") as fh:
        log = list(csv.DictReader(fh))
    train_s = sum(float(r["seconds"]) for r in log)
    test = summary["metrics_eV_A"].get("test", {})
    val = summary["metrics_eV_A"].get("val", {})
    from ..deploy import load

    model = load(run_dir / "model.pt")
    cfg = model.config
    names = list(model.type_names)
    n_weights = sum(p.numel() for p in model.module.parameters())
    stats = summary["stats"]
    u = usability or {}
    lines = [
        f"# Model card: `{name}`",
        "",
        "An Allegro potential for proteins in water, trained on **GFN2-xTB** (semi-empirical tight binding, "
        "tblite) energies and forces — not DFT. It reproduces GFN2-xTB, whose forces themselves differ from "
        "ωB97M-D3(BJ) DFT by ~0.2 eV/Å (MAE) on such fragments: treat it as an xTB-quality model that runs "
        "at Allegro cost, for testing workflows, stability studies and qualitative simulations.",
        "",
        "## Use",
        "```python",
        "import allegro_bio",
        "atoms.calc = allegro_bio.AllegroCalculator()            # the default packaged model",
        f"allegro_bio.pretrained.path({name!r})                   # the file",
        "system.addForce(allegro_bio.AllegroForce(None, topology)) # OpenMM",
        "```",
        "",
        "## Data",
        data_note,
        f"- Training statistics: {stats['num_frames']} frames, {stats['num_atoms']} atoms, per-type counts "
        f"{dict(zip(names, stats['counts_per_type']))}; average neighbours within the cutoffs "
        f"{stats['avg_num_neighbors']:.1f}; force RMS {stats['force_rms']:.3f} eV/Å, largest component "
        f"{stats['force_max_abs']:.1f} eV/Å.",
        "- Per-species energy shifts μ from a least-squares fit of the training energies (eV): "
        + ", ".join(f"{s} {v:.4f}" for s, v in zip(names, stats["per_type_shift"])) + ".",
        "",
        "## Model",
        f"- Allegro, preset `small`: {cfg['num_layers']} layers, {cfg['num_tensor_features']} tensor features, "
        f"ℓ_max {cfg['l_max']}, parity {cfg['parity']}, two-body MLP {cfg['two_body_mlp']}, latent MLP "
        f"{cfg['latent_mlp']}, readout {cfg['readout_mlp']}, {cfg['num_bessels']} Bessel functions, r_max "
        f"{cfg['r_max']} Å, ZBL {'on' if cfg['zbl'] else 'off'}, {cfg['dtype']}; {n_weights:,} weights.",
        f"- Training: `configs/pretrained-xtb-small.yaml` — loss {config['optim']['loss']} (forces normalised by "
        f"the force RMS), Adam lr {config['optim']['lr']}, batch {config['optim']['batch_size']}, EMA "
        f"{config['optim']['ema_decay']}, reduce-on-plateau; {summary['epochs_run']} epochs "
        f"({summary['stopped_because']}), {train_s / 60:.0f} min on {hardware}.",
        "",
        "## Accuracy on the held-out test split",
        f"Test split: {summary['data']['test']} — whole source configurations never seen in training "
        "(shipped next to the model as "
        f"`{name}.test.extxyz.xz`; `allegro-bio evaluate {name}.pt {name}.test.extxyz.xz` reproduces these numbers).",
        "",
        f"- Energy MAE {test.get('energy_mae', float('nan')) * 1e3:.1f} meV/atom (RMSE "
        f"{test.get('energy_rmse', float('nan')) * 1e3:.1f} meV/atom).",
        "",
        _table(test, names) if test else "(no test split)",
        "",
        f"Validation split: force MAE {val.get('forces_mae', float('nan')):.3f} eV/Å, energy MAE "
        f"{val.get('energy_mae', float('nan')) * 1e3:.1f} meV/atom.",
        "",
    ]
    if u:
        lines += ["## Is it usable? (measured)", ""]
        lines += [f"- {k}: {v}" for k, v in u.items()]
        lines.append("")
    lines += [
        "## Known limits",
        "- Elements H, C, N, O, S only: no ions (Na⁺, Cl⁻, Ca²⁺, ...), no phosphorus (nucleic acids), no metals.",
        "- Trained on small clusters (20–200 atoms, vacuum surfaces) and small periodic water boxes sampled by "
        "classical MD at 300–600 K: bulk protein environments, long-range electrostatics beyond 4 Å, charged "
        "groups far from their counter-charges and reactive chemistry are outside what it has seen.",
        "- Accuracy is bounded by GFN2-xTB, not DFT. A few thousand frames is a small dataset for five elements; "
        "expect larger errors for rare environments (sulfur: few examples).",
        "- Total charge is not an input: the network is strictly local.",
        "",
    ]
    return "\n".join(lines)


def package(run_dir: str | Path, name: str, usability: dict[str, Any] | None = None, data_note: str = "",
            hardware: str = "2 shared CPU cores (no GPU)", test_file: str | Path | None = None) -> Path:
    """Copy the run's model and test split into this folder and write the model card; returns the model path."""
    run_dir = Path(run_dir)
    target = HERE / f"{name}.pt"
    shutil.copyfile(run_dir / "model.pt", target)
    summary = json.loads((run_dir / "summary.json").read_text())
    tests = [Path(p) for p in summary["data"]["test"]] if test_file is None else [Path(test_file)]
    if tests:
        src = tests[0]
        opener = lzma.open if src.suffix == ".xz" else open
        with opener(src, "rb") as fin, lzma.open(HERE / f"{name}.test.extxyz.xz", "wb") as fout:
            shutil.copyfileobj(fin, fout)
    (HERE / f"{name}.md").write_text(write_card(run_dir, name, usability, data_note, hardware))
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--name", required=True)
    p.add_argument("--usability", default=None, help="JSON file of measured usability numbers (key: text)")
    p.add_argument("--data-note", default="", help="Markdown paragraph describing the data")
    p.add_argument("--hardware", default="2 shared CPU cores (no GPU)")
    args = p.parse_args(argv)
    usability = json.loads(Path(args.usability).read_text()) if args.usability else None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = package(args.run_dir, args.name, usability, args.data_note, args.hardware)
    log.info("packaged %s and %s", path, path.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
