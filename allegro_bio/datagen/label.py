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
        accuracy: float = 1.0) -> tuple[float, np.ndarray]:
    """GFN2-xTB energy (eV) and forces (eV/Å) of a closed-shell structure.

    ``positions`` and ``cell`` (rows are lattice vectors, periodic in 3-D when given) in Å;
    ``charge`` the total charge (e). Raises :class:`LabelError` for an odd electron count.
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

    for damping, max_iter in SCF_ATTEMPTS:
        calc = Calculator("GFN2-xTB", numbers, np.asarray(positions, dtype=float) / BOHR_ANGSTROM,
                          charge=float(charge), uhf=0, **kwargs)
        calc.set("verbosity", 0)
        calc.set("accuracy", accuracy)
        calc.set("max-iter", max_iter)
        if damping is not None:
            calc.set("mixer-damping", damping)
        try:
            res = calc.singlepoint()
            break
        except TBLiteRuntimeError as exc:
            last = exc
            log.info("SCF failed (damping %s, %d iterations): %s; retrying", damping, max_iter, exc)
    else:
        raise SCFError(f"GFN2-xTB SCF did not converge with any of {SCF_ATTEMPTS}: {last}")
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
    energy, forces = xtb(atoms.numbers, atoms.positions, int(atoms.info.get("total_charge", 0)), cell)
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
