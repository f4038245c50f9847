"""ASE calculator for Allegro models.

Examples
--------
>>> from ase.build import molecule
>>> import allegro_bio
>>> atoms = molecule("H2O")
>>> atoms.calc = allegro_bio.AllegroCalculator(allegro_bio.build_model("small", ["H", "O"]))
>>> atoms.get_forces().shape
(3, 3)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .deploy import as_model
from .inference import evaluate
from .neighbors import DEFAULT_SKIN, VerletList


class AllegroCalculator(Calculator):
    """Allegro energies, forces and stress for ASE.

    Parameters
    ----------
    model
        Path of a deployed model file, the name of a packaged model (``None``: the default one,
        see :mod:`allegro_bio.pretrained`), a :class:`~allegro_bio.DeployedModel`, or an eager
        :class:`~allegro_bio.model.AllegroPotential`.
    device
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    dtype
        ``None`` (the model's own), ``"float32"`` or ``"float64"``.
    skin
        Verlet skin (Å, default 1): the neighbour list holds the pairs within r_max + skin and is
        searched again only when an atom has moved skin/2 (or the cell changed), so MD steps
        mostly skip the search; results are those of a fresh search. 0 searches every call.
    compile
        Run each evaluation through ``torch.compile`` (inductor;
        :mod:`allegro_bio.model.compiled`): ~0.5-0.6x the time per evaluation on CPU (measured,
        small preset) after a one-off compile of ~11-40 s at the first call; needs a C++ compiler (g++). Results equal the
        uncompiled model's to float rounding.

    Units: energy and ``energies`` in eV, forces in eV/Å, stress in eV/Å³ as Voigt
    ``(xx, yy, zz, yz, xz, xy)``, tensile positive (ASE's convention). Stress needs a cell that
    is periodic in all three directions. A molecule carrying the PDB dummy cell
    (1 Å cube) is evaluated as non-periodic.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters: dict[str, Any] = {}

    def __init__(self, model: Any = None, device: str = "cpu", dtype: str | None = None, compile: bool = False,
                 skin: float = DEFAULT_SKIN, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.device = torch.device(device)
        self.model = as_model(model, device=self.device, dtype=dtype, compile=compile)
        self.neighbors = VerletList(self.model.r_max, skin)
        self.n_pairs = 0  # ordered pairs within r_max at the last evaluation

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        want_stress = "stress" in properties
        if want_stress and not a.pbc.all():
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        graph = self.neighbors(a.positions, np.asarray(a.cell), a.pbc)
        r = evaluate(self.model, a.positions, a.numbers, np.asarray(a.cell), a.pbc, want_stress, device=self.device,
                     graph=graph)
        self.n_pairs = self.neighbors.pairs_within_cutoff
        self.results = {"energy": r.energy, "free_energy": r.energy, "energies": r.energies, "forces": r.forces}
        if want_stress:
            s = -r.virial / a.get_volume()
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
