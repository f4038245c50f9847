"""Carve capped, charge-consistent clusters out of solvated MD snapshots.

A system is first split into *units*, the pieces a cluster takes whole: every water molecule,
and the components of the covalent graph after removing the only bonds we allow to be cut —
C–C single bonds outside rings between two sp3 carbons, or between an sp3 carbon and an amide
carbonyl carbon (backbone Cα–C, acetyl CH3–C, Asn/Gln side-chain amides). Peptide groups,
charged groups (carboxylates with their Cβ/Cγ, Lys CE–NZH3, Arg guanidinium with CD), rings,
C–S and S–S bonds are never cut. A cluster is the units nearest a centre atom (minimum image),
added until it reaches a target size; every cut bond is capped with H at :data:`CAP_DISTANCE`
(Å) from the kept carbon along the bond. Each
residue's rounded force-field charge is placed on the unit holding its charged group, so the
cluster charge is the sum over its units (e); charged groups are never cut.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..errors import AllegroError
from .sampling import SystemInfo

#: C–H distance of a link (cap) hydrogen (Å).
CAP_DISTANCE = 1.09
#: A cap closer than this (Å) to any other atom of the cluster pulls the unit it replaces in.
CAP_CLASH = 1.3
#: A residue's partial charges must sum to within this of an integer (e).
CHARGE_TOLERANCE = 0.01
#: A unit carrying a residue's unit charge must hold at least this much of it in partial charges (e).
CHARGE_SITE_MIN = 0.5
#: Largest ring (atoms) the ring test looks for.
MAX_RING = 8


class FragmentError(AllegroError):
    """A system cannot be cut consistently (a unit with non-integer charge, odd electron count)."""


@dataclass(frozen=True)
class Units:
    """The uncuttable pieces of a system: ``unit`` index per atom, integer ``charge`` per unit (e),
    ``cut_bonds`` [K, 2] atom pairs joining two units."""

    unit: np.ndarray
    charge: np.ndarray
    cut_bonds: np.ndarray
    is_water: np.ndarray  # per unit

    @property
    def n_units(self) -> int:
        return len(self.charge)


@dataclass(frozen=True)
class Cluster:
    """A carved cluster: ``numbers``, ``positions`` (Å, centred on the centre atom), total ``charge``
    (e), ``n_caps`` link hydrogens (the last ``n_caps`` atoms) and the ``atoms`` it took (indices)."""

    numbers: np.ndarray
    positions: np.ndarray
    charge: int
    n_caps: int
    atoms: np.ndarray


def _neighbours(n: int, bonds: np.ndarray) -> list[list[int]]:
    nbr: list[list[int]] = [[] for _ in range(n)]
    for i, j in bonds:
        nbr[i].append(int(j))
        nbr[j].append(int(i))
    return nbr


def _in_ring(i: int, j: int, nbr: list[list[int]]) -> bool:
    """True if atoms ``i`` and ``j`` are joined by a path of < MAX_RING bonds avoiding bond i–j."""
    seen = {i: 0}
    queue = deque([i])
    while queue:
        a = queue.popleft()
        if seen[a] >= MAX_RING:
            continue
        for b in nbr[a]:
            if a == i and b == j:
                continue
            if b == j:
                return True
            if b not in seen:
                seen[b] = seen[a] + 1
                queue.append(b)
    return False


def _amide_carbon(k: int, numbers: np.ndarray, nbr: list[list[int]]) -> bool:
    """sp2 carbon bonded to a terminal O and to an N (C=O of an amide)."""
    if numbers[k] != 6 or len(nbr[k]) != 3:
        return False
    has_o = any(numbers[m] == 8 and len(nbr[m]) == 1 for m in nbr[k])
    has_n = any(numbers[m] == 7 for m in nbr[k])
    return has_o and has_n


def cuttable(i: int, j: int, numbers: np.ndarray, nbr: list[list[int]]) -> bool:
    """Whether bond i–j may be cut (see the module docstring)."""
    if numbers[i] != 6 or numbers[j] != 6:
        return False
    sp3_i, sp3_j = len(nbr[i]) == 4, len(nbr[j]) == 4
    if not ((sp3_i and sp3_j) or (sp3_i and _amide_carbon(j, numbers, nbr))
            or (sp3_j and _amide_carbon(i, numbers, nbr))):
        return False
    return not _in_ring(i, j, nbr)


def units(info: SystemInfo) -> Units:
    """Split ``info`` into uncuttable units and give each its integer charge (e).

    Raises :class:`FragmentError` if a unit's force-field charges are not near an integer.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(info.numbers)
    nbr = _neighbours(n, info.bonds)
    water = info.is_water
    keep, cut = [], []
    for i, j in info.bonds:
        if not (water[i] or water[j]) and cuttable(int(i), int(j), info.numbers, nbr):
            cut.append((i, j))
        else:
            keep.append((i, j))
    keep_arr = np.array(keep, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(keep_arr)), (keep_arr[:, 0], keep_arr[:, 1])), shape=(n, n))
    n_units, unit = connected_components(graph, directed=False)
    charge = _site_charges(info, unit, n_units)
    total = int(np.rint(info.charges.sum()))
    if int(charge.sum()) != total:
        raise FragmentError(f"{info.name}: unit charges sum to {charge.sum()}, the system to {total}")
    is_water_unit = np.zeros(n_units, dtype=bool)
    is_water_unit[unit[water]] = True
    return Units(unit, charge, np.array(cut, dtype=np.int64).reshape(-1, 2), is_water_unit)


def _site_charges(info: SystemInfo, unit: np.ndarray, n_units: int) -> np.ndarray:
    """Integer charge per unit from each residue's force-field charges (e).

    Within a residue, a unit whose share of the residue's partial charges exceeds
    :data:`CHARGE_SITE_MIN` in magnitude is a charged group (carboxylate, ammonium, guanidinium,
    terminus) and carries the rounded share; the units of a residue must add up to the residue's
    rounded charge (this also handles zwitterionic termini), else :class:`FragmentError`.
    """
    charge = np.zeros(n_units, dtype=np.int64)
    res_q = np.bincount(info.residue_index, weights=info.charges, minlength=len(info.residue_names))
    order = np.argsort(info.residue_index, kind="stable")
    bounds = np.searchsorted(info.residue_index[order], np.arange(len(res_q) + 1))
    for r in range(len(res_q)):
        q = int(np.rint(res_q[r]))
        if abs(res_q[r] - q) > CHARGE_TOLERANCE:
            raise FragmentError(f"{info.name}: residue {r} {info.residue_names[r]} has charge {res_q[r]:+.3f} e")
        atoms = order[bounds[r]:bounds[r + 1]]
        us, inv = np.unique(unit[atoms], return_inverse=True)
        if len(us) == 1:
            charge[us[0]] += q
            continue
        sums = np.bincount(inv, weights=info.charges[atoms])
        z = np.where(np.abs(sums) > CHARGE_SITE_MIN, np.rint(sums), 0).astype(np.int64)
        if int(z.sum()) != q:
            raise FragmentError(f"{info.name}: residue {r} {info.residue_names[r]} (charge {q:+d}): its charged "
                                f"groups carry {z.sum():+d}; cannot place the charge")
        charge[us] += z
    return charge


def _mic(disp: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """Minimum-image displacements (Å) for a periodic ``cell`` (rows are vectors; None = open)."""
    if cell is None:
        return disp
    frac = disp @ np.linalg.inv(cell)
    return (frac - np.rint(frac)) @ cell


def carve(info: SystemInfo, parts: Units, positions: np.ndarray, cell: np.ndarray | None, centre: int,
          n_target: int, *, max_units: int = 400) -> Cluster:
    """The cluster of whole units nearest atom ``centre`` with at least ``n_target`` atoms (caps included).

    ``positions`` (Å) must keep molecules whole; ``cell`` (3×3 Å, rows) applies the minimum
    image to each unit as a rigid piece. Units are added by the distance (Å) of their nearest
    heavy atom to the centre; a cap clashing with the cluster pulls in the unit it replaces.
    """
    numbers = info.numbers
    centre_pos = positions[centre]
    # One lattice shift per unit, from its first atom, so units stay whole.
    first = np.full(parts.n_units, -1)
    first[parts.unit[::-1]] = np.arange(len(numbers))[::-1]
    d_first = positions[first] - centre_pos
    shift = _mic(d_first, cell) - d_first
    rel = positions - centre_pos + shift[parts.unit]
    dist = np.linalg.norm(rel, axis=1)
    heavy = numbers > 1
    unit_dist = np.full(parts.n_units, np.inf)
    np.minimum.at(unit_dist, parts.unit[heavy], dist[heavy])
    order = np.argsort(unit_dist, kind="stable")[:max_units]
    members = {u: np.flatnonzero(parts.unit == u) for u in order}

    cut_of: dict[int, list[tuple[int, int]]] = {}
    for i, j in parts.cut_bonds:
        cut_of.setdefault(int(parts.unit[i]), []).append((int(i), int(j)))
        cut_of.setdefault(int(parts.unit[j]), []).append((int(j), int(i)))

    def caps(chosen: set[int]) -> list[tuple[int, int]]:
        return [(a, b) for u in chosen for a, b in cut_of.get(u, []) if int(parts.unit[b]) not in chosen]

    chosen: set[int] = set()
    n_atoms = 0
    for u in order:
        chosen.add(int(u))
        n_atoms += len(members[u]) if u in members else int(np.sum(parts.unit == u))
        if n_atoms + len(caps(chosen)) >= n_target:
            break
    for _ in range(50):  # resolve cap clashes by growing the cluster
        atoms = np.concatenate([members[u] if u in members else np.flatnonzero(parts.unit == u)
                                for u in sorted(chosen)])
        links = caps(chosen)
        cap_pos = np.array([rel[a] + CAP_DISTANCE * (rel[b] - rel[a]) / np.linalg.norm(rel[b] - rel[a])
                            for a, b in links]).reshape(-1, 3)
        all_pos = np.concatenate([rel[atoms], cap_pos])
        clash_unit = None
        for k, (a, b) in enumerate(links):
            d = np.linalg.norm(all_pos - cap_pos[k], axis=1)
            d[len(atoms) + k] = np.inf
            d[np.flatnonzero(atoms == a)] = np.inf
            if d.min() < CAP_CLASH:
                clash_unit = int(parts.unit[b])
                break
        if clash_unit is None:
            break
        chosen.add(clash_unit)
    else:
        raise FragmentError(f"could not resolve cap clashes around atom {centre}")
    z = np.concatenate([numbers[atoms], np.ones(len(links), dtype=np.int64)])
    charge = int(parts.charge[sorted(chosen)].sum())
    if (int(z.sum()) - charge) % 2:
        raise FragmentError(f"cluster around atom {centre}: {z.sum()} protons, charge {charge}: odd electron count")
    return Cluster(z, all_pos, charge, len(links), atoms)
