"""The Allegro network (Musaelian et al. 2023): strictly local, per-ordered-pair features.

Data flow for one evaluation, all tensors indexed by ordered pair ("edge") i→j:

edge vector r_ij (Å) → x = r/r_c(Z_i,Z_j) → Bessel basis × envelope u(x)
→ two-body MLP([onehot Z_i, onehot Z_j, basis]) · u = scalar latent x^{ij,0}
→ tensor features V^{ij,0} = w(x^{ij,0}) · Y(r̂_ij)
→ per layer: env_i = Σ_k w(x^{ik}) Y(r̂_ik) / sqrt(avg_num_neighbors);  one fused tensor product
  V^{ij} ⊗ env_i;  its scalars and x^{ij} → latent MLP → residual update of x^{ij};  the other
  irreps, mixed over channels, are the next V^{ij}
→ per-pair energy E_ij = readout(x^{ij}) · u → E_i = σ_Zi Σ_j E_ij + μ_Zi (float64) + ZBL.

Every feature of pair ij is a product with u(r_ij/r_c), and every MLP maps 0 to 0, so a pair
beyond its cutoff contributes exactly nothing (strict locality) and the energy is smooth.
"""


import math
from typing import List, Tuple

import torch
from ase.data import atomic_numbers
from e3nn import o3
from torch import nn

from .config import AllegroConfig
from .mlp import ScalarMLP
from .radial import BesselBasis, PolynomialEnvelope
from .tensor_product import FusedTensorProduct, LayerPlan, irrep_blocks, irrep_dim, plan_layers
from .zbl import ZBL


#: Largest tensor product written out term by term under ``torch.compile``. The small preset's
#: first product (14 terms) ran 0.79× the time of a compiled model without the unrolling and the
#: gather (water1536, interleaved); the paper preset's (92 terms) gained ~1.5 %, within noise, and
#: added ~28 s to the compile, so it keeps the batched matmul.
UNROLL_MAX_TERMS = 32


def _l_index(irreps: list[tuple[int, int]]) -> torch.Tensor:
    """For each component of a strided irreps array, the index of its irrep."""
    return torch.tensor([k for k, ir in enumerate(irreps) for _ in range(irrep_dim(ir))], dtype=torch.long)


def _irrep_major(num_channels: int, num_irreps: int) -> torch.Tensor:
    """Row order that turns a linear layer's channel-major outputs (column c·n + k) into
    irrep-major ones (k·C + c), applied to the small weight instead of the [P, C·n] output."""
    return torch.tensor([ch * num_irreps + k for k in range(num_irreps) for ch in range(num_channels)], dtype=torch.long)


def weights_times_sh(w: torch.Tensor, y: torch.Tensor, sh_start: List[int], sh_dim: List[int]) -> torch.Tensor:
    """``w`` [P, n_irreps, C] (one weight per irrep and channel) times ``y`` [P, D] (spherical
    harmonics) → [P, D, C], broadcasting each irrep's weight over its 2ℓ+1 components without
    copying it out (autograd then keeps w, not its D/n_irreps times larger expansion)."""
    parts: List[torch.Tensor] = []
    for k in range(len(sh_start)):
        parts.append(w.narrow(1, k, 1) * y.narrow(1, sh_start[k], sh_dim[k]).unsqueeze(2))
    return torch.cat(parts, 1)


def sum_over_centers(values: torch.Tensor, edge_center: torch.Tensor, num_centers: int) -> torch.Tensor:
    """Σ over the pairs of each centre: [P, F] → [num_centers, F]. ``scatter_add`` with a
    broadcast index instead of ``index_add``, whose gradient keeps a copy of ``values`` (4·F bytes
    per pair); same sums, same speed."""
    out = torch.zeros(num_centers, values.shape[1], dtype=values.dtype, device=values.device)
    return out.scatter_add(0, edge_center.unsqueeze(1).expand(values.shape[0], values.shape[1]), values)


class AllegroLayer(nn.Module):
    """One Allegro layer: environment sum, fused tensor product, latent update, channel mixing."""

    block_start: List[int]
    block_dim: List[int]
    sh_start: List[int]
    sh_dim: List[int]

    def __init__(self, plan: LayerPlan, num_channels: int, latent_dim: int, latent_mlp: list[int], avg_num_neighbors: float) -> None:
        super().__init__()
        c = num_channels
        self.num_channels = c
        self.num_env_irreps = len(plan.irreps_env)
        self.register_buffer("env_index", _l_index(plan.irreps_env))  # unused; kept in the state dict of older files
        self.env_embed = ScalarMLP([latent_dim, c * self.num_env_irreps])  # one linear layer, channel-major outputs
        self.register_buffer("env_out_perm", _irrep_major(c, self.num_env_irreps), persistent=False)
        self.sh_start, self.sh_dim = irrep_blocks(plan.irreps_env)
        self.tp = FusedTensorProduct(plan, c)
        self.num_scalar_paths = len(plan.scalar_paths)
        self.latent_mlp = ScalarMLP([latent_dim + c * self.num_scalar_paths] + list(latent_mlp))
        # The product's scalars are a free component-major view (column s·C + c); the latent MLP's
        # weight is laid out channel-major (c·n_s + s): permute the weight, not the [P, C·n_s] input.
        n_s = self.num_scalar_paths
        perm = list(range(latent_dim)) + [latent_dim + ch * n_s + s for s in range(n_s) for ch in range(c)]
        self.register_buffer("latent_in_perm", torch.tensor(perm, dtype=torch.long), persistent=False)
        self.inv_sqrt_avg = 1.0 / math.sqrt(avg_num_neighbors)
        self.has_tensor_out = len(plan.irreps_out) > 0
        # channel mixing of each output irrep (weights N(0, 1/C))
        self.block_start, self.block_dim = irrep_blocks(plan.irreps_out)
        self.mix = nn.Parameter(torch.randn(len(plan.irreps_out), c, c) / math.sqrt(c))  # empty in the last layer
        # set for torch.compile (see use_fusable_ops): gather the environment per pair with ``gather``,
        # whose gradient inductor leaves to ATen's scatter, not ``index_select``, whose gradient
        # inductor writes as an index_add of atomic adds (5.1 against 2.4 ms forward+backward for
        # 17.8k pairs × 128 features); eager, ``index_select`` is the faster of the two
        self.gather_pairs = False

    def forward(
        self, x: torch.Tensor, v: torch.Tensor, y: torch.Tensor, edge_center: torch.Tensor, num_centers: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``x`` [P, L] scalar latents, ``v`` [P, D_in, C] tensor features (channel-last), ``y`` [P, D_env]
        spherical harmonics → updated ``x`` and the next ``v`` [P, D_out, C]."""
        p, c = x.shape[0], self.num_channels
        w_env = self.env_embed.linear_rows(x, self.env_out_perm).view(p, self.num_env_irreps, c)
        env_edge = weights_times_sh(w_env, y, self.sh_start, self.sh_dim).view(p, y.shape[1] * c)
        env = sum_over_centers(env_edge, edge_center, num_centers) * self.inv_sqrt_avg
        if self.gather_pairs:
            env_pair = env.gather(0, edge_center.unsqueeze(1).expand(p, env.shape[1])).view(p, y.shape[1], c)
        else:
            env_pair = env.index_select(0, edge_center).view(p, y.shape[1], c)
        out = self.tp(v, env_pair)
        n_s = self.num_scalar_paths
        scalars = out[:, :n_s, :].reshape(p, n_s * c)  # a view: component-major
        x_new = (x + self.latent_mlp.forward_permuted(torch.cat([x, scalars], dim=1), self.latent_in_perm)) * (1.0 / math.sqrt(2.0))
        if not self.has_tensor_out:
            return x_new, v
        blocks: List[torch.Tensor] = []
        for k in range(len(self.block_start)):
            s, d = self.block_start[k], self.block_dim[k]
            # channel mixing of one irrep: one 2-D matmul over the contiguous channel axis
            blk = out[:, n_s + s : n_s + s + d, :].reshape(p * d, c)
            blocks.append(torch.mm(blk, self.mix[k].t()).view(p, d, c))
        return x_new, torch.cat(blocks, dim=1)


class AllegroNet(nn.Module):
    """The network as a pure function of ordered-pair vectors.

    ``forward(edge_vec, edge_center, center_type, neighbor_type)``:

    - ``edge_vec`` [E, 3] (Å): r_j − r_i (+ periodic shift) for each ordered pair i→j;
    - ``edge_center`` [E] int64: index of i among the centres, in ``[0, num_centers)``;
    - ``center_type`` [num_centers] int64: type index of each centre atom;
    - ``neighbor_type`` [E] int64: type index of j.

    Returns the energy of each centre atom, [num_centers], float64, eV (shift μ included).
    Pairs beyond their cutoff contribute exactly zero. Exportable with ``torch.export``.
    """

    sh_start: List[int]
    sh_dim: List[int]

    def __init__(self, config: AllegroConfig) -> None:
        super().__init__()
        t = config.num_types
        self.num_types = t
        c = config.num_tensor_features
        self.num_channels = c
        self.num_sh = config.l_max + 1
        latent = config.latent_dim
        cut = torch.tensor(config.cutoff_matrix(), dtype=torch.float64).flatten()
        self.register_buffer("edge_cutoff", cut)
        z = torch.tensor([float(atomic_numbers[s]) for s in config.type_names], dtype=torch.float64)
        self.register_buffer("atomic_numbers", z)
        self.envelope = PolynomialEnvelope(config.polynomial_p)
        self.basis = BesselBasis(config.num_bessels, t * t, config.bessel_trainable)
        self.sh = o3.SphericalHarmonics(list(range(config.l_max + 1)), normalize=True, normalization="component")
        plans = plan_layers(config.l_max, config.parity, config.num_layers)
        self.register_buffer("sh_index", _l_index(plans[0].irreps_env))  # unused; kept in the state dict of older files
        self.register_buffer("init_out_perm", _irrep_major(c, self.num_sh), persistent=False)
        self.sh_start, self.sh_dim = irrep_blocks(plans[0].irreps_env)
        self.two_body = ScalarMLP([2 * t + config.num_bessels] + list(config.two_body_mlp), final_activation=True)
        self.init_tensor = ScalarMLP([latent, c * self.num_sh])
        self.layers = nn.ModuleList(
            [AllegroLayer(plan, c, latent, list(config.latent_mlp), config.avg_num_neighbors) for plan in plans]
        )
        self.readout = ScalarMLP([latent] + list(config.readout_mlp) + [1])
        scale = config.per_type_scale or (1.0,) * t
        shift = config.per_type_shift or (0.0,) * t
        self.per_type_scale = nn.Parameter(torch.tensor(scale, dtype=torch.float64))
        self.per_type_shift = nn.Parameter(torch.tensor(shift, dtype=torch.float64))
        self.use_zbl = bool(config.zbl)
        self.zbl = ZBL()

    def use_fusable_ops(self, on: bool = True) -> None:
        """Choose the ops that run fastest under ``torch.compile`` (inductor) rather than eager or
        TorchScript: the environment gathered per pair with ``gather``, and tensor products of at
        most ``UNROLL_MAX_TERMS`` terms unrolled over the Wigner-3j nonzeros. Same results to float
        rounding."""
        for layer in self.layers:
            layer.gather_pairs = on
            layer.tp.unrolled = on and not layer.tp.diagonal and layer.tp.num_terms() <= UNROLL_MAX_TERMS

    def forward(
        self, edge_vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor
    ) -> torch.Tensor:
        num_centers = center_type.shape[0]
        dtype = self.basis.freqs.dtype
        vec = edge_vec.to(dtype)
        p = vec.shape[0]
        ct = center_type.index_select(0, edge_center)
        edge_type = ct * self.num_types + neighbor_type
        r = torch.linalg.norm(vec, dim=1)
        x = r / self.edge_cutoff.index_select(0, edge_type).to(dtype)
        u = self.envelope(x)
        u1 = u.unsqueeze(1)
        onehots = torch.cat(
            [
                torch.nn.functional.one_hot(ct, self.num_types).to(dtype),
                torch.nn.functional.one_hot(neighbor_type, self.num_types).to(dtype),
                self.basis(x, edge_type) * u1,
            ],
            dim=1,
        )
        latent = self.two_body(onehots) * u1
        y = self.sh(vec)
        w0 = self.init_tensor.linear_rows(latent, self.init_out_perm).view(p, self.num_sh, self.num_channels)
        v = weights_times_sh(w0, y, self.sh_start, self.sh_dim)  # [P, D, C]: channel-last
        for layer in self.layers:
            latent, v = layer(latent, v, y, edge_center, num_centers)
        e_pair = (self.readout(latent).squeeze(1) * u).to(torch.float64)
        e_sum = torch.zeros(num_centers, dtype=torch.float64, device=vec.device).index_add(0, edge_center, e_pair)
        scale = self.per_type_scale.to(torch.float64).index_select(0, center_type)
        shift = self.per_type_shift.to(torch.float64).index_select(0, center_type)
        energy = e_sum * scale + shift
        if self.use_zbl:
            z = self.atomic_numbers.to(torch.float64)
            e_zbl = self.zbl(r, z.index_select(0, ct), z.index_select(0, neighbor_type), u)
            energy = energy.index_add(0, edge_center, e_zbl)
        return energy


#: Parameters and buffers kept in float64 whatever the model dtype.
FLOAT64_NAMES = ("per_type_scale", "per_type_shift", "edge_cutoff", "atomic_numbers", "coef", "expo")


def cast_model(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast floating weights and buffers to ``dtype``, leaving the float64 sums' tensors alone."""
    for m in module.modules():
        for store in (m._parameters, m._buffers):
            for name, t in store.items():
                if t is None or not t.is_floating_point() or name in FLOAT64_NAMES:
                    continue
                if isinstance(t, nn.Parameter):
                    store[name] = nn.Parameter(t.data.to(dtype), requires_grad=t.requires_grad)
                else:
                    store[name] = t.to(dtype)
    return module
