"""Structure validation and O(N) neighbour lists (vesin), periodic, open and mixed.

Everything here works in Å. Errors name the offending atoms, elements or cell axes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import vesin
from ase.data import atomic_numbers, chemical_symbols

from .errors import InvalidStructureError, UnknownElementError

#: Two atoms closer than this (Å) are rejected as overlapping.
MIN_DISTANCE = 0.1
#: A periodic cell thinner than this (Å) along a periodic axis is rejected.
MIN_CELL_HEIGHT = 0.5


@dataclass
class Graph:
    """Ordered pairs i→j within ``cutoff``: ``edge_index`` [2, E] and Cartesian ``shift`` [E, 3] (Å),
    with r_ij = x_j − x_i + shift."""

    edge_index: np.ndarray
    shift: np.ndarray
    pbc: np.ndarray
    cell: np.ndarray


def type_indices(numbers: np.ndarray, type_names: list[str]) -> np.ndarray:
    """Model type index of each atom; :class:`UnknownElementError` lists elements the model lacks."""
    lookup = np.full(max(int(np.max(numbers, initial=0)), max(atomic_numbers[s] for s in type_names)) + 1, -1)
    for k, s in enumerate(type_names):
        lookup[atomic_numbers[s]] = k
    types = lookup[numbers]
    if (types < 0).any():
        bad = sorted({int(z) for z in numbers[types < 0]})
        first = np.flatnonzero(types < 0)[:5].tolist()
        raise UnknownElementError(
            f"element(s) {[chemical_symbols[z] for z in bad]} not known to the model (knows {type_names}); "
            f"first such atoms: {first}"
        )
    return types


def is_dummy_cell(cell: np.ndarray) -> bool:
    """The PDB placeholder ``CRYST1 1.0 1.0 1.0 90 90 90`` (a 1 Å unit cube) marks 'no cell'."""
    return bool(np.allclose(cell, np.eye(3), atol=1e-6))


def effective_pbc(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Periodicity to use: a molecule carrying the PDB dummy cell is treated as non-periodic."""
    pbc = np.asarray(pbc, dtype=bool).reshape(-1)
    pbc = np.repeat(pbc, 3) if pbc.size == 1 else pbc
    if pbc.any() and is_dummy_cell(cell):
        warnings.warn(
            "the structure carries the 1 Å dummy unit cell of PDB files (CRYST1 1.0 1.0 1.0): treating it as a "
            "non-periodic molecule; set a real cell for a periodic system",
            stacklevel=3,
        )
        return np.zeros(3, dtype=bool)
    return pbc


def check_positions(positions: np.ndarray) -> None:
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        raise InvalidStructureError(
            f"positions of {int(bad.sum())} atom(s) are NaN or infinite; first: {np.flatnonzero(bad)[:5].tolist()}"
        )


def check_cell(cell: np.ndarray, pbc: np.ndarray) -> None:
    """Reject a periodic cell that is singular or thinner than :data:`MIN_CELL_HEIGHT` along a periodic axis."""
    if not pbc.any():
        return
    if not np.isfinite(cell).all():
        raise InvalidStructureError(f"periodic cell has NaN/inf entries: {cell.tolist()}")
    axes = "abc"
    for k in np.flatnonzero(pbc):
        a = cell[k]
        if np.linalg.norm(a) < 1e-8:
            raise InvalidStructureError(f"periodic cell is singular: lattice vector {axes[k]} is zero but pbc[{k}] is True")
        others = [cell[m] for m in range(3) if m != k]
        normal = np.cross(others[0], others[1])
        n = np.linalg.norm(normal)
        height = abs(a @ normal) / n if n > 1e-8 else np.linalg.norm(a)
        if height < 1e-8:
            raise InvalidStructureError(f"periodic cell is singular: vector {axes[k]} lies in the plane of the others")
        if height < MIN_CELL_HEIGHT:
            raise InvalidStructureError(
                f"periodic cell too small: height {height:.3g} Å along {axes[k]} (minimum {MIN_CELL_HEIGHT} Å); "
                "if this is not a periodic system, set pbc=False"
            )


def neighbor_list(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> Graph:
    """All ordered pairs within ``cutoff`` (Å), O(N) cell lists (vesin), any cell size.

    Cells smaller than twice the cutoff are fine: every periodic image within the cutoff is a
    separate pair (including an atom's own images).
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    box = cell if pbc.any() else np.zeros((3, 3))
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s = nl.compute(positions, box, [bool(p) for p in pbc], quantities="ijS")
    edge_index = np.stack([i.astype(np.int64), j.astype(np.int64)])
    return Graph(edge_index, integer_shifts_to_cartesian(s, box), pbc, cell)


def integer_shifts_to_cartesian(s: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Cartesian shifts (Å) ``s @ box`` of integer cell shifts ``s`` [E, 3], written as three
    element-wise products: a BLAS ``@`` of this shape wakes numpy's OpenBLAS threads, which then
    spin on the cores torch needs for the evaluation that follows (~40-70 ms of an MD step at
    6,144 atoms on 2 cores; docs/benchmarks.md)."""
    s = s.astype(np.float64)
    return s[:, 0:1] * box[0] + s[:, 1:2] * box[1] + s[:, 2:3] * box[2]


def check_close_contacts(positions: np.ndarray, graph: Graph, cutoff: float = np.inf) -> int:
    """Reject pairs closer than :data:`MIN_DISTANCE` (overlapping atoms or images); return the
    number of pairs of ``graph`` within ``cutoff`` (Å) at ``positions``."""
    i, j = graph.edge_index
    if not len(i):
        return 0
    d = np.linalg.norm(positions[j] - positions[i] + graph.shift, axis=1)
    close = d < MIN_DISTANCE
    if close.any():
        k = int(np.flatnonzero(close)[0])
        what = "its own periodic image" if i[k] == j[k] else f"atom {int(j[k])}"
        raise InvalidStructureError(
            f"{int(close.sum()) // 2 or 1} pair(s) of atoms closer than {MIN_DISTANCE} Å: atom {int(i[k])} and "
            f"{what} are {d[k]:.3g} Å apart"
        )
    return int(np.count_nonzero(d < cutoff))


def build_graph(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> Graph:
    """Validate a structure and return its neighbour list (all checks of this module)."""
    positions = np.asarray(positions, dtype=np.float64)
    check_positions(positions)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = effective_pbc(cell, pbc)
    check_cell(cell, pbc)
    graph = neighbor_list(positions, cell, pbc, cutoff)
    check_close_contacts(positions, graph)
    return graph


#: Verlet skin (Å) of the neighbour lists reused across MD steps (ASE's ``AllegroCalculator``, both
#: OpenMM backends): candidate pairs within r_max + skin, searched again after an atom moved skin/2,
#: so the cell-list search runs every ~10-30 steps, not every step.
DEFAULT_SKIN = 1.0


class VerletList:
    """A neighbour list reused across MD steps: the pairs within ``cutoff + skin`` (Å) of the last
    search, searched again only when an atom has moved skin/2 or more since then, or the cell,
    periodicity or number of atoms changed. No pair can then have come from beyond ``cutoff +
    skin`` to within ``cutoff``, and the model drops the pairs beyond their per-species-pair cutoff,
    so results equal a fresh search each call (tested). ``skin = 0`` searches every call.

    Each call validates the structure (NaN positions, overlapping atoms, bad cell) as
    :func:`build_graph` does. ``searches`` counts the cell-list searches; ``pairs_within_cutoff``
    is the number of ordered pairs within ``cutoff`` at the last call's positions.
    """

    def __init__(self, cutoff: float, skin: float = DEFAULT_SKIN) -> None:
        if not skin >= 0.0:
            raise ValueError(f"neighbour-list skin must be >= 0 Å, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.searches = 0
        self.pairs_within_cutoff = 0
        self._graph: Graph | None = None
        self._ref_positions = np.zeros((0, 3))

    def __call__(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> Graph:
        """The pairs for ``positions`` (Å) in ``cell`` (Å) with periodicity ``pbc``."""
        positions = np.asarray(positions, dtype=np.float64)
        check_positions(positions)
        cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        pbc = effective_pbc(cell, pbc)
        if self._stale(positions, cell, pbc):
            check_cell(cell, pbc)
            self._graph = neighbor_list(positions, cell, pbc, self.cutoff + self.skin)
            self._ref_positions = positions.copy()
            self.searches += 1
        self.pairs_within_cutoff = check_close_contacts(positions, self._graph, self.cutoff)
        return self._graph

    def _stale(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> bool:
        g = self._graph
        if g is None or self.skin == 0.0 or positions.shape != self._ref_positions.shape:
            return True
        if not (np.array_equal(cell, g.cell) and np.array_equal(pbc, g.pbc)):
            return True
        moved = positions - self._ref_positions
        return bool(np.max((moved * moved).sum(1), initial=0.0) >= (0.5 * self.skin) ** 2)
