"""Training configuration: a short YAML mapped onto frozen dataclasses, validated with readable errors.

A configuration has four sections (every key optional except ``data.train``)::

    run_dir: runs/water            # checkpoints, logs, plots and the deployed model go here
    model:                         # a preset plus any AllegroConfig field (see allegro_bio.model)
      preset: small
      type_names: [H, C, N, O, S]
    data:
      train: data/train.extxyz     # one path or a list: extxyz, ASE db, SPICE HDF5
      val: data/val.extxyz
    optim:
      epochs: 50
      batch_size: 16

Unknown keys and bad values raise :class:`~allegro_bio.errors.ConfigError` naming the key and
the allowed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..model.config import AllegroConfig, available_presets, preset_config

LOSSES = ("forces", "energy_forces", "energy_forces_stress")
FORCE_NORMALIZATIONS = ("rms", "max", "none")
SCHEDULERS = ("plateau", "multistep", "none")
FORMATS = ("extxyz", "db", "spice")


@dataclass(frozen=True)
class DataConfig:
    """Where the frames come from and how they are filtered. Energies eV, lengths Å, forces eV/Å.

    Parameters
    ----------
    train, val, test
        Paths (one or several) of extxyz / ASE db / SPICE HDF5 files. Without ``val``, a
        fraction ``val_fraction`` of ``train`` is held out (whole source configurations when
        frames carry ``config_id`` in their info, else random frames).
    format
        Force a reader (``extxyz``, ``db``, ``spice``); default: by file extension.
    spice_subsets
        SPICE only: keep molecules whose ``subset`` contains one of these substrings.
    spice_energy
        SPICE only: ``dft_total_energy`` or ``formation_energy``.
    max_force
        Drop frames with any force component above this (eV/Å); the SC'23 recipe used
        0.25 Ha/bohr = 12.86 eV/Å. ``None`` keeps everything.
    max_frames
        Use at most this many training frames (first ones after filtering); ``None``: all.
    lazy
        Read frames from disk when needed (HDF5) instead of holding them in memory.
    isolated_atom_energies
        Per-element energies (eV) to use as the shifts μ instead of the least-squares fit.
    stats_max_frames
        Statistics (neighbours, shifts, force scale) from at most this many training frames.
    num_workers
        DataLoader worker processes (0: load in the main process).
    """

    train: tuple[str, ...]
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    val_fraction: float = 0.1
    format: str | None = None
    spice_subsets: tuple[str, ...] = ()
    spice_energy: str = "dft_total_energy"
    max_force: float | None = None
    max_frames: int | None = None
    lazy: bool = False
    isolated_atom_energies: Mapping[str, float] | None = None
    stats_max_frames: int = 5000
    num_workers: int = 0


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation. Defaults follow the SC'23 recipe where it states one (Adam, lr 1e-3, batch 16, EMA 0.99).

    Parameters
    ----------
    loss
        ``forces`` (force MSE only, the paper), ``energy_forces`` or ``energy_forces_stress``.
    energy_weight, force_weight, stress_weight
        Weights of the per-atom energy, force and stress MSE terms.
    force_normalization
        Divide force (and per-atom energy) errors by the training set's force RMS (``rms``), its
        maximum absolute force component (``max``, the paper) or not at all (``none``).
    sam_rho
        Sharpness-aware minimisation radius ρ (Allegro-Legato recommends 0.005); 0 disables SAM.
    ema_decay
        Decay of the exponential moving average of the weights (0 disables EMA).
    scheduler
        ``plateau`` (reduce lr by ``lr_factor`` after ``lr_patience`` epochs without
        validation improvement), ``multistep`` (multiply by ``lr_factor`` at ``milestones``
        epochs) or ``none``.
    early_stopping_patience
        Stop after this many epochs without validation improvement (``None``: never); training
        also stops when the learning rate falls below ``min_lr``.
    checkpoint_every
        Write a checkpoint every this many optimisation steps (and at every epoch end).
    """

    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "forces"
    energy_weight: float = 1.0
    force_weight: float = 1.0
    stress_weight: float = 1.0
    force_normalization: str = "max"
    sam_rho: float = 0.0
    ema_decay: float = 0.99
    grad_clip: float | None = None
    scheduler: str = "plateau"
    lr_factor: float = 0.5
    lr_patience: int = 10
    milestones: tuple[int, ...] = ()
    min_lr: float = 1e-6
    early_stopping_patience: int | None = None
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"
    tf32: bool = False
    threads: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration (see the module docstring for the YAML form)."""

    data: DataConfig
    model: Mapping[str, Any] = field(default_factory=lambda: {"preset": "small"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    run_dir: str = "runs/allegro"
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"] = dict(self.model)
        return _plain(out)

    @property
    def model_preset(self) -> str:
        return str(self.model.get("preset", "small"))

    def model_fields(self) -> dict[str, Any]:
        """The AllegroConfig fields given in the ``model`` section (preset and type_names excluded)."""
        return {k: v for k, v in self.model.items() if k not in ("preset", "type_names")}

    @property
    def type_names(self) -> tuple[str, ...]:
        names = self.model.get("type_names", ("H", "C", "N", "O", "S"))
        return tuple(names.split()) if isinstance(names, str) else tuple(names)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _reject_unknown(values: Mapping[str, Any], allowed: list[str], section: str | None) -> None:
    """:class:`ConfigError` naming every unknown key (dotted with its section) and the allowed ones."""
    unknown = sorted(set(values) - set(allowed))
    if unknown and section is None:
        raise ConfigError(f"unknown top-level key(s) {unknown}; allowed: {allowed}")
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'{section}.{k}' for k in unknown]}; allowed in '{section}': {allowed}")


def _section(cls: type, name: str, values: Any, tuple_fields: tuple[str, ...] = ()) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"section '{name}' must be a mapping of key: value, got {type(values).__name__}")
    _reject_unknown(values, [f.name for f in dataclasses.fields(cls)], name)
    values = dict(values)
    for key in tuple_fields:
        if key in values and values[key] is not None:
            v = values[key]
            values[key] = (str(v),) if isinstance(v, (str, Path)) else tuple(str(x) if key != "milestones" else int(x) for x in v)
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, value in values.items():
        _check_type(f"{name}.{key}", types[key], value)
    return cls(**values)


def _check_type(key: str, annotation: str, value: Any) -> None:
    """Reject obviously wrong scalar types (a string where a number is expected, ...)."""
    if value is None:
        if "None" not in str(annotation):
            raise ConfigError(f"{key} may not be empty (null)")
        return
    ann = str(annotation)
    if ann.startswith("int") and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if ann.startswith("float") and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if ann.startswith("bool") and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if ann.startswith("str") and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")


def _choice(key: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r} is not allowed; choose one of {list(allowed)}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check values and the model section (building its AllegroConfig); returns ``cfg``."""
    d, o = cfg.data, cfg.optim
    if not d.train:
        raise ConfigError("data.train is required: one path or a list of paths (extxyz, ASE db or SPICE HDF5)")
    if d.format is not None:
        _choice("data.format", d.format, FORMATS)
    _choice("data.spice_energy", d.spice_energy, ("dft_total_energy", "formation_energy"))
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    if d.max_force is not None and d.max_force <= 0:
        raise ConfigError(f"data.max_force must be > 0 eV/Å, got {d.max_force}")
    _choice("optim.loss", o.loss, LOSSES)
    _choice("optim.force_normalization", o.force_normalization, FORCE_NORMALIZATIONS)
    _choice("optim.scheduler", o.scheduler, SCHEDULERS)
    for key in ("epochs", "batch_size", "checkpoint_every"):
        if getattr(o, key) < 1:
            raise ConfigError(f"optim.{key} must be >= 1, got {getattr(o, key)}")
    if not o.lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {o.lr}")
    if not 0.0 <= o.ema_decay < 1.0:
        raise ConfigError(f"optim.ema_decay must be in [0, 1), got {o.ema_decay}")
    if o.sam_rho < 0:
        raise ConfigError(f"optim.sam_rho must be >= 0 (0 disables SAM; 0.005 recommended), got {o.sam_rho}")
    if not (o.device in ("cpu", "cuda", "auto") or o.device.startswith("cuda:")):
        raise ConfigError(f"optim.device = {o.device!r} is not allowed; choose 'cpu', 'cuda', 'cuda:N' or 'auto'")
    if cfg.model_preset not in available_presets():
        raise ConfigError(f"model.preset = {cfg.model_preset!r} is not allowed; choose one of {available_presets()}")
    preset_config(cfg.model_preset, cfg.type_names, **cfg.model_fields())  # raises ConfigError naming the field
    return cfg


def config_from_dict(raw: Mapping[str, Any], base_dir: str | Path | None = None) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a plain mapping (e.g. parsed YAML).

    Relative data paths are resolved against ``base_dir`` (the YAML file's folder) when given
    and the path exists there.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a training configuration is a mapping with sections {['run_dir', 'model', 'data', 'optim']}")
    _reject_unknown(raw, [f.name for f in dataclasses.fields(TrainConfig)], None)
    if "data" not in raw:
        raise ConfigError("the configuration needs a 'data' section with at least 'train: PATH'")
    data_raw = dict(raw["data"] or {})
    if "train" not in data_raw:
        raise ConfigError("data.train is required: one path or a list of paths (extxyz, ASE db or SPICE HDF5)")
    data = _section(DataConfig, "data", data_raw, ("train", "val", "test", "spice_subsets"))
    if base_dir is not None:
        data = dataclasses.replace(data, **{k: tuple(_resolve(p, base_dir) for p in getattr(data, k)) for k in ("train", "val", "test")})
    optim = _section(OptimConfig, "optim", raw.get("optim"), ("milestones",))
    model = dict(raw.get("model") or {"preset": "small"})
    model.setdefault("preset", "small")
    _reject_unknown(model, ["preset"] + [f.name for f in dataclasses.fields(AllegroConfig)], "model")
    cfg = TrainConfig(data=data, model=model, optim=optim, run_dir=str(raw.get("run_dir", "runs/allegro")),
                      description=str(raw.get("description", "")))
    return validate(cfg)


def _resolve(path: str, base_dir: str | Path) -> str:
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    candidate = Path(base_dir) / p
    if candidate.exists():
        return str(candidate.resolve())
    return str(p.resolve()) if p.exists() else str(p)


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training configuration; ``overrides`` maps dotted keys (``optim.epochs``) to values."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    raw = dict(raw or {})
    for dotted, value in (overrides or {}).items():
        *parents, last = dotted.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    try:
        return config_from_dict(raw, base_dir=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
