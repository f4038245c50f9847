"""The fused strided tensor product against e3nn's ``o3.TensorProduct``, path by path."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from allegro_bio.model.tensor_product import FusedTensorProduct, irrep_dim, plan_layers


@pytest.fixture(autouse=True)
def float64_default():
    """Build Wigner-3j constants (ours and e3nn's) in float64 so the comparison is exact."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _e3nn_irreps(irreps, mul):
    return o3.Irreps([(mul, (l, p)) for l, p in irreps])


def _to_e3nn(x: torch.Tensor, irreps) -> torch.Tensor:
    """[P, Σ(2ℓ+1), C] strided channel-last → e3nn layout [P, Σ C·(2ℓ+1)] (irrep-major, channel, m)."""
    out, k = [], 0
    for ir in irreps:
        d = irrep_dim(ir)
        out.append(x[:, k : k + d, :].transpose(1, 2).reshape(x.shape[0], -1))
        k += d
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("l_max,parity,num_layers", [(1, True, 2), (2, True, 2), (2, True, 3), (3, True, 2), (2, False, 3)])
def test_fused_tensor_product_matches_e3nn_path_by_path(l_max, parity, num_layers):
    torch.manual_seed(0)
    c, p = 4, 7
    for plan in plan_layers(l_max, parity, num_layers):
        tp = FusedTensorProduct(plan, c).double()
        with torch.no_grad():
            tp.path_weight.copy_(torch.rand_like(tp.path_weight) + 0.5)
        v = torch.randn(p, sum(irrep_dim(i) for i in plan.irreps_in), c, dtype=torch.float64)
        env = torch.randn(p, sum(irrep_dim(i) for i in plan.irreps_env), c, dtype=torch.float64)
        ours = tp(v, env)
        n_s = len(plan.scalar_paths)
        # reference: e3nn "uuu" instructions, one per path; each scalar path into its own 0e output
        irreps_out = [(0, 1)] * n_s + list(plan.irreps_out)
        instructions = [(ia, ie, k, "uuu", True) for k, (ia, ie) in enumerate(plan.scalar_paths)]
        instructions += [(ia, ie, n_s + io, "uuu", True) for ia, ie, io in plan.paths]
        ref_tp = o3.TensorProduct(
            _e3nn_irreps(plan.irreps_in, c), _e3nn_irreps(plan.irreps_env, c), _e3nn_irreps(irreps_out, c),
            instructions, shared_weights=True, internal_weights=False,
        ).double()
        weights = tp.path_weight.detach().repeat_interleave(c)
        ref = ref_tp(_to_e3nn(v, plan.irreps_in), _to_e3nn(env, plan.irreps_env), weights)
        torch.testing.assert_close(_to_e3nn(ours, irreps_out), ref, atol=1e-12, rtol=1e-12)


def _assert_forms_agree(tp: FusedTensorProduct, form: str) -> None:
    """``tp`` with attribute ``form`` off and on: same product and same gradients of V, env and the
    path weights (random positive path weights, float64)."""
    with torch.no_grad():
        tp.path_weight.copy_(torch.rand_like(tp.path_weight) + 0.5)
    v = torch.randn(5, tp.d_in, 3, dtype=torch.float64, requires_grad=True)
    env = torch.randn(5, tp.d_env, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for on in (False, True):
        setattr(tp, form, on)
        out = tp(v, env)
        results.append((out, *torch.autograd.grad((out * out).sum(), [v, env, tp.path_weight])))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("l_max,parity,num_layers", [(1, True, 2), (2, True, 2), (2, False, 3), (3, True, 2)])
def test_dense_and_diagonal_contractions_agree(l_max, parity, num_layers):
    """The diagonal form, used exactly for last layers (scalar paths only), agrees with the dense form."""
    plans = plan_layers(l_max, parity, num_layers)
    assert [FusedTensorProduct(plan, 3).diagonal for plan in plans] == [False] * (num_layers - 1) + [True]
    _assert_forms_agree(FusedTensorProduct(plans[-1], 3).double(), "diagonal")


@pytest.mark.parametrize("l_max,parity,num_layers", [(1, True, 2), (2, True, 2), (2, False, 3), (3, True, 2)])
def test_dense_and_unrolled_contractions_agree(l_max, parity, num_layers):
    """The unrolled form (a sum over W's nonzeros, used under torch.compile) agrees with the dense
    contraction, for every layer that is not diagonal."""
    for plan in plan_layers(l_max, parity, num_layers)[:-1]:
        tp = FusedTensorProduct(plan, 3).double()
        assert not tp.diagonal and 0 < tp.num_terms() < tp.d_in * tp.d_env * tp.d_out
        _assert_forms_agree(tp, "unrolled")


def test_last_layer_keeps_only_scalar_paths():
    plans = plan_layers(2, True, 2)
    assert plans[-1].irreps_out == [] and len(plans[-1].scalar_paths) == 3
    # outputs of earlier layers are pruned to irreps that can still reach a scalar
    assert plans[0].irreps_out == [(0, 1), (1, -1), (2, 1)]
