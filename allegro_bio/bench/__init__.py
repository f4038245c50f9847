"""Throughput and memory benchmarks (``allegro-bio bench``).

Each case (periodic water boxes of 192 to 24,576 atoms, the 23,558-atom JAC DHFR system) runs
in its own process: neighbour list once, then timed energy+forces evaluations. Records give
times in ms, rates per second, peak memory in MB.

``--openmm`` (:mod:`.openmm_bench`) instead times OpenMM Verlet steps (0.5 fs) of a whole-system
``AllegroForce`` per case and backend (ms/step, ns/day, overhead over the raw model).

Examples
--------
>>> from allegro_bio.bench import format_table, run_bench
>>> records = run_bench("small", ["water192"], repeats=1, progress=False)  # doctest: +SKIP
>>> print(format_table(records))  # doctest: +SKIP
"""

from .cases import CASE_NAMES, N_ATOMS, build_case, dhfr
from .openmm_bench import format_openmm_table, measure_openmm, measure_openmm_isolated, run_openmm_bench
from .run import format_table, measure_case, measure_case_isolated, run_bench

__all__ = [
    "CASE_NAMES",
    "N_ATOMS",
    "build_case",
    "dhfr",
    "format_openmm_table",
    "format_table",
    "measure_case",
    "measure_case_isolated",
    "measure_openmm",
    "measure_openmm_isolated",
    "run_bench",
    "run_openmm_bench",
]
