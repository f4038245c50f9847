"""Model configuration: a frozen dataclass, named presets, and validation with readable errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ase.data import atomic_numbers

from ..errors import ConfigError

CutoffSpec = Mapping[str, "float | Mapping[str, float]"]


@dataclass(frozen=True)
class AllegroConfig:
    """Hyperparameters of one Allegro network. Lengths in Å, energies in eV.

    Parameters
    ----------
    type_names
        Element symbols the model knows, in type-index order (e.g. ``("H", "C", "N", "O", "S")``).
    r_max
        Largest cutoff radius (Å); neighbour lists are built with it.
    per_edge_type_cutoff
        Cutoffs per *ordered* species pair, ``{"H": {"C": 1.25}}`` meaning centre H, neighbour C;
        ``{"H": 3.0}`` sets every neighbour of a centre H. Missing pairs use ``r_max``.
    num_layers, num_tensor_features, l_max, parity
        Depth, channels of the tensor track, largest rotation order, and whether features of
        both parities are kept (full O(3)); ``parity=False`` gives an SO(3) model.
    num_bessels, bessel_trainable, polynomial_p
        Radial basis size, whether its frequencies are trained (per ordered species pair),
        and the exponent of the polynomial cutoff envelope.
    two_body_mlp, latent_mlp, readout_mlp
        Layer widths after the input. The last width of ``two_body_mlp`` is the scalar
        (latent) width and ``latent_mlp`` must end with the same width; ``readout_mlp`` lists
        hidden widths of the per-pair energy MLP (its output, 1, is implied).
    avg_num_neighbors
        Normalisation of the environment sums (set from training data statistics).
    zbl
        Add ZBL screened nuclear repulsion per pair.
    per_type_scale, per_type_shift
        Initial per-species energy scale σ (eV) and shift μ (eV), one per type (default 1, 0).
    dtype
        ``"float32"`` or ``"float64"``: dtype of weights and matrix work. Final sums are float64.
    """

    type_names: tuple[str, ...]
    r_max: float = 4.0
    per_edge_type_cutoff: Mapping[str, Any] | None = None
    num_layers: int = 2
    num_tensor_features: int = 32
    l_max: int = 1
    parity: bool = True
    num_bessels: int = 8
    bessel_trainable: bool = True
    polynomial_p: int = 6
    two_body_mlp: tuple[int, ...] = (64, 64)
    latent_mlp: tuple[int, ...] = (64, 64)
    readout_mlp: tuple[int, ...] = (64,)
    avg_num_neighbors: float = 20.0
    zbl: bool = True
    per_type_scale: tuple[float, ...] | None = None
    per_type_shift: tuple[float, ...] | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_types(self) -> int:
        return len(self.type_names)

    @property
    def latent_dim(self) -> int:
        return self.two_body_mlp[-1]

    def cutoff_matrix(self) -> list[list[float]]:
        """Cutoff (Å) for every ordered type pair, ``m[centre][neighbour]``."""
        n = self.num_types
        m = [[float(self.r_max)] * n for _ in range(n)]
        index = {s: k for k, s in enumerate(self.type_names)}
        for centre, spec in (self.per_edge_type_cutoff or {}).items():
            if isinstance(spec, Mapping):
                for neighbour, rc in spec.items():
                    m[index[centre]][index[neighbour]] = float(rc)
            else:
                m[index[centre]] = [float(spec)] * n
        return m

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["type_names"] = list(self.type_names)
        for key in ("two_body_mlp", "latent_mlp", "readout_mlp", "per_type_scale", "per_type_shift"):
            if d[key] is not None:
                d[key] = list(d[key])
        if d["per_edge_type_cutoff"] is not None:
            d["per_edge_type_cutoff"] = _plain(d["per_edge_type_cutoff"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AllegroConfig":
        return make_config(**d)


def _plain(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, Mapping) else float(v)) for k, v in spec.items()}


_TUPLE_FIELDS = ("type_names", "two_body_mlp", "latent_mlp", "readout_mlp", "per_type_scale", "per_type_shift")


def make_config(**fields: Any) -> AllegroConfig:
    """Build an :class:`AllegroConfig`, rejecting unknown keys by name."""
    allowed = {f.name for f in dataclasses.fields(AllegroConfig)}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ConfigError(f"unknown model option(s) {unknown}; allowed: {sorted(allowed)}")
    for key in _TUPLE_FIELDS:
        if fields.get(key) is not None:
            value = fields[key]
            fields[key] = tuple(value.split()) if isinstance(value, str) else tuple(value)
    return AllegroConfig(**fields)


def validate(c: AllegroConfig) -> None:
    """Raise :class:`ConfigError` naming the first bad field."""
    if not c.type_names:
        raise ConfigError("type_names is empty: give the element symbols the model should know")
    bad = [s for s in c.type_names if s not in atomic_numbers]
    if bad:
        raise ConfigError(f"type_names must be element symbols; not elements: {bad}")
    if len(set(c.type_names)) != len(c.type_names):
        raise ConfigError(f"type_names has duplicates: {list(c.type_names)}")
    if not c.r_max > 0:
        raise ConfigError(f"r_max must be > 0 Å, got {c.r_max}")
    for name in ("num_layers", "num_tensor_features", "num_bessels", "polynomial_p"):
        if int(getattr(c, name)) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(c, name)}")
    if not 0 <= c.l_max <= 3:
        raise ConfigError(f"l_max must be 0, 1, 2 or 3, got {c.l_max}")
    for name in ("two_body_mlp", "latent_mlp"):
        widths = getattr(c, name)
        if not widths or any(int(w) < 1 for w in widths):
            raise ConfigError(f"{name} must be a non-empty list of positive widths, got {widths}")
    if c.latent_mlp[-1] != c.two_body_mlp[-1]:
        raise ConfigError(
            f"latent_mlp must end with the latent width two_body_mlp[-1]={c.two_body_mlp[-1]} "
            f"(residual update), got latent_mlp={list(c.latent_mlp)}"
        )
    if any(int(w) < 1 for w in c.readout_mlp):
        raise ConfigError(f"readout_mlp widths must be positive, got {c.readout_mlp}")
    if not c.avg_num_neighbors > 0:
        raise ConfigError(f"avg_num_neighbors must be > 0, got {c.avg_num_neighbors}")
    if c.dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {c.dtype!r}")
    for name in ("per_type_scale", "per_type_shift"):
        v = getattr(c, name)
        if v is not None and len(v) != len(c.type_names):
            raise ConfigError(f"{name} needs one value per type ({len(c.type_names)}), got {len(v)}")
    for centre, spec in (c.per_edge_type_cutoff or {}).items():
        if centre not in c.type_names:
            raise ConfigError(f"per_edge_type_cutoff names {centre!r}, not in type_names {list(c.type_names)}")
        pairs = spec.items() if isinstance(spec, Mapping) else [("*", spec)]
        for neighbour, rc in pairs:
            if neighbour != "*" and neighbour not in c.type_names:
                raise ConfigError(
                    f"per_edge_type_cutoff[{centre!r}] names {neighbour!r}, not in type_names {list(c.type_names)}"
                )
            if not 0 < float(rc) <= c.r_max:
                raise ConfigError(
                    f"per_edge_type_cutoff[{centre!r}][{neighbour!r}] = {rc} must be in (0, r_max={c.r_max}]"
                )


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

#: SC'23 biomolecular cutoffs (Å), centre → neighbour; pairs not listed keep r_max = 4.0.
PAPER_CUTOFFS: dict[str, dict[str, float]] = {"H": {"H": 3.0, "C": 1.25, "O": 1.25}, "O": {"H": 3.0}}

PRESETS: dict[str, dict[str, Any]] = {
    # Musaelian et al., SC'23: 2 layers, 64 tensor features, l_max 2, full O(3), two-body MLP
    # 128-256-512-1024, latent MLP 1024-1024-1024, readout 128, 8 Bessels, r_max 4 Å, SiLU.
    "paper": dict(
        r_max=4.0,
        per_edge_type_cutoff=PAPER_CUTOFFS,
        num_layers=2,
        num_tensor_features=64,
        l_max=2,
        parity=True,
        num_bessels=8,
        two_body_mlp=(128, 256, 512, 1024),
        latent_mlp=(1024, 1024, 1024),
        readout_mlp=(128,),
    ),
    # CPU preset with the widths of the reference's small benchmark model.
    "small": dict(
        r_max=4.0,
        num_layers=2,
        num_tensor_features=32,
        l_max=1,
        parity=True,
        num_bessels=8,
        two_body_mlp=(64, 64),
        latent_mlp=(64, 64),
        readout_mlp=(64,),
    ),
}


def available_presets() -> list[str]:
    """Names accepted by ``build_model(preset=...)``."""
    return sorted(PRESETS)


def preset_config(preset: str, type_names: list[str] | tuple[str, ...], **overrides: Any) -> AllegroConfig:
    """Config of a named preset for ``type_names``, with any field overridden."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; available: {available_presets()}")
    fields = dict(PRESETS[preset])
    types = tuple(type_names.split()) if isinstance(type_names, str) else tuple(type_names)
    if "per_edge_type_cutoff" not in overrides and fields.get("per_edge_type_cutoff"):
        # preset cutoffs apply to the types present; user overrides are validated strictly
        fields["per_edge_type_cutoff"] = {
            c: {n: rc for n, rc in spec.items() if n in types}
            for c, spec in fields["per_edge_type_cutoff"].items()
            if c in types
        } or None
    fields.update(overrides)
    return make_config(type_names=types, **fields)
