"""Benchmark structures: periodic water boxes and the JAC DHFR benchmark. Positions and cells in Å.

A machine without openmm/openmmtools (a lent GPU machine) can read DHFR and factor IX from a
folder of ``<case>.npz`` files named by ``$ALLEGRO_BIO_BENCH_CASES`` (:func:`save_case_cache`
writes them).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

import numpy as np
from ase import Atoms

from ..data import water_box

#: Replication of the shipped 64-water (192-atom) box for each water case.
WATER_REPEATS: dict[str, tuple[int, int, int]] = {
    "water192": (1, 1, 1),
    "water1536": (2, 2, 2),
    "water6144": (4, 4, 2),
    "water24576": (8, 4, 4),
    "water98304": (8, 8, 8),
    "water1032192": (16, 16, 21),  # the "1 M-atom water box" of GPU runs
}

#: Number of atoms of every case (checked when a case is built).
N_ATOMS: dict[str, int] = {"water192": 192, "water1536": 1536, "water6144": 6144, "water24576": 24576,
                           "water98304": 98304, "water1032192": 1032192, "dhfr": 23558, "factor_ix": 90906}

#: Case names in run order.
CASE_NAMES: tuple[str, ...] = tuple(N_ATOMS)
#: What ``bench`` runs without ``--cases``: all but the million-atom box (a GPU case).
DEFAULT_CASES: tuple[str, ...] = tuple(n for n in CASE_NAMES if n != "water1032192")
#: Environment variable naming a folder of cached cases (``<case>.npz``), read before building.
CACHE_ENV = "ALLEGRO_BIO_BENCH_CASES"


def dhfr_files() -> tuple[Path, Path]:
    """Paths of ``JAC.prmtop`` and ``JAC.inpcrd`` shipped in openmmtools' package data."""
    spec = importlib.util.find_spec("openmmtools")  # locate without importing (its import is slow and noisy)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the dhfr case needs the openmmtools package data: pip install openmmtools")
    d = Path(list(spec.submodule_search_locations)[0]) / "data" / "dhfr"
    prmtop, inpcrd = d / "JAC.prmtop", d / "JAC.inpcrd"
    if not (prmtop.is_file() and inpcrd.is_file()):
        raise FileNotFoundError(f"JAC.prmtop / JAC.inpcrd not found in {d}")
    return prmtop, inpcrd


def dhfr() -> Atoms:
    """DHFR in TIP3P water, the AMBER/CHARMM JAC benchmark (23,558 atoms, 61.6 Å cubic box, periodic).

    Positions are the (unwrapped) JAC production coordinates, in Å.
    """
    from openmm import app, unit

    prmtop, inpcrd = dhfr_files()
    topology = app.AmberPrmtopFile(str(prmtop)).topology
    crd = app.AmberInpcrdFile(str(inpcrd))
    symbols = [atom.element.symbol for atom in topology.atoms()]
    positions = crd.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    box = crd.getBoxVectors() or topology.getPeriodicBoxVectors()
    cell = np.array([v.value_in_unit(unit.angstrom) for v in box])
    return Atoms(symbols=symbols, positions=np.asarray(positions), cell=cell, pbc=True)


def _water(name: str) -> Callable[[], Atoms]:
    return lambda: water_box(WATER_REPEATS[name])


def factor_ix() -> Atoms:
    """Solvated factor IX (90,906 atoms; elements H C N O S Ca Cl), see :func:`allegro_bio.systems.factor_ix`."""
    from ..systems import factor_ix as build

    return build().to_ase()


BUILDERS: dict[str, Callable[[], Atoms]] = {**{name: _water(name) for name in WATER_REPEATS}, "dhfr": dhfr,
                                            "factor_ix": factor_ix}


def build_case(name: str) -> Atoms:
    """The structure of case ``name`` (one of :data:`CASE_NAMES`), with its atom count checked;
    read from ``$ALLEGRO_BIO_BENCH_CASES/<name>.npz`` where that file exists."""
    if name not in BUILDERS:
        raise ValueError(f"unknown benchmark case {name!r}; available: {list(CASE_NAMES)}")
    cached = Path(os.environ.get(CACHE_ENV, "")) / f"{name}.npz" if os.environ.get(CACHE_ENV) else None
    if cached is not None and cached.is_file():
        with np.load(cached) as d:
            atoms = Atoms(numbers=d["numbers"], positions=d["positions"], cell=d["cell"], pbc=d["pbc"])
    else:
        atoms = BUILDERS[name]()
    if len(atoms) != N_ATOMS[name]:
        raise RuntimeError(f"case {name} has {len(atoms)} atoms, expected {N_ATOMS[name]}")
    return atoms


def save_case_cache(names: list[str] | tuple[str, ...], folder: str | os.PathLike) -> list[Path]:
    """Write cases ``names`` as ``folder/<name>.npz`` (numbers, positions Å, cell Å, pbc) for
    :func:`build_case` on machines that cannot build them (``$ALLEGRO_BIO_BENCH_CASES``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        atoms = build_case(name)
        path = folder / f"{name}.npz"
        np.savez_compressed(path, numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array,
                            pbc=atoms.pbc)
        out.append(path)
    return out
