"""Matplotlib plots of the stability measures. Each returns the saved path when ``path`` is given,
else the ``matplotlib.figure.Figure`` (shown inline in notebooks). No pyplot state is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .series import energy_series, temperature_series


def _figure(width: float = 6.0, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _finish(fig, path: str | Path | None):
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _per_frame(y: np.ndarray, path: str | Path | None, times_ps: np.ndarray | None, ylabel: str, title: str,
               from_zero: bool):
    """One per-frame series against time (ps) or frame index (markers for short series)."""
    fig, ax = _figure()
    y = np.asarray(y)
    x = np.arange(len(y)) if times_ps is None else np.asarray(times_ps)
    ax.plot(x, y, marker="o" if len(x) < 40 else None, ms=3)
    ax.set_xlabel("frame" if times_ps is None else "time (ps)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if from_zero:
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_rmsd(rmsd_A: np.ndarray, path: str | Path | None = None, times_ps: np.ndarray | None = None,
              title: str = "Backbone RMSD vs frame 0"):
    """RMSD (Å) against time (ps) or frame index."""
    return _per_frame(rmsd_A, path, times_ps, "RMSD (Å)", title, from_zero=True)


def plot_rmsf(rmsf_A: np.ndarray, path: str | Path | None = None, labels: Any = None, title: str = "RMSF (Cα)"):
    """RMSF (Å) per selected atom (or residue)."""
    fig, ax = _figure()
    x = np.arange(1, len(rmsf_A) + 1) if labels is None else np.asarray(labels)
    ax.plot(x, rmsf_A)
    ax.set_xlabel("residue" if labels is None else "")
    ax.set_ylabel("RMSF (Å)")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_radius_of_gyration(rg_A: np.ndarray, path: str | Path | None = None, times_ps: np.ndarray | None = None,
                            title: str = "Radius of gyration"):
    """Radius of gyration (Å) against time (ps) or frame."""
    return _per_frame(rg_A, path, times_ps, "Rg (Å)", title, from_zero=False)


def plot_temperature(log: Any, path: str | Path | None = None, target_K: float | None = None,
                     title: str = "Temperature"):
    """Instantaneous temperature (K) against time (ps), with the target as a dashed line."""
    t, T = temperature_series(log)
    fig, ax = _figure()
    ax.plot(t, T, label="instantaneous")
    if target_K is not None:
        ax.axhline(target_K, ls="--", c="k", lw=1, label=f"target {target_K:g} K")
        ax.legend(loc="best")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("temperature (K)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_energy(log: Any, path: str | Path | None = None, title: str = "Energies (relative to the first row)"):
    """Potential, kinetic and total energy (kJ/mol) minus their first values, against time (ps)."""
    d = energy_series(log)
    fig, ax = _figure()
    for key, label in (("potential_kJ_mol", "potential"), ("kinetic_kJ_mol", "kinetic"), ("total_kJ_mol", "total")):
        ax.plot(d["time_ps"], d[key] - d[key][0], label=label)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("E − E(0) (kJ/mol)")
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _finish(fig, path)
