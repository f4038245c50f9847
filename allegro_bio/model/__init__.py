"""The Allegro network: configuration, presets, layers and the deployable potential."""

from __future__ import annotations

from typing import Any

import torch

from .allegro import AllegroLayer, AllegroNet, cast_model
from .config import PRESETS, AllegroConfig, available_presets, make_config, preset_config
from .potential import AllegroPotential
from .tensor_product import FusedTensorProduct, plan_layers

__all__ = [
    "AllegroConfig",
    "AllegroLayer",
    "AllegroNet",
    "AllegroPotential",
    "FusedTensorProduct",
    "PRESETS",
    "available_presets",
    "build_model",
    "build_from_config",
    "clone",
    "make_config",
    "plan_layers",
    "preset_config",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_from_config(config: AllegroConfig, seed: int = 0, cls: type = AllegroPotential) -> AllegroPotential:
    """An untrained :class:`AllegroPotential` for ``config``, initialised from ``seed``.

    Weights are drawn in float64 and then cast, so the float32 and float64 models of one seed
    agree to float32 rounding.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            model = cls(config)
        finally:
            torch.set_default_dtype(previous)
    return cast_model(model, _DTYPES[config.dtype]).eval()


def clone(model: AllegroPotential, dtype: str | None = None, cls: type = AllegroPotential) -> AllegroPotential:
    """A copy of ``model`` (weights, chunk size, stream tile), optionally cast to ``dtype`` ("float32"/"float64"),
    as an instance of ``cls`` (an :class:`AllegroPotential` subclass built from a config)."""
    import dataclasses

    config = model.config if dtype is None else dataclasses.replace(model.config, dtype=dtype)
    new = build_from_config(config, cls=cls)
    new.load_state_dict(model.state_dict())
    new.max_edges_per_chunk = model.max_edges_per_chunk
    new.stream_tile = model.stream_tile
    return new.to(model.cutoff_matrix.device)


def build_model(
    preset: str = "small", type_names: list[str] | tuple[str, ...] | str = ("H", "C", "N", "O", "S"), seed: int = 0,
    dtype: str = "float32", **overrides: Any,
) -> AllegroPotential:
    """Build an untrained Allegro potential from a named preset.

    Parameters
    ----------
    preset
        ``"small"`` (CPU) or ``"paper"`` (SC'23 widths); see :func:`available_presets`.
    type_names
        Element symbols, in type order.
    seed
        Seed of the weight initialisation.
    dtype
        ``"float32"`` or ``"float64"``.
    **overrides
        Any :class:`AllegroConfig` field, e.g. ``r_max=5.0``,
        ``per_edge_type_cutoff={"H": {"C": 1.25}}`` (centre H → neighbour C, Å), ``zbl=False``.

    Examples
    --------
    >>> import allegro_bio
    >>> model = allegro_bio.build_model("small", type_names=["H", "O"], seed=0)
    >>> model.type_names
    ['H', 'O']
    """
    config = preset_config(preset, type_names, dtype=dtype, **overrides)
    return build_from_config(config, seed=seed)
