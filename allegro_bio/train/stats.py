"""Dataset statistics that initialise and normalise a model: neighbours, energy shifts, force scale."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from .data import GraphDataset


@dataclass(frozen=True)
class DatasetStats:
    """Statistics of the training frames.

    ``avg_num_neighbors`` (pairs per atom within the per-pair cutoffs), ``per_type_shift`` (eV,
    per type: least-squares fit of E ≈ Σ_s n_s μ_s, or the isolated-atom energies given),
    ``force_rms`` and ``force_max_abs`` (eV/Å), ``energy_rmse_after_shift`` (eV/atom, the error of
    the shift-only model: what the network has to learn), ``num_frames``, ``num_atoms``,
    ``counts_per_type``.
    """

    avg_num_neighbors: float
    per_type_shift: tuple[float, ...]
    force_rms: float
    force_max_abs: float
    energy_rmse_after_shift: float
    num_frames: int
    num_atoms: int
    counts_per_type: tuple[int, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def compute_stats(dataset: GraphDataset, indices: Sequence[int] | None = None,
                  isolated_atom_energies: Mapping[str, float] | None = None) -> DatasetStats:
    """Statistics over ``indices`` of ``dataset`` (default: all frames)."""
    names = dataset.type_names
    t = len(names)
    idx = range(len(dataset)) if indices is None else indices
    counts, energies, n_edges, n_atoms = [], [], 0, 0
    f_sq, f_n, f_max = 0.0, 0, 0.0
    for k in idx:
        g = dataset[k]
        counts.append(np.bincount(g.types, minlength=t))
        energies.append(g.energy)
        n_edges += g.edge_index.shape[1]
        n_atoms += len(g.types)
        if np.isfinite(g.forces).all():
            f_sq += float((g.forces ** 2).sum())
            f_n += g.forces.size
            f_max = max(f_max, float(np.abs(g.forces).max(initial=0.0)))
    counts = np.array(counts, dtype=float)
    energies = np.array(energies)
    if isolated_atom_energies:
        missing = [s for s in names if s not in isolated_atom_energies]
        if missing:
            from .data import DataError

            raise DataError(f"isolated_atom_energies lacks {missing} (needs every type of {names})")
        shift = np.array([float(isolated_atom_energies[s]) for s in names])
    else:
        shift = np.zeros(t)
        ok = np.isfinite(energies)
        if ok.any():
            present = counts[ok].sum(axis=0) > 0
            sol, *_ = np.linalg.lstsq(counts[ok][:, present], energies[ok], rcond=None)
            shift[present] = sol
    ok = np.isfinite(energies)
    resid = (energies[ok] - counts[ok] @ shift) / counts[ok].sum(axis=1) if ok.any() else np.zeros(0)
    return DatasetStats(
        avg_num_neighbors=float(n_edges / max(n_atoms, 1)),
        per_type_shift=tuple(float(x) for x in shift),
        force_rms=float(np.sqrt(f_sq / f_n)) if f_n else 1.0,
        force_max_abs=f_max if f_n else 1.0,
        energy_rmse_after_shift=float(np.sqrt(np.mean(resid ** 2))) if resid.size else float("nan"),
        num_frames=len(counts),
        num_atoms=int(n_atoms),
        counts_per_type=tuple(int(x) for x in counts.sum(axis=0)),
    )
