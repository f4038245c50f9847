"""Ionic reference data: ion–water clusters and small periodic ionic solutions (Na⁺, K⁺, Mg²⁺, Ca²⁺, Cl⁻).

Two frame kinds (opt-in, see :data:`allegro_bio.datagen.recipe.ION_KIND_FRACTIONS`):

``ion-water-cluster``
    Clusters of whole waters and ions carved from classical flexible-water MD (amber14 +
    flexible TIP3P with amber14's Joung–Cheatham / Li–Merz ions, 0.5 fs, 300–600 K) of NaCl,
    KCl, CaCl₂ and MgCl₂ solutions at :data:`SOLUTION_CONCENTRATIONS`. Centres: a single ion,
    a cation–anion pair at contact, or a solvent-separated pair (:data:`CONTACT_MAX_A`,
    :data:`SEPARATED_MAX_A`); the cluster is the whole units (waters, ions) nearest the centre.
``ionic-box``
    Small neutral periodic boxes: one formula unit of a salt in 20–31 flexible waters
    (:data:`BOX_EDGE_NM`, 63–97 atoms), independent MD replicas. One formula unit is the least a
    neutral box can hold, so these are concentrated solutions (1.7–2.4 M); the dilute
    environments come from the clusters.

The total charge of every frame is the sum of the charges of the ions it contains
(:data:`ION_CHARGE`), cross-checked against the rounded force-field charges and against an even
electron count (ΣZ − q even); it is never guessed. Positions and cells in Å, concentrations in
mol/L, energies in eV.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import AllegroError
from . import sampling
from .fragments import FragmentError

if TYPE_CHECKING:
    from ase import Atoms

log = logging.getLogger(__name__)

#: Avogadro's number (1/mol).
AVOGADRO = 6.02214076e23
#: Ions: element symbol → (amber14/tip3p.xml residue and atom name, atomic number, charge in e).
IONS = {"Na": ("NA", 11, 1), "K": ("K", 19, 1), "Mg": ("MG", 12, 2), "Ca": ("CA", 20, 2), "Cl": ("CL", 17, -1)}
#: Charge (e) of each ion by atomic number.
ION_CHARGE = {z: q for _, z, q in IONS.values()}
#: Salts: name → (cation, anion, anions per cation).
SALTS = {"NaCl": ("Na", "Cl", 1), "KCl": ("K", "Cl", 1), "CaCl2": ("Ca", "Cl", 2), "MgCl2": ("Mg", "Cl", 2)}
#: Solutions sampled for the clusters: (concentration in mol/L, cubic box edge in nm). The number
#: of formula units is round(c·N_A·V): 2 units at 0.15 M in 2.8 nm, 8 at 1.0 M in 2.4 nm.
SOLUTION_CONCENTRATIONS = ((0.15, 2.8), (1.0, 2.4))
#: Cation–Cl distance (Å) below which a pair is at contact (about the first minimum of the
#: cation–Cl radial distribution: first peaks Na 2.8, K 3.1, Mg 2.4, Ca 2.7 Å).
CONTACT_MAX_A = {"Na": 3.5, "K": 3.9, "Mg": 3.0, "Ca": 3.4}
#: A pair beyond contact and below this distance (Å) is solvent-separated (one water between).
SEPARATED_MAX_A = {k: v + 2.8 for k, v in CONTACT_MAX_A.items()}
#: Share of cluster centres that are a single ion / a contact pair / a solvent-separated pair.
CENTRE_SHARES = {"ion": 0.5, "contact": 0.25, "solvent-separated": 0.25}
#: Cluster sizes (atoms): waters and ions, drawn uniformly.
ION_CLUSTER_ATOMS = (16, 100)
#: Initial placement: every other formula unit starts with one anion in the cation's first shell
#: (MD then decides whether the contact pair survives); other ions start ≥ this far apart (Å).
MIN_ION_SEPARATION_A = 6.0


@dataclass(frozen=True)
class SolutionPlan:
    """MD of one solution for clusters: ``segments`` temperatures × ``snapshots`` per segment."""

    segments: int = 20
    segment_steps: int = 400
    snapshots: int = 2
    equilibration_steps: int = 2000


#: MD of each cluster solution (same protocol as the pure-water box of the default recipe).
SOLUTION_PLAN = SolutionPlan()
#: Small periodic boxes: edge (nm) drawn from this range; one salt formula unit each.
BOX_EDGE_NM = (0.88, 1.0)
BOX_SNAPSHOTS = 6
BOX_SNAPSHOT_EVERY = 300
BOX_EQUILIBRATION = 2000


def formula_units(concentration_M: float, box_edge_nm: float) -> int:
    """Formula units of salt for ``concentration_M`` (mol/L) in a cube of ``box_edge_nm`` (nm).

    Raises :class:`~allegro_bio.errors.AllegroError` if the box holds less than one unit.
    """
    if not concentration_M > 0 or not box_edge_nm > 0:
        raise AllegroError(f"concentration ({concentration_M} M) and box edge ({box_edge_nm} nm) must be positive")
    litres = (box_edge_nm * 1e-8) ** 3  # 1 nm = 1e-8 dm
    n = round(concentration_M * AVOGADRO * litres)
    if n < 1:
        raise AllegroError(f"{concentration_M} M does not fit a {box_edge_nm} nm box: "
                           f"{concentration_M * AVOGADRO * litres:.2f} formula units; use a larger box")
    return n


def concentration(n_units: int, box_edge_nm: float) -> float:
    """Salt concentration (mol/L) of ``n_units`` formula units in a cube of ``box_edge_nm`` (nm)."""
    return n_units / (AVOGADRO * (box_edge_nm * 1e-8) ** 3)


def _check_salt(salt: str) -> tuple[str, str, int]:
    if salt not in SALTS:
        raise AllegroError(f"unknown salt {salt!r}; expected one of {sorted(SALTS)}")
    return SALTS[salt]


def _mic(d: np.ndarray, edge: float) -> np.ndarray:
    return d - edge * np.rint(d / edge)


def build_solution(salt: str, box_edge_nm: float, n_units: int, seed: int, *, n_contact: int | None = None):
    """Topology, positions and a flexible amber14/TIP3P ``System`` of ``n_units`` formula units of
    ``salt`` in a cube of ``box_edge_nm`` (nm) of water.

    The box is filled with TIP3P by ``Modeller.addSolvent``; ions then replace waters (the ion at
    the water's O). ``n_contact`` formula units (default: every other one, the first included)
    start as a contact pair (the anion replaces the water nearest its cation); all other ions
    start at least :data:`MIN_ION_SEPARATION_A` apart where the box allows. Raises
    :class:`~allegro_bio.errors.AllegroError` for an unknown salt or ions that do not fit.
    """
    import openmm as mm
    from openmm import app, unit

    cation, anion, per = _check_salt(salt)
    if n_units < 1:
        raise AllegroError(f"need at least one formula unit of {salt}, got {n_units}")
    ff = sampling._forcefield()
    modeller = app.Modeller(app.Topology(), [])
    edge_nm = float(box_edge_nm)
    modeller.addSolvent(ff, model="tip3p", boxSize=mm.Vec3(edge_nm, edge_nm, edge_nm) * unit.nanometer)
    waters = list(modeller.topology.residues())
    n_ions = n_units * (1 + per)
    if n_ions > len(waters) // 2:
        raise AllegroError(f"{n_units} × {salt} ({n_ions} ions) does not fit {len(waters)} waters in a "
                           f"{edge_nm} nm box ({concentration(n_units, edge_nm):.1f} M); use a larger box")
    xyz = np.array(modeller.positions.value_in_unit(unit.angstrom))
    oxy = np.array([next(a.index for a in r.atoms() if a.element.symbol == "O") for r in waters])
    o_pos = xyz[oxy]
    edge = edge_nm * 10.0
    rng = np.random.default_rng(seed)
    free = np.ones(len(waters), dtype=bool)
    placed: list[tuple[str, int]] = []  # (element, water index)

    def far_water() -> int:
        cand = np.flatnonzero(free)
        if placed:
            pts = o_pos[[w for _, w in placed]]
            d = np.linalg.norm(_mic(o_pos[cand, None] - pts[None], edge), axis=-1).min(axis=1)
            ok = cand[d >= MIN_ION_SEPARATION_A]
            cand = ok if len(ok) else cand[d >= d.max() - 1e-9]
        return int(rng.choice(cand))

    n_contact = (n_units + 1) // 2 if n_contact is None else int(n_contact)
    for u in range(n_units):
        w = far_water()
        free[w] = False
        placed.append((cation, w))
        if u < n_contact:  # one anion in the first shell of this cation
            d = np.linalg.norm(_mic(o_pos - o_pos[w], edge), axis=1)
            d[~free] = np.inf
            a = int(np.argmin(d))
            free[a] = False
            placed.append((anion, a))
    for _ in range(n_units * per - sum(e == anion for e, _ in placed)):
        w = far_water()
        free[w] = False
        placed.append((anion, w))
    modeller.delete([waters[w] for _, w in placed])
    ion_top = app.Topology()
    chain = ion_top.addChain()
    ion_pos = []
    for element, w in placed:
        name = IONS[element][0]
        res = ion_top.addResidue(name, chain)
        ion_top.addAtom(name, app.Element.getBySymbol(element), res)
        ion_pos.append(mm.Vec3(*(np.mod(o_pos[w], edge) / 10.0)))
    modeller.add(ion_top, ion_pos * unit.nanometer)
    top, pos = modeller.topology, modeller.positions
    box = [mm.Vec3(edge_nm, 0, 0), mm.Vec3(0, edge_nm, 0), mm.Vec3(0, 0, edge_nm)] * unit.nanometer
    top.setPeriodicBoxVectors(box)
    cutoff = min(0.9, 0.45 * edge_nm)
    system = ff.createSystem(top, nonbondedMethod=app.PME, nonbondedCutoff=cutoff * unit.nanometer,
                             constraints=None, rigidWater=False)
    system.setDefaultPeriodicBoxVectors(*box)
    return top, pos, system


def ion_charge(numbers: np.ndarray) -> int:
    """Total charge (e) of a set of waters and ions: the sum of :data:`ION_CHARGE` over its ions.

    Raises :class:`FragmentError` for an element that is neither water (H, O) nor a known ion,
    or an odd electron count.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    other = sorted(set(numbers.tolist()) - set(ION_CHARGE) - {1, 8})
    if other:
        raise FragmentError(f"atomic numbers {other} are neither water nor one of the ions {sorted(IONS)}")
    q = int(sum(ION_CHARGE.get(int(z), 0) for z in numbers))
    if (int(numbers.sum()) - q) % 2:
        raise FragmentError(f"{numbers.sum()} protons with charge {q}: odd electron count")
    return q


def ion_formula(numbers: np.ndarray) -> str:
    """The ions of a frame in a fixed order, e.g. ``"Na2Cl1"`` (``""`` if none)."""
    counts = {s: int(np.sum(np.asarray(numbers) == z)) for s, (_, z, _) in IONS.items()}
    return "".join(f"{s}{n}" for s, n in counts.items() if n)


@dataclass(frozen=True)
class IonCluster:
    """A carved ion–water cluster: ``numbers``, ``positions`` (Å, centred on the centre point),
    total ``charge`` (e) and the system ``atoms`` it took (indices)."""

    numbers: np.ndarray
    positions: np.ndarray
    charge: int
    atoms: np.ndarray


def carve_ions(info: sampling.SystemInfo, positions: np.ndarray, cell: np.ndarray, centre_atoms: list[int],
               n_target: int) -> IonCluster:
    """The whole waters and ions nearest the centre of ``centre_atoms`` (one ion or an ion pair,
    all included) until at least ``n_target`` atoms.

    Units are residues (a water or an ion), ordered by the minimum-image distance (Å) of their
    heavy atom from the centre; ``positions`` keep molecules whole; ``cell`` is orthorhombic (Å).
    The charge is :func:`ion_charge` of the cluster, cross-checked against the rounded sum of
    the force-field charges of the atoms taken (:class:`FragmentError` if they disagree).
    """
    box = np.diag(cell)
    if not np.allclose(cell, np.diag(box)):
        raise AllegroError("carve_ions needs an orthorhombic cell")
    res = info.residue_index
    n_res = len(info.residue_names)
    water = np.array([n in sampling.WATER_NAMES for n in info.residue_names])
    ion_res = np.array([n in {v[0] for v in IONS.values()} for n in info.residue_names])
    if not (water | ion_res).all():
        bad = sorted({info.residue_names[r] for r in np.flatnonzero(~(water | ion_res))})
        raise AllegroError(f"{info.name}: residues {bad} are neither water nor ions")
    heavy = np.full(n_res, -1)
    is_heavy = info.numbers > 1
    heavy[res[is_heavy]] = np.flatnonzero(is_heavy)
    anchor = positions[centre_atoms[0]]
    rel_centres = _mic(positions[centre_atoms] - anchor, box)
    centre = anchor + rel_centres.mean(axis=0)
    d_heavy = _mic(positions[heavy] - centre, box)
    shift = d_heavy - (positions[heavy] - centre)  # one lattice shift per residue keeps it whole
    dist = np.linalg.norm(d_heavy, axis=1)
    forced = [int(res[a]) for a in centre_atoms]
    order = forced + [int(r) for r in np.argsort(dist, kind="stable") if int(r) not in forced]
    members = np.argsort(res, kind="stable")
    bounds = np.searchsorted(res[members], np.arange(n_res + 1))
    chosen, n_atoms = [], 0
    for r in order:
        chosen.append(r)
        n_atoms += bounds[r + 1] - bounds[r]
        if n_atoms >= n_target and len(chosen) >= len(set(forced)):
            break
    atoms = np.concatenate([members[bounds[r]:bounds[r + 1]] for r in chosen])
    atom_shift = shift[res[atoms]]
    pos = positions[atoms] - centre + atom_shift
    z = info.numbers[atoms]
    q = ion_charge(z)
    ff_q = int(np.rint(info.charges[atoms].sum()))
    if ff_q != q:
        raise FragmentError(f"{info.name}: cluster ion charge {q:+d} e but force-field charges sum to {ff_q:+d} e")
    return IonCluster(z, pos, q, atoms)


def ion_pairs(info: sampling.SystemInfo, positions: np.ndarray, cell: np.ndarray) -> dict[str, list]:
    """Cation–anion pairs of a snapshot by class: ``{"contact": [(i, j, d)], "solvent-separated": [...]}``
    (atom indices, minimum-image distance in Å; see :data:`CONTACT_MAX_A`, :data:`SEPARATED_MAX_A`)."""
    box = np.diag(cell)
    symbols = {z: s for s, (_, z, _) in IONS.items()}
    cations = [i for i in range(len(info.numbers)) if ION_CHARGE.get(int(info.numbers[i]), 0) > 0]
    anions = [i for i in range(len(info.numbers)) if ION_CHARGE.get(int(info.numbers[i]), 0) < 0]
    out: dict[str, list] = {"contact": [], "solvent-separated": []}
    for i in cations:
        s = symbols[int(info.numbers[i])]
        for j in anions:
            d = float(np.linalg.norm(_mic(positions[j] - positions[i], box)))
            if d < CONTACT_MAX_A[s]:
                out["contact"].append((i, j, d))
            elif d < SEPARATED_MAX_A[s]:
                out["solvent-separated"].append((i, j, d))
    return out


def solution_systems() -> list[tuple[str, str, float, float]]:
    """The cluster MD systems: ``(name, salt, concentration_M, box_edge_nm)``, e.g.
    ``("ions-NaCl-0.15M", "NaCl", 0.15, 2.8)``."""
    return [(f"ions-{salt}-{c:g}M", salt, c, edge) for salt in SALTS for c, edge in SOLUTION_CONCENTRATIONS]


def _temperatures(n: int, rng: np.random.Generator) -> list[float]:
    from .recipe import temperatures

    return temperatures(n, rng)


def sample_solution(name: str, salt: str, conc: float, edge_nm: float, md_dir: Path, seed: int,
                    index: int) -> tuple[sampling.SystemInfo, list[sampling.Snapshot]]:
    """MD snapshots of one cluster solution (cached in ``md_dir/<name>.npz``)."""
    md_dir.mkdir(parents=True, exist_ok=True)
    path = md_dir / f"{name}.npz"
    if path.exists():
        return sampling.load(path)
    rng = np.random.default_rng([seed, 7727, index])
    plan = SOLUTION_PLAN
    n_units = formula_units(conc, edge_nm)
    log.info("%s: %d × %s in a %.2f nm box (%.3f M), %d segments", name, n_units, salt, edge_nm,
             concentration(n_units, edge_nm), plan.segments)
    built = build_solution(salt, edge_nm, n_units, int(rng.integers(2**31)))
    info, snaps = sampling.run_md(name, _temperatures(plan.segments, rng), seed=int(rng.integers(2**31)),
                                  segment_steps=plan.segment_steps, snapshots_per_segment=plan.snapshots,
                                  equilibration_steps=plan.equilibration_steps, built=built)
    sampling.save(path, info, snaps)
    return info, snaps


def sample_boxes(n_boxes: int, md_dir: Path, seed: int) -> list[tuple[str, sampling.SystemInfo, sampling.Snapshot]]:
    """``n_boxes`` snapshots of small periodic ionic boxes, :data:`BOX_SNAPSHOTS` per replica
    (cached in ``md_dir/ionic-box-<r>.npz``); returns ``(salt, info, snapshot)`` per snapshot."""
    md_dir.mkdir(parents=True, exist_ok=True)
    n_rep = math.ceil(n_boxes / BOX_SNAPSHOTS)
    rng = np.random.default_rng([seed, 6271])
    temps = _temperatures(n_rep, rng)
    edges = rng.uniform(*BOX_EDGE_NM, n_rep)
    seeds = rng.integers(2**31, size=(n_rep, 2))
    salts = [list(SALTS)[i] for i in rng.permutation(np.resize(np.arange(len(SALTS)), n_rep))]
    out = []
    for r in range(n_rep):
        path = md_dir / f"ionic-box-{r:04d}.npz"
        if path.exists():
            info, snaps = sampling.load(path)
        else:
            built = build_solution(salts[r], float(edges[r]), 1, int(seeds[r, 0]), n_contact=r % 2)
            info, snaps = sampling.run_md(f"ionic-box-{salts[r]}", [temps[r]], seed=int(seeds[r, 1]),
                                          segment_steps=BOX_SNAPSHOTS * BOX_SNAPSHOT_EVERY,
                                          snapshots_per_segment=BOX_SNAPSHOTS, equilibration_steps=BOX_EQUILIBRATION,
                                          group_prefix=f"ionic-box/r{r:04d}", built=built)
            sampling.save(path, info, snaps)
        for s in snaps:
            s.numbers = info.numbers
            out.append((salts[r], info, s))
    return out[:n_boxes]


def _pair_label(info: sampling.SystemInfo, i: int, j: int) -> str:
    symbols = {z: s for s, (_, z, _) in IONS.items()}
    return f"{symbols[int(info.numbers[i])]}-{symbols[int(info.numbers[j])]}"


def make_cluster_tasks(n: int, md_dir: Path, seed: int, frame: Callable[..., Atoms]) -> list[Atoms]:
    """``n`` unlabelled ``ion-water-cluster`` frames, spread evenly over :func:`solution_systems`.

    ``frame`` is the recipe's frame constructor (``recipe._frame``).
    """
    systems = solution_systems()
    rng = np.random.default_rng([seed, 104729, 9001])
    sys_order = rng.permutation(np.resize(np.arange(len(systems)), n))
    cache: dict[int, tuple] = {}
    symbols = {z: s for s, (_, z, _) in IONS.items()}
    tasks = []
    modes, shares = list(CENTRE_SHARES), np.array(list(CENTRE_SHARES.values()))
    for i in range(n):
        k = int(sys_order[i])
        name, salt, conc, edge = systems[k]
        if k not in cache:
            info, snaps = sample_solution(name, salt, conc, edge, md_dir, seed, k)
            ions = np.flatnonzero(np.isin(info.numbers, list(ION_CHARGE)))
            cache[k] = (info, snaps, ions)
        info, snaps, ions = cache[k]
        s = snaps[int(rng.integers(len(snaps)))]
        mode = modes[int(rng.choice(len(modes), p=shares / shares.sum()))]
        target = int(rng.integers(ION_CLUSTER_ATOMS[0], ION_CLUSTER_ATOMS[1] + 1))
        extra: dict = {}
        centre: list[int] = []
        if mode != "ion":
            pairs = ion_pairs(info, s.positions, s.cell)
            other = "solvent-separated" if mode == "contact" else "contact"
            found = pairs[mode] or pairs[other]
            if found:
                a, b, d = found[int(rng.integers(len(found)))]
                centre = [a, b]
                extra = dict(ion_pair="contact" if found is pairs["contact"] else "solvent-separated",
                             pair_distance_A=round(d, 3), centre=_pair_label(info, a, b))
        if not centre:
            charge_sign = 1 if rng.random() < 0.5 else -1
            pool = [a for a in ions if np.sign(ION_CHARGE[int(info.numbers[a])]) == charge_sign]
            a = int(rng.choice(pool))
            centre = [a]
            extra = dict(ion_pair="none", centre=symbols[int(info.numbers[a])])
        c = carve_ions(info, s.positions, s.cell, centre, target)
        tasks.append(frame(c.numbers, c.positions, source="ion-water-cluster", snap=s, charge=c.charge,
                           frame_id=f"ion-water-cluster/{i:05d}", salt=salt,
                           concentration_M=round(concentration(formula_units(conc, edge), edge), 3),
                           ions=ion_formula(c.numbers), n_waters=int(np.sum(c.numbers == 8)), **extra))
    return tasks


def make_box_tasks(n: int, md_dir: Path, seed: int, frame: Callable[..., Atoms]) -> list[Atoms]:
    """``n`` unlabelled periodic ``ionic-box`` frames (neutral; charge computed and checked)."""
    tasks = []
    for i, (salt, info, s) in enumerate(sample_boxes(n, md_dir, seed)):
        q = ion_charge(s.numbers)
        if q != 0:
            raise FragmentError(f"ionic box {s.group_id} has charge {q:+d} e; boxes must be neutral")
        edge_nm = float(s.cell[0, 0]) / 10.0
        tasks.append(frame(s.numbers, s.positions, source="ionic-box", snap=s, charge=q, cell=s.cell,
                           frame_id=f"ionic-box/{i:05d}", salt=salt, ions=ion_formula(s.numbers),
                           concentration_M=round(concentration(1, edge_nm), 3),
                           n_waters=int(np.sum(s.numbers == 8))))
    return tasks
