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
from typing import List, Optional, Tuple

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
        p = x.shape[0]
        env = sum_over_centers(self.env_edges(x, y), edge_center, num_centers) * self.inv_sqrt_avg
        if self.gather_pairs:
            env_pair = env.gather(0, edge_center.unsqueeze(1).expand(p, env.shape[1]))
        else:
            env_pair = env.index_select(0, edge_center)
        return self.update(x, v, env_pair)

    def env_edges(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each pair's term of its centre's environment, w(x^{ik}) Y(r̂_ik): [P, D_env·C] (unscaled)."""
        p, c = x.shape[0], self.num_channels
        w_env = self.env_embed.linear_rows(x, self.env_out_perm).view(p, self.num_env_irreps, c)
        return weights_times_sh(w_env, y, self.sh_start, self.sh_dim).view(p, y.shape[1] * c)

    def update(self, x: torch.Tensor, v: torch.Tensor, env_pair: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The per-pair part of the layer, given each pair's centre environment ``env_pair``
        [P, D_env·C] (scaled): tensor product, latent update, channel mixing → new ``x``, ``v``."""
        p, c = x.shape[0], self.num_channels
        out = self.tp(v, env_pair.view(p, self.tp.d_env, c))
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
        self.inv_sqrt_avg = 1.0 / math.sqrt(config.avg_num_neighbors)

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
        ct = center_type.index_select(0, edge_center)
        r, u, y, latent = self.pair_start(edge_vec, ct, neighbor_type, True)
        v = self.initial_features(latent, y)
        for layer in self.layers:
            latent, v = layer(latent, v, y, edge_center, num_centers)
        e_pair = self.pair_energy(latent, u)
        e_sum = torch.zeros(num_centers, dtype=torch.float64, device=edge_vec.device).index_add(0, edge_center, e_pair)
        energy = self.atom_energy(e_sum, center_type)
        if self.use_zbl:
            energy = energy.index_add(0, edge_center, self.pair_zbl(r, u, ct, neighbor_type))
        return energy

    def pair_start(
        self, edge_vec: torch.Tensor, ct: torch.Tensor, neighbor_type: torch.Tensor, two_body: bool
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per pair: distance r (Å), envelope u, spherical harmonics Y [P, D_env] and, with
        ``two_body``, the two-body latent x^{ij,0} [P, L] (else an empty tensor). ``ct``: centre types per pair."""
        dtype = self.basis.freqs.dtype
        vec = edge_vec.to(dtype)
        edge_type = ct * self.num_types + neighbor_type
        r = torch.linalg.norm(vec, dim=1)
        x = r / self.edge_cutoff.index_select(0, edge_type).to(dtype)
        u = self.envelope(x)
        y = self.sh(vec)
        if not two_body:
            return r, u, y, vec.new_empty(0)
        u1 = u.unsqueeze(1)
        onehots = torch.cat(
            [
                torch.nn.functional.one_hot(ct, self.num_types).to(dtype),
                torch.nn.functional.one_hot(neighbor_type, self.num_types).to(dtype),
                self.basis(x, edge_type) * u1,
            ],
            dim=1,
        )
        return r, u, y, self.two_body(onehots) * u1

    def initial_features(self, latent: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """V^{ij,0} = w(x^{ij,0}) Y(r̂_ij): [P, D_env, C], channel-last."""
        w0 = self.init_tensor.linear_rows(latent, self.init_out_perm).view(latent.shape[0], self.num_sh, self.num_channels)
        return weights_times_sh(w0, y, self.sh_start, self.sh_dim)

    def pair_energy(self, latent: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """E_ij = readout(x^{ij}) u(r_ij): [P] float64 (eV), before the centre's scale σ_Zi."""
        return (self.readout(latent).squeeze(1) * u).to(torch.float64)

    def pair_zbl(self, r: torch.Tensor, u: torch.Tensor, ct: torch.Tensor, neighbor_type: torch.Tensor) -> torch.Tensor:
        """Each pair's ZBL repulsion (half of the pair's, envelope applied): [P] float64 (eV), unscaled."""
        z = self.atomic_numbers.to(torch.float64)
        return self.zbl(r, z.index_select(0, ct), z.index_select(0, neighbor_type), u)

    def atom_energy(self, e_sum: torch.Tensor, center_type: torch.Tensor) -> torch.Tensor:
        """E_i = σ_Zi Σ_j E_ij + μ_Zi (float64, eV) from the per-centre sums ``e_sum``."""
        scale = self.per_type_scale.to(torch.float64).index_select(0, center_type)
        shift = self.per_type_shift.to(torch.float64).index_select(0, center_type)
        return e_sum * scale + shift

    def _layer_env_edges(self, index: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """:meth:`AllegroLayer.env_edges` of layer ``index`` (TorchScript cannot index a ModuleList by a variable)."""
        out = x.new_empty(0)
        for k, layer in enumerate(self.layers):
            if k == index:
                out = layer.env_edges(x, y)
        return out

    def _layer_update(
        self, index: int, x: torch.Tensor, v: torch.Tensor, env_pair: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`AllegroLayer.update` of layer ``index``."""
        x_new, v_new = x, v
        for k, layer in enumerate(self.layers):
            if k == index:
                x_new, v_new = layer.update(x, v, env_pair)
        return x_new, v_new

    def streamed_energy_and_grad(
        self, edge_vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor,
        tile: int,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Centre energies [num_centres] (float64, eV) and ∂E/∂``edge_vec`` [P, 3] (eV/Å), the pairs
        streamed through each layer ``tile`` at a time; same arguments as :meth:`forward`.

        Autograd over the whole network keeps ~1.2k floats per pair for the backward pass. Here
        only the per-atom environments and, per pair, the inputs of layers 1..n−1 are kept
        (x and V: 192 floats for the small preset); each tile's layer is recomputed in the
        backward pass and differentiated on its own, with the gradients of the environments summed
        per atom between passes. The gradient of a layer's inputs overwrites those inputs in place,
        so peak memory is those arrays plus one tile's work, at the price of computing each
        layer's forward twice (and the two-body embedding up to four times).
        """
        n_layers = len(self.layers)
        num_centers = center_type.shape[0]
        p = edge_vec.shape[0]
        vec = edge_vec.detach()
        ct = center_type.index_select(0, edge_center)
        starts = list(range(0, p, max(int(tile), 1)))
        inv = self.inv_sqrt_avg
        # forward: every layer's environment, and the inputs (x, V) of layers 1..n-1
        envs: List[torch.Tensor] = []
        xs: List[torch.Tensor] = []
        vs: List[torch.Tensor] = []
        with torch.no_grad():
            env = vec.new_empty(0)
            for a in starts:
                b = min(a + tile, p)
                _, _, y, x0 = self.pair_start(vec[a:b], ct[a:b], neighbor_type[a:b], True)
                e_t = self._layer_env_edges(0, x0, y)
                if a == 0:
                    env = e_t.new_zeros(num_centers, e_t.shape[1])
                env.index_add_(0, edge_center[a:b], e_t)
            envs.append(env * inv)
            for index in range(n_layers - 1):
                x_out, v_out, env = vec.new_empty(0), vec.new_empty(0), vec.new_empty(0)
                for a in starts:
                    b = min(a + tile, p)
                    ec = edge_center[a:b]
                    _, _, y, x_in = self.pair_start(vec[a:b], ct[a:b], neighbor_type[a:b], index == 0)
                    if index == 0:
                        v_in = self.initial_features(x_in, y)
                    else:
                        x_in, v_in = xs[index - 1][a:b], vs[index - 1][a:b]
                    x_new, v_new = self._layer_update(index, x_in, v_in, envs[index].index_select(0, ec))
                    e_t = self._layer_env_edges(index + 1, x_new, y)
                    if a == 0:
                        x_out = x_new.new_empty(p, x_new.shape[1])
                        v_out = v_new.new_empty(p, v_new.shape[1], v_new.shape[2])
                        env = e_t.new_zeros(num_centers, e_t.shape[1])
                    x_out[a:b].copy_(x_new)
                    v_out[a:b].copy_(v_new)
                    env.index_add_(0, ec, e_t)
                xs.append(x_out)
                vs.append(v_out)
                envs.append(env * inv)
        # backward, last layer first: recompute each tile's layer and differentiate it alone
        g_vec = torch.zeros_like(vec)
        e_sum = torch.zeros(num_centers, dtype=torch.float64, device=vec.device)
        e_zbl = torch.zeros(num_centers, dtype=torch.float64, device=vec.device)
        scale = self.per_type_scale.to(torch.float64).detach()
        g_env_next = vec.new_empty(0)
        for step in range(n_layers + 1):
            index = n_layers - 1 - step  # -1: the first layer's environment terms
            g_env = envs[index].new_zeros(envs[index].shape) if index >= 0 else vec.new_empty(0)
            for a in starts:
                b = min(a + tile, p)
                ec, ctt, nt = edge_center[a:b], ct[a:b], neighbor_type[a:b]
                vec_t = vec[a:b].detach().requires_grad_(True)
                r, u, y, x0 = self.pair_start(vec_t, ctt, nt, index <= 0)
                outs: List[torch.Tensor] = []
                g_outs: List[Optional[torch.Tensor]] = []
                if index < 0:
                    outs.append(self._layer_env_edges(0, x0, y))
                    g_outs.append(g_env_next.index_select(0, ec) * inv)
                    grads = torch.autograd.grad(outs, [vec_t], g_outs, allow_unused=True)
                    g = grads[0]
                    if g is not None:
                        g_vec[a:b].add_(g)
                    continue
                env_pair = envs[index].index_select(0, ec).requires_grad_(True)
                if index == 0:
                    x_in, v_in = x0, self.initial_features(x0, y)
                    inputs = [vec_t, env_pair]
                else:
                    x_in = xs[index - 1][a:b].detach().requires_grad_(True)
                    v_in = vs[index - 1][a:b].detach().requires_grad_(True)
                    inputs = [vec_t, env_pair, x_in, v_in]
                x_new, v_new = self._layer_update(index, x_in, v_in, env_pair)
                if index == n_layers - 1:
                    e_pair = self.pair_energy(x_new, u)
                    e_sum.index_add_(0, ec, e_pair.detach())
                    outs.append(e_pair)
                    g_outs.append(scale.index_select(0, ctt))
                    if self.use_zbl:
                        zbl = self.pair_zbl(r, u, ctt, nt)
                        e_zbl.index_add_(0, ec, zbl.detach())
                        outs.append(zbl)
                        g_outs.append(torch.ones_like(zbl))
                else:
                    outs.extend([x_new, v_new, self._layer_env_edges(index + 1, x_new, y)])
                    g_outs.append(xs[index][a:b])
                    g_outs.append(vs[index][a:b])
                    g_outs.append(g_env_next.index_select(0, ec) * inv)
                grads = torch.autograd.grad(outs, inputs, g_outs, allow_unused=True)
                with torch.no_grad():
                    for k in range(len(grads)):
                        g = grads[k]
                        if g is not None:
                            if k == 0:
                                g_vec[a:b].add_(g)
                            elif k == 1:
                                g_env.index_add_(0, ec, g)
                            elif k == 2:
                                xs[index - 1][a:b].copy_(g)  # the inputs are not needed again: their gradient takes their place
                            else:
                                vs[index - 1][a:b].copy_(g)
            if index >= 0:
                g_env_next = g_env
                envs[index] = vec.new_empty(0)
                if index < n_layers - 1:
                    xs[index], vs[index] = vec.new_empty(0), vec.new_empty(0)
        energy = self.atom_energy(e_sum, center_type) + e_zbl
        return energy, g_vec


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
