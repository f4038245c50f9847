"""GFN2-xTB labels through tblite, written frame by frame so a killed run resumes.

Energies are in eV, forces in eV/Å, positions and cells in Å. The total charge (e) is passed to
xTB; a wrong charge raises no error in tblite (it smears an odd electron), so an odd electron
count is refused here.
"""

from __future__ import annotations

import io
import logging
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Iterable

import numpy as np
from ase import Atoms

from ..errors import AllegroError

log = logging.getLogger(__name__)

#: CODATA 2018 conversions used throughout.
HARTREE_EV = 27.211386245988
BOHR_ANGSTROM = 0.529177210903
#: Frame info key naming the labelled frame (unique within a data set).
FRAME_ID = "frame_id"


#: SCF settings tried in turn (mixer damping, None = tblite's default 0.4; max iterations): the
#: default converges for almost every frame; a few zwitterionic clusters need stronger damping.
SCF_ATTEMPTS = ((None, 250), (0.2, 500), (0.1, 1000))
#: Last resort after :data:`SCF_ATTEMPTS`: the default SCF at this electronic temperature (K,
#: tblite's default is 300 K). A frame labelled so carries ``info["electronic_temperature_K"]``
#: and is listed in the metadata; filter it out if a uniform 300 K surface matters.
SCF_HOT_TEMPERATURE_K = 3000.0
#: SCF iterations of that last attempt.
SCF_HOT_MAX_ITER = 1000
#: Boltzmann constant (Hartree/K), for tblite's electronic temperature (set in Hartree).
KB_HARTREE = 3.166811563e-6


#: Free-species GFN2-xTB energies (eV) from tblite 0.8 at its defaults (accuracy 1.0, electronic
#: temperature 300 K, no spin polarisation): one atom at the origin, ``Calculator("GFN2-xTB",
#: [Z], [[0, 0, 0]], charge=q, uhf=u).singlepoint()``, ``u`` the unpaired electrons of the atom's
#: ground-state (Hund) multiplicity: H, Na, K, Cl 1; C, O, S 2; N, P 3; Mg, Ca and the closed-shell
#: ions 0. Recomputed by :func:`isolated_energy`. Without spin polarisation a lower-spin
#: occupation is lower for C, O, S, P (e.g. P with ``uhf=1``: −64.7034 eV); these are not used.
ISOLATED_ENERGIES_EV = {
    "H": -10.7072, "C": -48.7981, "N": -70.9081, "O": -102.5218, "S": -85.6195,
    "P": -64.6047, "Na": -4.5469, "K": -4.5103, "Mg": -12.6798, "Ca": -10.1130, "Cl": -121.9757,
    "Na+": 5.3194, "K+": 5.2129, "Mg2+": 35.8126, "Ca2+": 31.9987, "Cl-": -130.2101,
}
#: (atomic number, charge in e, unpaired electrons) of each species in :data:`ISOLATED_ENERGIES_EV`.
ISOLATED_SPECIES = {
    "H": (1, 0, 1), "C": (6, 0, 2), "N": (7, 0, 3), "O": (8, 0, 2), "S": (16, 0, 2), "P": (15, 0, 3),
    "Na": (11, 0, 1), "K": (19, 0, 1), "Mg": (12, 0, 0), "Ca": (20, 0, 0), "Cl": (17, 0, 1),
    "Na+": (11, 1, 0), "K+": (19, 1, 0), "Mg2+": (12, 2, 0), "Ca2+": (20, 2, 0), "Cl-": (17, -1, 0),
}


def isolated_energy(species: str) -> float:
    """GFN2-xTB energy (eV) of a free atom or ion of :data:`ISOLATED_SPECIES`, computed now with tblite."""
    from tblite.interface import Calculator

    if species not in ISOLATED_SPECIES:
        raise LabelError(f"unknown species {species!r}; expected one of {sorted(ISOLATED_SPECIES)}")
    z, q, uhf = ISOLATED_SPECIES[species]
    calc = Calculator("GFN2-xTB", np.array([z]), np.zeros((1, 3)), charge=float(q), uhf=uhf)
    calc.set("verbosity", 0)
    return float(calc.singlepoint().get("energy")) * HARTREE_EV


class LabelError(AllegroError):
    """A frame cannot be labelled as given (odd electron count, unsupported element)."""


class SCFError(RuntimeError):
    """The GFN2-xTB SCF did not converge with any setting in :data:`SCF_ATTEMPTS`."""


def tblite_version() -> str:
    """Installed tblite version, e.g. ``"0.8.0"``."""
    return metadata.version("tblite")


def method_name() -> str:
    """The ``method`` info string, e.g. ``"GFN2-xTB (tblite 0.8)"``."""
    major, minor = tblite_version().split(".")[:2]
    return f"GFN2-xTB (tblite {major}.{minor})"


def xtb(numbers: np.ndarray, positions: np.ndarray, charge: int = 0, cell: np.ndarray | None = None,
        accuracy: float = 1.0, info: dict | None = None) -> tuple[float, np.ndarray]:
    """GFN2-xTB energy (eV) and forces (eV/Å) of a closed-shell structure.

    ``positions`` and ``cell`` (rows are lattice vectors, periodic in 3-D when given) in Å;
    ``charge`` the total charge (e). Raises :class:`LabelError` for an odd electron count and
    :class:`SCFError` if no SCF setting converges. If only the last resort (electronic temperature
    :data:`SCF_HOT_TEMPERATURE_K`) converged, ``info["electronic_temperature_K"]`` is set.
    """
    try:
        from tblite.interface import Calculator
    except ImportError as exc:  # pragma: no cover - tblite is a dependency
        raise ImportError("labelling needs tblite: pip install tblite") from exc
    numbers = np.asarray(numbers, dtype=np.int64)
    if (int(numbers.sum()) - int(charge)) % 2:
        raise LabelError(f"{int(numbers.sum())} protons with charge {charge}: odd electron count")
    kwargs = {}
    if cell is not None:
        kwargs = dict(lattice=np.asarray(cell, dtype=float) / BOHR_ANGSTROM, periodic=np.array([True, True, True]))
    from tblite.exceptions import TBLiteRuntimeError

    attempts = [(d, m, None) for d, m in SCF_ATTEMPTS] + [(None, SCF_HOT_MAX_ITER, SCF_HOT_TEMPERATURE_K)]
    for damping, max_iter, etemp in attempts:
        calc = Calculator("GFN2-xTB", numbers, np.asarray(positions, dtype=float) / BOHR_ANGSTROM,
                          charge=float(charge), uhf=0, **kwargs)
        calc.set("verbosity", 0)
        calc.set("accuracy", accuracy)
        calc.set("max-iter", max_iter)
        if damping is not None:
            calc.set("mixer-damping", damping)
        if etemp is not None:
            calc.set("temperature", etemp * KB_HARTREE)
        try:
            res = calc.singlepoint()
            break
        except TBLiteRuntimeError as exc:
            last = exc
            log.info("SCF failed (damping %s, %d iterations, electronic T %s K): %s; retrying", damping, max_iter,
                     etemp or 300, exc)
    else:
        raise SCFError(f"GFN2-xTB SCF did not converge with any of {SCF_ATTEMPTS} nor at an electronic "
                       f"temperature of {SCF_HOT_TEMPERATURE_K:g} K: {last}")
    if etemp is not None:
        log.warning("SCF converged only at an electronic temperature of %g K", etemp)
        if info is not None:
            info["electronic_temperature_K"] = etemp
    energy = float(res.get("energy")) * HARTREE_EV
    forces = -np.asarray(res.get("gradient")) * HARTREE_EV / BOHR_ANGSTROM
    return energy, forces


def attach(atoms: Atoms, energy: float, forces: np.ndarray) -> Atoms:
    """Attach ``energy`` (eV) and ``forces`` (eV/Å) as a SinglePointCalculator (extxyz writes them)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def label_atoms(atoms: Atoms) -> Atoms:
    """Label one frame in place: ``info["total_charge"]`` is the charge; periodic if ``atoms.pbc.all()``.
    Adds ``method`` and ``cpu_s`` (CPU seconds of the xTB call) to ``info``."""
    t0 = time.process_time()
    cell = atoms.cell.array if atoms.pbc.all() else None
    energy, forces = xtb(atoms.numbers, atoms.positions, int(atoms.info.get("total_charge", 0)), cell,
                         info=atoms.info)
    atoms.info["method"] = method_name()
    atoms.info["cpu_s"] = round(time.process_time() - t0, 4)
    return attach(atoms, energy, forces)


def _to_text(atoms: Atoms) -> str:
    from ase.io import write

    buf = io.StringIO()
    write(buf, atoms, format="extxyz")
    return buf.getvalue()


def read_done(path: Path) -> list[Atoms]:
    """Complete frames of a (possibly interrupted) labelled file; a truncated tail is cut off the file."""
    from ase.io import iread

    path = Path(path)
    if not path.exists():
        return []
    frames: list[Atoms] = []
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    good_end, pos, line_no = 0, 0, 0
    while line_no < len(lines):  # walk frame by frame: "N", comment, N atom lines
        try:
            n = int(lines[line_no].strip())
        except ValueError:
            break
        if line_no + 2 + n > len(lines) or not lines[line_no + 1 + n].endswith("\n"):
            break
        chunk = "".join(lines[line_no:line_no + 2 + n])
        try:
            frames.extend(iread(io.StringIO(chunk), format="extxyz"))
        except Exception:  # noqa: BLE001 - a corrupt frame ends the usable part
            break
        pos += len(chunk)
        good_end = pos
        line_no += 2 + n
    if good_end < len(text):
        log.warning("%s: dropping a truncated tail (%d characters) from an interrupted run", path,
                    len(text) - good_end)
        with open(path, "r+", encoding="utf-8") as fh:
            fh.truncate(len(text[:good_end].encode()))
    return frames


def label_frames(tasks: Iterable[Atoms], out: Path, *, progress: bool = True, limit: int | None = None) -> int:
    """Label ``tasks`` (each with a unique ``info["frame_id"]``) and append them to ``out``.

    Frames already in ``out`` are skipped, so a killed run continues where it stopped. Each frame
    is written and flushed as soon as it is labelled. A frame whose SCF never converges is logged,
    listed in ``<out stem>.failed.txt`` and skipped. ``limit`` stops after that many new frames.
    Returns the number of frames processed now (labelled or failed).
    """
    out = Path(out)
    failed_path = out.with_suffix(".failed.txt")
    failed = set(failed_path.read_text().split()) if failed_path.exists() else set()
    done = {a.info[FRAME_ID] for a in read_done(out)}
    todo = [a for a in tasks if a.info[FRAME_ID] not in done and a.info[FRAME_ID] not in failed]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo) + len(done) + len(failed), initial=len(done) + len(failed), unit="frame",
                   desc="GFN2-xTB", smoothing=0.05)
    if limit is not None:
        todo = todo[:limit]
    n = 0
    with open(out, "a", encoding="utf-8") as fh:
        for atoms in todo:
            try:
                text = _to_text(label_atoms(atoms))
            except SCFError as exc:  # recorded and skipped, also on resume
                log.warning("%s: %s", atoms.info[FRAME_ID], exc)
                with open(failed_path, "a", encoding="utf-8") as ff:
                    ff.write(atoms.info[FRAME_ID] + "\n")
                n += 1
                if bar is not None:
                    bar.update(1)
                continue
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
            n += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return n
