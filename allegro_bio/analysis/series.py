"""Time series from the state log (``state.csv`` of :func:`allegro_bio.md.run`): temperature,
energies, NVE drift and time-to-failure. Time in ps, energies in kJ/mol, temperature in K."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AllegroError


def read_state_log(log: Any) -> dict[str, np.ndarray]:
    """Columns of a state log as float arrays. ``log``: a CSV path, or a dict/list of rows already read."""
    if isinstance(log, dict):
        return {k: np.asarray(v, dtype=float) for k, v in log.items()}
    if isinstance(log, (list, tuple)):
        rows = list(log)
    else:
        path = Path(log)
        if not path.is_file():
            raise AllegroError(f"no state log at {path}")
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    if not rows:
        raise AllegroError("the state log has no rows")
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def temperature_series(log: Any) -> tuple[np.ndarray, np.ndarray]:
    """(time ps, instantaneous temperature K)."""
    d = read_state_log(log)
    return d["time_ps"], d["temperature_K"]


def energy_series(log: Any) -> dict[str, np.ndarray]:
    """time_ps, potential, kinetic and total energy (kJ/mol)."""
    d = read_state_log(log)
    return {k: d[k] for k in ("time_ps", "potential_kJ_mol", "kinetic_kJ_mol", "total_kJ_mol")}


def nve_drift(log: Any, n_atoms: int) -> float:
    """Drift of the total energy of an NVE run: slope of a least-squares line through
    E_total(t), divided by the number of atoms, in kJ/mol per atom per ns (÷ 96.485 for eV).

    Needs at least two rows with distinct times."""
    d = energy_series(log)
    t, e = d["time_ps"], d["total_kJ_mol"]
    ok = np.isfinite(e)
    t, e = t[ok], e[ok]
    if len(t) < 2 or np.ptp(t) == 0:
        raise AllegroError("NVE drift needs at least two finite rows at different times")
    slope_per_ps = np.polyfit(t, e, 1)[0]
    return float(slope_per_ps * 1000.0 / n_atoms)


def time_to_failure(log: Any, max_temperature_K: float, n_atoms: int | None = None,
                    max_energy_change_kJ_mol_per_atom: float | None = None) -> float | None:
    """Time-to-failure t_failure (ps) of a run, as in Allegro-Legato (Ibayashi et al. 2023): the
    first time the simulation leaves the physical regime; ``None`` if it never does.

    Detected here, per logged row, as the first of: a non-finite energy or temperature (NaN/inf),
    a temperature above ``max_temperature_K``, or (when ``n_atoms`` and
    ``max_energy_change_kJ_mol_per_atom`` are given, for NVE runs) a total energy that moved
    more than that per atom from its first value. Resolution: the report interval of the log.
    ``allegro_bio.md.run`` applies the same test on the fly (plus an atom-speed limit from the
    velocities) and records its outcome in ``summary.json``.
    """
    d = read_state_log(log)
    t, T, e = d["time_ps"], d["temperature_K"], d["total_kJ_mol"]
    for k in range(len(t)):
        if not (math.isfinite(T[k]) and math.isfinite(e[k])):
            return float(t[k])
        if T[k] > max_temperature_K:
            return float(t[k])
        if n_atoms and max_energy_change_kJ_mol_per_atom is not None:
            if abs(e[k] - e[0]) / n_atoms > max_energy_change_kJ_mol_per_atom:
                return float(t[k])
    return None
