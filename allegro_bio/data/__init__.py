"""Small structures shipped with the package."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
from ase import Atoms


def water64() -> Atoms:
    """64 TIP3P waters (192 atoms) equilibrated at 300 K in a 12.452 Å periodic cube (~0.99 g/cm³).

    Provenance: the 64 molecules nearest the centre of OpenMM's ``tip3p.pdb``, minimised, 10 ps
    NVT at 300 K (amber/TIP3P, PME, seed 2023), minimised again. Replicate it for larger boxes.
    """
    with files(__package__).joinpath("water64.npz").open("rb") as fh:
        d = np.load(fh)
        return Atoms(symbols=[str(s) for s in d["symbols"]], positions=d["positions"], cell=d["cell"], pbc=True)


def water_box(repeat: tuple[int, int, int] = (1, 1, 1)) -> Atoms:
    """The 64-water box replicated ``repeat`` times (192 × product(repeat) atoms)."""
    return water64().repeat(repeat)
