"""The Allegro tensor product in strided layout, as one precomputed contraction.

Features of one ordered pair are stored as ``[pairs, Σ(2ℓ+1), channels]`` (all irreps side by
side, channel-last). The product of a pair's tensor features V (irreps ``irreps_in``) with its
centre's environment (spherical-harmonic irreps) is channel-wise ("uuu") and computed as a
single contraction with a dense ``[D_in, D_env, D_out]`` tensor = Σ_paths weight · Wigner-3j.
The first ``num_scalar_paths`` output columns are the ℓ=0 outputs of each path separately
(they feed the scalar track); the rest are the irreps of the next tensor features, each the
normalised sum of its paths.
"""


import math
from dataclasses import dataclass
from typing import List, Tuple

import torch
from e3nn import o3
from torch import nn

Irrep = tuple[int, int]  # (l, parity) with parity +1 (even) or -1 (odd)


def irrep_dim(ir: Irrep) -> int:
    return 2 * ir[0] + 1


def irreps_dim(irreps: list[Irrep]) -> int:
    return sum(irrep_dim(ir) for ir in irreps)


def irreps_str(irreps: list[Irrep], parity: bool = True) -> str:
    return " + ".join(f"{l}{'e' if p == 1 else 'o'}" if parity else f"{l}" for l, p in irreps)


def sh_irreps(l_max: int, parity: bool) -> list[Irrep]:
    """Irreps of the spherical harmonics Y_0..Y_lmax: parity (−1)^ℓ (or +1 when parity is off)."""
    return [(l, (-1) ** l if parity else 1) for l in range(l_max + 1)]


def couple(a: Irrep, b: Irrep, l_max: int, parity: bool) -> list[Irrep]:
    """Irreps in a ⊗ b with ℓ ≤ l_max: |ℓa−ℓb| ≤ ℓ ≤ ℓa+ℓb, parity pa·pb."""
    p = a[1] * b[1] if parity else 1
    return [(l, p) for l in range(abs(a[0] - b[0]), min(a[0] + b[0], l_max) + 1)]


@dataclass(frozen=True)
class LayerPlan:
    """Irreps entering and leaving one layer's tensor product, and its paths."""

    irreps_in: list[Irrep]
    irreps_env: list[Irrep]
    irreps_out: list[Irrep]  # next tensor features (empty in the last layer)
    scalar_paths: list[tuple[int, int]]  # (i_in, i_env) pairs whose ℓ=0 output is kept apart
    paths: list[tuple[int, int, int]]  # (i_in, i_env, i_out) into irreps_out


def plan_layers(l_max: int, parity: bool, num_layers: int) -> list[LayerPlan]:
    """Irreps per layer, keeping only outputs that can still reach the final scalar output."""
    env = sh_irreps(l_max, parity)
    every = [(l, p) for l in range(l_max + 1) for p in ((1, -1) if parity else (1,))]
    scalar: Irrep = (0, 1)
    # needed[L]: output irreps of layer L from which a later layer can still produce a scalar
    needed: list[set[Irrep]] = [set() for _ in range(num_layers)]
    target = {scalar}
    for layer in range(num_layers - 2, -1, -1):
        needed[layer] = {x for x in every if any(y in target for e in env for y in couple(x, e, l_max, parity))}
        target = needed[layer]
    plans = []
    irreps_in = list(env)  # initial features: weights × Y(r̂_ij)
    for layer in range(num_layers):
        reachable = {y for a in irreps_in for e in env for y in couple(a, e, l_max, parity)}
        irreps_out = [x for x in every if x in needed[layer] and x in reachable]
        scalar_paths = [
            (ia, ie) for ia, a in enumerate(irreps_in) for ie, e in enumerate(env) if scalar in couple(a, e, l_max, parity)
        ]
        paths = [
            (ia, ie, io)
            for ia, a in enumerate(irreps_in)
            for ie, e in enumerate(env)
            for io, o in enumerate(irreps_out)
            if o in couple(a, e, l_max, parity)
        ]
        plans.append(LayerPlan(irreps_in, env, irreps_out, scalar_paths, paths))
        irreps_in = irreps_out
    return plans


def _offsets(irreps: list[Irrep], start: int = 0) -> list[int]:
    out, k = [], start
    for ir in irreps:
        out.append(k)
        k += irrep_dim(ir)
    return out


def irrep_blocks(irreps: list[Irrep]) -> tuple[list[int], list[int]]:
    """Start and size of each irrep's block of components in a strided array."""
    return _offsets(irreps), [irrep_dim(ir) for ir in irreps]


def path_basis(plan: LayerPlan) -> tuple[torch.Tensor, list[float]]:
    """Per-path Wigner-3j blocks placed in the dense tensor, ``[n_paths, D_in, D_env, D_out]``.

    Normalisation follows e3nn's defaults (``irrep_normalization="component"``,
    ``path_normalization="element"``): each path into an output irrep is scaled by
    sqrt((2ℓ_out+1) / n_paths_into_that_irrep). Returned with the per-path constants.
    """
    d_in, d_env = irreps_dim(plan.irreps_in), irreps_dim(plan.irreps_env)
    n_s = len(plan.scalar_paths)
    d_out = n_s + irreps_dim(plan.irreps_out)
    off_in, off_env = _offsets(plan.irreps_in), _offsets(plan.irreps_env)
    off_out = _offsets(plan.irreps_out, start=n_s)
    n_paths = n_s + len(plan.paths)
    basis = torch.zeros(n_paths, d_in, d_env, d_out, dtype=torch.float64)
    consts: list[float] = []
    for k, (ia, ie) in enumerate(plan.scalar_paths):
        l = plan.irreps_in[ia][0]
        w = o3.wigner_3j(l, l, 0, dtype=torch.float64)[:, :, 0]
        basis[k, off_in[ia] : off_in[ia] + 2 * l + 1, off_env[ie] : off_env[ie] + 2 * l + 1, k] = w
        consts.append(1.0)
    fan_in = [sum(1 for p in plan.paths if p[2] == io) for io in range(len(plan.irreps_out))]
    for k, (ia, ie, io) in enumerate(plan.paths, start=n_s):
        la, le, lo = plan.irreps_in[ia][0], plan.irreps_env[ie][0], plan.irreps_out[io][0]
        c = math.sqrt((2 * lo + 1) / fan_in[io])
        w = o3.wigner_3j(la, le, lo, dtype=torch.float64)
        basis[
            k,
            off_in[ia] : off_in[ia] + 2 * la + 1,
            off_env[ie] : off_env[ie] + 2 * le + 1,
            off_out[io] : off_out[io] + 2 * lo + 1,
        ] = c * w
        consts.append(c)
    return basis, consts


class FusedTensorProduct(nn.Module):
    """out[p,k,c] = Σ_ab W[a,b,k] V[p,a,c] env[p,b,c], with W = Σ_paths w_path · basis_path.

    Channel-last layout ``[pairs, Σ(2ℓ+1), channels]``: every element-wise step runs over the
    contiguous channel axis, which is what makes the product cheap on CPUs (the small preset's
    energy+forces on 1,536 waters went from 245 ms in the channel-first layout to 190 ms; see
    docs/benchmarks.md). The path weights ``w_path`` are trained (one per
    path, shared by channels). Two ways to contract, chosen once from the plan:

    - ``dense``: the outer product V⊗env ``[P, D_in·D_env, C]``, then one matmul with W;
    - ``diagonal``: a last layer keeps only the scalar paths ℓ⊗ℓ→0, whose Wigner-3j blocks are
      diagonal (a = b): one element-wise product V·env·coef, then a sum over each irrep's
      components (small preset, 17.8k pairs: 3.8 ms forward+backward against 6.0 ms for the
      gather/scatter of W's nonzeros it replaced).

    With ``unrolled`` set (by :meth:`~allegro_bio.model.allegro.AllegroNet.use_fusable_ops`), the
    dense contraction is instead written out term by term over W's nonzeros (14 of 96 for the
    small preset's first layer). Eager, that is many small ops; under ``torch.compile`` it becomes
    one fused loop, forward and backward, in place of a batched matmul of P tiny
    [D_out, D_in·D_env] × [D_in·D_env, C] products that ran at ~20 GFLOP/s.
    """

    seg_start: List[int]
    seg_dim: List[int]
    terms: List[List[Tuple[int, int]]]

    def __init__(self, plan: LayerPlan, num_channels: int) -> None:
        super().__init__()
        basis, _ = path_basis(plan)
        self.d_in, self.d_env, self.d_out = basis.shape[1], basis.shape[2], basis.shape[3]
        self.num_channels = num_channels
        self.num_scalar_paths = len(plan.scalar_paths)
        self.register_buffer("basis", basis.flatten(1).to(torch.get_default_dtype()))
        self.path_weight = nn.Parameter(torch.ones(basis.shape[0], dtype=torch.get_default_dtype()))
        # basis_diag[path, a] = Σ_k basis[path, a, a, k]: all of W in a diagonal layer (path k feeds output k)
        diag = torch.diagonal(basis, dim1=1, dim2=2).sum(1)
        self.register_buffer("basis_diag", diag.to(torch.get_default_dtype()).contiguous(), persistent=False)
        self.diagonal = bool(
            not plan.irreps_out and plan.irreps_in == plan.irreps_env
            and all(ia == ie for ia, ie in plan.scalar_paths)
            and torch.isclose(diag.abs().sum(), basis.abs().sum(), rtol=1e-12, atol=0.0)
        )
        # W's sparsity pattern, whatever the path weights: for each output k, the (a, b) it sums over
        nonzero = basis.abs().sum(0) > 0
        self.terms = [[(a, b) for a, b in nonzero[:, :, k].nonzero().tolist()] for k in range(self.d_out)]
        self.unrolled = False
        starts, dims = irrep_blocks(plan.irreps_in)
        self.seg_start = [starts[ia] for ia, _ in plan.scalar_paths] if self.diagonal else []
        self.seg_dim = [dims[ia] for ia, _ in plan.scalar_paths] if self.diagonal else []

    def weight(self) -> torch.Tensor:
        """The dense contraction tensor ``[D_in, D_env, D_out]``."""
        return (self.path_weight @ self.basis).view(self.d_in, self.d_env, self.d_out)

    def forward(self, v: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """``v``: [P, D_in, C], ``env``: [P, D_env, C] → [P, D_out, C]."""
        if self.diagonal:
            prod = v * env * (self.path_weight @ self.basis_diag).view(1, -1, 1)
            parts = [prod.narrow(1, s, d).sum(1, keepdim=True) for s, d in zip(self.seg_start, self.seg_dim)]
            return torch.cat(parts, 1)
        if self.unrolled:
            return self._unrolled(v, env)
        p, c = v.shape[0], v.shape[2]
        outer = (v.unsqueeze(2) * env.unsqueeze(1)).view(p, self.d_in * self.d_env, c)
        wt = self.weight().view(self.d_in * self.d_env, self.d_out).t()
        return torch.matmul(wt, outer)

    def num_terms(self) -> int:
        """Nonzeros of W: the element-wise products the unrolled contraction sums."""
        return sum(len(t) for t in self.terms)

    def _unrolled(self, v: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """The dense contraction as explicit sums over W's nonzeros (for ``torch.compile``)."""
        w = self.weight()
        vs, es = v.unbind(1), env.unbind(1)  # unbind's gradient is one stack, not a zero-filled copy per slice
        outs: List[torch.Tensor] = []
        for k in range(self.d_out):
            acc = torch.zeros_like(vs[0])
            for a, b in self.terms[k]:
                acc = acc + vs[a] * es[b] * w[a, b, k]
            outs.append(acc)
        return torch.stack(outs, 1)
