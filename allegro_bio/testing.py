"""Reusable physics checks for any allegro_bio model form (like e3nn's ``assert_equivariant``).

Each check takes an *evaluator* ``f(atoms) -> Evaluation`` (energy eV, forces eV/Å, per-atom
energies eV, stress eV/Å³ or None) and raises ``AssertionError`` with the measured error.
Make one from a model (eager or deployed) or an ASE calculator with :func:`evaluator`.

Examples
--------
>>> import allegro_bio
>>> from allegro_bio.testing import evaluator, assert_forces_match_finite_differences
>>> from ase.build import molecule
>>> f = evaluator(allegro_bio.build_model("small", ["H", "C", "O"], dtype="float64"))
>>> assert_forces_match_finite_differences(f, molecule("CH3OH"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from scipy.spatial.transform import Rotation

from .inference import evaluate


@dataclass
class Evaluation:
    energy: float
    forces: np.ndarray
    energies: np.ndarray
    stress: np.ndarray | None


Evaluator = Callable[[Atoms], Evaluation]


def evaluator(model_or_calc, stress: bool = True) -> Evaluator:
    """An evaluator from an ASE calculator, an eager ``AllegroPotential`` or a ``DeployedModel``."""

    def from_calc(atoms: Atoms) -> Evaluation:
        a = atoms.copy()
        a.calc = model_or_calc
        s = a.get_stress() if stress and a.pbc.all() else None
        return Evaluation(a.get_potential_energy(), a.get_forces(), a.get_potential_energies(), s)

    def from_model(atoms: Atoms) -> Evaluation:
        want = stress and bool(atoms.pbc.all())
        r = evaluate(model_or_calc, atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc, want,
                     device=model_or_calc.cutoff_matrix.device)
        s = None
        if want:
            w = -r.virial / atoms.get_volume()
            s = np.array([w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]])
        return Evaluation(r.energy, r.forces, r.energies, s)

    return from_calc if isinstance(model_or_calc, Calculator) else from_model


def _close(name: str, got, want, atol: float, rtol: float = 0.0) -> None:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    err = np.max(np.abs(got - want)) if got.size else 0.0
    scale = np.max(np.abs(want)) if want.size else 0.0
    if not err <= atol + rtol * scale:
        raise AssertionError(f"{name}: max error {err:.3g} > atol {atol:.3g} + rtol {rtol:.3g} × scale {scale:.3g}")


def assert_forces_match_finite_differences(
    f: Evaluator, atoms: Atoms, delta: float = 1e-4, atol: float = 1e-5, rtol: float = 1e-5, atoms_to_check: int = 6,
    seed: int = 0,
) -> None:
    """Forces equal −dE/dx by central differences (step ``delta`` Å) on a few random atoms."""
    ref = f(atoms)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(atoms), size=min(atoms_to_check, len(atoms)), replace=False)
    fd = np.zeros((len(idx), 3))
    for n, i in enumerate(idx):
        for k in range(3):
            a = atoms.copy()
            a.positions[i, k] += delta
            ep = f(a).energy
            a.positions[i, k] -= 2 * delta
            em = f(a).energy
            fd[n, k] = -(ep - em) / (2 * delta)
    _close("forces vs −dE/dx (finite differences)", ref.forces[idx], fd, atol, rtol)


def random_orthogonal(seed: int = 0, reflect: bool = False) -> np.ndarray:
    r = Rotation.random(random_state=seed).as_matrix()
    return r @ np.diag([1.0, 1.0, -1.0]) if reflect else r


def assert_invariant(
    f: Evaluator, atoms: Atoms, atol: float = 1e-9, rtol: float = 1e-9, reflections: bool = True, seed: int = 0
) -> None:
    """Energy invariant and forces equivariant under rotation, reflection, translation, permutation.

    The cell (periodic or not) is transformed together with the positions.
    """
    ref = f(atoms)
    ops = [("rotation", random_orthogonal(seed))] + ([("reflection", random_orthogonal(seed + 1, True))] if reflections else [])
    for name, q in ops:
        a = atoms.copy()
        a.positions = atoms.positions @ q.T
        a.cell = np.asarray(atoms.cell) @ q.T
        got = f(a)
        _close(f"energy under {name}", got.energy, ref.energy, atol, rtol)
        _close(f"forces under {name}", got.forces, ref.forces @ q.T, atol, rtol)
        _close(f"atom energies under {name}", got.energies, ref.energies, atol, rtol)
        if ref.stress is not None and got.stress is not None:
            s, g = _voigt_to_matrix(ref.stress), _voigt_to_matrix(got.stress)
            _close(f"stress under {name}", g, q @ s @ q.T, atol, rtol)
    a = atoms.copy()
    a.positions += np.random.default_rng(seed).normal(size=3) * 3.0
    got = f(a)
    _close("energy under translation", got.energy, ref.energy, atol, rtol)
    _close("forces under translation", got.forces, ref.forces, atol, rtol)
    perm = np.random.default_rng(seed).permutation(len(atoms))
    got = f(atoms[perm])
    _close("energy under permutation", got.energy, ref.energy, atol, rtol)
    _close("forces under permutation", got.forces, ref.forces[perm], atol, rtol)


def _voigt_to_matrix(s: np.ndarray) -> np.ndarray:
    xx, yy, zz, yz, xz, xy = s
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def assert_stress_matches_strain(f: Evaluator, atoms: Atoms, delta: float = 1e-5, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Stress (eV/Å³) equals (1/V) ∂E/∂ε by central differences of a symmetric strain."""
    ref = f(atoms)
    assert ref.stress is not None, "stress needs a fully periodic structure"
    v = atoms.get_volume()
    num = np.zeros((3, 3))
    for a_ in range(3):
        for b in range(a_, 3):
            e = np.zeros((3, 3))
            e[a_, b] = e[b, a_] = delta if a_ != b else delta
            vals = []
            for sign in (1, -1):
                strained = atoms.copy()
                strained.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + sign * e), scale_atoms=True)
                vals.append(f(strained).energy)
            d = (vals[0] - vals[1]) / (2 * delta) / v
            num[a_, b] = num[b, a_] = d / (2 if a_ != b else 1)
    _close("stress vs finite strain", _voigt_to_matrix(ref.stress), num, atol, rtol)


def assert_periodic_images(f: Evaluator, atoms: Atoms, repeat: tuple[int, int, int] = (2, 2, 2), atol: float = 1e-8, rtol: float = 1e-8) -> None:
    """A periodic cell and its supercell agree: E scales with the copies, forces tile.

    Meant for cells smaller than twice the cutoff, where atoms see their own images.
    """
    ref = f(atoms)
    big = atoms.repeat(repeat)
    got = f(big)
    n = int(np.prod(repeat))
    _close("supercell energy / copies", got.energy / n, ref.energy, atol, rtol)
    _close("supercell forces", got.forces, np.tile(ref.forces, (n, 1)), atol, rtol)


def assert_wrap_invariant(f: Evaluator, atoms: Atoms, atol: float = 1e-8, rtol: float = 1e-8, seed: int = 0) -> None:
    """Shifting atoms by random lattice vectors (unwrapping) changes nothing."""
    ref = f(atoms)
    a = atoms.copy()
    n = np.random.default_rng(seed).integers(-3, 4, size=(len(a), 3)) * a.pbc
    a.positions += n @ np.asarray(a.cell)
    got = f(a)
    _close("energy unwrapped vs wrapped", got.energy, ref.energy, atol, rtol)
    _close("forces unwrapped vs wrapped", got.forces, ref.forces, atol, rtol)


def assert_strictly_local(
    f: Evaluator, atoms: Atoms, r_max: float, atol: float = 1e-10, rtol: float = 0.0, seed: int = 0
) -> None:
    """An atom beyond the cutoff of every other changes nothing but its own isolated energy.

    Adds the last atom of ``atoms`` at distance ``r_max + 0.01 .. + 2`` Å from all others
    (non-periodic) and moves it around out there: other atoms' energies and forces are unchanged.
    """
    core = atoms[:-1].copy()
    core.pbc = False
    ref = f(core)
    rng = np.random.default_rng(seed)
    centre = core.positions.mean(0)
    extent = np.max(np.linalg.norm(core.positions - centre, axis=1))
    for trial in range(3):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        p = centre + direction * (extent + r_max + rng.uniform(0.01, 2.0))  # ≥ r_max + 0.01 from every atom
        a = core + atoms[-1:]
        a.positions[-1] = p
        got = f(a)
        _close(f"other atoms' energies with a far atom (trial {trial})", got.energies[:-1], ref.energies, atol, rtol)
        _close(f"other atoms' forces with a far atom (trial {trial})", got.forces[:-1], ref.forces, atol, rtol)
        _close("force on the far atom", got.forces[-1], np.zeros(3), atol)


def assert_smooth_at_cutoff(f: Evaluator, dimer: Atoms, cutoff: float, eps: float = 1e-4, atol: float = 1e-6) -> None:
    """For a dimer with its bond along x: energy and force go continuously to their far values at
    the cutoff (|E(r_c−ε) − E(r_c+ε)| and |F(r_c−ε)| vanish with ε)."""
    def at(r: float) -> Evaluation:
        a = dimer.copy()
        a.positions[1] = a.positions[0] + np.array([r, 0.0, 0.0])
        return f(a)

    inside, outside = at(cutoff - eps), at(cutoff + eps)
    _close("energy jump across the cutoff", inside.energy, outside.energy, atol)
    _close("force just inside the cutoff", inside.forces, np.zeros_like(inside.forces), atol)
