"""Differentiable energies, forces and stress of a batch: the training-time form of ``compute``.

Gradients are taken with respect to the pair vectors, as in the deployed
:meth:`~allegro_bio.model.AllegroPotential.compute`, so training optimises exactly the forces
and virial the integrations use: F_i = Σ_j g_ij − Σ_j g_ji with g = ∂E/∂r_ij, and
W = −Σ_ij r_ij ⊗ g_ij (symmetrised).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model import AllegroPotential
from .data import Batch


@dataclass
class Prediction:
    energy: torch.Tensor  # [B] eV float64
    forces: torch.Tensor  # [N, 3] eV/Å
    stress: torch.Tensor | None  # [B, 3, 3] eV/Å³ (tensile positive, ASE sign), None unless asked


def predict(model: AllegroPotential, batch: Batch, create_graph: bool = True, stress: bool = False) -> Prediction:
    """Energies per frame, forces per atom and (optionally) stress per frame of ``batch``.

    With ``create_graph`` the forces stay differentiable with respect to the weights (training).
    """
    i, j = batch.edge_index[0], batch.edge_index[1]
    vec = (batch.pos.index_select(0, j) - batch.pos.index_select(0, i) + batch.shift).detach().requires_grad_(True)
    atom_energy = model.net(vec, i, batch.types, batch.types.index_select(0, j))
    energy = torch.zeros(batch.num_frames, dtype=torch.float64, device=vec.device).index_add(0, batch.frame, atom_energy)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(energy.sum(), vec, create_graph=create_graph)
    g = g.to(torch.float64)
    forces = torch.zeros_like(batch.pos).index_add(0, i, g).index_add(0, j, -g)
    s = None
    if stress:
        w = -(vec.detach().to(torch.float64).unsqueeze(2) * g.unsqueeze(1))  # [E, 3, 3]: −r ⊗ g
        virial = torch.zeros(batch.num_frames, 3, 3, dtype=torch.float64, device=vec.device).index_add(0, batch.edge_frame, w)
        virial = 0.5 * (virial + virial.transpose(1, 2))
        vol = batch.volume.clamp_min(1e-12).view(-1, 1, 1)
        s = -virial / vol
    return Prediction(energy, forces, s)
