"""The deployed model file: one TorchScript archive plus metadata, loadable without training code.

The archive holds the scripted :class:`~allegro_bio.model.AllegroPotential` (its ``compute``
method is the contract ASE, OpenMM and LAMMPS call) and these extra files, readable from
Python (``torch.jit.load(path, _extra_files=...)``) and C++ (``torch::jit::load``):

=========================  ===================================================================
``r_max``                  largest cutoff, Å
``type_names``             element symbols, space separated, in type-index order
``num_types``              number of types
``model_dtype``            ``float32`` or ``float64``
``per_edge_type_cutoff``   T×T cutoffs (Å), centre-major, space separated
``allow_tf32``             ``0``/``1``: whether float32 CUDA matmuls may use TF32 (applied on load)
``zbl``                    ``0``/``1``
``units``                  ``eV Angstrom``
``allegro_bio_version``    package version that wrote the file
``format_version``         integer; bumped when this contract changes
``training_description``   free text: data, method, or "untrained"
``config``                 the full model configuration, JSON
``max_edges_per_chunk``    pairs per chunk (AOTInductor packages only)
=========================  ===================================================================

The scripted module's ``max_edges_per_chunk`` and ``stream_tile`` attributes (pairs per chunk of
centre atoms; pairs per tile of the streamed, low-memory evaluation, 0 = off) travel with it and
are settings of the loaded :class:`DeployedModel`.

A path ending in ``.pt2`` holds an AOTInductor package instead (:mod:`allegro_bio.model.aoti`):
the compiled per-chunk step, with the same keys as package metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._version import FORMAT_VERSION, __version__
from .errors import ModelFileError
from .model import AllegroPotential, clone
from .model.allegro import FLOAT64_NAMES
from .model.aoti import SUFFIX as AOTI_SUFFIX

R_MAX = "r_max"
TYPE_NAMES = "type_names"
NUM_TYPES = "num_types"
MODEL_DTYPE = "model_dtype"
PER_EDGE_TYPE_CUTOFF = "per_edge_type_cutoff"
ALLOW_TF32 = "allow_tf32"
ZBL = "zbl"
UNITS = "units"
VERSION = "allegro_bio_version"
FORMAT = "format_version"
TRAINING = "training_description"
CONFIG = "config"
MAX_EDGES_PER_CHUNK = "max_edges_per_chunk"  # AOTInductor packages only (a TorchScript file holds it as an attribute)
METADATA_KEYS = (R_MAX, TYPE_NAMES, NUM_TYPES, MODEL_DTYPE, PER_EDGE_TYPE_CUTOFF, ALLOW_TF32, ZBL, UNITS, VERSION,
                 FORMAT, TRAINING, CONFIG)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def metadata_of(model: AllegroPotential, training_description: str = "", allow_tf32: bool = False) -> dict[str, str]:
    """The metadata strings written next to ``model``."""
    config = model.config
    cut = model.cutoff_matrix.flatten().tolist()
    return {
        R_MAX: repr(float(config.r_max)),
        TYPE_NAMES: " ".join(config.type_names),
        NUM_TYPES: str(config.num_types),
        MODEL_DTYPE: config.dtype,
        PER_EDGE_TYPE_CUTOFF: " ".join(repr(float(x)) for x in cut),
        ALLOW_TF32: str(int(allow_tf32)),
        ZBL: str(int(config.zbl)),
        UNITS: "eV Angstrom",
        VERSION: __version__,
        FORMAT: str(FORMAT_VERSION),
        TRAINING: training_description,
        CONFIG: model.config_json,
    }


def save(
    model: AllegroPotential, path: str | os.PathLike, training_description: str = "untrained (seeded initialisation)",
    allow_tf32: bool = False,
) -> Path:
    """Write ``model`` as one TorchScript file with metadata; returns the path.

    A path ending in ``.pt2`` writes an AOTInductor package instead (:mod:`allegro_bio.model.aoti`):
    the network and its force backward compiled to C++ kernels for this machine and the model's
    device, same metadata, 30–60 s to write on 2 cores (needs g++); measured 0.37–0.39× the
    TorchScript file's time per evaluation (small preset) and 0.66–0.80× (paper) on CPU. It
    runs from Python (``load``, ASE, OpenMM's ``python`` backend), in openmm-torch's ``TorchForce``
    (OpenMM's ``torch`` backend, through :mod:`allegro_bio.model.package_runner`) and in LAMMPS,
    and holds kernels rather than trainable weights: keep the ``.pt`` file too.

    The file is written to a temporary name and renamed, so a failure never leaves a
    truncated model behind.
    """
    if not isinstance(model, AllegroPotential):
        raise TypeError(f"save() takes an AllegroPotential (from build_model or training), got {type(model).__name__}")
    from .model.compiled import CompiledPotential

    if isinstance(model, CompiledPotential):  # the file holds the weights; compiling is a run-time choice
        model = model.eager()
    path = Path(path)
    check_stream_tile(model.stream_tile)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = metadata_of(model, training_description, allow_tf32)
    if path.suffix == AOTI_SUFFIX:
        from .model.aoti import export_package

        if model.stream_tile > 0:
            raise ModelFileError(f"{path}: an AOTInductor package evaluates in chunks of centre atoms and cannot stream "
                                 f"pairs in tiles; set the model's stream_tile to 0 for a package (stream_tile is a "
                                 f"mode of .pt files)")

        extra[MAX_EDGES_PER_CHUNK] = str(model.max_edges_per_chunk)  # read by the Python and C++ chunk drivers
        return export_package(model.eval(), path, extra)  # compiled for the model's device
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    # saved frozen (no weight requires grad): inference then records no weight-gradient work
    trainable = [p.requires_grad for p in model.parameters()]
    device = model.cutoff_matrix.device
    try:
        model.requires_grad_(False)
        torch.jit.save(torch.jit.script(model.cpu().eval()), tmp, _extra_files=extra)
        os.replace(tmp, path)
    finally:  # the caller's model as it was: trainable flags and device (Module.cpu() moves it in place)
        model.to(device)
        for p, flag in zip(model.parameters(), trainable):
            p.requires_grad_(flag)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class DeployedModel:
    """A loaded model file: the scripted potential plus its metadata.

    Offers the same interface as an eager :class:`~allegro_bio.model.AllegroPotential`
    (``type_names``, ``r_max``, ``cutoff_matrix``, ``model_dtype``, ``compute``), so every
    integration accepts either. ``module`` is the scripted potential of a ``.pt`` file, or for
    a ``.pt2`` package an :class:`~allegro_bio.model.aoti.AOTIPotential` (``is_aoti``).
    """

    def __init__(self, module: torch.nn.Module, metadata: dict[str, str], path: Path | None = None) -> None:
        self.module = _frozen(module)
        self.metadata = metadata
        self.path = path
        self.type_names: list[str] = metadata[TYPE_NAMES].split()
        self.r_max = float(metadata[R_MAX])
        self.model_dtype = metadata[MODEL_DTYPE]
        self.allow_tf32 = metadata[ALLOW_TF32] == "1"

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.metadata[CONFIG])

    @property
    def is_aoti(self) -> bool:
        """Whether this is an AOTInductor package (compiled kernels, fixed dtype, no TorchScript)."""
        return not isinstance(self.module, torch.jit.ScriptModule)

    @property
    def cutoff_matrix(self) -> torch.Tensor:
        return self.module.cutoff_matrix

    @property
    def max_edges_per_chunk(self) -> int:
        return int(self.module.max_edges_per_chunk)

    @max_edges_per_chunk.setter
    def max_edges_per_chunk(self, value: int) -> None:
        self.module.max_edges_per_chunk = int(value)

    @property
    def stream_tile(self) -> int:
        """Pairs per tile of the streamed, low-memory evaluation (0: off; see
        :meth:`~allegro_bio.model.allegro.AllegroNet.streamed_energy_and_grad`)."""
        return int(getattr(self.module, "stream_tile", 0))

    @stream_tile.setter
    def stream_tile(self, value: int) -> None:
        value = check_stream_tile(value)
        if self.is_aoti or not hasattr(self.module, "stream_tile"):
            if value == 0:
                return
            what = ("is an AOTInductor package (it evaluates in chunks of centre atoms)" if self.is_aoti else
                    "was written by an older version without the streamed evaluation; re-write it with "
                    "`allegro-bio deploy --from` first")
            raise ModelFileError(f"{self.path} {what}: it cannot stream pairs in tiles")
        self.module.stream_tile = value

    def compute(self, *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.module.compute(*args)

    def __call__(self, *args: Any) -> torch.Tensor:
        return self.module(*args)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "DeployedModel":
        """Move to ``device`` and/or cast weights to ``dtype`` (float64 sums stay float64)."""
        if device is not None:
            self.module = self.module.to(device)
        if dtype is not None and self.is_aoti:
            if dtype != _DTYPES[self.model_dtype]:
                raise ModelFileError(f"{self.path} is an AOTInductor package compiled for {self.model_dtype}; it cannot run "
                                     f"in {dtype}: write one in that dtype from the .pt file (allegro-bio deploy --from)")
        elif dtype is not None:
            keep = {n: t.detach().clone() for n, t in _float64_tensors(self.module)}
            self.module = self.module.to(dtype)
            for name, t in keep.items():
                owner, attr = _owner(self.module, name)
                value = getattr(owner, attr)
                setattr(owner, attr, torch.nn.Parameter(t) if isinstance(value, torch.nn.Parameter) else t)
            self.model_dtype = {torch.float32: "float32", torch.float64: "float64"}[dtype]
        _frozen(self.module)
        return self

    def __repr__(self) -> str:
        return f"DeployedModel({self.path}, types={self.type_names}, r_max={self.r_max}, dtype={self.model_dtype})"


def to_eager(model: DeployedModel) -> AllegroPotential:
    """The eager :class:`AllegroPotential` of a loaded file: its config and weights in this
    version's network code (on CPU, trainable again, chunk size kept)."""
    from .model import build_from_config
    from .model.config import AllegroConfig

    if model.is_aoti:
        raise ModelFileError(f"{model.path} is an AOTInductor package: it holds compiled kernels, not weights that can "
                             "be loaded back into the network; use the TorchScript (.pt) file it was written from")
    eager = build_from_config(AllegroConfig.from_dict(model.config))
    derived = {name for name, _ in eager.named_buffers()} - set(eager.state_dict())  # non-persistent buffers
    state = {k: v.detach().cpu() for k, v in model.module.state_dict().items() if k not in derived}
    missing, unexpected = eager.load_state_dict(state, strict=False)
    # buffers this version no longer keeps (constants an older network code derived and stored,
    # e.g. the removed sparse product's indices) are dropped; a weight that does not fit is an error
    weights = {name for name, _ in model.module.named_parameters()}
    unexpected = [k for k in unexpected if k in weights]
    if missing or unexpected:
        raise ModelFileError(f"{model.path}: weights do not fit the network of its config "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    eager.max_edges_per_chunk = model.max_edges_per_chunk
    eager.stream_tile = model.stream_tile
    return eager


def redeploy(source: str | os.PathLike, destination: str | os.PathLike, allow_tf32: bool | None = None,
             device: str | torch.device = "cpu", stream_tile: int | None = None) -> Path:
    """Re-write model file ``source`` as ``destination`` with this version's network code: the same
    weights, config and training description, the current (faster) implementation. Outputs agree
    with the old file to float rounding. ``allow_tf32`` replaces the file's setting (default: kept).
    A package (``.pt2``) is compiled for ``device`` (e.g. ``"cuda"``: where it will run).
    ``stream_tile`` sets the streamed evaluation's tile (pairs; 0: off; default: the source's for a
    ``.pt`` file, off for a package, which cannot stream)."""
    from .model.potential import default_chunk

    old = load(source)
    eager = to_eager(old)
    eager.max_edges_per_chunk = default_chunk(eager.config)  # a speed setting: this version's default
    if stream_tile is not None:
        eager.stream_tile = check_stream_tile(stream_tile)
    elif Path(destination).suffix == AOTI_SUFFIX:
        eager.stream_tile = 0
    eager = eager.to(device)
    tf32 = old.allow_tf32 if allow_tf32 is None else bool(allow_tf32)
    return save(eager, destination, training_description=old.metadata[TRAINING], allow_tf32=tf32)


def check_stream_tile(value: Any) -> int:
    """``value`` as a stream tile (pairs per tile, 0: off), or ``ValueError`` naming it."""
    try:
        tile = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"stream_tile must be a whole number of pairs (0: off), got {value!r}") from None
    if tile < 0 or tile != value:
        raise ValueError(f"stream_tile must be a whole number of pairs ≥ 0 (0: off), got {value!r}")
    return tile


def _frozen(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with no parameter requiring grad (inference: autograd then skips weight gradients,
    ~25 % less time per evaluation for the small preset)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _float64_tensors(module: torch.nn.Module):
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if name.rsplit(".", 1)[-1] in FLOAT64_NAMES:
            yield name, t


def _owner(module: torch.nn.Module, dotted: str) -> tuple[torch.nn.Module, str]:
    *parents, attr = dotted.split(".")
    for p in parents:
        module = getattr(module, p)
    return module, attr


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> DeployedModel:
    """Load and validate a model file written by :func:`save` (or a packaged model by name).

    Raises :class:`~allegro_bio.errors.ModelFileError` naming the file when it is missing,
    corrupt, not an allegro_bio model, or written by an incompatible format version.
    """
    path = Path(path)
    if not path.exists() and path.suffix not in (".pt", AOTI_SUFFIX) and len(path.parts) == 1:
        from . import pretrained  # a bare name such as "allegro-bio-xtb-small": a packaged model

        path = pretrained.path(path.name)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if path.suffix == AOTI_SUFFIX:
        return _load_aoti(path, device)
    extra = {k: "" for k in METADATA_KEYS}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError / ValueError subclasses for bad archives
        raise ModelFileError(f"{path} is not a readable TorchScript model file (corrupt or wrong format): {exc}") from exc
    extra = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in extra.items()}
    _check_metadata(path, extra, "a TorchScript file")
    if not hasattr(module, "compute"):
        raise ModelFileError(f"{path}: the network has no 'compute' method (not an allegro_bio potential)")
    return DeployedModel(module.eval(), extra, path)


def _check_metadata(path: Path, extra: dict[str, str], kind: str) -> None:
    """Raise :class:`ModelFileError` naming ``path`` unless ``extra`` is complete, consistent metadata."""
    if not extra[FORMAT]:
        raise ModelFileError(f"{path} is {kind} but not an allegro_bio model (no '{FORMAT}' metadata)")
    try:
        fmt = int(extra[FORMAT])
    except ValueError:
        raise ModelFileError(f"{path}: bad '{FORMAT}' metadata {extra[FORMAT]!r}") from None
    if fmt > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format {fmt}, written by allegro_bio {extra[VERSION]}; this is allegro_bio "
            f"{__version__} (format {FORMAT_VERSION}): upgrade allegro_bio to load it"
        )
    missing = [k for k in (R_MAX, TYPE_NAMES, NUM_TYPES, MODEL_DTYPE, CONFIG) if not extra[k]]
    if missing:
        raise ModelFileError(f"{path}: metadata incomplete, missing {missing}")
    if len(extra[TYPE_NAMES].split()) != int(extra[NUM_TYPES]):
        raise ModelFileError(f"{path}: type_names {extra[TYPE_NAMES]!r} disagrees with num_types {extra[NUM_TYPES]}")
    if extra[MODEL_DTYPE] not in _DTYPES:
        raise ModelFileError(f"{path}: unknown model_dtype {extra[MODEL_DTYPE]!r}")


def _load_aoti(path: Path, device: str | torch.device) -> DeployedModel:
    """Load an AOTInductor package written by :func:`save` (``.pt2``)."""
    from .model.aoti import AOTIPotential, load_runner
    from .model.config import AllegroConfig

    try:
        runner, extra = load_runner(path, device)
    except Exception as exc:  # torch raises RuntimeError for a bad archive or a package for another device
        raise ModelFileError(f"{path} is not a readable AOTInductor package (corrupt, wrong format, or compiled for "
                             f"another device than {device}): {str(exc).splitlines()[0] if str(exc) else exc}") from exc
    extra = {k: extra.get(k, "") for k in METADATA_KEYS + (MAX_EDGES_PER_CHUNK,)}
    _check_metadata(path, extra, "an AOTInductor package")
    module = AOTIPotential(AllegroConfig.from_dict(json.loads(extra[CONFIG])), runner, device)
    if extra[MAX_EDGES_PER_CHUNK]:
        module.max_edges_per_chunk = int(extra[MAX_EDGES_PER_CHUNK])
    return DeployedModel(module.eval(), extra, path)


def as_model(model: Any, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, compile: bool = False):
    """Resolve a model to a ready one: a file path, the name of a packaged model
    (:mod:`allegro_bio.pretrained`), ``None`` (the default packaged model), a
    :class:`DeployedModel` or an eager :class:`AllegroPotential`. With ``compile``, the result is a
    :class:`~allegro_bio.model.compiled.CompiledPotential` of its weights (``torch.compile``, for
    Python callers: ASE, the MD runner).

    Every engine (ASE, OpenMM, MD, evaluation) gets its model here, so this is also where the
    process is set up for repeated evaluations (:func:`allegro_bio.runtime.keep_freed_memory`) and
    a model file's ``allow_tf32`` metadata is applied (:func:`allegro_bio.runtime.set_tf32`:
    process-wide, CUDA matmuls only; nequip's deployed models do the same)."""
    from .runtime import keep_freed_memory, set_tf32

    keep_freed_memory()
    if model is None:
        from . import pretrained

        model = pretrained.path()
    if isinstance(model, (str, os.PathLike)):  # a file, or a packaged model's name (resolved by load)
        model = load(model, device=device)
    elif isinstance(model, DeployedModel):
        model = model.to(device)
    elif isinstance(model, AllegroPotential):
        model = model.to(device)
    else:
        raise TypeError(f"expected a model file path, packaged model name, DeployedModel or AllegroPotential, got "
                        f"{type(model).__name__}")
    if isinstance(model, DeployedModel):
        set_tf32(model.allow_tf32)
    if dtype is not None:
        dtype = _DTYPES[dtype] if isinstance(dtype, str) else dtype
        if isinstance(model, DeployedModel):
            model.to(dtype=dtype)
        else:
            model = clone(model, {torch.float32: "float32", torch.float64: "float64"}[dtype])
    if compile and isinstance(model, DeployedModel) and model.is_aoti:
        compile = False  # an AOTInductor package is compiled already
    if compile:
        from .model.compiled import compile_potential

        if isinstance(model, DeployedModel):
            eager = to_eager(model)
            if eager.model_dtype != model.model_dtype:  # the loaded file was cast after loading
                eager = clone(eager, model.model_dtype)
            model = eager.to(model.cutoff_matrix.device)
        model = compile_potential(model)
    return model
