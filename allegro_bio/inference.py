"""Evaluate any model form (eager, deployed) on one structure: the path every Python caller shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .neighbors import Graph, build_graph, type_indices


@dataclass
class Result:
    """Energy (eV), per-atom energies (eV), forces (eV/Å), virial W = −∂E/∂ε (eV), and the pair count."""

    energy: float
    energies: np.ndarray
    forces: np.ndarray
    virial: np.ndarray
    n_pairs: int


def evaluate(
    model, positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray, pbc, compute_virial: bool = True,
    device: str | torch.device = "cpu", graph: Graph | None = None,
) -> Result:
    """Validate the structure, build its neighbour list and evaluate ``model``.

    ``model`` is an :class:`~allegro_bio.model.AllegroPotential` or
    :class:`~allegro_bio.deploy.DeployedModel`; positions and cell in Å.
    """
    types = type_indices(np.asarray(numbers), model.type_names)
    return evaluate_types(model, positions, types, cell, pbc, compute_virial, device, graph)


def evaluate_types(
    model, positions: np.ndarray, types: np.ndarray, cell: np.ndarray, pbc, compute_virial: bool = True,
    device: str | torch.device = "cpu", graph: Graph | None = None,
) -> Result:
    """:func:`evaluate` for atoms given by model type index rather than atomic number."""
    positions = np.asarray(positions, dtype=np.float64)
    if graph is None:
        graph = build_graph(positions, cell, pbc, model.r_max)
    n = len(positions)
    with torch.enable_grad():
        e, f, w = model.compute(
            torch.as_tensor(positions, device=device),
            torch.as_tensor(types, dtype=torch.long, device=device),
            torch.as_tensor(graph.edge_index, device=device),
            torch.as_tensor(graph.shift, device=device),
            n,
            compute_virial,
        )
    return Result(float(e.sum()), e.cpu().numpy(), f.cpu().numpy(), w.cpu().numpy(), graph.edge_index.shape[1])
