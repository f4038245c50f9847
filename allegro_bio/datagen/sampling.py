"""Classical MD sampling of source configurations with OpenMM (amber14 + flexible TIP3P).

Everything is flexible (no constraints, ``rigidWater=False``) so bond stretches are sampled; the
time step is 0.5 fs, the thermostat Langevin (middle scheme, 5 ps⁻¹), the volume fixed (a barostat
crashes boxes under ~12 Å). Positions are returned in Å, cells in Å, temperatures in K.

A run is a chain of *segments*: each segment sets a new thermostat temperature, runs
``segment_steps`` and records ``snapshots_per_segment`` evenly spaced snapshots; the snapshots of
one segment share a ``group_id`` and go to one data split together.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: MD time step (fs).
TIMESTEP_FS = 0.5
#: Langevin friction (1/ps).
FRICTION_PER_PS = 5.0
#: Water residue names.
WATER_NAMES = frozenset({"HOH", "WAT", "TIP3"})
#: Solvated systems carved into clusters, and the periodic small water boxes.
SYSTEMS = ("dhfr", "ala2", "water", "water-box")


@dataclass
class SystemInfo:
    """Static description of a simulated system (one per MD run).

    ``numbers`` atomic numbers; ``residue_index`` per atom; ``residue_names`` per residue;
    ``bonds`` [B, 2] atom pairs; ``charges`` force-field partial charges (e) per atom.
    """

    name: str
    numbers: np.ndarray
    residue_index: np.ndarray
    residue_names: list[str]
    bonds: np.ndarray
    charges: np.ndarray

    @property
    def is_water(self) -> np.ndarray:
        """Per-atom mask of water atoms."""
        water_res = np.array([n in WATER_NAMES for n in self.residue_names], dtype=bool)
        return water_res[self.residue_index]


@dataclass
class Snapshot:
    """One MD configuration: ``positions`` (Å, molecules whole, not wrapped), ``cell`` (3×3, Å)."""

    system: str
    config_id: str
    group_id: str
    temperature_K: float
    positions: np.ndarray
    cell: np.ndarray
    numbers: np.ndarray | None = field(default=None, repr=False)  # set for per-replica systems (water-box)


def _forcefield():
    from openmm import app

    return app.ForceField("amber14-all.xml", "amber14/tip3p.xml")


def build(kind: str, *, box_edge_nm: float | None = None):
    """Topology, positions (OpenMM quantity) and a flexible amber14/TIP3P ``System`` for ``kind``.

    ``"dhfr"``: openmmtools ``DHFRExplicit`` (23,558 atoms, 62.2 Å box); ``"ala2"``: openmmtools
    ``AlanineDipeptideExplicit`` (2,269 atoms); ``"water"`` / ``"water-box"``: TIP3P water filled
    by ``Modeller.addSolvent`` into a cube of ``box_edge_nm`` (default 3.0 nm).
    """
    import openmm as mm
    from openmm import app, unit

    ff = _forcefield()
    if kind == "dhfr":
        from openmmtools import testsystems

        ts = testsystems.DHFRExplicit()
        top, pos = ts.topology, ts.positions
        box = ts.system.getDefaultPeriodicBoxVectors()
    elif kind == "ala2":
        from openmmtools import testsystems

        ts = testsystems.AlanineDipeptideExplicit()
        top, pos = ts.topology, ts.positions
        box = ts.system.getDefaultPeriodicBoxVectors()
    elif kind in ("water", "water-box"):
        edge = 3.0 if box_edge_nm is None else float(box_edge_nm)
        modeller = app.Modeller(app.Topology(), [])
        modeller.addSolvent(ff, model="tip3p", boxSize=mm.Vec3(edge, edge, edge) * unit.nanometer)
        top, pos = modeller.topology, modeller.positions
        box = top.getPeriodicBoxVectors()
    else:
        raise ValueError(f"unknown system {kind!r}; expected one of {SYSTEMS}")
    top.setPeriodicBoxVectors(box)
    min_edge = min(box[i][i].value_in_unit(unit.nanometer) for i in range(3))
    cutoff = min(0.9, 0.45 * min_edge)
    system = ff.createSystem(top, nonbondedMethod=app.PME, nonbondedCutoff=cutoff * unit.nanometer,
                             constraints=None, rigidWater=False)
    system.setDefaultPeriodicBoxVectors(*box)
    return top, pos, system


def system_info(name: str, topology, system) -> SystemInfo:
    """Static arrays of an OpenMM topology and system (charges from its ``NonbondedForce``, e)."""
    import openmm as mm
    from openmm import unit

    atoms = list(topology.atoms())
    numbers = np.array([a.element.atomic_number for a in atoms], dtype=np.int64)
    residue_index = np.array([a.residue.index for a in atoms], dtype=np.int64)
    residue_names = [r.name for r in topology.residues()]
    bonds = np.array([(b[0].index, b[1].index) for b in topology.bonds()], dtype=np.int64).reshape(-1, 2)
    nb = next(f for f in system.getForces() if isinstance(f, mm.NonbondedForce))
    charges = np.array([nb.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                        for i in range(system.getNumParticles())])
    return SystemInfo(name, numbers, residue_index, residue_names, bonds, charges)


def run_md(kind: str, temperatures: list[float], *, seed: int, segment_steps: int = 400,
           snapshots_per_segment: int = 2, equilibration_steps: int = 400, box_edge_nm: float | None = None,
           group_prefix: str | None = None, threads: int = 1,
           built: tuple | None = None) -> tuple[SystemInfo, list[Snapshot]]:
    """Minimise, equilibrate at ``temperatures[0]``, then run one segment per temperature (K).

    Returns the static :class:`SystemInfo` and the snapshots (``len(temperatures) ×
    snapshots_per_segment``). Deterministic for a given seed, platform and thread count.
    ``built`` is an already built ``(topology, positions, system)`` (e.g. an ionic solution from
    :mod:`.ions`); then ``kind`` only names the system.
    """
    import openmm as mm
    from openmm import unit

    top, pos, system = built if built is not None else build(kind, box_edge_nm=box_edge_nm)
    info = system_info(kind, top, system)
    integrator = mm.LangevinMiddleIntegrator(temperatures[0] * unit.kelvin, FRICTION_PER_PS / unit.picosecond,
                                             TIMESTEP_FS * unit.femtosecond)
    integrator.setRandomNumberSeed(int(seed) % 2**31 + 1)
    platform = mm.Platform.getPlatformByName("CPU")
    context = mm.Context(system, integrator, platform, {"Threads": str(threads)})
    context.setPositions(pos)
    t0 = time.perf_counter()
    mm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(temperatures[0] * unit.kelvin, int(seed) % 2**31 + 1)
    integrator.step(equilibration_steps)
    prefix = group_prefix or kind
    snaps: list[Snapshot] = []
    every = max(1, segment_steps // snapshots_per_segment)
    for seg, temp in enumerate(temperatures):
        integrator.setTemperature(temp * unit.kelvin)
        integrator.step(segment_steps - every * snapshots_per_segment)
        for k in range(snapshots_per_segment):
            integrator.step(every)
            state = context.getState(getPositions=True)
            xyz = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
            cell = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.angstrom)
            if not np.isfinite(xyz).all():
                raise RuntimeError(f"{kind} MD blew up in segment {seg}")
            snaps.append(Snapshot(kind, f"{prefix}/seg{seg:03d}/s{k}", f"{prefix}/seg{seg:03d}", float(temp),
                                  np.array(xyz, dtype=np.float64), np.array(cell, dtype=np.float64),
                                  info.numbers if kind == "water-box" else None))
    log.info("%s: %d snapshots in %.0f s", prefix, len(snaps), time.perf_counter() - t0)
    return info, snaps


def save(path: Path, info: SystemInfo, snapshots: list[Snapshot]) -> None:
    """Write a system and its snapshots to one ``.npz`` (a cache: MD is the slow part for DHFR)."""
    np.savez_compressed(
        path, name=info.name, numbers=info.numbers, residue_index=info.residue_index,
        residue_names=np.array(info.residue_names), bonds=info.bonds, charges=info.charges,
        config_id=np.array([s.config_id for s in snapshots]), group_id=np.array([s.group_id for s in snapshots]),
        temperature_K=np.array([s.temperature_K for s in snapshots]),
        positions=np.stack([s.positions for s in snapshots]).astype(np.float32),
        cell=np.stack([s.cell for s in snapshots]),
    )


def load(path: Path) -> tuple[SystemInfo, list[Snapshot]]:
    """Read what :func:`save` wrote (positions are stored as float32, Å)."""
    d = np.load(path)
    info = SystemInfo(str(d["name"]), d["numbers"], d["residue_index"], [str(n) for n in d["residue_names"]],
                      d["bonds"], d["charges"])
    per_replica = info.name == "water-box"
    snaps = [Snapshot(info.name, str(c), str(g), float(t), p.astype(np.float64), cell,
                      info.numbers if per_replica else None)
             for c, g, t, p, cell in zip(d["config_id"], d["group_id"], d["temperature_K"], d["positions"], d["cell"])]
    return info, snaps
