"""The potential with each chunk's forward and backward compiled by ``torch.compile`` (inductor).

Inductor fuses the network's element-wise steps (SiLU, envelope, the tensor product's broadcast
products, residual updates) into C++ loops, so fewer passes over per-pair arrays. It needs a C++
compiler at run time (g++ on Linux) and compiles once per process (~11-40 s on 2 cores; the
inductor cache makes later processes faster), with dynamic shapes: the number of pairs and atoms
may change every MD step without recompiling. For inference only (weights frozen; no training
through it). The deployed file (OpenMM, LAMMPS) stays TorchScript: ``save`` stores the weights.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional, Tuple

import torch

from .config import AllegroConfig
from .potential import AllegroPotential


class CompiledPotential(AllegroPotential):
    """An :class:`AllegroPotential` whose per-chunk energy and gradient run compiled.

    Same ``compute`` contract and results (to float rounding) as the eager model it is built
    from by :func:`compile_potential`: its own copy of the weights, frozen. Never scripted: :func:`allegro_bio.save` writes
    it as the plain potential.
    """

    def __init__(self, config: AllegroConfig) -> None:
        super().__init__(config)
        self.net.use_fusable_ops()
        self._step = torch.compile(self._eager_step, dynamic=True)  # compiles at its first call

    def _eager_step(
        self, vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return super()._energy_and_grad(vec, edge_center, center_type, neighbor_type)

    def _energy_and_grad(
        self, vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if vec.shape[0] < 2:  # inductor specialises sizes 0 and 1; not worth a compile
            return super()._energy_and_grad(vec, edge_center, center_type, neighbor_type)
        return self._step(vec, edge_center, center_type, neighbor_type)

    def eager(self) -> AllegroPotential:
        """A plain :class:`AllegroPotential` with these weights (what ``save`` scripts)."""
        from . import clone

        return clone(self, dtype=_dtype_name(self))


def compile_potential(model: AllegroPotential) -> CompiledPotential:
    """``model`` (eager) with its chunks compiled; see the module doc. Raises ``RuntimeError``
    naming the cause if this machine cannot compile (no C++ compiler)."""
    if isinstance(model, CompiledPotential):
        return model
    if not isinstance(model, AllegroPotential):
        raise TypeError(f"compile_potential needs an eager AllegroPotential, got {type(model).__name__} "
                        "(use allegro_bio.deploy.to_eager for a loaded model file)")
    if model.cutoff_matrix.device.type == "cpu" and not _cpp_compiler():
        raise RuntimeError("compile=True needs a C++ compiler for torch.compile on CPU (g++ or clang++ on PATH, or "
                           "$CXX); none was found. Install one (Debian: apt install g++) or evaluate uncompiled.")
    if model.stream_tile > 0:
        raise ValueError(f"compile=True and the streamed evaluation (stream_tile={model.stream_tile}) do not combine: "
                         "compile the chunked evaluation (stream_tile = 0), or stream uncompiled to save memory")
    from . import clone

    # the weights in the network's working dtype (float64 sums stay float64), frozen: inference only
    return clone(model, dtype=_dtype_name(model), cls=CompiledPotential).eval().requires_grad_(False)


def _dtype_name(model: AllegroPotential) -> str:
    """The network's working dtype ("float32"/"float64"), whatever its config says."""
    return {torch.float32: "float32", torch.float64: "float64"}[model.net.basis.freqs.dtype]


def _cpp_compiler() -> str | None:
    """The C++ compiler inductor would use: ``$CXX`` or the first of g++, clang++, c++ on PATH."""
    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None
