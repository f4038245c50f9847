"""Bad input raises typed errors (ValueError subclasses) that name the problem."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

import allegro_bio
from allegro_bio.errors import InvalidStructureError, UnknownElementError


@pytest.fixture(scope="module")
def calc():
    return allegro_bio.AllegroCalculator(allegro_bio.build_model("small", ["H", "C", "N", "O"], seed=0))


def test_unknown_elements_are_listed(calc):
    a = molecule("CH3SH") + Atoms("Na", positions=[[5, 5, 5]])
    a.calc = calc
    with pytest.raises(UnknownElementError, match=r"\['Na', 'S'\].*knows \['H', 'C', 'N', 'O'\]") as err:
        a.get_potential_energy()
    assert isinstance(err.value, ValueError)


def test_nan_positions(calc):
    a = molecule("H2O")
    a.positions[1, 0] = np.nan
    a.calc = calc
    with pytest.raises(InvalidStructureError, match=r"NaN or infinite; first: \[1\]"):
        a.get_forces()


def test_overlapping_atoms(calc):
    a = molecule("H2O") + Atoms("O", positions=[[0.0, 0.0, 0.119 + 0.05]])
    a.calc = calc
    with pytest.raises(InvalidStructureError, match="closer than 0.1 Å: atom 0 and atom 3"):
        a.get_potential_energy()


def test_singular_and_too_small_cells(calc):
    a = molecule("H2O", cell=[[5, 0, 0], [0, 5, 0], [5, 5, 0]], pbc=True)
    a.calc = calc
    with pytest.raises(InvalidStructureError, match="singular"):
        a.get_potential_energy()
    b = molecule("H2O", cell=[5, 5, 0.3], pbc=True)
    b.calc = calc
    with pytest.raises(InvalidStructureError, match="too small: height 0.3 Å along c"):
        b.get_potential_energy()
    c = molecule("H2O", pbc=True)  # periodic flag with a zero cell
    c.calc = calc
    with pytest.raises(InvalidStructureError, match="lattice vector a is zero"):
        c.get_potential_energy()


def test_stress_of_a_molecule_is_refused(calc):
    from ase.calculators.calculator import PropertyNotImplementedError

    a = molecule("H2O")
    a.calc = calc
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        a.get_stress()


def test_wrong_model_argument():
    with pytest.raises(TypeError, match="model file path"):
        allegro_bio.AllegroCalculator(42)
