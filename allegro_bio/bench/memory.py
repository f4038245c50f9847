"""What autograd keeps per ordered pair for the force backward pass: a deterministic memory figure.

Peak RSS depends on the allocator, the kernel and when the peak is sampled; the tensors autograd
saves between the forward and the backward pass do not. :func:`saved_bytes_per_pair` counts
them (each storage once) for one evaluation of the network, so a change that makes the model
keep more per pair shows up exactly, on any machine, and is guarded by a cheap test.
"""

from __future__ import annotations

import torch

from ..model import AllegroPotential


def saved_bytes_per_pair(model: AllegroPotential, pos: torch.Tensor, atom_type: torch.Tensor, edge_index: torch.Tensor,
                         edge_shift: torch.Tensor, max_pairs: int = 20_000) -> float:
    """Bytes that autograd saves for the backward pass per ordered pair (eager ``model``, pairs
    within their cutoffs, at most ``max_pairs`` of them, centred on the first atoms).

    ``pos`` [N, 3] Å, ``atom_type`` [N] type indices, ``edge_index`` [2, E], ``edge_shift`` [E, 3] Å.
    """
    n = pos.shape[0]
    with torch.no_grad():
        i, j, vec = model._pairs(pos, atom_type, edge_index, edge_shift, n)
        order = torch.argsort(i, stable=True)[:max_pairs]
        i, j, vec = i[order], j[order], vec[order]
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    v = vec.detach().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        energy = model.net(v, i, atom_type, atom_type.index_select(0, j)).sum()
    del energy
    return sum(storages.values()) / max(int(i.shape[0]), 1)
