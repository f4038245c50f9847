"""System builders: water boxes, DHFR (JAC), factor IX, STMV, and any protein from a PDB file.

Positions in Å internally; OpenMM views (nm) on the returned :class:`BuiltSystem`. Sources and
licences: ``systems/PROVENANCE.md``; compositions and build times: ``docs/systems.md``.
"""

from __future__ import annotations

import logging
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AllegroError
from ._system import BuiltSystem
from .io import load_npz, topology_from_arrays
from .solvate import choose_ion_sites, formal_charge, ion_counts, solvate_positions, tile_water

log = logging.getLogger(__name__)

#: Atom counts of the benchmark systems (checked when they are built).
N_ATOMS = {"dhfr": 23558, "factor_ix": 90906}
#: Default cube edge (Å) of the reconstruction, chosen to give the benchmark's ~1.07 M atoms (the benchmark box is 216.832 Å;
#: the reconstruction lacks most of the genome, so water fills the particle's interior at lower density).
STMV_BOX_EDGE = 222.6
#: Atom count of the AMBER/NAMD STMV benchmark, for comparison with the reconstruction.
STMV_BENCHMARK_ATOMS = 1066628
#: Volume per water molecule of the shipped template (Å³): 12.452³ / 64.
_WATER_VOLUME = 12.45203218 ** 3 / 64


def _data(name: str):
    return files(__package__).joinpath("data", name)


def _load(name: str) -> dict[str, Any]:
    with _data(name).open("rb") as fh:
        return load_npz(fh)


# ------------------------------------------------------------------------------------------
# water
# ------------------------------------------------------------------------------------------

def _water_topology(n: int, box_A: np.ndarray | None, chain_id: str = "W", top=None):
    from openmm import Vec3, app, unit

    top = app.Topology() if top is None else top
    chain = top.addChain(chain_id)
    O, H = app.element.oxygen, app.element.hydrogen
    for k in range(n):
        res = top.addResidue("HOH", chain, str(k + 1))
        o = top.addAtom("O", O, res)
        h1 = top.addAtom("H1", H, res)
        h2 = top.addAtom("H2", H, res)
        top.addBond(o, h1)
        top.addBond(o, h2)
    if box_A is not None:
        top.setPeriodicBoxVectors([Vec3(*(np.asarray(v, dtype=float) / 10.0)) for v in box_A] * unit.nanometer)
    return top


def water_box(n_waters: int | None = None, box_edge: float | None = None, seed: int = 0) -> BuiltSystem:
    """A periodic cubic box of TIP3P-geometry water at ~1 g/cm³.

    Parameters
    ----------
    n_waters
        Exact number of molecules; the edge is chosen for ~0.99 g/cm³ (surplus molecules,
        chosen with ``seed``, are removed).
    box_edge
        Cube edge in Å (any value ≥ 8 Å; the model needs ≥ 2 × r_max = 8 Å); the count follows.
        Give one of ``n_waters`` / ``box_edge``; neither: 512 molecules (24.9 Å).

    The shipped 64-molecule box (equilibrated at 300 K) is replicated, cut at the edge with the
    seams relaxed, and molecules closer than 2.5 Å (O–O) / 1.6 Å (H···X) across a seam removed;
    densities stay within ±3 % of 0.99 g/cm³ for any edge (tested from 18 to 50 Å).

    Examples
    --------
    >>> from allegro_bio.systems import water_box
    >>> water_box(n_waters=64).n_atoms
    192
    """
    t0 = time.perf_counter()
    if n_waters is not None and box_edge is not None:
        raise AllegroError("give n_waters or box_edge, not both")
    if n_waters is None and box_edge is None:
        n_waters = 512
    if box_edge is not None:
        if box_edge < 8.0:
            raise AllegroError(f"box_edge must be at least 8 Å (twice the model cutoff), got {box_edge}")
        edge = float(box_edge)
        mols = tile_water([edge] * 3)
    else:
        if int(n_waters) < 1:
            raise AllegroError(f"n_waters must be positive, got {n_waters}")
        n_waters = int(n_waters)
        edge = max((n_waters * _WATER_VOLUME) ** (1 / 3), 8.0)
        while True:
            mols = tile_water([edge] * 3)
            if len(mols) >= n_waters:
                break
            edge *= 1.005
        if len(mols) > n_waters:
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(len(mols), n_waters, replace=False))
            mols = mols[keep]
    box = np.eye(3) * edge
    top = _water_topology(len(mols), box)
    system = BuiltSystem("water", top, mols.reshape(-1, 3).astype(np.float64), box,
                         description="TIP3P-geometry water tiled from the shipped 64-molecule box equilibrated at 300 K",
                         formal_charge=0)
    system.info["build_s"] = time.perf_counter() - t0
    return system


# ------------------------------------------------------------------------------------------
# benchmark proteins
# ------------------------------------------------------------------------------------------

def _from_npz(name: str, file: str, description: str) -> BuiltSystem:
    t0 = time.perf_counter()
    d = _load(file)
    top = topology_from_arrays(d, d["box"])
    system = BuiltSystem(name, top, d["positions"], d["box"], description=description, formal_charge=d["formal_charge"])
    if name in N_ATOMS and system.n_atoms != N_ATOMS[name]:  # pragma: no cover - guards the data files
        raise RuntimeError(f"{name}: {system.n_atoms} atoms, expected {N_ATOMS[name]}")
    system.info["build_s"] = time.perf_counter() - t0
    return system


def dhfr() -> BuiltSystem:
    """DHFR in TIP3P water: the AMBER/CHARMM JAC benchmark (23,558 atoms, 62.23 Å cube).

    2,489 protein atoms (159 residues) + 7,023 waters, no ions (net charge −11 e, as the
    benchmark; PME neutralises it with a uniform background). Source: openmmtools' ``JAC.prmtop``
    / ``JAC.inpcrd`` (MIT), converted by ``systems/derive.py``. Elements H C N O S only.
    """
    return _from_npz("dhfr", "dhfr.npz", "AMBER JAC benchmark (DHFR in TIP3P water), from openmmtools' JAC.prmtop/JAC.inpcrd")


def factor_ix() -> BuiltSystem:
    """Factor IX in TIP3P water: the AMBER FactorIX benchmark (90,906 atoms, 142.1 × 83.3 × 78.7 Å).

    5,819 solute atoms (light + heavy chain with NME caps; 12 GLA, 1 BHA), 11 Ca²⁺, 2 Cl⁻ and
    28,358 waters; net charge 0. Reconstructed from a pmemd.cuda benchmark trajectory frame
    (``systems/PROVENANCE.md``). amber14 has no GLA/BHA templates: the builder needs none.
    Elements H C N O S Ca Cl.
    """
    return _from_npz("factor_ix", "factor_ix.npz",
                     "AMBER FactorIX benchmark frame (pmemd.cuda NVE trajectory, t = 2546.7 ps), names from torchmd-net")


def _place_in_box(pos: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Translate ``pos`` so its bounding-box centre is the box centre."""
    centre = 0.5 * (pos.min(0) + pos.max(0))
    return pos - centre + 0.5 * lengths


def _assemble(name: str, solute_top, solute_A: np.ndarray, lengths: np.ndarray, charge: int,
              ionic_strength: float, neutralize: bool, seed: int, description: str, t0: float,
              info: dict[str, Any] | None = None) -> BuiltSystem:
    """Solute + geometric water + Na⁺/Cl⁻ in an orthorhombic box; one :class:`BuiltSystem`."""
    from openmm import Vec3, app, unit

    t1 = time.perf_counter()
    water = solvate_positions(solute_A, lengths)
    t_solv = time.perf_counter() - t1
    n_na, n_cl = ion_counts(charge, len(water), ionic_strength, neutralize)
    sites = choose_ion_sites(water, solute_A, lengths, n_na + n_cl, seed=seed)
    ions = water[sites, 0]
    water = np.delete(water, sites, axis=0)

    top = app.Topology()
    atom_map = {}
    for chain in solute_top.chains():
        c = top.addChain(chain.id)
        for res in chain.residues():
            r = top.addResidue(res.name, c, res.id, res.insertionCode)
            for atom in res.atoms():
                atom_map[atom] = top.addAtom(atom.name, atom.element, r)
    for a, b in solute_top.bonds():
        top.addBond(atom_map[a], atom_map[b])
    _water_topology(len(water), None, "W", top)
    if n_na + n_cl:
        chain = top.addChain("I")
        for k in range(n_na + n_cl):
            sym, rname = ("Na", "NA") if k < n_na else ("Cl", "CL")
            res = top.addResidue(rname, chain, str(k + 1))
            top.addAtom(sym.upper(), app.element.Element.getBySymbol(sym), res)
    box = np.diag(lengths)
    top.setPeriodicBoxVectors([Vec3(*(v / 10.0)) for v in box] * unit.nanometer)
    positions = np.concatenate([solute_A, water.reshape(-1, 3), ions]).astype(np.float64)
    q = charge + n_na - n_cl
    system = BuiltSystem(name, top, positions, box, description=description, formal_charge=q)
    system.info.update(info or {})
    system.info.update(solute_atoms=len(solute_A), waters=len(water), na=n_na, cl=n_cl, solute_charge=charge,
                       solvate_s=t_solv, build_s=time.perf_counter() - t0)
    log.info("%s", system.summary())
    return system


def from_pdb(path: str | Path, padding: float = 1.0, ionic_strength: float = 0.15, ph: float = 7.0,
             neutralize: bool = True, keep_heterogens: bool = False, seed: int = 0) -> BuiltSystem:
    """A protein from a PDB/PDBx file, completed, protonated and solvated in a cubic water box.

    Parameters
    ----------
    path
        PDB or PDBx/mmCIF file.
    padding
        Minimum distance (nm) between the solute's bounding box and the box faces; the box is a
        cube of edge (largest solute extent + 2 × padding).
    ionic_strength
        Molar NaCl concentration to add (mol/L), on top of the counter-ions.
    ph
        pH for PDBFixer's choice of protonation states.
    neutralize
        Add Na⁺ / Cl⁻ to cancel the solute's net formal charge.
    keep_heterogens
        Keep ligands/ions of the input (default: remove all heterogens and crystal water).

    PDBFixer adds missing heavy atoms and hydrogens (missing residues, i.e. gaps in the chain,
    are not modelled); water and ions are then placed geometrically (no force-field template
    needed): tiled pre-equilibrated water, waters within 2.2 Å of the solute removed, waters
    ≥ 5 Å from the solute swapped for ions. The net charge is computed from residue names and
    protonation (see :func:`allegro_bio.systems.solvate.formal_charge`).
    """
    from openmm import unit
    from pdbfixer import PDBFixer

    t0 = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        raise AllegroError(f"no such structure file: {path}")
    fixer = PDBFixer(filename=str(path))
    fixer.findMissingResidues()
    fixer.missingResidues = {}
    fixer.findNonstandardResidues()
    fixer.replaceNonstandardResidues()
    if not keep_heterogens:
        fixer.removeHeterogens(keepWater=False)
    fixer.findMissingAtoms()
    n_missing = sum(len(v) for v in fixer.missingAtoms.values()) + sum(len(v) for v in fixer.missingTerminals.values())
    fixer.addMissingAtoms(seed=seed)
    fixer.addMissingHydrogens(ph)
    solute = np.asarray(fixer.positions.value_in_unit(unit.angstrom), dtype=np.float64)
    if len(solute) == 0:
        raise AllegroError(f"{path}: no atoms left after removing heterogens")
    extent = float((solute.max(0) - solute.min(0)).max())
    edge = max(extent + 2 * padding * 10.0, 8.0)
    lengths = np.full(3, edge)
    solute = _place_in_box(solute, lengths)
    charge, detail = formal_charge(fixer.topology)
    return _assemble(path.stem, fixer.topology, solute, lengths, charge, ionic_strength, neutralize, seed,
                     f"{path.name}, completed and protonated by PDBFixer at pH {ph}, solvated geometrically", t0,
                     info=dict(missing_heavy_atoms_added=n_missing, charge_terms=detail, ph=ph, padding_nm=padding,
                               ionic_strength_M=ionic_strength))


def stmv(ionic_strength: float = 0.1, box_edge: float | None = None, copies: int = 60, seed: int = 0) -> BuiltSystem:
    """Satellite tobacco mosaic virus, reconstructed: ~1.07 M atoms in a 222.6 Å cube.

    Parameters
    ----------
    ionic_strength
        Molar NaCl on top of the counter-ions (default 0.1 M).
    box_edge
        Cube edge (Å); the default (222.6 Å) gives ~1.07 M atoms like the AMBER/NAMD STMV benchmark
        (1,066,628 atoms in a 216.8 Å cube).
    copies
        Number of icosahedral copies to build (60 = the whole capsid; fewer: the first
        ``copies`` operators, for tests and small demonstrations, centred in a cube of their
        extent + 2 nm unless ``box_edge`` is given). Same code path as the full build.

    Built from PDB 1A34 (wwPDB, CC0): the protonated coat protein (chain A, 2,266 atoms) and the
    protonated A₁₀·U₁₀ RNA duplex copied by the 60 icosahedral operators of the entry. The duplex
    sits on a crystallographic 2-fold axis at half occupancy (two orientations), so its 60
    copies coincide in pairs; one of each pair is kept (30 duplexes). The rest of the 1,058-nt
    genome is not resolved in the crystal and is absent. The particle is then solvated (inside
    and out) and neutralised geometrically. This is a reconstruction of the benchmark's size
    and kind, not the benchmark's structure (see docs/systems.md).
    """
    from openmm import app

    t0 = time.perf_counter()
    if not 1 <= copies <= 60:
        raise AllegroError(f"copies must be between 1 and 60, got {copies}")
    ops = _load_operators()
    prot = _load("stmv_protein.npz")
    rna = _load("stmv_rna.npz")
    ptop = topology_from_arrays(prot)
    rtop = topology_from_arrays(rna)

    # RNA: keep one of each pair of coinciding duplex copies (2-fold disorder, half occupancy)
    rna_centroids = np.array([(R @ rna["positions"].T).T.mean(0) for R in ops[:copies]])
    rna_keep: list[int] = []
    for k, c in enumerate(rna_centroids):
        if all(np.linalg.norm(c - rna_centroids[j]) > 3.0 for j in rna_keep):
            rna_keep.append(k)

    top = app.Topology()
    pieces = []
    chain_ids = _chain_ids()
    for k in range(copies):
        _copy_into(top, ptop, chain_ids[k])
        pieces.append(prot["positions"] @ ops[k].T)
    for n, k in enumerate(rna_keep):
        _copy_into(top, rtop, chain_ids[(copies + n) % len(chain_ids)])
        pieces.append(rna["positions"] @ ops[k].T)
    solute = np.concatenate(pieces)
    if copies == 60:
        lengths = np.full(3, float(box_edge or STMV_BOX_EDGE))
        solute = solute + 0.5 * lengths  # particle centre (the origin of 1A34's frame) at the box centre
    else:
        extent = float((solute.max(0) - solute.min(0)).max())
        lengths = np.full(3, float(box_edge or extent + 20.0))
        solute = _place_in_box(solute, lengths)
    charge, detail = formal_charge(top)
    info = dict(protein_copies=copies, rna_duplexes=len(rna_keep), protein_atoms=copies * len(prot["positions"]),
                rna_atoms=len(rna_keep) * len(rna["positions"]), charge_terms=detail,
                benchmark_atoms=STMV_BENCHMARK_ATOMS)
    return _assemble("stmv", top, solute, lengths, charge, ionic_strength, True, seed,
                     "STMV reconstructed from PDB 1A34 (60 protonated coat proteins + resolved RNA duplexes), "
                     "solvated geometrically", t0, info=info)


def _load_operators() -> np.ndarray:
    with _data("stmv_operators.npy").open("rb") as fh:
        return np.load(fh)


def _chain_ids() -> list[str]:
    import string

    singles = list(string.ascii_uppercase + string.ascii_lowercase + string.digits)
    return singles + [a + b for a in string.ascii_uppercase for b in string.ascii_uppercase]


def _copy_into(top, source, chain_id: str) -> None:
    atom_map = {}
    for chain in source.chains():
        c = top.addChain(chain_id)
        for res in chain.residues():
            r = top.addResidue(res.name, c, res.id)
            for atom in res.atoms():
                atom_map[atom] = top.addAtom(atom.name, atom.element, r)
    for a, b in source.bonds():
        top.addBond(atom_map[a], atom_map[b])
