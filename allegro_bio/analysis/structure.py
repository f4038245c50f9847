"""Structural stability measures from trajectories (mdtraj). Lengths in Å."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AllegroError

#: mdtraj selection of the protein backbone used for RMSD (N, CA, C, O of amino acids).
BACKBONE = "backbone"


def load_trajectory(traj: Any, topology: Any = None):
    """An ``mdtraj.Trajectory`` from a trajectory object, or a path (DCD/XTC/...) + ``topology``
    (a PDB path, an ``mdtraj.Topology``, an ``openmm.app.Topology`` or a BuiltSystem)."""
    import mdtraj

    if isinstance(traj, mdtraj.Trajectory):
        return traj
    if isinstance(traj, (str, Path)):
        if topology is None:
            if Path(traj).suffix in (".pdb", ".h5"):
                return mdtraj.load(str(traj))
            raise AllegroError(f"a topology is needed to read {traj}: pass topology=<PDB file or topology>")
        top = _mdtraj_topology(topology)
        return mdtraj.load(str(traj), top=top)
    raise AllegroError(f"expected an mdtraj.Trajectory or a trajectory path, got {type(traj).__name__}")


def _mdtraj_topology(topology: Any):
    import mdtraj

    if isinstance(topology, (str, Path)):
        return mdtraj.load_topology(str(topology))
    if isinstance(topology, mdtraj.Topology):
        return topology
    if hasattr(topology, "topology") and hasattr(topology, "positions_A"):  # BuiltSystem
        topology = topology.topology
    return mdtraj.Topology.from_openmm(topology)


def has_backbone(topology: Any) -> bool:
    """Whether the topology (OpenMM or mdtraj) has protein backbone atoms."""
    top = _mdtraj_topology(topology) if not hasattr(topology, "select") else topology
    return len(top.select(BACKBONE)) > 0


def _select(traj, selection: str) -> np.ndarray:
    idx = traj.topology.select(selection)
    if len(idx) == 0:
        raise AllegroError(f"selection {selection!r} matches no atoms of this topology")
    return idx


def backbone_rmsd(traj: Any, topology: Any = None, selection: str = BACKBONE, reference_frame: int = 0) -> np.ndarray:
    """RMSD (Å) of every frame against ``reference_frame`` after optimal superposition (mdtraj
    reads the trajectory; the superposition is a float64 Kabsch fit on the selected atoms).

    Parameters
    ----------
    traj
        ``mdtraj.Trajectory`` or a trajectory path (with ``topology``).
    selection
        mdtraj selection superposed and measured (default: protein backbone N, CA, C, O).

    Returns an array of length n_frames; frame 0 is 0 Å (up to rounding). Molecules must be
    whole in the trajectory (``md.run`` writes unwrapped coordinates).
    """
    t = load_trajectory(traj, topology)
    idx = _select(t, selection)
    # float64 Kabsch superposition: mdtraj.rmsd's float32 QCP loses RMSDs below ~0.01 Å to cancellation
    x = _superposed(t, idx, reference_frame)
    return np.sqrt(((x - x[reference_frame]) ** 2).sum(-1).mean(-1))


def _superposed(t, idx: np.ndarray, reference_frame: int = 0) -> np.ndarray:
    """Coordinates (Å) of atoms ``idx`` of every frame superposed on ``reference_frame``."""
    x = t.xyz[:, idx].astype(np.float64) * 10.0
    ref = x[reference_frame] - x[reference_frame].mean(0)
    out = np.empty_like(x)
    for k in range(len(x)):
        y = x[k] - x[k].mean(0)
        u, _, vt = np.linalg.svd(y.T @ ref)
        d = np.sign(np.linalg.det(u @ vt))
        rot = u @ np.diag([1.0, 1.0, d]) @ vt
        out[k] = y @ rot
    return out


def rmsf(traj: Any, topology: Any = None, selection: str = "name CA") -> np.ndarray:
    """Root-mean-square fluctuation (Å) of each selected atom about its mean position, after
    superposing every frame on frame 0 (on the same atoms). Default: Cα atoms (one per residue)."""
    t = load_trajectory(traj, topology)
    idx = _select(t, selection)
    x = _superposed(t, idx)
    return np.sqrt(((x - x.mean(0)) ** 2).sum(-1).mean(0))


def radius_of_gyration(traj: Any, topology: Any = None, selection: str = "protein", mass_weighted: bool = True) -> np.ndarray:
    """Radius of gyration (Å) of the selected atoms in every frame: sqrt(Σ m |r − r_c|² / Σ m),
    mass-weighted by default (unweighted: all m = 1)."""
    t = load_trajectory(traj, topology)
    idx = _select(t, selection)
    x = t.xyz[:, idx].astype(np.float64) * 10.0
    m = np.array([t.topology.atom(int(i)).element.mass for i in idx]) if mass_weighted else np.ones(len(idx))
    c = (x * m[None, :, None]).sum(1) / m.sum()
    return np.sqrt((m[None] * ((x - c[:, None]) ** 2).sum(-1)).sum(1) / m.sum())
