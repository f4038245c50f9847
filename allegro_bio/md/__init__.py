"""ML molecular dynamics runs with stability reporting: ``run(system, model, ...)`` and ``allegro-bio md``.

Examples
--------
>>> from allegro_bio import md, systems                                        # doctest: +SKIP
>>> result = md.run(systems.dhfr(), steps=200, timestep_fs=0.5, out_dir="runs/dhfr")  # doctest: +SKIP
>>> result.summary["rmsd_final_A"]                                             # doctest: +SKIP
"""

from .run import MDResult, SimulationUnstableError, StabilityLimits, resolve_model, run

__all__ = ["MDResult", "SimulationUnstableError", "StabilityLimits", "resolve_model", "run"]
