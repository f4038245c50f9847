"""Reference-data generator: MD sampling, capped clusters, GFN2-xTB labels, extxyz splits.

Units: positions and cells in Å, energies in eV, forces in eV/Å, charges in e, temperatures in K.
The recipe is ``allegro-bio datagen --out DIR --frames N --seed S``; the shipped data set is
described in ``docs/reference-data.md`` and read with :func:`read_reference` (or
:func:`read_frames` for any extxyz / extxyz.xz file).

>>> from allegro_bio.datagen import label
>>> label.method_name().startswith("GFN2-xTB (tblite")
True
"""

from __future__ import annotations

import io
import lzma
from importlib.resources import files
from pathlib import Path

from ase import Atoms

from .fragments import CAP_DISTANCE, Cluster, FragmentError, Units, carve, units
from .label import LabelError, label_frames, method_name, xtb
from .recipe import KINDS, assign_splits, finalize, generate

__all__ = ["CAP_DISTANCE", "Cluster", "FragmentError", "KINDS", "LabelError", "Units", "assign_splits", "carve",
           "finalize", "generate", "label_frames", "method_name", "read_frames", "read_reference", "reference_path",
           "units", "xtb"]


def reference_path(split: str = "train") -> Path:
    """Path of a shipped split file (``"train"``, ``"val"``, ``"test"``) or of ``"metadata"`` (JSON)."""
    name = "metadata.json" if split == "metadata" else f"{split}.extxyz.xz"
    if split not in ("train", "val", "test", "metadata"):
        raise ValueError(f"unknown split {split!r}; expected train, val, test or metadata")
    return Path(str(files("allegro_bio.data").joinpath("reference", name)))


def read_frames(path: str | Path) -> list[Atoms]:
    """All frames of an extxyz file, plain or ``.xz``, with energy (eV) and forces (eV/Å) attached.

    Decompresses into memory first: ``ase.io.read(path_to_xz, ":")`` seeks backwards in the
    compressed stream and takes minutes for a few thousand frames; this takes about a second.
    """
    from ase.io import read

    path = Path(path)
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    return read(io.StringIO(text), ":", format="extxyz")


def read_reference(split: str = "train") -> list[Atoms]:
    """The frames of a shipped split (``"train"``, ``"val"``, ``"test"``), see :func:`read_frames`."""
    if split == "metadata":
        raise ValueError("read the metadata with json.loads(reference_path('metadata').read_text())")
    return read_frames(reference_path(split))
