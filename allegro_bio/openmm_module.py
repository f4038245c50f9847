"""The TorchScript module that openmm-torch's ``TorchForce`` calls from C++ every step.

It holds the potential, the atom types and the ML-atom subset as buffers and builds its own
O(N) neighbour list (vesin-torch cell lists) inside TorchScript, so no Python runs per step.
The list is a Verlet list: pairs within r_max + skin are kept and only re-searched when an atom
has moved more than skin/2 or the box changed (``rebuilds`` counts searches); each step filters
them to the per-species-pair cutoffs, so the network sees exactly the pairs a fresh search gives.
Positions arrive in nm, box vectors as rows in nm; it returns energy in kJ/mol and forces in
kJ/mol/nm (``TorchForce.setOutputsForces(True)``), computed by the potential's own autograd
over pair vectors.

Stable shapes: the pair buffer is over-allocated by :data:`PAD_FRACTION` and filled up with fake
pairs (atom 0 with its own image 3 r_max away: beyond every cutoff, so they contribute exactly
zero), and the network is called through ``compute_padded`` so its arrays keep the buffer's
shape. The buffer grows (by the same margin) only when the real pairs outgrow it;
``reallocations`` counts those growths (readable on the module, e.g. in the benchmark).
AOTInductor packages (``PackagePotential``) run unpadded (``pad=False``): their kernels take any
pair count, so padding would only add pairs.
"""

from typing import Optional, Tuple

import torch
from torch import nn

from .neighbors import DEFAULT_SKIN, MIN_DISTANCE

#: 1 eV in kJ/mol.
EV_TO_KJ_PER_MOL = 96.48533212331002
#: 1 eV/Å in kJ/mol/nm.
EV_PER_A_TO_KJ_PER_MOL_NM = 964.8533212331002
#: Over-allocation of the pair buffer (fraction of the real pairs when it grows).
PAD_FRACTION = 0.05


class AllegroOpenMMModule(nn.Module):
    """``forward(positions [N, 3] nm, boxvectors [3, 3] nm or None) -> (energy kJ/mol, forces kJ/mol/nm)``.

    ``atom_types`` are the model type indices of the ML atoms, ``indices`` their positions in the
    OpenMM system (all atoms when ``subset`` is False). Non-ML atoms get zero force.
    """

    def __init__(self, potential: nn.Module, atom_types: torch.Tensor, indices: torch.Tensor, subset: bool,
                 periodic: bool, r_max: float, pad: bool = True, skin: float = DEFAULT_SKIN) -> None:
        super().__init__()
        from vesin.torch import NeighborList

        if not skin >= 0.0:
            raise ValueError(f"neighbour-list skin must be >= 0 Å, got {skin}")
        self.potential = potential
        self.register_buffer("atom_types", atom_types.to(torch.long))
        self.register_buffer("indices", indices.to(torch.long))
        self.subset = subset
        self.periodic = periodic
        self.skin = float(skin)
        self.nl = NeighborList(cutoff=float(r_max) + self.skin, full_list=True, sorted=True)
        self.min_distance = MIN_DISTANCE
        self.energy_unit = EV_TO_KJ_PER_MOL
        self.force_unit = EV_PER_A_TO_KJ_PER_MOL_NM
        self.pad = bool(pad) and hasattr(potential, "compute_padded")
        self.pad_fraction = PAD_FRACTION
        self.capacity: int = 0
        self.reallocations: int = 0
        self.rebuilds: int = 0
        self.fake_distance = 3.0 * float(r_max)
        # Verlet list: candidate pairs within r_max + skin at the last build, with integer cell shifts
        self.ref_pos = torch.zeros(0, 3, dtype=torch.float64)
        self.ref_box = torch.zeros(3, 3, dtype=torch.float64)
        self.cand_index = torch.zeros(2, 0, dtype=torch.long)
        self.cand_cells = torch.zeros(0, 3, dtype=torch.float64)

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
            if self._needs_rebuild(pos, box):
                out = self.nl.compute(pos.detach(), box, periodic, "ijS", False)
                self.cand_index = torch.stack([out[0].to(torch.long), out[1].to(torch.long)])
                self.cand_cells = out[2].to(torch.float64)
                self.ref_pos = pos.detach().clone()
                self.ref_box = box.clone()
                self.rebuilds += 1
            edge_index = self.cand_index
            shift = self.cand_cells @ box
            vec = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0]) + shift
            dist = torch.linalg.norm(vec, dim=1)
        if dist.numel() > 0:
            closest = int(torch.argmin(dist))
            if float(dist[closest]) < self.min_distance:
                i = int(self.indices[int(edge_index[0][closest])])
                j = int(self.indices[int(edge_index[1][closest])])
                d = float(torch.round(dist[closest] * 1e4)) / 1e4
                raise ValueError(
                    "AllegroForce: atoms {} and {} are {} Å apart (< {} Å): the simulation has collapsed".format(
                        i, j, d, self.min_distance)
                )
        if self.pad:
            edge_index, shift = self._padded(edge_index, shift, dist)
            energies, forces, _ = self.potential.compute_padded(pos.detach(), self.atom_types, edge_index, shift, n, False)
        else:
            energies, forces, _ = self.potential.compute(pos.detach(), self.atom_types, edge_index, shift, n, False)
        energy = energies.sum() * self.energy_unit
        forces = forces * self.force_unit
        if self.subset:
            full = torch.zeros_like(pos_all)
            full.index_copy_(0, self.indices, forces)
            forces = full
        return energy, forces.to(positions.dtype)

    def _needs_rebuild(self, pos: torch.Tensor, box: torch.Tensor) -> bool:
        """True unless every atom moved less than skin/2 since the last build in the same box:
        then no pair can have come from beyond r_max + skin to within r_max."""
        if self.skin <= 0.0 or self.ref_pos.shape[0] != pos.shape[0] or self.ref_pos.device != pos.device:
            return True
        if not bool(torch.equal(box, self.ref_box)):  # barostat move or new box: rebuild
            return True
        moved = torch.linalg.norm(pos - self.ref_pos, dim=1).max()
        return bool(moved >= 0.5 * self.skin)

    def _padded(self, edge_index: torch.Tensor, shift: torch.Tensor, dist: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Pairs within their per-species-pair cutoff, padded with fake pairs to ``capacity``."""
        t = self.atom_types
        rc = self.potential.cutoff_matrix.to(dist.dtype)[t.index_select(0, edge_index[0]), t.index_select(0, edge_index[1])]
        keep = (dist < rc).nonzero().squeeze(1)
        edge_index = edge_index.index_select(1, keep)
        shift = shift.index_select(0, keep)
        n_pairs = int(keep.shape[0])
        if n_pairs > self.capacity:
            self.capacity = int(n_pairs * (1.0 + self.pad_fraction)) + 8
            self.reallocations += 1
        n_fake = self.capacity - n_pairs
        fake_index = torch.zeros(2, n_fake, dtype=torch.long, device=edge_index.device)
        fake_shift = torch.zeros(n_fake, 3, dtype=shift.dtype, device=shift.device)
        fake_shift[:, 0] = self.fake_distance
        return torch.cat([edge_index, fake_index], dim=1), torch.cat([shift, fake_shift], dim=0)
