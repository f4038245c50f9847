"""The TorchScript module that openmm-torch's ``TorchForce`` calls from C++ every step.

It holds the potential, the atom types and the ML-atom subset as buffers and builds its own
O(N) neighbour list (vesin-torch cell lists) inside TorchScript, so no Python runs per step.
Positions arrive in nm, box vectors as rows in nm; it returns energy in kJ/mol and forces in
kJ/mol/nm (``TorchForce.setOutputsForces(True)``), computed by the potential's own autograd
over pair vectors.
"""

from typing import Optional, Tuple

import torch
from torch import nn

from .neighbors import MIN_DISTANCE

#: 1 eV in kJ/mol.
EV_TO_KJ_PER_MOL = 96.48533212331002
#: 1 eV/Å in kJ/mol/nm.
EV_PER_A_TO_KJ_PER_MOL_NM = 964.8533212331002


class AllegroOpenMMModule(nn.Module):
    """``forward(positions [N, 3] nm, boxvectors [3, 3] nm or None) -> (energy kJ/mol, forces kJ/mol/nm)``.

    ``atom_types`` are the model type indices of the ML atoms, ``indices`` their positions in the
    OpenMM system (all atoms when ``subset`` is False). Non-ML atoms get zero force.
    """

    def __init__(self, potential: nn.Module, atom_types: torch.Tensor, indices: torch.Tensor, subset: bool,
                 periodic: bool, r_max: float) -> None:
        super().__init__()
        from vesin.torch import NeighborList

        self.potential = potential
        self.register_buffer("atom_types", atom_types.to(torch.long))
        self.register_buffer("indices", indices.to(torch.long))
        self.subset = subset
        self.periodic = periodic
        self.nl = NeighborList(cutoff=float(r_max), full_list=True, sorted=True)
        self.min_distance = MIN_DISTANCE
        self.energy_unit = EV_TO_KJ_PER_MOL
        self.force_unit = EV_PER_A_TO_KJ_PER_MOL_NM

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        pos_all = positions.to(torch.float64)
        pos = pos_all.index_select(0, self.indices) if self.subset else pos_all
        pos = pos * 10.0  # nm -> Å
        n = pos.shape[0]
        if self.periodic and boxvectors is not None:
            box = boxvectors.to(torch.float64) * 10.0
            periodic = True
        else:
            box = torch.zeros(3, 3, dtype=torch.float64, device=pos.device)
            periodic = False
        with torch.no_grad():
            out = self.nl.compute(pos.detach(), box, periodic, "ijSd", False)
        if out[3].numel() > 0:
            closest = int(torch.argmin(out[3]))
            if float(out[3][closest]) < self.min_distance:
                i = int(self.indices[int(out[0][closest])])
                j = int(self.indices[int(out[1][closest])])
                d = float(torch.round(out[3][closest] * 1e4)) / 1e4
                raise ValueError(
                    "AllegroForce: atoms {} and {} are {} Å apart (< {} Å): the simulation has collapsed".format(
                        i, j, d, self.min_distance)
                )
        edge_index = torch.stack([out[0].to(torch.long), out[1].to(torch.long)])
        shift = out[2].to(torch.float64) @ box
        energies, forces, _ = self.potential.compute(pos.detach(), self.atom_types, edge_index, shift, n, False)
        energy = energies.sum() * self.energy_unit
        forces = forces * self.force_unit
        if self.subset:
            full = torch.zeros_like(pos_all)
            full.index_copy_(0, self.indices, forces)
            forces = full
        return energy, forces.to(positions.dtype)
