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
    shift = s.astype(np.float64) @ box if len(i) else np.zeros((0, 3))
    return Graph(edge_index, shift, pbc, cell)


def check_close_contacts(positions: np.ndarray, graph: Graph) -> None:
    """Reject pairs closer than :data:`MIN_DISTANCE` (overlapping atoms or images)."""
    i, j = graph.edge_index
    if not len(i):
        return
    d = np.linalg.norm(positions[j] - positions[i] + graph.shift, axis=1)
    close = d < MIN_DISTANCE
    if close.any():
        k = int(np.flatnonzero(close)[0])
        what = "its own periodic image" if i[k] == j[k] else f"atom {int(j[k])}"
        raise InvalidStructureError(
            f"{int(close.sum()) // 2 or 1} pair(s) of atoms closer than {MIN_DISTANCE} Å: atom {int(i[k])} and "
            f"{what} are {d[k]:.3g} Å apart"
        )


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
