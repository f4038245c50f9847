"""Compact storage of an OpenMM topology + positions in one compressed ``.npz``.

Flat arrays: chain ids; residue names, ids and chain indices; atom names, element symbols and
residue indices; bonds (atom index pairs); positions as int32 in units of 1e-4 Å; an optional
box (Å, rows are vectors) and the formal charge. Reading 90,906 atoms takes ~1 s (the PDB
reader: ~12 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Position resolution of the stored files (Å).
RESOLUTION = 1e-4


def save_npz(path: str | Path, topology, positions_A: np.ndarray, box_A: np.ndarray | None, formal_charge: int | None) -> None:
    """Write ``topology`` and ``positions_A`` (Å) to ``path``."""
    chains = list(topology.chains())
    chain_index = {c.index: k for k, c in enumerate(chains)}
    residues = list(topology.residues())
    atoms = list(topology.atoms())
    bonds = np.array([[b[0].index, b[1].index] for b in topology.bonds()], dtype=np.int32).reshape(-1, 2)
    np.savez_compressed(
        path,
        chain_ids=np.array([c.id for c in chains]),
        res_names=np.array([r.name for r in residues]),
        res_ids=np.array([str(r.id) for r in residues]),
        res_chain=np.array([chain_index[r.chain.index] for r in residues], dtype=np.int32),
        atom_names=np.array([a.name for a in atoms]),
        atom_elements=np.array([a.element.symbol if a.element is not None else "" for a in atoms]),
        atom_res=np.array([a.residue.index for a in atoms], dtype=np.int32),
        bonds=bonds,
        positions=np.round(np.asarray(positions_A, dtype=np.float64) / RESOLUTION).astype(np.int32),
        box=np.zeros((0, 3)) if box_A is None else np.asarray(box_A, dtype=np.float64),
        formal_charge=np.array([] if formal_charge is None else [formal_charge], dtype=np.int64),
    )


def load_npz(source: Any) -> dict[str, Any]:
    """Read a file written by :func:`save_npz`: a dict of its arrays, positions in Å (float64)."""
    with np.load(source) as d:
        out = {k: d[k] for k in d.files}
    out["positions"] = out["positions"].astype(np.float64) * RESOLUTION
    out["box"] = out["box"] if out["box"].size else None
    out["formal_charge"] = int(out["formal_charge"][0]) if out["formal_charge"].size else None
    return out


def topology_from_arrays(d: dict[str, Any], box_A: np.ndarray | None = None):
    """An ``openmm.app.Topology`` from the arrays of :func:`load_npz` (box in Å, or none)."""
    from openmm import Vec3, app, unit

    top = app.Topology()
    chains = [top.addChain(str(cid)) for cid in d["chain_ids"]]
    residues = [top.addResidue(str(name), chains[int(c)], str(rid))
                for name, rid, c in zip(d["res_names"], d["res_ids"], d["res_chain"])]
    elements: dict[str, Any] = {}
    atoms = []
    for name, sym, r in zip(d["atom_names"], d["atom_elements"], d["atom_res"]):
        sym = str(sym)
        if sym not in elements:
            elements[sym] = app.element.Element.getBySymbol(sym) if sym else None
        atoms.append(top.addAtom(str(name), elements[sym], residues[int(r)]))
    for i, j in d["bonds"]:
        top.addBond(atoms[int(i)], atoms[int(j)])
    if box_A is not None:
        top.setPeriodicBoxVectors([Vec3(*(np.asarray(v, dtype=float) / 10.0)) for v in box_A] * unit.nanometer)
    return top
