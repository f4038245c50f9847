"""The whole reference-data recipe: MD sampling → cluster carving → GFN2-xTB labels → splits.

Every random choice derives from one seed. Intermediate products live in the output directory so
a killed run resumes: ``md/<system>.npz`` (MD snapshots), ``tasks.extxyz`` (unlabelled frames, in
labelling order), ``labelled.extxyz`` (appended frame by frame) and finally
``{train,val,test}.extxyz.xz`` plus ``metadata.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import sampling

if TYPE_CHECKING:  # ase is imported where frames are built
    from ase import Atoms

log = logging.getLogger(__name__)

#: Frame kinds (the ``source`` info key) and their default share of the frames.
KIND_FRACTIONS = {
    "dhfr-protein-cluster": 0.35,
    "ala2-cluster": 0.15,
    "dhfr-water-cluster": 0.10,
    "water-cluster": 0.20,
    "water-box": 0.20,
}
KINDS = tuple(KIND_FRACTIONS)
#: Opt-in ion kinds (see :mod:`.ions`), not in the default run; their share relative to the
#: fractions above when mixed with the default kinds (alone: 75 % clusters, 25 % periodic boxes).
ION_KIND_FRACTIONS = {
    "ion-water-cluster": 0.15,
    "ionic-box": 0.05,
}
#: Every selectable kind: the default ones, then the opt-in ones.
ALL_KINDS = KINDS + tuple(ION_KIND_FRACTIONS)
_FRACTIONS = {**KIND_FRACTIONS, **ION_KIND_FRACTIONS}
#: Which MD system each kind is carved from.
KIND_SYSTEM = {"dhfr-protein-cluster": "dhfr", "dhfr-water-cluster": "dhfr", "ala2-cluster": "ala2",
               "water-cluster": "water", "water-box": "water-box"}
#: Thermostat temperatures are spread evenly over this range (K), in a seeded random order.
T_RANGE_K = (300.0, 600.0)
#: Split fractions (by MD segment / replica, never by frame).
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


@dataclass(frozen=True)
class MDPlan:
    """MD settings of one system: ``segments`` temperatures × ``snapshots`` per segment."""

    segments: int = 20
    segment_steps: int = 400
    snapshots: int = 2
    equilibration_steps: int = 400
    box_edge_nm: float | None = None


MD_PLANS = {
    "dhfr": MDPlan(),
    "ala2": MDPlan(equilibration_steps=2000),
    "water": MDPlan(equilibration_steps=2000, box_edge_nm=3.0),
}
#: Small periodic boxes: one replica per group, edge drawn from this range (nm) → 19–32 waters.
BOX_EDGE_NM = (0.86, 1.0)
BOX_SNAPSHOTS = 6
BOX_SNAPSHOT_EVERY = 300
BOX_EQUILIBRATION = 2000


def temperatures(n: int, rng: np.random.Generator) -> list[float]:
    """``n`` temperatures evenly spread over :data:`T_RANGE_K` (K), in random order."""
    return [float(t) for t in rng.permutation(np.linspace(*T_RANGE_K, n))]


def sample(system: str, md_dir: Path, seed: int, n_boxes: int = 0) -> tuple[list, list[sampling.Snapshot]]:
    """MD snapshots of ``system`` (cached in ``md_dir/<system>.npz``).

    Returns ``(infos, snapshots)``: one :class:`~.sampling.SystemInfo` for a solvated system, one
    per replica for ``"water-box"`` (``n_boxes`` snapshots in all).
    """
    md_dir.mkdir(parents=True, exist_ok=True)
    index = sampling.SYSTEMS.index(system)
    rng = np.random.default_rng([seed, index])
    if system != "water-box":
        path = md_dir / f"{system}.npz"
        if path.exists():
            info, snaps = sampling.load(path)
            return [info], snaps
        plan = MD_PLANS[system]
        info, snaps = sampling.run_md(system, temperatures(plan.segments, rng), seed=int(rng.integers(2**31)),
                                      segment_steps=plan.segment_steps, snapshots_per_segment=plan.snapshots,
                                      equilibration_steps=plan.equilibration_steps, box_edge_nm=plan.box_edge_nm)
        sampling.save(path, info, snaps)
        return [info], snaps
    n_rep = math.ceil(n_boxes / BOX_SNAPSHOTS)
    temps = temperatures(n_rep, rng)
    edges = rng.uniform(*BOX_EDGE_NM, n_rep)
    seeds = rng.integers(2**31, size=n_rep)
    infos, snaps = [], []
    for r in range(n_rep):
        path = md_dir / f"water-box-{r:04d}.npz"
        if path.exists():
            info, s = sampling.load(path)
        else:
            info, s = sampling.run_md("water-box", [temps[r]], seed=int(seeds[r]),
                                      segment_steps=BOX_SNAPSHOTS * BOX_SNAPSHOT_EVERY,
                                      snapshots_per_segment=BOX_SNAPSHOTS, equilibration_steps=BOX_EQUILIBRATION,
                                      box_edge_nm=float(edges[r]), group_prefix=f"water-box/r{r:04d}")
            sampling.save(path, info, s)
        infos.append(info)
        snaps.extend(s)
    return infos, snaps[:n_boxes]


#: Cluster sizes (atoms, caps included): most are small; a share of the water clusters is ~60 waters.
CLUSTER_ATOMS = (20, 90)
LARGE_WATER_ATOMS = (150, 195)
LARGE_WATER_SHARE = 0.15
#: Share of protein-centred DHFR clusters centred on a sulfur atom (S is rare: 5 Met, 2 Cys).
SULFUR_SHARE = 0.2


def frame_counts(n_frames: int, kinds: tuple[str, ...] = KINDS) -> dict[str, int]:
    """Frames per kind: :data:`KIND_FRACTIONS` and :data:`ION_KIND_FRACTIONS` renormalised over
    ``kinds``, summing to ``n_frames``."""
    unknown = set(kinds) - set(ALL_KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; expected some of {ALL_KINDS}")
    total = sum(_FRACTIONS[k] for k in kinds)
    counts = {k: int(n_frames * _FRACTIONS[k] / total) for k in kinds}
    counts[kinds[0]] += n_frames - sum(counts.values())
    return counts


def assign_splits(group_ids: list[str], seed: int, fractions: dict[str, float] | None = None) -> dict[str, str]:
    """Map each distinct group id (an MD segment or replica) to ``"train"``/``"val"``/``"test"``.

    Groups are shuffled with ``seed`` per system (the id's first path component) and cut by
    ``fractions`` (default :data:`SPLIT_FRACTIONS`); every system with ≥ 3 groups puts at least
    one group in each split. Whole groups, never single frames, go to a split.
    """
    fractions = fractions or SPLIT_FRACTIONS
    by_system: dict[str, list[str]] = {}
    for g in sorted(set(group_ids)):
        by_system.setdefault(g.split("/")[0], []).append(g)
    out = {}
    for k, (system, groups) in enumerate(sorted(by_system.items())):
        rng = np.random.default_rng([seed, 7919, k])
        groups = [groups[i] for i in rng.permutation(len(groups))]
        n = len(groups)
        n_val = max(1, round(n * fractions["val"])) if n >= 3 else 0
        n_test = max(1, round(n * fractions["test"])) if n >= 3 else 0
        for i, g in enumerate(groups):
            out[g] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return out


def _frame(numbers, positions, *, source: str, snap: sampling.Snapshot, charge: int, frame_id: str,
           cell: np.ndarray | None = None, **info) -> Atoms:
    from ase import Atoms

    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=cell is not None)
    if cell is not None:
        atoms.wrap()
    atoms.info.update(frame_id=frame_id, source=source, total_charge=int(charge), config_id=snap.config_id,
                      group_id=snap.group_id, temperature_K=round(snap.temperature_K, 1), **info)
    return atoms


#: Water-centred DHFR clusters are centred on a water O within this distance (Å) of a protein heavy atom.
INTERFACE_DISTANCE = 5.0


def _interface_waters(info: sampling.SystemInfo, snap: sampling.Snapshot, oxygens: np.ndarray) -> np.ndarray:
    """The water oxygens of ``oxygens`` within :data:`INTERFACE_DISTANCE` (Å) of the solute (orthorhombic box)."""
    from scipy.spatial import cKDTree

    box = np.diag(snap.cell)
    solute = np.flatnonzero(~info.is_water & (info.numbers > 1))
    tree = cKDTree(np.mod(snap.positions[solute], box), boxsize=box)
    d, _ = tree.query(np.mod(snap.positions[oxygens], box), distance_upper_bound=INTERFACE_DISTANCE)
    near = oxygens[np.isfinite(d)]
    return near if len(near) else oxygens


def make_tasks(md_dir: Path, n_frames: int, seed: int, kinds: tuple[str, ...] = KINDS) -> list:
    """Unlabelled frames (ASE ``Atoms``) for every kind, with splits assigned, in a seeded
    interleaved labelling order (so a partial run already covers every kind)."""
    from . import fragments

    counts = frame_counts(n_frames, kinds)
    tasks = []
    cache: dict[str, tuple] = {}
    for k, kind in enumerate(kinds):
        n = counts[kind]
        if n == 0:
            continue
        if kind in ION_KIND_FRACTIONS:
            from . import ions

            make = ions.make_cluster_tasks if kind == "ion-water-cluster" else ions.make_box_tasks
            tasks.extend(make(n, md_dir, seed, _frame))
            continue
        system = KIND_SYSTEM[kind]
        rng = np.random.default_rng([seed, 104729, k])
        if kind == "water-box":
            infos, snaps = sample(system, md_dir, seed, n_boxes=n)
            for i, s in enumerate(snaps):
                tasks.append(_frame(s.numbers, s.positions, source=kind, snap=s, charge=0, cell=s.cell,
                                    frame_id=f"{kind}/{i:05d}", n_waters=int(len(s.numbers) // 3)))
            continue
        if system not in cache:
            infos, snaps = sample(system, md_dir, seed)
            cache[system] = (infos[0], fragments.units(infos[0]), snaps)
        info, parts, snaps = cache[system]
        water, heavy = info.is_water, info.numbers > 1
        if kind in ("dhfr-protein-cluster", "ala2-cluster"):
            pool = np.flatnonzero(~water & heavy)
        else:
            pool = np.flatnonzero(water & (info.numbers == 8))
        sulfur = np.flatnonzero(~water & (info.numbers == 16))
        snap_order = rng.permutation(np.resize(np.arange(len(snaps)), n))
        for i in range(n):
            s = snaps[snap_order[i]]
            if kind == "dhfr-protein-cluster" and len(sulfur) and rng.random() < SULFUR_SHARE:
                centre = int(rng.choice(sulfur))
            elif kind == "dhfr-water-cluster":
                centre = int(rng.choice(_interface_waters(info, s, pool)))
            else:
                centre = int(rng.choice(pool))
            large = kind == "water-cluster" and rng.random() < LARGE_WATER_SHARE
            lo, hi = LARGE_WATER_ATOMS if large else CLUSTER_ATOMS
            target = int(rng.integers(lo, hi + 1))
            c = fragments.carve(info, parts, s.positions, s.cell, centre, target)
            res = info.residue_names[info.residue_index[centre]]
            tasks.append(_frame(c.numbers, c.positions, source=kind, snap=s, charge=c.charge,
                                frame_id=f"{kind}/{i:05d}", n_caps=c.n_caps,
                                centre_residue=f"{res}{info.residue_index[centre] + 1}",
                                centre_Z=int(info.numbers[centre])))
    splits = assign_splits([t.info["group_id"] for t in tasks], seed)
    for t in tasks:
        t.info["split"] = splits[t.info["group_id"]]
    order = np.random.default_rng([seed, 15485863]).permutation(len(tasks))
    return [tasks[i] for i in order]


TASKS_FILE = "tasks.extxyz"
LABELLED_FILE = "labelled.extxyz"
SPLIT_FILES = {s: f"{s}.extxyz.xz" for s in SPLIT_FRACTIONS}
METADATA_FILE = "metadata.json"


def prepare(out: Path, n_frames: int, seed: int, kinds: tuple[str, ...] = KINDS) -> list:
    """Run (or reuse) the MD and write ``tasks.extxyz``; return the tasks. Reuses an existing file."""
    from ase.io import read, write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / TASKS_FILE
    spec = dict(n_frames=n_frames, seed=seed, kinds=list(kinds))
    spec_path = out / "tasks.json"
    if path.exists() and spec_path.exists():
        if json.loads(spec_path.read_text()) != spec:
            from ..errors import AllegroError

            raise AllegroError(f"{out} holds tasks for {spec_path.read_text()}, not {spec}; use another --out")
        return read(path, ":", format="extxyz")
    tasks = make_tasks(out / "md", n_frames, seed, kinds)
    write(out / (TASKS_FILE + ".tmp"), tasks, format="extxyz")
    (out / (TASKS_FILE + ".tmp")).replace(path)
    spec_path.write_text(json.dumps(spec))
    return tasks


def finalize(out: Path, dest: Path | None = None, *, command: str = "") -> dict:
    """Write ``{train,val,test}.extxyz.xz`` and ``metadata.json`` into ``dest`` (default ``out``)
    from the frames labelled so far; return the metadata (counts per kind and split, CPU time)."""
    import lzma

    from ase.io import write

    from .label import method_name, read_done, tblite_version

    out = Path(out)
    dest = Path(dest) if dest is not None else out
    dest.mkdir(parents=True, exist_ok=True)
    frames = read_done(out / LABELLED_FILE)
    failed_path = (out / LABELLED_FILE).with_suffix(".failed.txt")
    failed = failed_path.read_text().split() if failed_path.exists() else []
    spec = json.loads((out / "tasks.json").read_text()) if (out / "tasks.json").exists() else {}
    by_split: dict[str, list] = {s: [] for s in SPLIT_FRACTIONS}
    for a in frames:
        by_split[a.info["split"]].append(a)
    counts: dict[str, dict[str, int]] = {}
    for split, items in by_split.items():
        items.sort(key=lambda a: a.info["frame_id"])
        tmp = dest / (SPLIT_FILES[split] + ".tmp")
        with lzma.open(tmp, "wt", encoding="utf-8", preset=9) as fh:
            write(fh, items, format="extxyz")
        tmp.replace(dest / SPLIT_FILES[split])
        for a in items:
            counts.setdefault(a.info["source"], {s: 0 for s in SPLIT_FRACTIONS})[split] += 1
    n_atoms = [len(a) for a in frames]
    cpu = sum(float(a.info.get("cpu_s", 0.0)) for a in frames)
    meta = dict(
        description="GFN2-xTB reference data for biomolecules in water (allegro_bio.datagen)",
        method=method_name(), tblite_version=tblite_version(), units=dict(energy="eV", forces="eV/Angstrom",
                                                                          positions="Angstrom", charge="e"),
        elements=sorted({s for a in frames for s in a.get_chemical_symbols()}),
        n_frames=len(frames), n_frames_planned=spec.get("n_frames"), scf_failures=failed,
        scf_hot_retries=sorted(a.info["frame_id"] for a in frames if "electronic_temperature_K" in a.info),
        seed=spec.get("seed"),
        kinds=spec.get("kinds"), command=command,
        counts={k: dict(v, total=sum(v.values())) for k, v in sorted(counts.items())},
        split_totals={s: len(v) for s, v in by_split.items()},
        atoms_per_frame=dict(min=min(n_atoms, default=0), max=max(n_atoms, default=0),
                             mean=round(float(np.mean(n_atoms)), 1) if n_atoms else 0),
        groups_per_split={s: len({a.info["group_id"] for a in v}) for s, v in by_split.items()},
        xtb_cpu_hours=round(cpu / 3600, 3),
        xtb_cpu_s_by_kind={k: round(sum(float(a.info.get("cpu_s", 0)) for a in frames if a.info["source"] == k), 1)
                           for k in sorted(counts)},
        files=dict(SPLIT_FILES),
    )
    (dest / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def generate(out: Path, n_frames: int, seed: int, kinds: tuple[str, ...] = KINDS, *, progress: bool = True,
             finalize_every: int = 0, dest: Path | None = None, command: str = "") -> dict:
    """The whole recipe: MD → tasks → labels (resumable) → split files. ``finalize_every`` > 0 rewrites
    the split files after every that many newly labelled frames (partial results stay usable)."""
    from .label import label_frames

    t0 = time.perf_counter()
    tasks = prepare(out, n_frames, seed, kinds)
    log.info("%d tasks ready after %.0f s", len(tasks), time.perf_counter() - t0)
    labelled = Path(out) / LABELLED_FILE
    meta = None
    if finalize_every > 0:
        while label_frames(tasks, labelled, progress=progress, limit=finalize_every):
            meta = finalize(out, dest, command=command)
    else:
        label_frames(tasks, labelled, progress=progress)
    return meta if meta is not None else finalize(out, dest, command=command)


def composition_markdown(meta: dict) -> str:
    """A markdown table of frames per kind and split from :func:`finalize`'s metadata."""
    splits = list(SPLIT_FRACTIONS)
    rows = ["| kind | " + " | ".join(splits) + " | total | xTB CPU-s |", "|---" * (len(splits) + 3) + "|"]
    for kind, row in meta["counts"].items():
        rows.append(f"| {kind} | " + " | ".join(str(row[s]) for s in splits)
                    + f" | {row['total']} | {meta['xtb_cpu_s_by_kind'].get(kind, 0):.0f} |")
    tot = meta["split_totals"]
    rows.append("| **all** | " + " | ".join(str(tot[s]) for s in splits) + f" | {meta['n_frames']} | "
                f"{meta['xtb_cpu_hours'] * 3600:.0f} |")
    return "\n".join(rows)
