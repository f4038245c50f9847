"""The deployed interface: energy, forces and virial from atoms and an ordered-pair list.

This module is what ``allegro_bio.save`` scripts into the model file and what ASE, OpenMM and
LAMMPS call. Its contract (methods callable from Python and C++):

``compute(pos, atom_type, edge_index, edge_shift, n_local, compute_virial)``
    ``pos`` [N, 3] (Å, float64 recommended), ``atom_type`` [N] int64 type indices,
    ``edge_index`` [2, E] int64 ordered pairs i→j with i < n_local (atoms ≥ n_local are
    neighbours only, e.g. LAMMPS ghosts), ``edge_shift`` [E, 3] (Å) Cartesian shift added to
    r_j − r_i. Pairs beyond their per-species-pair cutoff may be present; they are dropped.
    Returns ``(atom_energy [n_local] eV float64, forces [N, 3] eV/Å float64,
    virial [3, 3] eV float64)`` with virial W = −∂E/∂ε (symmetric; ASE stress = −W/V).
    Energy is the sum of ``atom_energy``; forces include those on neighbour-only atoms.

``compute_padded(...)`` (same arguments and returns)
    Keeps every pair (no cutoff filter), so the network's array shapes equal the input's: callers
    that pad their pair buffer with fake pairs beyond the cutoff (which contribute exactly zero)
    get stable shapes between MD steps. Every pair must be centred on a local atom.

``forward(pos, atom_type, edge_index, edge_shift, n_local)`` → ``atom_energy`` only.

Large inputs are evaluated in chunks of centre atoms (``max_edges_per_chunk`` pairs at a
time): exact, because the features of pair i→j depend only on pairs centred on i.
"""


import json
from typing import List, Optional, Tuple

import torch
from torch import nn

from .allegro import AllegroNet
from .config import AllegroConfig


#: Pairs per tile of the streamed evaluation (``stream_tile``; see
#: :meth:`~allegro_bio.model.allegro.AllegroNet.streamed_energy_and_grad`).
DEFAULT_STREAM_TILE = 8192


def default_chunk(config: AllegroConfig, budget_bytes: float = 0.5e9) -> int:
    """Pairs per chunk so that autograd's saved activations stay within ~``budget_bytes``.

    Calibrated (conservatively) on CPU float32 energy+forces of a 1,536-atom water box: measured
    peak ≈ 21 kB/pair for ``small`` (estimate 28 kB) and ≈ 136 kB/pair for ``paper`` (estimate 285 kB).
    The 0.5 GB default is also the fastest on CPU: smaller arrays stay in cache (small preset,
    6,144 waters: 713 ms/eval at 8k pairs per chunk, 854 ms at 71k; paper preset, 1,536 waters:
    2.84 s at 2k, 4.49 s at 16k).
    """
    widths = sum(config.two_body_mlp) + config.num_layers * (sum(config.latent_mlp) + config.latent_dim) + sum(config.readout_mlp)
    d_sh = (config.l_max + 1) ** 2
    tensor = config.num_layers * config.num_tensor_features * d_sh * (d_sh + 4)
    itemsize = 8 if config.dtype == "float64" else 4
    per_edge = itemsize * (3.3 * widths + 2.5 * tensor)
    return int(max(1024, budget_bytes // per_edge))


class ChunkedPotential(nn.Module):
    """The deployed ``compute`` contract (module doc) around a per-chunk energy-and-gradient step.

    Holds what every form of a model shares (types, cutoffs, dtype, config, chunk size) and drives
    the evaluation: pair vectors, cutoff filter, chunks of centre atoms, force and virial sums.
    Subclasses supply :meth:`_energy_and_grad`: the eager network (:class:`AllegroPotential`),
    its ``torch.compile`` form, or an AOTInductor package (:mod:`allegro_bio.model.aoti`).
    """

    __jit_unused_properties__ = ["config"]

    def __init__(self, config: AllegroConfig) -> None:
        super().__init__()
        t = config.num_types
        self.type_names: List[str] = list(config.type_names)
        self.r_max: float = float(config.r_max)
        self.model_dtype: str = config.dtype
        self.config_json: str = json.dumps(config.to_dict(), sort_keys=True)
        self.max_edges_per_chunk: int = default_chunk(config)
        # pairs per tile of a streamed evaluation (AllegroNet.streamed_energy_and_grad); 0: off
        self.stream_tile: int = 0
        self.register_buffer("cutoff_matrix", torch.tensor(config.cutoff_matrix(), dtype=torch.float64).view(t, t))

    @property
    def config(self) -> AllegroConfig:
        return AllegroConfig.from_dict(json.loads(self.config_json))

    @torch.jit.export
    def metadata_json(self) -> str:
        return self.config_json

    def _pairs(
        self, pos: torch.Tensor, atom_type: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor, n_local: int
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edge vectors of the pairs within their cutoff and centred on local atoms."""
        i, j = edge_index[0], edge_index[1]
        vec = pos.index_select(0, j) - pos.index_select(0, i) + edge_shift.to(pos.dtype)
        rc = self.cutoff_matrix.to(pos.dtype)[atom_type.index_select(0, i), atom_type.index_select(0, j)]
        keep = ((vec * vec).sum(1) < rc * rc) & (i < n_local)
        if not bool(keep.all()):
            idx = keep.nonzero().squeeze(1)
            i, j, vec = i.index_select(0, idx), j.index_select(0, idx), vec.index_select(0, idx)
        return i, j, vec

    @torch.jit.export
    def compute(
        self,
        pos: torch.Tensor,
        atom_type: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        n_local: int,
        compute_virial: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            i, j, vec = self._pairs(pos, atom_type, edge_index, edge_shift, n_local)
        return self._evaluate(pos, atom_type, i, j, vec, n_local, compute_virial)

    @torch.jit.export
    def compute_padded(
        self,
        pos: torch.Tensor,
        atom_type: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        n_local: int,
        compute_virial: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`compute` without dropping pairs: every pair goes through the network, so array
        shapes are exactly the input's (stable when the caller pads its pair buffer). Pairs beyond
        their cutoff, e.g. padding pairs, contribute exactly zero (the envelope is 0 for r ≥ r_c).
        Every pair must have its centre below ``n_local``."""
        i, j = edge_index[0], edge_index[1]
        vec = pos.index_select(0, j) - pos.index_select(0, i) + edge_shift.to(pos.dtype)
        return self._evaluate(pos, atom_type, i, j, vec.detach(), n_local, compute_virial)

    def _evaluate(
        self, pos: torch.Tensor, atom_type: torch.Tensor, i: torch.Tensor, j: torch.Tensor, vec: torch.Tensor,
        n_local: int, compute_virial: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_edges = i.shape[0]
        energies = torch.zeros(n_local, dtype=torch.float64, device=pos.device)
        forces = torch.zeros(pos.shape[0], 3, dtype=pos.dtype, device=pos.device)
        virial = torch.zeros(3, 3, dtype=torch.float64, device=pos.device)
        chunk = self.max_edges_per_chunk
        if n_edges > chunk:
            order = torch.argsort(i, stable=True)
            i, j, vec = i.index_select(0, order), j.index_select(0, order), vec.index_select(0, order)
        counts = torch.bincount(i, minlength=n_local)
        cum = torch.cumsum(counts, 0)
        c0, e0 = 0, 0
        while c0 < n_local:
            if n_edges <= chunk:
                c1, e1 = n_local, n_edges
            else:
                c1 = int(torch.searchsorted(cum, cum.new_full((1,), e0 + chunk), right=True)[0])
                c1 = max(c1, c0 + 1)
                e1 = int(cum[c1 - 1])
            ii, jj = i[e0:e1], j[e0:e1]
            v = vec[e0:e1].detach().requires_grad_(True)
            e_c, g = self._energy_and_grad(v, ii - c0, atom_type[c0:c1], atom_type.index_select(0, jj))
            energies[c0:c1] = e_c.detach()
            if e1 > e0:
                if g is not None:
                    forces.index_add_(0, ii, g)
                    forces.index_add_(0, jj, -g)
                    if compute_virial:
                        dedeps = g.to(torch.float64).t() @ v.detach().to(torch.float64)
                        virial -= 0.5 * (dedeps + dedeps.t())
            c0, e0 = c1, e1
        return energies, forces.to(torch.float64), virial

    def _energy_and_grad(
        self, vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """One chunk: centre energies [num_centres] (eV, float64) and ∂E/∂vec [E, 3] (eV/Å; ``None`` without pairs)."""
        raise NotImplementedError("a ChunkedPotential subclass supplies _energy_and_grad")


class AllegroPotential(ChunkedPotential):
    """An Allegro network with its metadata and the deployed ``compute`` contract (module doc)."""

    def __init__(self, config: AllegroConfig) -> None:
        super().__init__(config)
        self.net = AllegroNet(config)

    def forward(
        self, pos: torch.Tensor, atom_type: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        i, j, vec = self._pairs(pos, atom_type, edge_index, edge_shift, n_local)
        return self.net(vec, i, atom_type[:n_local], atom_type.index_select(0, j))

    def _energy_and_grad(
        self, vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """One chunk: centre energies [num_centres] (eV) and ∂E/∂vec [E, 3] (eV/Å; ``None`` without pairs)."""
        if self.stream_tile > 0 and vec.shape[0] > 0:
            return self.net.streamed_energy_and_grad(vec, edge_center, center_type, neighbor_type, self.stream_tile)
        e_c = self.net(vec, edge_center, center_type, neighbor_type)
        if vec.shape[0] == 0:
            return e_c, None
        grads = torch.autograd.grad([e_c.sum()], [vec], allow_unused=True)
        return e_c, grads[0]

    def num_weights(self) -> int:
        return sum(p.numel() for p in self.parameters())
