"""One ML MD run: build → integrate (OpenMM or ASE) → trajectory, state log, checkpoints → stability report.

Units: timestep in fs, temperature in K, friction in 1/ps, energies in the CSV in kJ/mol,
positions in the trajectory in Å (DCD) or nm (XTC), time in ps.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import pickle
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AllegroError, UnknownElementError

log = logging.getLogger(__name__)

#: Gas constant (kJ/mol/K).
R_KJ = 0.0083144626181532
#: 1 eV in kJ/mol.
EV_TO_KJ = 96.48533212331002
ENGINES = ("openmm", "ase")
INTEGRATORS = ("langevin", "nve")
TRAJECTORY_FORMATS = ("dcd", "xtc")
CSV_FIELDS = ("step", "time_ps", "potential_kJ_mol", "kinetic_kJ_mol", "total_kJ_mol", "temperature_K", "ns_per_day")
CHECKPOINT = "checkpoint"  # checkpoint.chk (OpenMM) / checkpoint.pkl (ASE) + checkpoint.json


class SimulationUnstableError(RuntimeError):
    """The run left the physical regime (NaN, temperature over the limit, atoms flying apart or
    collapsing). The message names the step, time and reason; files written so far are kept."""

    def __init__(self, message: str, result: "MDResult | None" = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class StabilityLimits:
    """When a run counts as blown up (checked at every report).

    Attributes
    ----------
    max_temperature_K
        Instantaneous temperature limit (K); ``None``: max(2 × target, target + 300 K).
    max_speed_A_per_fs
        Any atom faster than this (Å/fs) is "flying apart" (0.5 Å/fs = 50 km/s: a hydrogen at
        300 K moves ~0.03 Å/fs).
    """

    max_temperature_K: float | None = None
    max_speed_A_per_fs: float = 0.5

    def temperature_limit(self, target_K: float) -> float:
        if self.max_temperature_K is not None:
            return float(self.max_temperature_K)
        return max(2.0 * target_K, target_K + 300.0)


@dataclass
class MDResult:
    """What a run produced: the output folder, its files, and the summary (also in ``summary.json``)."""

    out_dir: Path
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.summary.get("status") == "failed"


# ------------------------------------------------------------------------------------------
# model and system resolution
# ------------------------------------------------------------------------------------------

def resolve_model(model: Any = None):
    """(model object, description) for ``model``: ``None`` (the packaged default), a packaged model
    name, a file path, a :class:`~allegro_bio.DeployedModel` or an eager model."""
    from .. import pretrained
    from ..deploy import as_model
    from ..errors import ModelFileError

    if model is None:
        try:
            model = pretrained.path()
        except ModelFileError as exc:
            raise ModelFileError(f"{exc}. Pass a model file: md.run(..., model='model.pt') or "
                                 "`allegro-bio md --model model.pt`") from None
    elif isinstance(model, str) and not Path(model).exists() and pretrained.is_name(model):
        model = pretrained.path(model)
    resolved = as_model(model)
    meta = getattr(resolved, "metadata", {}) or {}
    description = meta.get("training_description", "eager model (not from a file)")
    path = getattr(resolved, "path", None)
    return resolved, dict(path=str(path) if path else None, training_description=description,
                          untrained="untrained" in description.lower(), type_names=list(resolved.type_names),
                          r_max=float(resolved.r_max))


def check_elements(system, type_names) -> None:
    """Raise :class:`UnknownElementError` naming the elements (and counts) the model does not know."""
    counts = Counter(system.elements)
    missing = {el: n for el, n in counts.items() if el not in set(type_names)}
    if missing:
        listed = ", ".join(f"{el} ({n:,} atoms)" for el, n in sorted(missing.items()))
        raise UnknownElementError(
            f"{system.name} has elements the model does not know: {listed}; the model knows {' '.join(type_names)}. "
            "Whole-system ML MD needs a model trained on them. Options: build without ions "
            "(systems.from_pdb(..., ionic_strength=0, neutralize=False); `allegro-bio md --pdb` does this "
            "automatically), use a model that knows these elements (--model), or describe only the solute with "
            "Allegro and the rest with amber14 via allegro_bio.create_mixed_system (see docs/systems.md)."
        )


def _resolve_system(system: Any):
    from .. import systems as S

    if isinstance(system, S.BuiltSystem):
        return system
    if isinstance(system, str) and system in S.BUILDERS:
        return S.BUILDERS[system]()
    if isinstance(system, (str, os.PathLike)) and Path(system).is_file():
        return S.from_pdb(system)
    raise AllegroError(f"system must be a BuiltSystem, one of {sorted(S.BUILDERS)} or a PDB file; got {system!r}")


# ------------------------------------------------------------------------------------------
# engines: the same small interface over OpenMM and ASE
# ------------------------------------------------------------------------------------------

class _OpenMMEngine:
    def __init__(self, system, model, integrator: str, dt_fs: float, T: float, friction: float, seed: int,
                 platform: str, backend: str, precision: str | None) -> None:
        from ..openmm import AllegroForce, _import_openmm

        openmm = _import_openmm()
        from openmm import app, unit

        self.unit = unit
        omm = openmm.System()
        for atom in system.topology.atoms():
            omm.addParticle(atom.element.mass)
        if system.box_A is not None:
            omm.setDefaultPeriodicBoxVectors(*system.box_vectors)
        omm.addForce(AllegroForce(model, system.topology, backend=backend, precision=precision))
        if integrator == "langevin":
            integ = openmm.LangevinMiddleIntegrator(T * unit.kelvin, friction / unit.picosecond, dt_fs * unit.femtosecond)
            integ.setRandomNumberSeed(seed)
        else:
            integ = openmm.VerletIntegrator(dt_fs * unit.femtosecond)
        self.simulation = app.Simulation(system.topology, omm, integ, openmm.Platform.getPlatformByName(platform))
        self.context = self.simulation.context
        self.context.setPositions(system.positions)
        self.T, self.seed = T, seed

    def init_velocities(self) -> None:
        self.context.setVelocitiesToTemperature(self.T * self.unit.kelvin, self.seed)

    def step(self, n: int) -> None:
        self.simulation.step(n)

    def state(self):
        u = self.unit
        s = self.context.getState(getPositions=True, getVelocities=True, getEnergy=True)
        pos = s.getPositions(asNumpy=True).value_in_unit(u.angstrom)
        vel = s.getVelocities(asNumpy=True).value_in_unit(u.angstrom / u.femtosecond)
        return (np.asarray(pos), np.asarray(vel), s.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole),
                s.getKineticEnergy().value_in_unit(u.kilojoule_per_mole))

    def save(self, path: Path) -> None:
        _atomic_write(path, self.context.createCheckpoint())

    def load(self, path: Path) -> None:
        self.context.loadCheckpoint(path.read_bytes())

    def set_step(self, step: int) -> None:
        self.simulation.currentStep = step


class _ASEEngine:
    def __init__(self, system, model, integrator: str, dt_fs: float, T: float, friction: float, seed: int) -> None:
        from ase import units
        from ase.md.langevin import Langevin
        from ase.md.verlet import VelocityVerlet

        from ..ase import AllegroCalculator

        self.units = units
        self.atoms = system.to_ase()
        self.atoms.calc = AllegroCalculator(model)
        self.T, self.seed = T, seed
        self.rng = np.random.default_rng(seed)
        if integrator == "langevin":
            self.dyn = Langevin(self.atoms, dt_fs * units.fs, temperature_K=T, friction=friction / (1000.0 * units.fs),
                                rng=self.rng, fixcm=False)
        else:
            self.dyn = VelocityVerlet(self.atoms, dt_fs * units.fs)

    def init_velocities(self) -> None:
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(self.atoms, temperature_K=self.T, rng=np.random.default_rng(self.seed))

    def step(self, n: int) -> None:
        self.dyn.run(n)

    def state(self):
        a = self.atoms
        vel = a.get_velocities() * self.units.fs  # Å per ASE time unit -> Å/fs
        return (a.get_positions(), vel, a.get_potential_energy() * EV_TO_KJ, a.get_kinetic_energy() * EV_TO_KJ)

    def save(self, path: Path) -> None:
        data = dict(positions=self.atoms.get_positions(), momenta=self.atoms.get_momenta(),
                    cell=np.asarray(self.atoms.cell), rng=self.rng.bit_generator.state, nsteps=self.dyn.nsteps)
        _atomic_write(path, pickle.dumps(data))

    def load(self, path: Path) -> None:
        data = pickle.loads(path.read_bytes())
        self.atoms.set_positions(data["positions"])
        self.atoms.set_momenta(data["momenta"])
        self.atoms.set_cell(data["cell"])
        self.rng.bit_generator.state = data["rng"]

    def set_step(self, step: int) -> None:
        self.dyn.nsteps = step


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------
# trajectory writers (append-capable, flushed at every frame)
# ------------------------------------------------------------------------------------------

class _Trajectory:
    def __init__(self, path: Path, fmt: str, topology, dt_ps: float, interval: int, first_step: int, append: bool) -> None:
        from openmm import app

        self.fmt = fmt
        self.path = path
        if fmt == "dcd":
            self._fh = open(path, "r+b" if append else "wb")
            self._writer = app.DCDFile(self._fh, topology, dt_ps, first_step, interval, append=append)
        else:
            self._fh = None
            self._writer = app.XTCFile(str(path), topology, dt_ps, first_step, interval, append=append)

    def write(self, positions_A: np.ndarray, box_A: np.ndarray | None) -> None:
        from openmm import Vec3, unit

        box = None if box_A is None else [Vec3(*(v / 10.0)) for v in box_A] * unit.nanometer
        self._writer.writeModel(unit.Quantity(positions_A / 10.0, unit.nanometer), periodicBoxVectors=box)
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def _truncate_trajectory(path: Path, topology_pdb: Path, n_frames: int) -> None:
    """Keep the first ``n_frames`` frames (a run killed between a frame and its checkpoint)."""
    import mdtraj

    with mdtraj.open(str(path)) as fh:
        if len(fh) <= n_frames:
            return
    traj = mdtraj.load(str(path), top=str(topology_pdb))
    traj[:n_frames].save(str(path))


# ------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------

def run(
    system: Any,
    model: Any = None,
    engine: str = "openmm",
    integrator: str = "langevin",
    timestep_fs: float = 0.5,
    temperature_K: float = 300.0,
    steps: int = 1000,
    report_interval: int = 50,
    out_dir: str | Path = "md_run",
    restart: bool | str | Path = False,
    friction_per_ps: float = 1.0,
    trajectory_format: str = "dcd",
    limits: StabilityLimits | None = None,
    seed: int = 0,
    platform: str = "CPU",
    backend: str = "auto",
    precision: str | None = None,
    progress: bool = True,
    raise_on_failure: bool = True,
    compile: bool = False,
) -> MDResult:
    """Run ML MD of ``system`` with ``model`` and write a trajectory, a state log and a stability report.

    Parameters
    ----------
    system
        A :class:`~allegro_bio.systems.BuiltSystem`, a builder name (``"water"``, ``"dhfr"``,
        ``"factor_ix"``, ``"stmv"``) or a PDB file (built with ``systems.from_pdb``).
    model
        Deployed model file, packaged model name, ``DeployedModel`` or eager model; ``None``:
        the packaged default (``allegro_bio.pretrained.path()``). The whole system is described
        by the model, so every element must be one it knows (else ``UnknownElementError``,
        naming the elements, before anything runs).
    engine
        ``"openmm"`` (``AllegroForce``; ``platform``, ``backend``, ``precision`` apply) or ``"ase"``
        (``AllegroCalculator``).
    integrator
        ``"langevin"`` (OpenMM ``LangevinMiddleIntegrator`` / ASE ``Langevin``, ``friction_per_ps``)
        or ``"nve"`` (velocity Verlet). No constraints: hydrogens move (use ≤ 0.5 fs).
    timestep_fs, temperature_K
        Timestep (fs); thermostat temperature and initial Maxwell–Boltzmann velocities (K).
    steps
        Total number of steps of the run (a restart continues up to ``steps``).
    report_interval
        Steps between reports: one trajectory frame, one CSV row, one checkpoint, one stability check.
    out_dir
        Output folder: ``topology.pdb``, ``trajectory.dcd`` (or ``.xtc``), ``state.csv``,
        ``checkpoint.*``, ``summary.json``, ``temperature.png``, ``energy.png``, ``rmsd.png``
        (systems with a protein backbone).
    restart
        ``True``: continue from ``out_dir``'s checkpoint (appending to its trajectory and log);
        a path: that checkpoint file. ``False``: start fresh (existing files are overwritten).
    limits
        :class:`StabilityLimits`; the run stops at the first report that shows NaN/inf, a
        temperature above the limit, an atom faster than the speed limit, or when the engine
        raises (e.g. atoms collapsing below 0.1 Å).
    compile
        Engine ``"ase"`` only: evaluate through ``torch.compile``
        (``AllegroCalculator(compile=True)``): ~20 % less time per step on CPU after a one-off
        compile (~15-40 s) at the first step; needs a C++ compiler.
    raise_on_failure
        On a blow-up: raise :class:`SimulationUnstableError` (default) after writing the report,
        or return the :class:`MDResult` with ``summary["status"] == "failed"``.

    Returns an :class:`MDResult`; ``summary`` holds ns/day, temperature statistics, backbone RMSD
    (Å) after superposition on frame 0, NVE drift (NVE runs), time-to-failure (failed runs).
    """
    if engine not in ENGINES:
        raise AllegroError(f"engine must be one of {ENGINES}, got {engine!r}")
    if integrator not in INTEGRATORS:
        raise AllegroError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
    if trajectory_format not in TRAJECTORY_FORMATS:
        raise AllegroError(f"trajectory_format must be one of {TRAJECTORY_FORMATS}, got {trajectory_format!r}")
    for name, value in (("steps", steps), ("report_interval", report_interval)):
        if int(value) < 1:
            raise AllegroError(f"{name} must be a positive integer, got {value}")
    if not (timestep_fs > 0 and temperature_K > 0):
        raise AllegroError(f"timestep_fs and temperature_K must be positive, got {timestep_fs}, {temperature_K}")
    if compile and engine != "ase":
        raise AllegroError(f"compile=True applies to engine 'ase', not {engine!r}: for compiled kernels in OpenMM pass "
                           "an AOTInductor package as the model (allegro-bio deploy --from model.pt model.pt2), which "
                           "both OpenMM backends run")
    limits = limits or StabilityLimits()
    t_setup = time.perf_counter()
    model_obj, model_info = resolve_model(model)
    if compile:
        from ..deploy import as_model

        model_obj = as_model(model_obj, compile=True)
    system = _resolve_system(system)
    check_elements(system, model_info["type_names"])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = "chk" if engine == "openmm" else "pkl"
    files = dict(topology=out / "topology.pdb", trajectory=out / f"trajectory.{trajectory_format}",
                 state=out / "state.csv", checkpoint=out / f"{CHECKPOINT}.{ext}", checkpoint_info=out / f"{CHECKPOINT}.json",
                 summary=out / "summary.json")
    if engine == "openmm":
        eng = _OpenMMEngine(system, model_obj, integrator, timestep_fs, temperature_K, friction_per_ps, seed, platform,
                            backend, precision)
    else:
        eng = _ASEEngine(system, model_obj, integrator, timestep_fs, temperature_K, friction_per_ps, seed)

    start_step, n_frames = 0, 0
    rows: list[dict[str, float]] = []
    if restart:
        chk = files["checkpoint"] if restart is True else Path(restart)
        info_path = chk.with_suffix(".json")
        if not chk.is_file() or not info_path.is_file():
            raise AllegroError(f"cannot restart: no checkpoint {chk} (with {info_path.name}); run without restart first")
        info = json.loads(info_path.read_text())
        if info.get("engine") != engine:
            raise AllegroError(f"checkpoint {chk} was written by engine {info.get('engine')!r}, not {engine!r}")
        eng.load(chk)
        start_step, n_frames = int(info["step"]), int(info["frames"])
        eng.set_step(start_step)
        rows = [r for r in _read_csv(files["state"]) if r["step"] <= start_step]
        _write_csv(files["state"], rows)
        if files["trajectory"].is_file():
            _truncate_trajectory(files["trajectory"], files["topology"], n_frames)
        log.info("restarting from step %d (%d frames) of %s", start_step, n_frames, chk)
    else:
        for key in ("trajectory", "state", "checkpoint", "checkpoint_info", "summary"):
            files[key].unlink(missing_ok=True)
        system.write_pdb(files["topology"])
        eng.init_velocities()
        _write_csv(files["state"], [])

    traj = _Trajectory(files["trajectory"], trajectory_format, system.topology, timestep_fs * 1e-3, report_interval,
                       start_step if restart else 0, append=bool(restart) and files["trajectory"].is_file())
    n_dof = 3 * system.n_atoms
    t_limit = limits.temperature_limit(temperature_K)
    setup_s = time.perf_counter() - t_setup

    failure: dict[str, Any] | None = None
    step = start_step
    wall0 = time.perf_counter()
    bar = _progress(steps, start_step, progress, system.name)

    def record(step_now: int, state, elapsed: float, frame: bool = True) -> dict[str, Any] | None:
        """Write one report (CSV row, frame, checkpoint) and return a failure dict or None."""
        nonlocal n_frames
        pos, vel, pot, kin = state
        temperature = 2.0 * kin / (n_dof * R_KJ)
        done = step_now - start_step
        ns_day = (done * timestep_fs * 1e-6) / (elapsed / 86400.0) if elapsed > 0 and done else float("nan")
        row = dict(step=step_now, time_ps=step_now * timestep_fs * 1e-3, potential_kJ_mol=pot, kinetic_kJ_mol=kin,
                   total_kJ_mol=pot + kin, temperature_K=temperature, ns_per_day=ns_day)
        reason = _check(pos, vel, pot, kin, temperature, t_limit, limits.max_speed_A_per_fs)
        if np.isfinite(pos).all():
            traj.write(pos, system.box_A)
            n_frames += 1
        rows.append(row)
        _append_csv(files["state"], row)
        if reason is None:
            eng.save(files["checkpoint"])
            _atomic_write(files["checkpoint_info"], json.dumps(dict(step=step_now, frames=n_frames, engine=engine)).encode())
        if bar is not None:
            bar.set_postfix(T=f"{temperature:.0f}K", ns_day=f"{ns_day:.3g}")
        return None if reason is None else dict(step=step_now, time_ps=row["time_ps"], reason=reason)

    try:
        if not restart:
            failure = record(0, eng.state(), 0.0)
        while failure is None and step < steps:
            n = min(report_interval, steps - step)
            try:
                eng.step(n)
            except Exception as exc:  # the engine refused the state (NaN coordinates, collapsed atoms, ...)
                step += n
                failure = dict(step=step, time_ps=step * timestep_fs * 1e-3,
                               reason=f"the {engine} engine raised {type(exc).__name__}: {str(exc).strip()[:300]}")
                break
            step += n
            if bar is not None:
                bar.update(n)
            failure = record(step, eng.state(), time.perf_counter() - wall0)
    finally:
        traj.close()
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - wall0

    summary = _summarize(system, model_info, engine, integrator, timestep_fs, temperature_K, steps, report_interval,
                         start_step, step, rows, wall, setup_s, failure, t_limit, limits, files, out)
    result = MDResult(out, summary, {k: v for k, v in files.items() if Path(v).exists()})
    if failure is not None:
        msg = (f"simulation unstable at step {failure['step']} (t = {failure['time_ps']:.4f} ps): {failure['reason']}. "
               f"Stopped; kept everything written so far in {out} ({n_frames} frames, {len(rows)} log rows, "
               f"summary.json); last good checkpoint: step {summary['last_checkpoint_step']}.")
        log.error(msg)
        if raise_on_failure:
            raise SimulationUnstableError(msg, result)
    return result


def _check(pos, vel, pot, kin, temperature, t_limit, v_limit) -> str | None:
    if not (math.isfinite(pot) and math.isfinite(kin)) or not np.isfinite(pos).all() or not np.isfinite(vel).all():
        bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
        return f"non-finite energy or coordinates (NaN/inf; atoms {bad[:10].tolist()})"
    if temperature > t_limit:
        return f"temperature {temperature:.0f} K exceeds the limit {t_limit:.0f} K"
    speed = np.linalg.norm(vel, axis=1)
    k = int(np.argmax(speed))
    if speed[k] > v_limit:
        return (f"atoms flying apart: atom {k} moves at {speed[k]:.2f} Å/fs (limit {v_limit} Å/fs); "
                f"{int((speed > v_limit).sum())} atoms above the limit")
    return None


def _progress(total: int, initial: int, enabled: bool, name: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc=f"MD {name}", dynamic_ncols=True)


def _read_csv(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in r.items()} for r in csv.DictReader(fh)]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=CSV_FIELDS).writerow(row)


def _summarize(system, model_info, engine, integrator, dt, T, steps, interval, start, step, rows, wall, setup_s,
               failure, t_limit, limits, files, out: Path) -> dict[str, Any]:
    from .. import analysis

    done = step - start
    ns_day = done * dt * 1e-6 / (wall / 86400.0) if wall > 0 and done else None
    temps = np.array([r["temperature_K"] for r in rows], dtype=float)
    summary: dict[str, Any] = dict(
        status="failed" if failure else "completed",
        system=system.name, n_atoms=system.n_atoms, composition=system.composition(),
        model=model_info, engine=engine, integrator=integrator, timestep_fs=dt, temperature_K=T,
        steps_requested=steps, steps_done=step, restarted_from_step=start or None, report_interval=interval,
        simulated_time_ps=step * dt * 1e-3, wall_s=wall, setup_s=setup_s, ns_per_day=ns_day,
        temperature_mean_K=float(np.nanmean(temps)) if temps.size else None,
        temperature_std_K=float(np.nanstd(temps)) if temps.size else None,
        limits=dict(max_temperature_K=t_limit, max_speed_A_per_fs=limits.max_speed_A_per_fs),
        failure=failure, time_to_failure_ps=failure["time_ps"] if failure else None,
        last_checkpoint_step=_last_checkpoint(files["checkpoint_info"]),
        files={k: str(v.name) for k, v in files.items()},
    )
    if model_info.get("untrained"):
        summary["warning"] = "the model is an UNTRAINED (seeded) network: this run demonstrates the pipeline, not chemistry"
    plots = {}
    try:
        if rows:
            plots["temperature"] = analysis.plot_temperature(files["state"], out / "temperature.png", target_K=T)
            plots["energy"] = analysis.plot_energy(files["state"], out / "energy.png")
            if integrator == "nve" and len(rows) >= 2:
                summary["nve_drift_kJ_mol_per_atom_per_ns"] = analysis.nve_drift(files["state"], system.n_atoms)
        if files["trajectory"].is_file() and analysis.has_backbone(system.topology):
            rmsd = analysis.backbone_rmsd(files["trajectory"], topology=files["topology"])
            times = np.array([r["time_ps"] for r in rows][: len(rmsd)])
            summary["rmsd_backbone_A"] = dict(final=float(rmsd[-1]), max=float(np.max(rmsd)), frames=int(len(rmsd)),
                                              time_ps=float(times[-1]) if len(times) else None)
            plots["rmsd"] = analysis.plot_rmsd(rmsd, out / "rmsd.png", times_ps=times if len(times) == len(rmsd) else None,
                                               title=f"{system.name}: backbone RMSD vs frame 0")
    except Exception as exc:  # the report must never hide the run's own outcome
        log.warning("stability report incomplete: %s", exc)
        summary["report_error"] = f"{type(exc).__name__}: {exc}"
    summary["plots"] = {k: Path(v).name for k, v in plots.items()}
    files["summary"].write_text(json.dumps(summary, indent=2, default=_json_default))
    return summary


def _last_checkpoint(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["step"])
    except (OSError, ValueError, KeyError):
        return None


def _json_default(x: Any):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return str(x)
