"""Loss (force MSE, or weighted energy + forces + stress) and error metrics per element."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .data import Batch
from .predict import Prediction


def loss_terms(pred: Prediction, batch: Batch, loss: str, force_scale: float, energy_weight: float = 1.0,
               force_weight: float = 1.0, stress_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Loss terms of one batch (each a weighted mean over frames/atoms, dimensionless).

    Forces: mean over atoms and components of (ΔF / force_scale)²; energy: mean over frames of
    (ΔE / n_atoms / force_scale)² (per-atom energy, eV, over the same scale); stress:
    mean of Δσ² in (eV/Å³)². Per-frame ``weight`` multiplies every term of that frame.
    """
    w_frame = batch.weight
    w_atom = w_frame.index_select(0, batch.frame)
    df = (pred.forces - batch.forces) / force_scale
    f_term = (w_atom * (df * df).mean(1)).sum() / w_atom.sum()
    terms = {"forces": force_weight * f_term}
    if loss in ("energy_forces", "energy_forces_stress"):
        de = (pred.energy - batch.energy) / batch.n_atoms.to(torch.float64) / force_scale
        terms["energy"] = energy_weight * (w_frame * de * de).sum() / w_frame.sum()
    if loss == "energy_forces_stress" and pred.stress is not None:
        has = torch.isfinite(batch.stress).all(dim=2).all(dim=1)
        if bool(has.any()):
            ds = (pred.stress[has] - batch.stress[has]).reshape(-1, 9)
            terms["stress"] = stress_weight * (w_frame[has] * (ds * ds).mean(1)).sum() / w_frame[has].sum()
    return terms


class Metrics:
    """Accumulates MAE/RMSE of energy per atom (eV/atom), forces (eV/Å, per component, overall
    and per element) and stress (eV/Å³) over batches."""

    def __init__(self, type_names: Sequence[str]) -> None:
        self.type_names = list(type_names)
        t = len(type_names)
        self.e_abs = self.e_sq = 0.0
        self.e_n = 0
        self.f_abs = np.zeros(t)
        self.f_sq = np.zeros(t)
        self.f_n = np.zeros(t, dtype=np.int64)
        self.s_abs = self.s_sq = 0.0
        self.s_n = 0
        self.pairs_e: list[np.ndarray] = []
        self.pairs_f: list[np.ndarray] = []
        self.keep_pairs = False

    def update(self, pred: Prediction, batch: Batch) -> None:
        e_ref = batch.energy.detach().cpu().numpy()
        e_pred = pred.energy.detach().cpu().numpy()
        n = batch.n_atoms.cpu().numpy()
        ok = np.isfinite(e_ref)
        de = (e_pred - e_ref)[ok] / n[ok]
        self.e_abs += float(np.abs(de).sum())
        self.e_sq += float((de ** 2).sum())
        self.e_n += int(ok.sum())
        f_ref = batch.forces.detach().cpu().numpy()
        f_pred = pred.forces.detach().cpu().numpy()
        types = batch.types.cpu().numpy()
        okf = np.isfinite(f_ref).all(axis=1)
        df = (f_pred - f_ref)[okf]
        t = types[okf]
        tn = len(self.type_names)
        self.f_abs += np.bincount(t, weights=np.abs(df).sum(1), minlength=tn)
        self.f_sq += np.bincount(t, weights=(df ** 2).sum(1), minlength=tn)
        self.f_n += 3 * np.bincount(t, minlength=tn)
        if pred.stress is not None:
            s_ref = batch.stress.detach().cpu().numpy()
            has = np.isfinite(s_ref).all(axis=(1, 2))
            if has.any():
                ds = (pred.stress.detach().cpu().numpy() - s_ref)[has]
                self.s_abs += float(np.abs(ds).sum())
                self.s_sq += float((ds ** 2).sum())
                self.s_n += int(ds.size)
        if self.keep_pairs:
            self.pairs_e.append(np.stack([e_ref[ok] / n[ok], e_pred[ok] / n[ok]], 1))
            self.pairs_f.append(np.stack([f_ref[okf].ravel(), f_pred[okf].ravel(), np.repeat(t, 3)], 1))

    def result(self) -> dict[str, float]:
        """``energy_mae``/``energy_rmse`` (eV/atom), ``forces_mae``/``forces_rmse`` (eV/Å),
        ``forces_mae_<El>``/``forces_rmse_<El>``, ``stress_mae``/``stress_rmse`` (eV/Å³) when present."""
        out: dict[str, float] = {}
        if self.e_n:
            out["energy_mae"] = self.e_abs / self.e_n
            out["energy_rmse"] = float(np.sqrt(self.e_sq / self.e_n))
        n = self.f_n.sum()
        if n:
            out["forces_mae"] = float(self.f_abs.sum() / n)
            out["forces_rmse"] = float(np.sqrt(self.f_sq.sum() / n))
            for k, s in enumerate(self.type_names):
                if self.f_n[k]:
                    out[f"forces_mae_{s}"] = float(self.f_abs[k] / self.f_n[k])
                    out[f"forces_rmse_{s}"] = float(np.sqrt(self.f_sq[k] / self.f_n[k]))
        if self.s_n:
            out["stress_mae"] = self.s_abs / self.s_n
            out["stress_rmse"] = float(np.sqrt(self.s_sq / self.s_n))
        return out
