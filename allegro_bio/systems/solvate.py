"""Geometric solvation: tile pre-equilibrated water, remove overlaps, swap waters for ions.

No force-field template is needed. Units: Å, molar (mol/L).

The water is the shipped 64-molecule TIP3P box (``allegro_bio.data.water64``, 12.452 Å,
equilibrated at 300 K, 0.99 g/cm³), replicated to cover the box. Molecules are kept whole and
assigned by their oxygen; where the box edge is not a multiple of the template edge, the cut
template is stretched/compressed by at most a few per cent (molecule centres only, rigid
geometry kept) so the seams have neither gaps nor overlaps, then molecules closer than
``WATER_MIN_OO`` (O–O) or ``WATER_MIN_HX`` (any other intermolecular pair) are removed.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

log = logging.getLogger(__name__)

#: Closest O–O distance (Å) allowed between two water molecules after tiling (template minimum: 2.68 Å).
WATER_MIN_OO = 2.5
#: Closest distance (Å) allowed between a hydrogen and any atom of another water (template minimum H···O: 1.73 Å).
WATER_MIN_HX = 1.6
#: Extra edge (Å) cut from the tiled template at a seam, then compressed back into the box: fills
#: the gap a plain cut leaves (tuned so boxes of any edge come out at the template density).
SEAM_GAP = 0.8
#: Water is removed when any of its atoms lies closer than this to any solute atom (Å).
SOLUTE_CLEARANCE = 2.2
#: Ions are placed at the oxygens of waters at least this far from the solute and from each other (Å).
ION_CLEARANCE = 5.0
#: Molarity of pure water (mol/L), used as OpenMM's Modeller does: ion pairs = I × n_water / 55.4.
WATER_MOLARITY = 55.4


def _template() -> tuple[np.ndarray, float]:
    """(molecules [64, 3, 3] Å with O first, template edge Å)."""
    from ..data import water64

    w = water64()
    return w.positions.reshape(-1, 3, 3).copy(), float(w.cell.lengths()[0])


def tile_water(lengths) -> np.ndarray:
    """Water molecules ``[n, 3, 3]`` (O, H, H; Å) filling an orthorhombic box ``lengths`` (Å),
    oxygens inside ``[0, L)``, seams relaxed and overlaps (including across the periodic
    boundary) removed."""
    lengths = np.asarray(lengths, dtype=float)
    mols, t = _template()
    # cut a slightly larger block (edge L + SEAM_GAP per axis, unless L is a whole number of
    # template copies) and bring the molecule centres back into L: fills the seam gap
    whole = np.isclose(lengths / t, np.round(lengths / t), atol=1e-3, rtol=0)
    cut = np.where(whole, lengths, lengths + SEAM_GAP)
    n = np.ceil(cut / t - 1e-9).astype(int)
    shifts = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3) * t
    m = (mols[None] + shifts[:, None, None, :]).reshape(-1, 3, 3)
    m = m + (np.mod(m[:, 0], n * t) - m[:, 0])[:, None, :]  # whole molecules, oxygens in the block
    m = m[(m[:, 0] < cut).all(axis=1)]
    centres = m[:, 0]
    m = m + (centres * (lengths / cut) - centres)[:, None, :]
    keep = _remove_water_clashes(m, lengths)
    return m[keep]


def _remove_water_clashes(m: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Boolean mask of molecules to keep so no intermolecular pair is too close (periodic)."""
    from scipy.spatial import cKDTree

    n = len(m)
    pos = np.mod(m.reshape(-1, 3), lengths)
    tree = cKDTree(pos, boxsize=lengths)
    pairs = tree.query_pairs(WATER_MIN_OO, output_type="ndarray")
    if len(pairs) == 0:
        return np.ones(n, dtype=bool)
    mi, mj = pairs[:, 0] // 3, pairs[:, 1] // 3
    inter = mi != mj
    pairs, mi, mj = pairs[inter], mi[inter], mj[inter]
    d = _periodic_distance(pos[pairs[:, 0]], pos[pairs[:, 1]], lengths)
    both_o = (pairs[:, 0] % 3 == 0) & (pairs[:, 1] % 3 == 0)
    clash = np.where(both_o, d < WATER_MIN_OO, d < WATER_MIN_HX)
    keep = np.ones(n, dtype=bool)
    for a, b in zip(mi[clash], mj[clash]):
        if keep[a] and keep[b]:
            keep[max(a, b)] = False
    return keep


def _periodic_distance(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    d = a - b
    d -= np.round(d / lengths) * lengths
    return np.linalg.norm(d, axis=-1)


def solvate_positions(solute_A: np.ndarray, lengths) -> np.ndarray:
    """Water molecules ``[n, 3, 3]`` (Å) filling box ``lengths`` except where the solute is.

    ``solute_A`` must already be placed in the box frame (origin at a corner)."""
    from scipy.spatial import cKDTree

    lengths = np.asarray(lengths, dtype=float)
    water = tile_water(lengths)
    if len(solute_A) == 0:
        return water
    tree = cKDTree(np.mod(solute_A, lengths), boxsize=lengths)
    wpos = np.mod(water.reshape(-1, 3), lengths)
    d, _ = tree.query(wpos, k=1, distance_upper_bound=SOLUTE_CLEARANCE)
    clash = (d < SOLUTE_CLEARANCE).reshape(-1, 3).any(axis=1)
    return water[~clash]


def ion_counts(solute_charge: int, n_waters: int, ionic_strength_M: float, neutralize: bool = True) -> tuple[int, int]:
    """(n_Na, n_Cl) to neutralise ``solute_charge`` (e) and reach ``ionic_strength_M``.

    Ion pairs for the ionic strength: round(I × n_waters / 55.4) (counting waters before the swap,
    as OpenMM's ``Modeller.addSolvent``); then Na⁺ or Cl⁻ are added to cancel the charge.
    """
    pairs = int(round(ionic_strength_M * n_waters / WATER_MOLARITY))
    n_na = n_cl = pairs
    if neutralize:
        if solute_charge < 0:
            n_na += -solute_charge
        else:
            n_cl += solute_charge
    return n_na, n_cl


def choose_ion_sites(water: np.ndarray, solute_A: np.ndarray, lengths, n_ions: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n_ions`` water molecules to replace: oxygens ≥ ION_CLEARANCE Å from the solute
    and from each other (relaxed step by step when the box is too crowded), drawn with ``seed``."""
    from scipy.spatial import cKDTree

    if n_ions == 0:
        return np.zeros(0, dtype=int)
    lengths = np.asarray(lengths, dtype=float)
    o = np.mod(water[:, 0], lengths)
    rng = np.random.default_rng(seed)
    clearance = ION_CLEARANCE
    while True:
        if len(solute_A):
            d, _ = cKDTree(np.mod(solute_A, lengths), boxsize=lengths).query(o, k=1)
            candidates = np.flatnonzero(d >= clearance)
        else:
            candidates = np.arange(len(o))
        order = rng.permutation(candidates)
        chosen: list[int] = []
        for k in order:
            if chosen and _periodic_distance(o[chosen], o[k][None], lengths).min() < clearance:
                continue
            chosen.append(int(k))
            if len(chosen) == n_ions:
                return np.array(chosen)
        if clearance < 3.0:
            raise ValueError(f"cannot place {n_ions} ions in this box: too few waters ({len(water)}); use a larger padding")
        clearance -= 0.5
        log.info("ion placement: relaxing the ion clearance to %.1f Å", clearance)


# ------------------------------------------------------------------------------------------
# Formal charges without a force field
# ------------------------------------------------------------------------------------------

_RESIDUE_CHARGE = {"ARG": 1, "LYS": 1, "HIP": 1, "ASP": -1, "GLU": -1, "CYM": -1, "LYN": 0, "ASH": 0, "GLH": 0,
                   "GLA": -2, "NA": 1, "K": 1, "CL": -1, "CA": 2, "MG": 2, "ZN": 2}


def formal_charge(topology) -> tuple[int, dict[str, int]]:
    """Net formal charge (e) of a topology from residue names and protonation (hydrogens present).

    Rules: ARG +1; LYS +1 unless it lacks HZ3; HIS +1 when it has both HD1 and HE2; ASP/GLU −1
    unless protonated (HD2/HE2); CYS −1 only without HG and without a disulfide partner
    (i.e. never, once hydrogens are added, unless named CYM); GLA −2; a free N-terminus with
    three hydrogens +1; a C-terminal OXT −1; every phosphorus of a nucleic acid −1 and a
    5'-terminal phosphate (OP3 without HOP3) one more; Na/K +1, Ca/Mg/Zn +2, Cl −1. Returns (charge, counts
    of each contributing kind).
    """
    counts: Counter = Counter()
    total = 0
    for res in topology.residues():
        names = {a.name for a in res.atoms()}
        q = 0
        rn = res.name.upper()
        if rn == "LYS":
            q = 1 if ("HZ3" in names or "HZ1" in names and "HZ2" in names and "HZ3" in names) else (1 if "HZ3" in names else 0)
        elif rn in ("HIS", "HID", "HIE", "HIP"):
            q = 1 if ("HD1" in names and "HE2" in names) else 0
        elif rn == "ASP":
            q = 0 if "HD2" in names else -1
        elif rn == "GLU":
            q = 0 if "HE2" in names else -1
        elif rn in _RESIDUE_CHARGE:
            q = _RESIDUE_CHARGE[rn]
        if q:
            counts[rn] += q
        if "N" in names and {"H2", "H3"} <= names and ("H1" in names or "H" in names):
            q += 1
            counts["N-terminus"] += 1
        if "OXT" in names:
            q -= 1
            counts["C-terminus"] -= 1
        n_p = sum(1 for a in res.atoms() if a.element is not None and a.element.symbol == "P")
        if n_p:
            q -= n_p
            counts["phosphate"] -= n_p
            if "OP3" in names and "HOP3" not in names:
                q -= 1
                counts["phosphate"] -= 1
        total += q
    return total, dict(counts)
