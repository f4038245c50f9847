"""OpenMM throughput of ``AllegroForce``: MD steps of a whole-system-ML OpenMM System per case and
backend, one fresh process per (case, backend) (or, with ``interleave``, per case, the backends'
steps taken in turn), compared with the raw model in the same process.

Each record times ``steps`` MD steps (0.5 fs) after 1 warm-up step (2 for systems of at most
:data:`SMALL_ATOMS` atoms): consecutive Langevin steps at 300 K with the packaged trained model,
or, without it, steps of an untrained seeded model each from the structure at rest. In the same
process it times the raw energy+forces of the same deployed model on the same structure.

Units in records: times in ms, ``ns_per_day`` in simulated ns per wall-clock day at 0.5 fs,
``atom_steps_per_s`` in atoms × steps per wall-clock second, memory in MB (2**20 bytes).
``overhead_ratio`` = OpenMM ms/step ÷ raw model ms per energy+forces evaluation; it includes
what the raw timing leaves out (neighbour list, OpenMM ↔ torch transfer, integration, and for the
``python`` backend the Python callback).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch  # before openmm: openmm-torch's plugin needs torch's libraries already loaded

from .cases import build_case
from .run import TYPE_NAMES, Record, peak_rss_mb, run_isolated

IMPLEMENTATION = "allegro_bio-openmm"
#: Default cases of ``allegro-bio bench --openmm``.
OPENMM_CASES: tuple[str, ...] = ("water1536", "water6144", "dhfr")
#: Default backends of ``AllegroForce`` to time.
OPENMM_BACKENDS: tuple[str, ...] = ("torch", "python")
#: Backends that run the model as an AOTInductor package (``model.pt2``, written per run): OpenMM's
#: ``torch`` backend (through the TorchBind runner), its ``python`` backend, and ASE.
AOTI_BACKENDS: tuple[str, ...] = ("torch-aoti", "python-aoti", "ase-aoti")
#: Backends ``interleave`` can time in one process, their steps taken in turn (OpenMM contexts).
INTERLEAVE_BACKENDS: tuple[str, ...] = ("torch", "python", "torch-aoti", "python-aoti")
#: Integrator time step (fs).
TIMESTEP_FS = 0.5
#: Systems with at most this many atoms get 2 warm-up steps instead of 1.
SMALL_ATOMS = 2000

_MEASURED = (
    "n_atoms", "ms_per_step", "mean_ms_per_step", "ns_per_day", "atom_steps_per_s", "raw_model_ms", "raw_nl_ms",
    "overhead_ratio", "mean_overhead_ratio", "peak_rss_mb",
)


def ml_topology_system(atoms: Any) -> tuple[Any, Any, np.ndarray]:
    """An OpenMM topology (one chain, one residue, elements from atomic numbers, periodic box if
    ``atoms`` is periodic in all directions), an empty System with element masses (Da) and that box,
    and the positions in nm, for an ``ase.Atoms`` (positions and cell in Å)."""
    import openmm
    from openmm import app, unit

    top = app.Topology()
    residue = top.addResidue("MOL", top.addChain())
    elements = [app.element.Element.getByAtomicNumber(int(z)) for z in atoms.numbers]
    for k, element in enumerate(elements):
        top.addAtom(f"{element.symbol}{k}", element, residue)
    system = openmm.System()
    for element in elements:
        system.addParticle(element.mass)
    if atoms.pbc.all():
        box = [openmm.Vec3(*row) for row in np.asarray(atoms.cell) / 10.0] * unit.nanometer
        top.setPeriodicBoxVectors(box)
        system.setDefaultPeriodicBoxVectors(*box)
    return top, system, np.asarray(atoms.positions) / 10.0


def _base(case: str, backend: str, platform: str, steps: int, threads: int | None, device: str = "cpu") -> Record:
    return {
        "implementation": IMPLEMENTATION, "backend": backend, "platform": platform, "device": device, "case": case,
        "steps": steps, "preset": "small", "dtype": "float32", "torch_version": torch.__version__,
        "threads": threads or torch.get_num_threads(),
    }


def failed_openmm_record(case: str, backend: str, platform: str, steps: int, error: str, threads: int | None = None,
                         device: str = "cpu") -> Record:
    """A record for a (case, backend) that did not finish: measurements ``None``, ``status`` ``"failed"``."""
    rec = _base(case, backend, platform, steps, threads, device)
    rec.update(dict.fromkeys(_MEASURED), status="failed", error=error, load_avg_1min=os.getloadavg()[0])
    return rec


def measure_openmm(
    case: str, backend: str = "torch", platform: str = "CPU", steps: int = 5, threads: int | None = None,
    seed: int = 0, raw_repeats: int = 3, warmup: int | None = None, device: str = "cpu",
) -> Record:
    """Time ``steps`` consecutive OpenMM MD steps (0.5 fs) of ``case`` with an ``AllegroForce`` on
    all atoms, and, in the same process, the raw model: the same deployed (TorchScript) model's
    energy+forces on the same structure, ``raw_repeats`` times after a warm-up, neighbour list
    excluded (``raw_model_ms``, median). ``ms_per_step`` is the median step and ``mean_ms_per_step``
    the mean (it includes the steps that re-search the Verlet list). ``warmup``: untimed steps
    first (default: 2 up to :data:`SMALL_ATOMS` atoms, else 1).

    With the packaged (trained) model, whose species cover the case, the steps are real Langevin
    dynamics at 300 K from the case's structure. Otherwise a seeded untrained model is used and
    every step restarts from the structure at rest (reset outside the timer), because its random
    forces would collapse the structure within a few steps.

    ``device`` is where the model runs for the python and ASE backends (e.g. ``"cuda"``, OpenMM on
    its CPU platform); the torch backends run on the OpenMM platform's device and take ``"cpu"``."""
    from .. import pretrained, save
    from ..deploy import load
    from ..model import build_model

    _check_device(backend, device)
    if threads is not None:
        torch.set_num_threads(threads)
    atoms = build_case(case)
    if warmup is None:
        warmup = 2 if len(atoms) <= SMALL_ATOMS else 1
    top, system, positions_nm = ml_topology_system(atoms)
    trained = pretrained.available() and set(atoms.get_chemical_symbols()) <= set(pretrained.load().type_names)
    with tempfile.TemporaryDirectory(prefix="allegro-bench-") as tmp:
        if trained:
            path = pretrained.path()
        else:
            path = save(build_model("small", type_names=TYPE_NAMES, seed=seed, dtype="float32"), Path(tmp) / "model.pt")
        if backend in AOTI_BACKENDS:  # the same model as an AOTInductor package (raw timing and steps)
            from ..deploy import redeploy

            path = redeploy(path, Path(tmp) / "model.pt2", device=device)
        model = load(path, device=device)
        if backend == "ase-compiled":  # torch.compile: the raw timing and the steps share one compiled model
            from ..deploy import as_model

            model = as_model(model, device=device, compile=True)
        raw_ms, raw_nl_ms = _raw_model_ms(model, atoms, raw_repeats)
        if backend in ("ase", "ase-compiled", "ase-aoti"):
            times = _ase_steps(model if backend == "ase-compiled" else str(path), atoms, trained, warmup, steps, seed,
                               device)
        else:
            times = _openmm_steps(system, top, path, backend.removesuffix("-aoti"), platform, threads, trained,
                                  positions_nm, warmup, steps, seed, device)
    return _record(case, backend, platform, steps, threads, len(atoms), times, raw_ms, raw_nl_ms, raw_repeats, warmup,
                   seed, trained, device)


def _check_device(backend: str, device: str) -> None:
    if torch.device(device).type != "cpu" and backend.startswith("torch"):
        raise ValueError(f"backend {backend!r} runs on the OpenMM platform's device: time it with device 'cpu' (the "
                         f"python and ASE backends take device {device!r})")


def _record(case: str, backend: str, platform: str, steps: int, threads: int | None, n: int, times: list[float],
            raw_ms: float, raw_nl_ms: float, raw_repeats: int, warmup: int, seed: int, trained: bool,
            device: str = "cpu") -> Record:
    """The record of one (case, backend): step times ``times`` (s) against the raw model's ``raw_ms``."""
    import openmm

    from .. import pretrained

    step_s = statistics.median(times)
    rec = _base(case, backend, platform, steps, threads, device)
    rec.update(
        n_atoms=n, ms_per_step=1e3 * step_s, mean_ms_per_step=1e3 * statistics.mean(times),
        ns_per_day=TIMESTEP_FS * 1e-6 * 86400.0 / step_s, atom_steps_per_s=n / step_s, raw_model_ms=raw_ms,
        raw_nl_ms=raw_nl_ms, overhead_ratio=1e3 * step_s / raw_ms,
        mean_overhead_ratio=1e3 * statistics.mean(times) / raw_ms, times_ms=[1e3 * t for t in times],
        raw_repeats=raw_repeats, timestep_fs=TIMESTEP_FS, warmup_steps=warmup, seed=seed,
        model="packaged " + pretrained.DEFAULT if trained else "untrained seeded", dynamics="Langevin 300 K" if trained
        else "each step from the structure at rest", peak_rss_mb=peak_rss_mb(), openmm_version=openmm.__version__,
        cpu_count=os.cpu_count(), load_avg_1min=os.getloadavg()[0], interleaved=False, status="ok", error=None,
    )
    return rec


def _openmm_steps(system: Any, top: Any, path: Any, backend: str, platform: str, threads: int | None, trained: bool,
                  positions_nm: np.ndarray, warmup: int, steps: int, seed: int, device: str = "cpu") -> list[float]:
    """Wall times (s) of ``steps`` OpenMM steps after ``warmup`` untimed ones (see :func:`measure_openmm`)."""
    step = _openmm_stepper(system, top, path, backend, platform, threads, trained, positions_nm, seed, device)
    times = [step() for _ in range(warmup + steps)]  # warm-up steps first: TorchScript optimises on its first calls
    return times[warmup:]


def _openmm_stepper(system: Any, top: Any, path: Any, backend: str, platform: str, threads: int | None, trained: bool,
                    positions_nm: np.ndarray, seed: int, device: str = "cpu") -> Callable[[], float]:
    """An OpenMM context of ``system`` plus an ``AllegroForce`` and a function that takes one step
    and returns its wall time (s); untrained, each step starts from the structure at rest (the reset
    is not timed)."""
    import openmm
    from openmm import unit

    from ..openmm import AllegroForce

    system.addForce(AllegroForce(str(path), top, backend=backend, device=device))
    properties = {"Threads": str(threads)} if threads is not None and platform == "CPU" else {}
    if trained:
        integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond, TIMESTEP_FS * unit.femtosecond)
        integrator.setRandomNumberSeed(seed + 1)
    else:
        integrator = openmm.VerletIntegrator(TIMESTEP_FS * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), properties)
    start_positions = positions_nm * unit.nanometer
    context.setPositions(start_positions)
    if trained:
        context.setVelocitiesToTemperature(300 * unit.kelvin, seed + 1)
    zero_velocities = np.zeros_like(positions_nm) * unit.nanometer / unit.picosecond

    def step() -> float:
        if not trained:
            context.setPositions(start_positions)  # untimed reset: the untrained model would blow the
            context.setVelocities(zero_velocities)  # structure apart within a few steps
        start = time.perf_counter()
        integrator.step(1)
        return time.perf_counter() - start

    step.context = context  # keep the context alive with the function
    return step


def _ase_steps(model: Any, atoms: Any, trained: bool, warmup: int, steps: int, seed: int,
               device: str = "cpu") -> list[float]:
    """Wall times (s) of ``steps`` ASE Langevin steps (300 K; or, untrained, steps from rest) with
    ``AllegroCalculator(model, device)`` after ``warmup`` untimed ones."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from ..ase import AllegroCalculator

    atoms = atoms.copy()
    atoms.calc = AllegroCalculator(model, device=device)
    start_positions = atoms.get_positions()
    if trained:
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(seed + 1))
    dyn = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=300, friction=0.01 / units.fs,
                   rng=np.random.default_rng(seed + 2))
    times = []
    for k in range(warmup + steps):
        if not trained:
            atoms.set_positions(start_positions)
            atoms.set_velocities(np.zeros_like(start_positions))
        start = time.perf_counter()
        dyn.run(1)
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _raw_model_ms(model: Any, atoms: Any, repeats: int) -> tuple[float, float]:
    """Median ms of the deployed model's energy+forces on ``atoms`` on the model's device (after 2
    warm-up calls; on a GPU, until its work is done), and the ms of one neighbour-list build (not
    included)."""
    from ..neighbors import build_graph, type_indices
    from ..runtime import keep_freed_memory

    keep_freed_memory()
    t0 = time.perf_counter()
    graph = build_graph(atoms.positions, atoms.cell.array, atoms.pbc, model.r_max)
    nl_ms = 1e3 * (time.perf_counter() - t0)
    device = model.cutoff_matrix.device
    args = tuple(torch.as_tensor(a, device=device) for a in (
        atoms.positions, type_indices(atoms.numbers, model.type_names), graph.edge_index, graph.shift)) + (len(atoms), False)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        model.compute(*args)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        model.compute(*args)
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), nl_ms


def _failed(kwargs: dict[str, Any], error: str) -> Record:
    keys = ("case", "backend", "platform", "steps")
    return failed_openmm_record(*(kwargs[k] for k in keys), error=error, threads=kwargs["threads"],
                                device=kwargs.get("device", "cpu"))


def measure_openmm_isolated(
    case: str, backend: str = "torch", platform: str = "CPU", steps: int = 5, threads: int | None = None,
    seed: int = 0, raw_repeats: int = 3, warmup: int | None = None, device: str = "cpu",
) -> Record:
    """:func:`measure_openmm` in a fresh spawned process (see :func:`~allegro_bio.bench.run.run_isolated`)."""
    kwargs = dict(case=case, backend=backend, platform=platform, steps=steps, threads=threads, seed=seed,
                  raw_repeats=raw_repeats, warmup=warmup, device=device)
    return run_isolated(measure_openmm, _failed, kwargs)


def measure_openmm_interleaved(
    case: str, backends: Iterable[str], platform: str = "CPU", steps: int = 5, threads: int | None = None,
    seed: int = 0, raw_repeats: int = 3, warmup: int | None = None, device: str = "cpu",
) -> list[Record]:
    """Every backend of ``backends`` on ``case`` in this process, one OpenMM context each, their
    steps taken in turn (round k: one step of each context); one record per backend, as
    :func:`measure_openmm` gives, with ``interleaved`` True.

    A shared machine's speed drifts between processes and within one. Taking the steps in turn
    exposes every backend to the same drift, so ratios between them are robust; absolute times
    are those of several contexts sharing one process. The raw model (``.pt`` and, for the
    ``-aoti`` backends, the same model written as a package) is timed first."""
    from .. import pretrained, save
    from ..deploy import load, redeploy
    from ..model import build_model

    backends = list(backends)
    bad = [b for b in backends if b not in INTERLEAVE_BACKENDS]
    if bad or not backends:
        raise ValueError(f"interleaved timing takes OpenMM backends {INTERLEAVE_BACKENDS}, got {backends}")
    for b in backends:
        _check_device(b, device)
    if threads is not None:
        torch.set_num_threads(threads)
    atoms = build_case(case)
    if warmup is None:
        warmup = 2 if len(atoms) <= SMALL_ATOMS else 1
    trained = pretrained.available() and set(atoms.get_chemical_symbols()) <= set(pretrained.load().type_names)
    with tempfile.TemporaryDirectory(prefix="allegro-bench-") as tmp:
        path = pretrained.path() if trained else save(
            build_model("small", type_names=TYPE_NAMES, seed=seed, dtype="float32"), Path(tmp) / "model.pt")
        paths = {False: path}
        if any(b in AOTI_BACKENDS for b in backends):
            paths[True] = redeploy(path, Path(tmp) / "model.pt2", device=device)
        raw = {package: _raw_model_ms(load(p, device=device), atoms, raw_repeats) for package, p in paths.items()}
        steppers = {}
        for b in backends:
            top, system, positions_nm = ml_topology_system(atoms)
            steppers[b] = _openmm_stepper(system, top, paths[b in AOTI_BACKENDS], b.removesuffix("-aoti"), platform,
                                          threads, trained, positions_nm, seed, device)
        times: dict[str, list[float]] = {b: [] for b in backends}
        for k in range(warmup + steps):
            for b, step in steppers.items():
                elapsed = step()
                if k >= warmup:
                    times[b].append(elapsed)
    records = []
    for b in backends:
        raw_ms, raw_nl_ms = raw[b in AOTI_BACKENDS]
        rec = _record(case, b, platform, steps, threads, len(atoms), times[b], raw_ms, raw_nl_ms, raw_repeats, warmup,
                      seed, trained, device)
        rec["interleaved"] = True
        records.append(rec)
    return records


def _failed_interleaved(kwargs: dict[str, Any], error: str) -> list[Record]:
    return [failed_openmm_record(kwargs["case"], b, kwargs["platform"], kwargs["steps"], error=error,
                                 threads=kwargs["threads"], device=kwargs.get("device", "cpu")) for b in kwargs["backends"]]


def measure_openmm_interleaved_isolated(
    case: str, backends: Iterable[str], platform: str = "CPU", steps: int = 5, threads: int | None = None,
    seed: int = 0, raw_repeats: int = 3, warmup: int | None = None, device: str = "cpu",
) -> list[Record]:
    """:func:`measure_openmm_interleaved` in a fresh spawned process."""
    kwargs = dict(case=case, backends=list(backends), platform=platform, steps=steps, threads=threads, seed=seed,
                  raw_repeats=raw_repeats, warmup=warmup, device=device)
    return run_isolated(measure_openmm_interleaved, _failed_interleaved, kwargs)


def run_openmm_bench(
    cases: Iterable[str] = OPENMM_CASES, backends: Iterable[str] = OPENMM_BACKENDS, platform: str = "CPU",
    steps: int = 5, threads: int | None = None, seed: int = 0, raw_repeats: int = 3, warmup: int | None = None,
    isolate: bool = True, progress: bool = True, interleave: bool = False, device: str = "cpu",
) -> list[Record]:
    """Time every (case, backend), each in its own process if ``isolate``; one record per pair.
    With ``interleave``, all backends of a case share one process and take their steps in turn
    (:func:`measure_openmm_interleaved`)."""
    from tqdm.auto import tqdm

    if interleave:
        measure_all = measure_openmm_interleaved_isolated if isolate else measure_openmm_interleaved
        records = []
        bar = tqdm(list(cases), desc="bench openmm (interleaved)", unit="case", disable=not progress)
        for case in bar:
            bar.set_postfix_str(case)
            records.extend(measure_all(case, list(backends), platform, steps, threads, seed, raw_repeats, warmup, device))
        return records
    jobs = [(c, b) for c in cases for b in backends]
    records: list[Record] = []
    bar = tqdm(jobs, desc="bench openmm", unit="run", disable=not progress)
    for case, backend in bar:
        bar.set_postfix_str(f"{case} {backend}")
        measure = measure_openmm_isolated if isolate else measure_openmm
        records.append(measure(case, backend, platform, steps, threads, seed, raw_repeats, warmup, device))
    return records


def format_openmm_table(records: list[Record]) -> str:
    """A fixed-width text table: ms per MD step, ns/day at 0.5 fs, atom-steps/s, raw model ms, overhead ratio."""
    head = ("case", "backend", "atoms", "ms/step", "mean ms/step", "ns/day", "atom-steps/s", "raw model ms", "overhead",
            "load")
    rows = [head]
    failures = []
    for r in records:
        if r["status"] != "ok":
            failures.append(f"{r['case']} {r['backend']}: FAILED: {r['error']}")
            continue
        rows.append((
            r["case"], r["backend"], f"{r['n_atoms']:,}", f"{r['ms_per_step']:.1f}", f"{r['mean_ms_per_step']:.1f}",
            f"{r['ns_per_day']:.4g}",
            f"{r['atom_steps_per_s']:,.0f}", f"{r['raw_model_ms']:.1f}", f"{r['overhead_ratio']:.2f}x",
            f"{r['load_avg_1min']:.2f}",
        ))
    widths = [max(len(row[k]) for row in rows) for k in range(len(head))]
    lines = ["  ".join(cell.ljust(w) if k < 2 else cell.rjust(w) for k, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines += failures
    if records:
        r = records[0]
        device = f" device={r['device']}" if r.get("device", "cpu") != "cpu" else ""
        lines.insert(0, f"{IMPLEMENTATION} platform={r['platform']}{device} preset={r['preset']} dtype={r['dtype']} "
                        f"threads={r['threads']} torch={r['torch_version']} dt={TIMESTEP_FS} fs "
                        f"(ms/step: median of {r['steps']} steps"
                        f"{', backends interleaved in one process' if r.get('interleaved') else ''}; "
                        f"overhead = ms/step / raw model ms; "
                        f"model: {r.get('model')}, {r.get('dynamics')})")
    return "\n".join(lines)
