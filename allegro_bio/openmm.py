"""OpenMM integration: ``AllegroForce`` for whole systems or an ML region, and mixed ML/MM systems.

Units at this boundary are OpenMM's: positions and box in nm, energy in kJ/mol, forces in
kJ/mol/nm. The model itself works in Å and eV.

Examples
--------
>>> from allegro_bio import AllegroForce                                   # doctest: +SKIP
>>> system.addForce(AllegroForce("model.pt", topology))                    # doctest: +SKIP
>>> system = create_mixed_system(topology, mm_system, ligand_atoms, "model.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import numpy as np

from .deploy import DeployedModel, as_model
from .errors import AllegroError, InvalidStructureError, UnknownElementError
from .model.package_runner import RunnerBuildError
from .neighbors import DEFAULT_SKIN, VerletList

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "python")
_PRECISIONS = {None: None, "float32": "float32", "single": "float32", "float64": "float64", "double": "float64"}


def _import_openmm():
    """``openmm``, imported after torch, with openmm-torch's plugins loaded where it is installed."""
    try:
        import torch  # noqa: F401  (loads the CUDA runtime libraries openmm-torch's plugins link)
        import openmm
    except ImportError as exc:  # pragma: no cover - openmm is a dependency
        raise ImportError("AllegroForce needs OpenMM: pip install openmm") from exc
    if _openmm_torch_available():
        _reload_failed_torch_plugins(openmm)
    return openmm


def _openmm_torch_available() -> bool:
    """Whether openmm-torch (the ``torch`` backend's ``TorchForce``) can be imported."""
    try:
        import openmmtorch  # noqa: F401
    except ImportError:
        return False
    return True


def _reload_failed_torch_plugins(openmm) -> None:
    """OpenMM loads its plugins when first imported; if that happened before ``import torch``, the
    openmm-torch kernels failed to load (``libnvrtc.so.12: cannot open shared object file``) and
    every Context with a TorchForce would fail. Torch is imported now, so load them again."""
    for failure in openmm.Platform.getPluginLoadFailures():
        if "libOpenMMTorch" not in failure or "OpenCL" in failure:
            continue
        path = failure.split("Error loading library ", 1)[-1].split(": ", 1)[0]
        try:
            openmm.Platform.loadPluginLibrary(path)
            log.info("re-loaded openmm-torch plugin %s (openmm had been imported before torch)", path)
        except Exception as exc:  # pragma: no cover - depends on the installation
            log.warning("could not load openmm-torch plugin %s: %s", path, exc)


def _ml_atoms(topology, atoms: Iterable[int] | None) -> np.ndarray:
    n = topology.getNumAtoms()
    if atoms is None:
        return np.arange(n)
    idx = np.asarray(list(atoms), dtype=np.int64)
    if idx.size == 0:
        raise AllegroError("atoms is empty: give the indices of the atoms the Allegro model should describe")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise AllegroError(f"atoms subset has indices out of range for a topology of {n} atoms: {bad[:10].tolist()}")
    if np.unique(idx).size != idx.size:
        raise AllegroError("atoms subset lists some atoms more than once")
    return idx


def _types(topology, idx: np.ndarray, type_names: Sequence[str]) -> np.ndarray:
    atoms = list(topology.atoms())
    lookup = {s: k for k, s in enumerate(type_names)}
    types = np.empty(len(idx), dtype=np.int64)
    unknown: dict[str, list[int]] = {}
    for n, i in enumerate(idx):
        element = atoms[i].element
        symbol = element.symbol if element is not None else f"<no element: {atoms[i].name}>"
        if symbol not in lookup:
            unknown.setdefault(symbol, []).append(int(i))
            continue
        types[n] = lookup[symbol]
    if unknown:
        parts = "; ".join(f"{s} at atoms {v[:5]}{' …' if len(v) > 5 else ''}" for s, v in unknown.items())
        raise UnknownElementError(f"topology has elements the model does not know ({parts}); the model knows {list(type_names)}")
    return types


def _box_nm(topology) -> np.ndarray | None:
    box = topology.getPeriodicBoxVectors()
    if box is None:
        return None
    from openmm import unit

    return np.array([[v.value_in_unit(unit.nanometer) for v in vec] for vec in box])


def _check_box(box_nm: np.ndarray, r_max: float) -> None:
    """OpenMM convention: a periodic box must be at least twice the cutoff along each axis."""
    a, b, c = box_nm
    heights = np.array([a[0], b[1], c[2]]) * 10.0  # OpenMM boxes are reduced: heights are the diagonal
    if (heights < 2 * r_max).any():
        raise InvalidStructureError(
            f"periodic box {np.round(heights, 3).tolist()} Å is smaller than twice the model cutoff "
            f"(2 × {r_max} Å) along some axis; use a larger box"
        )


def _resolve_model(model: Any, precision: str | None, device: str = "cpu"):
    """The model (a loaded file or an eager potential) on ``device``, cast to ``precision`` when given."""
    import torch

    if precision not in _PRECISIONS:
        raise AllegroError(f"precision must be one of None, 'float32', 'float64' (or 'single', 'double'); got {precision!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise AllegroError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AllegroError(f"device {device!r} requested but torch sees no CUDA device")
    return as_model(model, device=dev, dtype=_PRECISIONS[precision])


def AllegroForce(
    model: Any, topology, atoms: Iterable[int] | None = None, backend: str = "auto", precision: str | None = None,
    force_group: int | None = None, skin: float | None = None, device: str = "cpu",
):
    """An ``openmm.Force`` computing Allegro energies and forces for ``topology``'s atoms.

    Parameters
    ----------
    model
        Path of a deployed model file, the name of a packaged model (``None``: the default one,
        see :mod:`allegro_bio.pretrained`), a :class:`~allegro_bio.DeployedModel` or an eager
        :class:`~allegro_bio.model.AllegroPotential`.
    topology
        ``openmm.app.Topology``; its elements are mapped to the model's types by symbol and its
        periodic box (if any) decides periodicity (the box must be ≥ 2 × r_max, as OpenMM requires).
    atoms
        Indices of the atoms the model describes (an ML region); ``None`` = all atoms.
    backend
        ``"torch"`` (openmm-torch ``TorchForce``: TorchScript module with its own O(N) neighbour
        list, no Python per step), ``"python"`` (OpenMM ``PythonForce`` calling the model) or
        ``"auto"`` (the torch backend: no Python per step, Verlet list; logged; the python backend,
        with a warning, where openmm-torch cannot be imported). An AOTInductor
        package (``model.pt2``) runs with both: the torch backend calls it through a small TorchBind
        runner compiled once per machine (~15 s, needs g++; ``"auto"`` falls back to ``"python"``
        without a compiler). Small preset, 1,536 waters, CPU: 124 ms per step against 329 ms with
        the TorchScript file.
    precision
        ``None`` (the model's dtype), ``"float32"`` or ``"float64"``.
    force_group
        Optional OpenMM force group.
    skin
        Verlet skin (Å) of the neighbour list, both backends (default
        :data:`~allegro_bio.openmm_module.DEFAULT_SKIN`, 1 Å): the cell-list search runs only
        when an atom has moved skin/2 or the box changed; 0 searches every step. Results are
        the same either way.
    device
        Torch device the model runs on (``"cpu"``, ``"cuda"``, ``"cuda:1"``). The ``python``
        backend evaluates there, whatever OpenMM's platform, copying positions in and forces out
        each step. The ``torch`` backend runs on the OpenMM platform's device (openmm-torch moves
        the module there); for it ``device`` only says where an AOTInductor package is loaded,
        which must be the device it was compiled for and the platform's.

    Returns an ``openmm.Force``; energy in kJ/mol. Errors (unknown elements with atom indices, a
    box smaller than 2 × r_max, bad atom indices, bad precision or device) are raised here, before
    any step.
    """
    _import_openmm()
    if backend not in BACKENDS:
        raise AllegroError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" and not _openmm_torch_available():
        raise AllegroError("backend 'torch' needs openmm-torch (pip install openmmtorch), which cannot be imported; "
                           "use backend='python'")
    resolved = _resolve_model(model, precision, device)
    idx = _ml_atoms(topology, atoms)
    types = _types(topology, idx, resolved.type_names)
    box = _box_nm(topology)
    if box is not None:
        _check_box(box, resolved.r_max)
    auto = backend == "auto"
    if auto and not _openmm_torch_available():
        log.warning("AllegroForce: openmm-torch cannot be imported; using backend 'python'")
        backend = "python"
    elif auto:
        backend = "torch"
        log.info("AllegroForce: backend 'torch' chosen: no Python per step and a Verlet neighbour list; on CPU it "
                 "measured 1.04-1.09x the raw model's time per step (water 1,536 and 6,144 atoms, DHFR; "
                 "docs/benchmarks.md)")
    subset = not np.array_equal(idx, np.arange(topology.getNumAtoms()))
    module = None
    if backend == "torch":
        try:
            module = _torchscript_module(resolved)
        except RunnerBuildError as exc:
            if not auto:
                raise AllegroError(f"{resolved.path}: {exc}") from exc
            log.warning("AllegroForce: %s; using backend 'python', which runs the package from Python", exc)
            backend = "python"
    if backend == "torch":
        # a package's kernels take any pair count and allocate per call: padding would only add pairs
        package = isinstance(resolved, DeployedModel) and resolved.is_aoti
        force = _torch_force(module, types, idx, subset, box is not None, resolved.r_max, skin, pad=not package)
    else:
        force = _python_force(resolved, types, idx, topology.getNumAtoms(), box is not None,
                              DEFAULT_SKIN if skin is None else skin)
    if force_group is not None:
        force.setForceGroup(force_group)
    force.setName("AllegroForce")
    return force


def _torchscript_module(resolved):
    """What the TorchForce's module calls: the scripted potential, or for an AOTInductor package a
    TorchScript :class:`~allegro_bio.model.aoti.PackagePotential` running it (its runner library is
    compiled once per machine; the module holds the package's bytes)."""
    if not isinstance(resolved, DeployedModel):
        return resolved  # eager: scripted in _torch_force
    if not resolved.is_aoti:
        return resolved.module
    from .model.aoti import scripted_package

    aoti = resolved.module
    return scripted_package(resolved.path, aoti.config, aoti.max_edges_per_chunk, aoti.cutoff_matrix.device)


def _torch_force(module, types: np.ndarray, idx: np.ndarray, subset: bool, periodic: bool, r_max: float,
                 skin: float | None = None, pad: bool = True):
    import torch
    import openmmtorch

    from .openmm_module import DEFAULT_SKIN, AllegroOpenMMModule

    skin = DEFAULT_SKIN if skin is None else float(skin)
    if not skin >= 0.0:
        raise AllegroError(f"skin must be >= 0 Å, got {skin}")
    if not isinstance(module, torch.jit.ScriptModule):
        module = torch.jit.script(module)
    wrapper = AllegroOpenMMModule(module, torch.as_tensor(types), torch.as_tensor(idx), subset, periodic, r_max, pad=pad,
                                  skin=skin)
    force = openmmtorch.TorchForce(torch.jit.script(wrapper))
    force.setOutputsForces(True)
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


class PythonComputation:
    """The ``PythonForce`` callback: state (nm) → (energy kJ/mol, forces kJ/mol/nm).

    Picklable when the model came from a file (it re-loads the file), so systems using it can be
    serialised to XML and copied by ``CustomCVForce``.
    """

    def __init__(self, model, types: np.ndarray, idx: np.ndarray, n_total: int, periodic: bool,
                 skin: float = DEFAULT_SKIN) -> None:
        self.model = model
        self.types = np.asarray(types)
        self.idx = np.asarray(idx)
        self.n_total = int(n_total)
        self.periodic = bool(periodic)
        self.subset = not np.array_equal(self.idx, np.arange(self.n_total))
        self.neighbors = VerletList(model.r_max, skin)
        self.device = str(model.cutoff_matrix.device)  # where the model runs (positions in, forces out)

    def __call__(self, state):
        from openmm import unit

        from .inference import evaluate_types
        from .openmm_module import EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL

        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[self.idx] * 10.0
        if self.periodic:
            cell = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) * 10.0
            pbc = np.ones(3, dtype=bool)
        else:
            cell, pbc = np.zeros((3, 3)), np.zeros(3, dtype=bool)
        r = evaluate_types(self.model, pos, self.types, cell, pbc, compute_virial=False, device=self.device,
                           graph=self.neighbors(pos, cell, pbc))
        forces = r.forces * EV_PER_A_TO_KJ_PER_MOL_NM
        if self.subset:
            full = np.zeros((self.n_total, 3))
            full[self.idx] = forces
            forces = full
        return r.energy * EV_TO_KJ_PER_MOL, forces

    def __getstate__(self) -> dict[str, Any]:
        path = getattr(self.model, "path", None)
        if path is None:
            raise TypeError("this PythonForce holds an in-memory model; pass a model file path to AllegroForce to serialise it")
        state = dict(self.__dict__)
        state["model"] = (str(path), self.model.model_dtype)
        state["neighbors"] = VerletList(self.neighbors.cutoff, self.neighbors.skin)  # not the last list
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        path, dtype = state.pop("model")
        self.__dict__.update(state)
        self.model = as_model(path, device=state.get("device", "cpu"), dtype=dtype)


def _python_force(model, types: np.ndarray, idx: np.ndarray, n_total: int, periodic: bool, skin: float):
    import openmm

    if not skin >= 0.0:
        raise AllegroError(f"skin must be >= 0 Å, got {skin}")
    force = openmm.PythonForce(PythonComputation(model, types, idx, n_total, periodic, float(skin)))
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


# ------------------------------------------------------------------------------------------
# Mixed ML/MM systems (mechanical embedding, as OpenMM-ML's createMixedSystem)
# ------------------------------------------------------------------------------------------

def create_mixed_system(
    topology, mm_system, ml_atoms: Iterable[int], model: Any, interpolate: bool = False, backend: str = "auto",
    precision: str | None = None, device: str = "cpu",
):
    """A copy of ``mm_system`` where ``ml_atoms`` are described by Allegro.

    Bonds, angles, torsions and nonbonded pairs among ML atoms are removed from the MM force
    field; interactions between ML and MM atoms stay MM (mechanical embedding). With
    ``interpolate=True`` a global parameter ``lambda_interpolate`` (1 = ML, 0 = MM) switches the
    ML-region energy between Allegro and the removed MM terms; the ML term then uses the
    ``python`` backend and ``model`` should be a file path (``CustomCVForce`` copies its forces).
    ``backend``, ``precision`` and ``device`` are :func:`AllegroForce`'s.
    """
    openmm = _import_openmm()
    ml = set(int(i) for i in _ml_atoms(topology, ml_atoms))
    system = openmm.XmlSerializer.clone(mm_system)
    internal = openmm.System() if interpolate else None
    if internal is not None:
        for k in range(system.getNumParticles()):
            internal.addParticle(system.getParticleMass(k))
    for force in list(system.getForces()):
        _remove_ml_internal_terms(openmm, force, ml, internal)
    if interpolate and backend != "python":
        # CustomCVForce copies its forces through XML; deserialising a TorchForce crashes with the
        # PyPI openmmtorch 1.5 / OpenMM 8.6 wheels (docs/known-issues.md), so the ML term runs as a PythonForce.
        log.info("create_mixed_system(interpolate=True): using the 'python' backend inside CustomCVForce")
        backend = "python"
    ml_force = AllegroForce(model, topology, sorted(ml), backend=backend, precision=precision, device=device)
    if not interpolate:
        system.addForce(ml_force)
        return system
    terms = [openmm.XmlSerializer.clone(f) for f in internal.getForces()]
    mm = "+".join(f"mm{k}" for k in range(len(terms))) or "0"
    cv = openmm.CustomCVForce(f"lambda_interpolate*ml + (1-lambda_interpolate)*({mm})")
    cv.addGlobalParameter("lambda_interpolate", 1.0)
    cv.addCollectiveVariable("ml", ml_force)
    for k, term in enumerate(terms):
        cv.addCollectiveVariable(f"mm{k}", term)
    system.addForce(cv)
    return system


def _remove_ml_internal_terms(openmm, force, ml: set[int], internal) -> None:
    """Zero/remove the terms of ``force`` among ML atoms; copy them into ``internal`` if given."""
    def all_ml(*atoms: int) -> bool:
        return all(a in ml for a in atoms)

    if isinstance(force, openmm.HarmonicBondForce):
        keep = openmm.HarmonicBondForce() if internal is not None else None
        for k in range(force.getNumBonds()):
            i, j, r0, kk = force.getBondParameters(k)
            if all_ml(i, j):
                if keep is not None:
                    keep.addBond(i, j, r0, kk)
                force.setBondParameters(k, i, j, r0, 0.0)
        _keep(internal, keep, force)
    elif isinstance(force, openmm.HarmonicAngleForce):
        keep = openmm.HarmonicAngleForce() if internal is not None else None
        for k in range(force.getNumAngles()):
            i, j, l_, a0, kk = force.getAngleParameters(k)
            if all_ml(i, j, l_):
                if keep is not None:
                    keep.addAngle(i, j, l_, a0, kk)
                force.setAngleParameters(k, i, j, l_, a0, 0.0)
        _keep(internal, keep, force)
    elif isinstance(force, openmm.PeriodicTorsionForce):
        keep = openmm.PeriodicTorsionForce() if internal is not None else None
        for k in range(force.getNumTorsions()):
            i, j, l_, m, per, ph, kk = force.getTorsionParameters(k)
            if all_ml(i, j, l_, m):
                if keep is not None:
                    keep.addTorsion(i, j, l_, m, per, ph, kk)
                force.setTorsionParameters(k, i, j, l_, m, per, ph, 0.0)
        _keep(internal, keep, force)
    elif isinstance(force, openmm.NonbondedForce):
        existing = {}
        for k in range(force.getNumExceptions()):
            i, j, q, sig, eps = force.getExceptionParameters(k)
            existing[(min(i, j), max(i, j))] = k
        removed = []  # (i, j, chargeProd e², sigma nm, epsilon kJ/mol) of the ML-internal pairs
        ml_sorted = sorted(ml)
        for a_, i in enumerate(ml_sorted):
            for j in ml_sorted[a_ + 1:]:
                if (i, j) in existing:
                    k = existing[(i, j)]
                    _, _, q, sig, eps = force.getExceptionParameters(k)
                    removed.append((i, j, q._value, sig._value, eps._value))
                    force.setExceptionParameters(k, i, j, 0.0, 1.0, 0.0)
                else:
                    qi, si, ei = (x._value for x in force.getParticleParameters(i))
                    qj, sj, ej = (x._value for x in force.getParticleParameters(j))
                    removed.append((i, j, qi * qj, 0.5 * (si + sj), (ei * ej) ** 0.5))
                    force.addException(i, j, 0.0, 1.0, 0.0)
        if internal is not None and removed:
            pair = openmm.CustomBondForce("138.935456*q/r + 4*eps*((sig/r)^12-(sig/r)^6)")
            for name in ("q", "sig", "eps"):
                pair.addPerBondParameter(name)
            for i, j, q, sig, eps in removed:
                pair.addBond(i, j, [q, sig, eps])
            pair.setUsesPeriodicBoundaryConditions(force.usesPeriodicBoundaryConditions())
            internal.addForce(pair)
    elif isinstance(force, openmm.CustomNonbondedForce):
        excluded = {tuple(sorted(force.getExclusionParticles(k))) for k in range(force.getNumExclusions())}
        ml_sorted = sorted(ml)
        for a_, i in enumerate(ml_sorted):
            for j in ml_sorted[a_ + 1:]:
                if (i, j) not in excluded:
                    force.addExclusion(i, j)
    elif isinstance(force, (openmm.CMAPTorsionForce, openmm.RBTorsionForce, openmm.CustomTorsionForce,
                            openmm.CustomBondForce, openmm.CustomAngleForce)):
        raise AllegroError(
            f"create_mixed_system cannot yet remove ML-internal terms from {type(force).__name__}; "
            "remove them before calling it or use a force field without them"
        )


def _keep(internal, keep, force) -> None:
    if internal is not None and keep is not None:
        keep.setUsesPeriodicBoundaryConditions(force.usesPeriodicBoundaryConditions())
        internal.addForce(keep)
