"""The reference implementation (``nequip`` + ``nequip-allegro``) at our hyperparameters.

:func:`peer_model_kwargs` maps an :class:`~allegro_bio.model.AllegroConfig` to the keyword
arguments of ``allegro.model.AllegroModel`` (same layers, tensor features, ℓ_max, parity,
latent width, MLP depths/widths, Bessel basis, polynomial envelope, r_max, per-ordered-pair
cutoffs, avg_num_neighbors, ZBL, species and model dtype). The reference builds its two-body
MLP from a radial-chemical embedding of width ``two_body_mlp[0]`` followed by hidden layers of
one width; :func:`peer_expressible` gives the nearest config of ours that it can express
exactly (used for both sides of a comparison, so the networks have the same widths).

Two forms of the reference are timed, as its users run it: ``eager`` (the ``GraphModel``
in Python) and ``torchscript`` (``nequip-compile --mode torchscript`` does the same: prepare,
``e3nn.util.jit.script``, ``torch.jit.freeze``). The reference always returns the stress
when the structure has a cell; our side is then timed with the virial too.

Needs ``pip install "allegro_bio[peer]"``; :func:`peer_available` says whether it is there.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from ase import Atoms

from ..errors import ConfigError
from ..model.config import AllegroConfig

FORMS = ("eager", "torchscript")


def peer_available() -> bool:
    """True when ``nequip`` and ``nequip-allegro`` (module ``allegro``) are importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("nequip", "allegro"))


def peer_version() -> str:
    from importlib.metadata import version

    return f"nequip {version('nequip')}, nequip-allegro {version('nequip-allegro')}"


def peer_expressible(config: AllegroConfig) -> AllegroConfig:
    """``config`` with MLP widths the reference can build: hidden layers of one width.

    The two-body MLP ``(w0, h1, ..., hk, L)`` becomes ``(w0, h, ..., h, L)`` with ``h`` the
    largest hidden width (e.g. the SC'23 128-256-512-1024 becomes 128-512-512-1024); the latent
    and readout MLPs likewise. A config that is already expressible is returned unchanged.
    """
    def uniform(hidden: tuple[int, ...]) -> tuple[int, ...]:
        return (max(hidden),) * len(hidden) if hidden else ()

    tb, lat = config.two_body_mlp, config.latent_mlp
    two_body = tb if len(tb) < 2 else (tb[0], *uniform(tb[1:-1]), tb[-1])
    return dataclasses.replace(
        config, two_body_mlp=two_body, latent_mlp=(*uniform(lat[:-1]), lat[-1]), readout_mlp=uniform(config.readout_mlp),
    )


def peer_model_kwargs(config: AllegroConfig, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of ``allegro.model.AllegroModel`` for the same network as ``config``."""
    if config != peer_expressible(config):
        raise ConfigError("the reference needs hidden MLP layers of one width: compare with peer_expressible(config)")
    if len(config.two_body_mlp) < 2:
        raise ConfigError("the reference's two-body embedding needs two_body_mlp of at least 2 widths")
    tb, lat, ro = config.two_body_mlp, config.latent_mlp, config.readout_mlp
    types = list(config.type_names)
    kwargs: dict[str, Any] = dict(
        seed=seed, model_dtype=config.dtype, type_names=types, r_max=float(config.r_max),
        l_max=config.l_max, parity=config.parity,
        radial_chemical_embed=dict(
            _target_="allegro.nn.TwoBodyBesselScalarEmbed", num_bessels=config.num_bessels,
            bessel_trainable=config.bessel_trainable, polynomial_cutoff_p=config.polynomial_p,
        ),
        radial_chemical_embed_dim=tb[0],
        scalar_embed_mlp_hidden_layers_depth=len(tb) - 2,
        scalar_embed_mlp_hidden_layers_width=max(tb[1:-1], default=tb[-1]),
        num_layers=config.num_layers, num_scalar_features=config.latent_dim,
        num_tensor_features=config.num_tensor_features,
        allegro_mlp_hidden_layers_depth=len(lat) - 1,
        allegro_mlp_hidden_layers_width=max(lat[:-1], default=lat[-1]),
        readout_mlp_hidden_layers_depth=len(ro), readout_mlp_hidden_layers_width=max(ro, default=config.latent_dim),
        avg_num_neighbors=float(config.avg_num_neighbors),
    )
    if config.per_edge_type_cutoff:
        kwargs["per_edge_type_cutoff"] = config.to_dict()["per_edge_type_cutoff"]
    if config.zbl:
        kwargs["pair_potential"] = dict(_target_="nequip.nn.pair_potential.ZBL", units="metal", chemical_species=types)
    return kwargs


@contextmanager
def _keep_default_dtype() -> Iterator[None]:
    """The reference's global state sets torch's default dtype to float64; restore ours after."""
    dtype = torch.get_default_dtype()
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)


def build_peer(config: AllegroConfig, seed: int = 0, form: str = "eager", device: str = "cpu",
               tf32: bool = False) -> torch.nn.Module:
    """The reference ``AllegroModel`` for ``config`` in ``form`` (``"eager"`` or ``"torchscript"``).
    nequip sets TF32 for the process when it builds a model: ``tf32`` (CUDA) keeps it as ours runs."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    with _keep_default_dtype():
        from allegro.model import AllegroModel
        from nequip.utils.global_state import set_global_state

        set_global_state(allow_tf32=bool(tf32))
        model = AllegroModel(**peer_model_kwargs(config, seed)).to(device).eval()
        if form == "torchscript":
            from e3nn.util.jit import script
            from nequip.utils.compile import prepare_model_for_compile

            model = torch.jit.freeze(script(prepare_model_for_compile(model, device)).eval())
    return model


def peer_inputs(atoms: Atoms, config: AllegroConfig, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The reference's input dict for ``atoms``: its neighbour list at r_max, pruned to the
    per-ordered-pair cutoffs as its ``NeighborListTransform`` does."""
    with _keep_default_dtype():
        from nequip.data import from_ase
        from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform

        data = ChemicalSpeciesToAtomTypeMapper(list(config.type_names))(from_ase(atoms))
        data = NeighborListTransform(r_max=float(config.r_max), per_edge_type_cutoff=config.to_dict()["per_edge_type_cutoff"],
                                     type_names=list(config.type_names))(data)
    return {k: v.to(device) for k, v in data.items()}


def peer_evaluator(model: torch.nn.Module, data: dict[str, torch.Tensor]) -> Callable[[], torch.Tensor]:
    """A function evaluating energy, forces (and stress, given a cell) once; returns the forces."""
    def evaluate() -> torch.Tensor:
        return model(dict(data))["forces"]

    return evaluate
