"""Stability analysis of MD runs: backbone RMSD, RMSF, radius of gyration, temperature and energy
series, NVE drift, time-to-failure — each with a matplotlib plot.

Units: Å for RMSD/RMSF/Rg, ps for time, K, kJ/mol (the ``state.csv`` written by
:func:`allegro_bio.md.run`). Trajectories are read with mdtraj.

Examples
--------
>>> from allegro_bio import analysis                                             # doctest: +SKIP
>>> rmsd = analysis.backbone_rmsd("runs/dhfr/trajectory.dcd", topology="runs/dhfr/topology.pdb")  # doctest: +SKIP
>>> analysis.plot_rmsd(rmsd, "rmsd.png")                                          # doctest: +SKIP
"""

from .series import (
    energy_series,
    nve_drift,
    read_state_log,
    temperature_series,
    time_to_failure,
)
from .structure import backbone_rmsd, has_backbone, load_trajectory, radius_of_gyration, rmsf
from .plots import plot_energy, plot_radius_of_gyration, plot_rmsd, plot_rmsf, plot_temperature

__all__ = [
    "backbone_rmsd",
    "energy_series",
    "has_backbone",
    "load_trajectory",
    "nve_drift",
    "plot_energy",
    "plot_radius_of_gyration",
    "plot_rmsd",
    "plot_rmsf",
    "plot_temperature",
    "radius_of_gyration",
    "read_state_log",
    "rmsf",
    "temperature_series",
    "time_to_failure",
]
