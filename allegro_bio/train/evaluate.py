"""Evaluate a model on labelled frames: MAE/RMSE per element and parity plots.

Deployed files are evaluated through their ``compute`` method (the path ASE, OpenMM and LAMMPS
use), frames batched into one disjoint graph; eager models through :func:`predict`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..deploy import DeployedModel, as_model
from .data import Batch, GraphDataset, collate
from .loss import Metrics
from .predict import Prediction, predict


def predict_any(model: Any, batch: Batch, stress: bool = False) -> Prediction:
    """Energies/forces (and stress) of a batch from an eager or deployed model, without weight gradients."""
    if not isinstance(model, DeployedModel):
        p = predict(model, batch, create_graph=False, stress=stress)
        return Prediction(p.energy.detach(), p.forces.detach(), None if p.stress is None else p.stress.detach())
    n = batch.pos.shape[0]
    with torch.enable_grad():
        e, f, _ = model.compute(batch.pos, batch.types, batch.edge_index, batch.shift, n, False)
    energy = torch.zeros(batch.num_frames, dtype=torch.float64, device=e.device).index_add(0, batch.frame, e)
    s = None
    if stress:  # one frame at a time: the deployed virial is a total
        rows = []
        counts = batch.n_atoms.tolist()
        start = 0
        for b, m in enumerate(counts):
            sel = (batch.edge_frame == b).nonzero().squeeze(1)
            ei = batch.edge_index.index_select(1, sel) - start
            with torch.enable_grad():
                _, _, w = model.compute(batch.pos[start:start + m], batch.types[start:start + m], ei,
                                        batch.shift.index_select(0, sel), m, True)
            vol = float(batch.volume[b])
            rows.append(-w / vol if vol > 0 else torch.full((3, 3), float("nan"), dtype=torch.float64))
            start += m
        s = torch.stack(rows)
    return Prediction(energy.detach(), f.detach(), s)


def evaluate_dataset(model: Any, dataset: GraphDataset, batch_size: int = 16, keep_pairs: bool = False,
                     device: str | torch.device = "cpu", progress: bool = False) -> Metrics:
    """Accumulated :class:`~allegro_bio.train.loss.Metrics` of ``model`` over ``dataset``."""
    metrics = Metrics(dataset.type_names)
    metrics.keep_pairs = keep_pairs
    order = list(range(len(dataset)))
    chunks = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="evaluate", unit="batch", leave=False)
    for idx in chunks:
        batch = collate([dataset[k] for k in idx]).to(device)
        want_stress = bool(torch.isfinite(batch.stress).all(dim=2).all(dim=1).any())
        metrics.update(predict_any(model, batch, stress=want_stress), batch)
    return metrics


def parity_plot(metrics: Metrics, path: str | Path, title: str = "") -> Path:
    """Energy-per-atom and force-component parity plots (PNG); forces coloured by element."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    res = metrics.result()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    if metrics.pairs_e:
        e = np.concatenate(metrics.pairs_e)
        ax = axes[0]
        ax.scatter(e[:, 0], e[:, 1], s=4, alpha=0.5)
        lo, hi = float(e.min()), float(e.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("reference energy (eV/atom)")
        ax.set_ylabel("predicted energy (eV/atom)")
        ax.set_title(f"energy  MAE {res.get('energy_mae', float('nan')) * 1e3:.2f} meV/atom")
    if metrics.pairs_f:
        f = np.concatenate(metrics.pairs_f)
        ax = axes[1]
        for k, name in enumerate(metrics.type_names):
            sel = f[:, 2] == k
            if sel.any():
                ax.scatter(f[sel, 0], f[sel, 1], s=2, alpha=0.4,
                           label=f"{name} (MAE {res.get(f'forces_mae_{name}', float('nan')):.3f})")
        lo, hi = float(f[:, :2].min()), float(f[:, :2].max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("reference force component (eV/Å)")
        ax.set_ylabel("predicted force component (eV/Å)")
        ax.set_title(f"forces  MAE {res.get('forces_mae', float('nan')):.3f} eV/Å")
        ax.legend(markerscale=4, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_table(results: dict[str, dict[str, float]], type_names: Sequence[str]) -> str:
    """A plain-text table: rows = splits, columns = energy MAE (meV/atom) and force MAE/RMSE (eV/Å)."""
    cols = ["E MAE meV/at", "E RMSE meV/at", "F MAE", "F RMSE"] + [f"F MAE {s}" for s in type_names]
    lines = [f"{'split':<8}" + "".join(f"{c:>14}" for c in cols)]
    for split, r in results.items():
        vals = [r.get("energy_mae", np.nan) * 1e3, r.get("energy_rmse", np.nan) * 1e3, r.get("forces_mae", np.nan),
                r.get("forces_rmse", np.nan)] + [r.get(f"forces_mae_{s}", np.nan) for s in type_names]
        lines.append(f"{split:<8}" + "".join(f"{v:>14.4f}" for v in vals))
    return "\n".join(lines)


def evaluate_files(model_path: str | Path, data: Sequence[str | Path], out: str | Path | None = None,
                   batch_size: int = 16, device: str = "cpu", progress: bool = True, **read_options: Any) -> dict[str, Any]:
    """Evaluate a deployed model on data files; optionally write ``metrics.json`` and ``parity.png`` to ``out``.

    Returns ``{"metrics": {...}, "num_frames": n, "num_atoms": m}``. Units: energies eV/atom, forces eV/Å.
    """
    from .data import read_frames

    model = as_model(model_path, device=device)
    frames = []
    for p in data:
        frames.extend(read_frames(p, require=(), **read_options))
    cut = model.cutoff_matrix.detach().cpu().numpy()
    dataset = GraphDataset(frames, model.type_names, cut, model.r_max, progress=progress)
    metrics = evaluate_dataset(model, dataset, batch_size=batch_size, keep_pairs=out is not None, device=device, progress=progress)
    summary = {"model": str(model_path), "data": [str(p) for p in data], "num_frames": len(frames),
               "num_atoms": int(sum(len(a) for a in frames)), "metrics": metrics.result()}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
        parity_plot(metrics, out / "parity.png", title=f"{Path(model_path).name} on {len(frames)} frames")
    return summary
