"""Floating-point work of one energy+forces evaluation, counted from the config, and the
dense-matmul rate of this machine to compare it with.

Counted: the dense linear algebra per ordered pair (MLP layers, the fused tensor product, the
channel mixing, environment weights), 2 FLOPs per multiply-add. Forces are the gradient with
respect to the pair vectors only (weights are frozen at inference), so each linear map costs
once more in the backward pass (one input gradient) and each tensor-product contraction twice
more (gradients of both of its operands). Element-wise work (activations, spherical harmonics,
Bessel functions, scatter sums) is not counted: it is O(features) per pair, not O(features²).
"""

from __future__ import annotations

import time

import torch

from ..model.config import AllegroConfig
from ..model.tensor_product import FusedTensorProduct, irreps_dim, plan_layers


def _mlp(dims: list[int]) -> int:
    return sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))


def flops_per_pair(config: AllegroConfig) -> dict[str, int]:
    """FLOPs per ordered pair (see module doc): ``linear`` (MLPs, environment weights, channel
    mixing: matrix products), ``contraction`` (the tensor products, in the form
    :class:`~allegro_bio.model.tensor_product.FusedTensorProduct` uses: the dense outer product
    and its matmul, or the diagonal products), each forward only, and ``forward``, ``backward``
    and ``total`` (forward + force backward)."""
    c, lat, t = config.num_tensor_features, config.latent_dim, config.num_types
    n_sh = config.l_max + 1
    linear = _mlp([2 * t + config.num_bessels, *config.two_body_mlp]) + _mlp([lat, c * n_sh])
    contraction = 0
    for plan in plan_layers(config.l_max, config.parity, config.num_layers):
        n_s = len(plan.scalar_paths)
        linear += _mlp([lat, c * len(plan.irreps_env)])  # environment weights
        tp = FusedTensorProduct(plan, 1)
        if tp.diagonal:  # V·env·coef, then the sum over each irrep's components
            contraction += c * 3 * tp.d_in
        else:  # outer product, then the matmul with W
            contraction += c * (tp.d_in * tp.d_env + 2 * tp.d_in * tp.d_env * tp.d_out)
        linear += _mlp([lat + c * n_s, *config.latent_mlp])
        linear += 2 * c * c * irreps_dim(plan.irreps_out)  # channel mixing
    linear += _mlp([lat, *config.readout_mlp, 1])
    forward = linear + contraction
    backward = linear + 2 * contraction
    return {"linear": linear, "contraction": contraction, "forward": forward, "backward": backward,
            "total": forward + backward}


def matmul_peak_flops(n: int | None = None, dtype: torch.dtype = torch.float32, device: str = "cpu",
                      repeats: int = 5) -> float:
    """Best-of-``repeats`` FLOP/s of one dense ``n × n`` by ``n × n`` matmul (2n³ FLOPs) with
    torch's current threads (and, on CUDA, its TF32 setting): the practical peak the network's
    matmuls can approach. ``n`` defaults to 2048 on the CPU and 8192 on a GPU (smaller products
    leave a large GPU partly idle)."""
    if n is None:
        n = 8192 if torch.device(device).type == "cuda" else 2048
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    best = float("inf")
    torch.mm(a, b)
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best
