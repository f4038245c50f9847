"""Training data: readers (extxyz, ASE db, SPICE HDF5), neighbour-list caching, batching.

Every reader returns frames in eV and Å with their reference energy and forces attached
(``atoms.get_potential_energy()``, ``atoms.get_forces()``), and these ``atoms.info`` keys:
``source_file``, ``frame_index`` (position in the file), ``total_charge`` (e), ``weight``
(per-frame loss weight, default 1) and, when the file has it, ``config_id``.

Bad frames raise :class:`DataError` naming the file, the frame and (extxyz) the line.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers, chemical_symbols

from ..errors import AllegroError, DataError
from ..neighbors import build_graph

HARTREE = 27.211386246  # eV
BOHR = 0.529177210903  # Å


def detect_format(path: str | os.PathLike) -> str:
    """``extxyz``, ``db`` or ``spice`` from the file name (compressed ``.xz``/``.gz``/``.bz2`` allowed)."""
    name = str(path).lower()
    for ext in (".xz", ".gz", ".bz2"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if name.endswith((".db", ".json")):
        return "db"
    if name.endswith((".h5", ".hdf5")):
        return "spice"
    raise DataError(f"{path}: cannot tell the format from the extension; use .extxyz/.xyz, .db or .h5/.hdf5, or set format=")


def read_frames(
    path: str | os.PathLike, format: str | None = None, *, energy_key: str = "energy", forces_key: str = "forces",
    require: Sequence[str] = ("energy", "forces"), spice_subsets: Sequence[str] = (), spice_energy: str = "dft_total_energy",
    max_force: float | None = None, max_frames: int | None = None,
) -> list[Atoms]:
    """Read labelled frames from an extxyz, ASE db or SPICE HDF5 file, in eV and Å.

    Parameters
    ----------
    path
        The file. extxyz may be compressed (``.xz``, ``.gz``, ``.bz2``).
    format
        ``extxyz``, ``db`` or ``spice``; default from the extension.
    energy_key, forces_key
        Where extxyz/db frames keep the labels when not in ASE's standard calculator fields
        (``info[energy_key]`` / ``arrays[forces_key]``).
    require
        Labels every frame must have (``energy``, ``forces``, ``stress``); a missing one is a
        :class:`DataError` naming the file and frame.
    spice_subsets, spice_energy
        SPICE: keep molecules whose ``subset`` contains any of these substrings; which energy.
    max_force
        Drop frames with any force component above this (eV/Å).
    max_frames
        Stop after this many frames.

    Examples
    --------
    >>> from allegro_bio.train import read_frames
    >>> frames = read_frames("train.extxyz")          # doctest: +SKIP
    >>> frames[0].get_forces().shape                   # doctest: +SKIP
    (23, 3)
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    fmt = format or detect_format(path)
    if fmt == "extxyz":
        frames = _read_extxyz(path, energy_key, forces_key)
    elif fmt == "db":
        frames = _read_db(path, energy_key, forces_key)
    elif fmt == "spice":
        frames = read_spice(path, subsets=spice_subsets, energy=spice_energy)
    else:
        raise DataError(f"unknown data format {fmt!r}; choose extxyz, db or spice")
    out = []
    for atoms in frames:
        check_frame(atoms, require)
        if max_force is not None and atoms.calc is not None and "forces" in atoms.calc.results:
            if np.abs(atoms.calc.results["forces"]).max(initial=0.0) > max_force:
                continue
        out.append(atoms)
        if max_frames is not None and len(out) >= max_frames:
            break
    return out


def where(atoms: Atoms) -> str:
    """'file, frame k (line n)' for error messages."""
    info = atoms.info
    text = f"{info.get('source_file', '?')}, frame {info.get('frame_index', '?')}"
    if "line" in info:
        text += f" (line {info['line']})"
    return text


def check_frame(atoms: Atoms, require: Sequence[str] = ("energy", "forces")) -> None:
    """Raise :class:`DataError` for missing labels, NaN values or mismatched shapes."""
    results = atoms.calc.results if atoms.calc is not None else {}
    n = len(atoms)
    if n == 0:
        raise DataError(f"{where(atoms)}: frame has no atoms")
    if not np.isfinite(atoms.positions).all():
        raise DataError(f"{where(atoms)}: positions contain NaN or inf")
    for key in require:
        if key not in results or results[key] is None:
            raise DataError(f"{where(atoms)}: no '{key}' label, but the loss needs it (found labels: {sorted(results)})")
    if "energy" in results and not np.isfinite(results["energy"]):
        raise DataError(f"{where(atoms)}: energy is {results['energy']}")
    if "forces" in results:
        f = np.asarray(results["forces"])
        if f.shape != (n, 3):
            raise DataError(f"{where(atoms)}: forces have shape {f.shape}, expected ({n}, 3) for {n} atoms")
        if not np.isfinite(f).all():
            bad = np.flatnonzero(~np.isfinite(f).all(axis=1))[:5].tolist()
            raise DataError(f"{where(atoms)}: forces contain NaN or inf (atoms {bad})")
    if "stress" in results:
        s = np.asarray(results["stress"])
        if s.shape not in ((6,), (3, 3)) or not np.isfinite(s).all():
            raise DataError(f"{where(atoms)}: stress must be 6 Voigt or 3x3 finite values, got shape {s.shape}")


def _label(atoms: Atoms, results: dict, source: Path, index: int, line: int | None = None) -> Atoms:
    atoms.calc = SinglePointCalculator(atoms, **{k: v for k, v in results.items() if v is not None})
    atoms.info["source_file"] = str(source)
    atoms.info["frame_index"] = index
    if line is not None:
        atoms.info["line"] = line
    atoms.info.setdefault("weight", 1.0)
    charge = atoms.info.get("total_charge", atoms.info.get("charge", 0))
    atoms.info["total_charge"] = int(round(float(charge)))
    return atoms


def _results_of(atoms: Atoms, energy_key: str, forces_key: str) -> dict:
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    if "energy" not in results and energy_key in atoms.info:
        results["energy"] = float(atoms.info[energy_key])
    if "forces" not in results and forces_key in atoms.arrays:
        results["forces"] = np.array(atoms.arrays[forces_key])
    if "stress" not in results and "stress" in atoms.info:
        results["stress"] = np.asarray(atoms.info["stress"], dtype=float)
    return {k: v for k, v in results.items() if k in ("energy", "forces", "stress", "free_energy")}


def _openers() -> dict:
    import bz2
    import gzip
    import lzma

    return {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}


_OPENERS = _openers()


def _read_extxyz(path: Path, energy_key: str, forces_key: str) -> list[Atoms]:
    from ase.io import read

    try:
        if path.suffix in _OPENERS:  # decompress once into memory: ASE's reader seeks, which is O(n²) on a compressed stream
            with _OPENERS[path.suffix](path, "rt", encoding="utf-8") as fh:
                frames = read(io.StringIO(fh.read()), index=":", format="extxyz")
        else:
            frames = read(str(path), index=":", format="extxyz")
    except Exception as exc:
        raise DataError(f"{path}: not a readable extended XYZ file: {exc}") from exc
    out, line = [], 1
    for k, atoms in enumerate(frames):
        out.append(_label(atoms, _results_of(atoms, energy_key, forces_key), path, k, line))
        line += len(atoms) + 2
    return out


def _read_db(path: Path, energy_key: str, forces_key: str) -> list[Atoms]:
    import ase.db

    try:
        db = ase.db.connect(str(path))
        rows = list(db.select())
    except Exception as exc:
        raise DataError(f"{path}: not a readable ASE database: {exc}") from exc
    out = []
    for k, row in enumerate(rows):
        atoms = row.toatoms(add_additional_information=True)
        info = dict(row.key_value_pairs)
        info.update(atoms.info.pop("key_value_pairs", {}) or {})
        atoms.info.update({key: v for key, v in info.items()})
        atoms.info.pop("data", None)
        if row.get("charge") is not None:
            atoms.info.setdefault("total_charge", row.charge)
        results = _results_of(atoms, energy_key, forces_key)
        if "forces" not in results and forces_key in row.data:
            results["forces"] = np.asarray(row.data[forces_key])
        out.append(_label(atoms, results, path, k))
    return out


# --------------------------------------------------------------------------------------------
# SPICE HDF5
# --------------------------------------------------------------------------------------------

_SMILES_CHARGE = re.compile(r"\[[^\]]*?([+-]\d*)(?::\d+)?\]")


def smiles_charge(smiles: str) -> int:
    """Total formal charge of a (mapped) SMILES string: sum of ``[...+n]`` / ``[...-]`` atom charges."""
    total = 0
    for m in _SMILES_CHARGE.finditer(smiles):
        sign = m.group(1)
        digits = sign[1:]
        value = int(digits) if digits else 1
        total += value if sign[0] == "+" else -value
    return total


def _decode(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class SpiceIndex:
    """Which (molecule, conformation) pairs of a SPICE file to use, in file order."""

    path: str
    entries: list[tuple[str, int]]
    energy: str


def index_spice(path: str | os.PathLike, subsets: Sequence[str] = (), energy: str = "dft_total_energy",
                max_force: float | None = None) -> SpiceIndex:
    """Scan a SPICE HDF5 file one molecule at a time (bounded memory) and list the frames to use."""
    import h5py

    path = Path(path)
    entries = []
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file: {exc}") from exc
    with fh:
        for name in fh:
            g = fh[name]
            missing = [k for k in ("atomic_numbers", "conformations", energy, "dft_total_gradient") if k not in g]
            if missing:
                raise DataError(f"{path}, molecule '{name}': missing dataset(s) {missing} (SPICE layout expected)")
            if subsets:
                subset = _decode(g["subset"][()]) if "subset" in g else ""
                if not any(s.lower() in subset.lower() for s in subsets):
                    continue
            n_conf = g["conformations"].shape[0]
            if max_force is None:
                entries.extend((name, k) for k in range(n_conf))
            else:
                fmax = np.abs(g["dft_total_gradient"][()]).reshape(n_conf, -1).max(axis=1) * HARTREE / BOHR
                entries.extend((name, int(k)) for k in np.flatnonzero(fmax <= max_force))
    return SpiceIndex(str(path), entries, energy)


def spice_frame(group, conf: int, energy: str, path: str, index: int) -> Atoms:
    """One SPICE conformation as labelled Atoms (eV, Å); ``group`` is an open h5py group."""
    z = np.asarray(group["atomic_numbers"][()], dtype=int)
    pos = np.asarray(group["conformations"][conf], dtype=np.float64) * BOHR
    e = float(group[energy][conf]) * HARTREE
    f = -np.asarray(group["dft_total_gradient"][conf], dtype=np.float64) * (HARTREE / BOHR)
    atoms = Atoms(numbers=z, positions=pos, pbc=False)
    if "smiles" in group:
        atoms.info["total_charge"] = smiles_charge(_decode(group["smiles"][()]))
    elif "mbis_charges" in group:
        atoms.info["total_charge"] = int(round(float(np.sum(group["mbis_charges"][conf]))))
    atoms.info["config_id"] = f"{group.name.strip('/')}"
    atoms.info["subset"] = _decode(group["subset"][()]) if "subset" in group else ""
    out = _label(atoms, {"energy": e, "forces": f}, Path(path), index)
    out.info["spice_molecule"] = group.name.strip("/")
    out.info["conformation"] = conf
    return out


def read_spice(path: str | os.PathLike, subsets: Sequence[str] = (), energy: str = "dft_total_energy",
               max_force: float | None = None) -> list[Atoms]:
    """All selected SPICE frames in memory (see :class:`LazySpiceFrames` for larger-than-RAM files)."""
    import h5py

    idx = index_spice(path, subsets, energy, max_force)
    with h5py.File(idx.path, "r") as fh:
        return [spice_frame(fh[name], conf, energy, idx.path, k) for k, (name, conf) in enumerate(idx.entries)]


class LazySpiceFrames:
    """A sequence of SPICE frames read from disk on access; safe in DataLoader worker processes
    (each process opens its own file handle)."""

    def __init__(self, index: SpiceIndex) -> None:
        self.index = index
        self._fh = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.index.entries)

    def __getitem__(self, k: int) -> Atoms:
        import h5py

        if self._fh is None or self._pid != os.getpid():
            self._fh = h5py.File(self.index.path, "r")
            self._pid = os.getpid()
        name, conf = self.index.entries[k]
        return spice_frame(self._fh[name], conf, self.index.energy, self.index.path, k)

    def __getstate__(self) -> dict:
        return {"index": self.index, "_fh": None, "_pid": None}


# --------------------------------------------------------------------------------------------
# Graphs and batches
# --------------------------------------------------------------------------------------------


@dataclass
class GraphFrame:
    """One frame ready for the network: ordered pairs within their per-species-pair cutoff."""

    pos: np.ndarray  # [N, 3] Å float64
    types: np.ndarray  # [N] int64
    edge_index: np.ndarray  # [2, E] int64
    shift: np.ndarray  # [E, 3] Å
    cell: np.ndarray  # [3, 3] Å
    volume: float  # Å³ (0 if not periodic)
    energy: float  # eV (nan if absent)
    forces: np.ndarray  # [N, 3] eV/Å (nan if absent)
    stress: np.ndarray  # [3, 3] eV/Å³ (nan if absent)
    weight: float


def to_graph(atoms: Atoms, type_names: Sequence[str], cutoff_matrix: np.ndarray, r_max: float) -> GraphFrame:
    """Validate a frame and build its pair list once (vesin), keeping pairs within cutoff(Z_i, Z_j)."""
    lookup = {atomic_numbers[s]: k for k, s in enumerate(type_names)}
    unknown = sorted({int(z) for z in atoms.numbers if int(z) not in lookup})
    if unknown:
        raise DataError(f"{where(atoms)}: element(s) {[chemical_symbols[z] for z in unknown]} not in the model's "
                        f"type_names {list(type_names)}")
    types = np.array([lookup[int(z)] for z in atoms.numbers], dtype=np.int64)
    try:
        g = build_graph(atoms.positions, np.asarray(atoms.cell), atoms.pbc, r_max)
    except AllegroError as exc:
        raise DataError(f"{where(atoms)}: {exc}") from None
    i, j = g.edge_index
    d = np.linalg.norm(atoms.positions[j] - atoms.positions[i] + g.shift, axis=1)
    keep = d < cutoff_matrix[types[i], types[j]]
    results = atoms.calc.results if atoms.calc is not None else {}
    n = len(atoms)
    periodic = bool(np.asarray(g.pbc).all())
    stress = np.full((3, 3), np.nan)
    if "stress" in results and periodic:
        s = np.asarray(results["stress"], dtype=float)
        stress = s if s.shape == (3, 3) else np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]])
    return GraphFrame(
        pos=np.asarray(atoms.positions, dtype=np.float64),
        types=types,
        edge_index=np.ascontiguousarray(g.edge_index[:, keep]),
        shift=np.ascontiguousarray(g.shift[keep]),
        cell=np.asarray(atoms.cell, dtype=np.float64),
        volume=float(atoms.get_volume()) if periodic else 0.0,
        energy=float(results.get("energy", math.nan)),
        forces=np.asarray(results["forces"], dtype=np.float64) if "forces" in results else np.full((n, 3), np.nan),
        stress=stress,
        weight=float(atoms.info.get("weight", 1.0)),
    )


class GraphDataset(torch.utils.data.Dataset):
    """Frames as :class:`GraphFrame` s. In memory (neighbour lists built once, here) or, for a
    lazy frame sequence, built on access (in DataLoader workers)."""

    def __init__(self, frames: Sequence[Atoms] | LazySpiceFrames, type_names: Sequence[str], cutoff_matrix: np.ndarray,
                 r_max: float, lazy: bool = False, progress: bool = False) -> None:
        self.frames = frames
        self.type_names = list(type_names)
        self.cutoff_matrix = np.asarray(cutoff_matrix, dtype=np.float64)
        self.r_max = float(r_max)
        self.lazy = lazy
        self.graphs: list[GraphFrame] | None = None
        if not lazy:
            it: Iterable = frames
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(frames, desc="neighbour lists", unit="frame", leave=False)
            self.graphs = [to_graph(a, self.type_names, self.cutoff_matrix, self.r_max) for a in it]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, k: int) -> GraphFrame:
        if self.graphs is not None:
            return self.graphs[k]
        return to_graph(self.frames[k], self.type_names, self.cutoff_matrix, self.r_max)

    def n_atoms(self, k: int) -> int:
        return len(self.graphs[k].types) if self.graphs is not None else len(self.frames[k])


@dataclass
class Batch:
    """Several frames concatenated into one disjoint graph (torch tensors)."""

    pos: torch.Tensor  # [N, 3] float64
    types: torch.Tensor  # [N]
    edge_index: torch.Tensor  # [2, E]
    shift: torch.Tensor  # [E, 3]
    frame: torch.Tensor  # [N] frame of each atom
    edge_frame: torch.Tensor  # [E] frame of each pair
    n_atoms: torch.Tensor  # [B]
    volume: torch.Tensor  # [B]
    energy: torch.Tensor  # [B] float64
    forces: torch.Tensor  # [N, 3]
    stress: torch.Tensor  # [B, 3, 3]
    weight: torch.Tensor  # [B]

    @property
    def num_frames(self) -> int:
        return int(self.n_atoms.shape[0])

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})


def collate(frames: Sequence[GraphFrame]) -> Batch:
    """Concatenate frames; pair indices are offset by the atoms before each frame."""
    counts = np.array([len(f.types) for f in frames])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    edges = [f.edge_index + o for f, o in zip(frames, offsets)]
    n_edges = np.array([f.edge_index.shape[1] for f in frames])
    t = torch.from_numpy
    return Batch(
        pos=t(np.concatenate([f.pos for f in frames])),
        types=t(np.concatenate([f.types for f in frames])),
        edge_index=t(np.concatenate(edges, axis=1)) if edges else torch.zeros(2, 0, dtype=torch.long),
        shift=t(np.concatenate([f.shift for f in frames])),
        frame=t(np.repeat(np.arange(len(frames)), counts)),
        edge_frame=t(np.repeat(np.arange(len(frames)), n_edges)),
        n_atoms=t(counts.astype(np.int64)),
        volume=torch.tensor([f.volume for f in frames], dtype=torch.float64),
        energy=torch.tensor([f.energy for f in frames], dtype=torch.float64),
        forces=t(np.concatenate([f.forces for f in frames])),
        stress=t(np.stack([f.stress for f in frames])),
        weight=torch.tensor([f.weight for f in frames], dtype=torch.float64),
    )
