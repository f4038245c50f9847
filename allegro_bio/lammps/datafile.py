"""LAMMPS data files (``atom_style atomic``, ``units metal``) whose atom types follow a model.

Atom type ``k`` (1-based) is the model's species ``type_names[k-1]``, for every structure, so one
line fits all of them::

    pair_coeff * * model.pt H C N O S      # = " ".join(type_names)

Periodic structures keep their cell, rotated into LAMMPS's lower-triangular form
(a along x, b in the xy plane) together with the positions; open structures get an orthogonal
box around the atoms (use ``boundary f f f`` or ``s s s``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from ..errors import InvalidStructureError
from ..neighbors import is_dummy_cell, type_indices

#: Padding (Å) around the atoms of an open structure's box.
OPEN_BOX_PADDING = 10.0


def lammps_cell(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower-triangular cell, rotation R) with ``cell @ R.T`` = the LAMMPS cell (right-handed)."""
    cell = np.asarray(cell, dtype=float)
    a, b, c = cell
    lx = np.linalg.norm(a)
    ex = a / lx
    xy = b @ ex
    ey = b - xy * ex
    ly = np.linalg.norm(ey)
    if lx < 1e-9 or ly < 1e-9:
        raise InvalidStructureError(f"degenerate periodic cell {cell.tolist()}")
    ey /= ly
    ez = np.cross(ex, ey)
    xz, yz, lz = c @ ex, c @ ey, c @ ez
    if lz <= 1e-9:
        raise InvalidStructureError(f"left-handed or flat periodic cell {cell.tolist()}: LAMMPS needs a right-handed one")
    rot = np.array([ex, ey, ez])
    return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]]), rot


def to_lammps_frame(atoms: Atoms) -> tuple[Atoms, np.ndarray]:
    """``atoms`` in the frame LAMMPS uses for its data file (see :func:`lammps_cell`), and the rotation.

    Forces computed on the returned atoms equal the original ones rotated by the returned matrix.
    """
    out = atoms.copy()
    if out.pbc.all():
        new_cell, rot = lammps_cell(np.asarray(atoms.cell))
        out.positions = atoms.positions @ rot.T
        out.cell = new_cell
    else:
        rot = np.eye(3)
    return out, rot


def write_data(
    atoms: Atoms, path: str | os.PathLike, type_names: list[str], title: str = "", model_path: str | None = None,
) -> Path:
    """Write ``atoms`` as a LAMMPS data file with one atom type per model species (in model order).

    Fully periodic structures keep their (rotated) cell; open ones get an orthogonal box with
    :data:`OPEN_BOX_PADDING` Å around the atoms. Mixed periodicity is refused. Raises
    :class:`~allegro_bio.errors.UnknownElementError` for elements the model lacks.
    Returns the path.
    """
    path = Path(path)
    atoms = atoms.copy()
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and is_dummy_cell(np.asarray(atoms.cell)):
        warnings.warn("the structure carries the 1 Å PDB dummy cell (CRYST1 1.0 1.0 1.0): writing it as an open "
                      "(non-periodic) structure", stacklevel=2)
        atoms.pbc = False
        pbc = np.zeros(3, bool)
    if pbc.any() and not pbc.all():
        raise InvalidStructureError(f"mixed periodicity {pbc.tolist()} is not supported by write_data: make the "
                                    "structure fully periodic or fully open")
    types = type_indices(atoms.numbers, list(type_names)) + 1
    pos = atoms.positions
    if not np.isfinite(pos).all():
        raise InvalidStructureError("positions contain NaN or inf")
    head = f"LAMMPS data file (units metal, atom_style atomic) written by allegro_bio{': ' + title if title else ''}"
    head += f"; types for: {pair_coeff_line(model_path or 'MODEL_FILE', list(type_names))}"
    lines = [head, ""]
    lines.append(f"{len(atoms)} atoms")
    lines.append(f"{len(type_names)} atom types")
    lines.append("")
    if pbc.all():
        cell, rot = lammps_cell(np.asarray(atoms.cell))
        pos = pos @ rot.T
        (lx, _, _), (xy, ly, _), (xz, yz, lz) = cell.tolist()
        lines += [f"0.0 {lx!r} xlo xhi", f"0.0 {ly!r} ylo yhi", f"0.0 {lz!r} zlo zhi"]
        if abs(xy) > 0 or abs(xz) > 0 or abs(yz) > 0:
            lines.append(f"{xy!r} {xz!r} {yz!r} xy xz yz")
    else:
        lo = pos.min(axis=0) - OPEN_BOX_PADDING if len(pos) else np.full(3, -OPEN_BOX_PADDING)
        hi = pos.max(axis=0) + OPEN_BOX_PADDING if len(pos) else np.full(3, OPEN_BOX_PADDING)
        for k, ax in enumerate("xyz"):
            lines.append(f"{float(lo[k])!r} {float(hi[k])!r} {ax}lo {ax}hi")
    lines += ["", "Masses", ""]
    for k, name in enumerate(type_names, start=1):
        lines.append(f"{k} {float(atomic_masses[atomic_numbers[name]])!r}  # {name}")
    lines += ["", "Atoms  # atomic", ""]
    for n, (t, (x, y, z)) in enumerate(zip(types.tolist(), pos.tolist()), start=1):
        lines.append(f"{n} {t} {x!r} {y!r} {z!r}")
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def pair_coeff_line(model_path: str, type_names: list[str]) -> str:
    return f"pair_coeff * * {model_path} {' '.join(type_names)}"


def read_structure(spec: str) -> Atoms:
    """A structure from a file ASE can read (PDB, XYZ, CIF, extxyz, ...) or a built-in name.

    Built-in names (when no such file exists): the benchmark cases ``water192``, ``water1536``,
    ``water6144``, ``water24576`` (periodic TIP3P boxes) and ``dhfr`` (JAC benchmark, 23,558 atoms).
    """
    from ..bench.cases import CASE_NAMES, build_case

    if not os.path.exists(spec):
        if spec in CASE_NAMES:
            return build_case(spec)
        raise FileNotFoundError(f"no structure file {spec!r} (built-in names: {', '.join(CASE_NAMES)})")
    from ase.io import read

    try:
        atoms = read(spec)
    except Exception as exc:
        raise InvalidStructureError(f"cannot read {spec} with ASE: {exc}") from exc
    if isinstance(atoms, list):  # pragma: no cover - read() returns the last frame by default
        atoms = atoms[-1]
    return atoms
