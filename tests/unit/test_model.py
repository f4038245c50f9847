"""Presets, configuration errors, weight counts and torch.export of the network."""

from __future__ import annotations

import pytest
import torch

import allegro_bio
from allegro_bio.errors import ConfigError
from allegro_bio.model import preset_config


def test_presets_available():
    assert allegro_bio.available_presets() == ["paper", "small"]


def test_paper_preset_matches_sc23_and_counts_weights():
    c = preset_config("paper", ["H", "C", "N", "O", "S"])
    assert (c.num_layers, c.num_tensor_features, c.l_max, c.parity) == (2, 64, 2, True)
    assert c.two_body_mlp == (128, 256, 512, 1024) and c.latent_mlp == (1024, 1024, 1024) and c.readout_mlp == (128,)
    m = c.cutoff_matrix()
    h, cc, o = 0, 1, 3
    assert (m[h][h], m[h][cc], m[h][o], m[o][h], m[cc][h]) == (3.0, 1.25, 1.25, 3.0, 4.0)
    n = allegro_bio.build_model("paper", ["H", "C", "N", "O", "S"]).num_weights()
    assert 7.5e6 < n < 8.5e6  # the paper reports 7.85 M; see README for our count


def test_small_preset_widths():
    c = preset_config("small", ["H", "O"])
    assert (c.num_layers, c.num_tensor_features, c.l_max, c.parity, c.latent_dim) == (2, 32, 1, True, 64)
    assert c.two_body_mlp == (64, 64) and c.latent_mlp == (64, 64) and c.readout_mlp == (64,)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(l_max=7), "l_max"),
        (dict(r_maxx=4.0), "unknown model option"),
        (dict(per_edge_type_cutoff={"H": {"Xe": 1.0}}), "Xe"),
        (dict(per_edge_type_cutoff={"H": {"O": 5.0}}), r"r_max"),
        (dict(latent_mlp=(64, 32)), "latent_mlp"),
        (dict(dtype="float16"), "dtype"),
    ],
)
def test_config_errors_name_the_field(overrides, match):
    with pytest.raises(ConfigError, match=match):
        allegro_bio.build_model("small", ["H", "O"], **overrides)


def test_bad_preset_and_types():
    with pytest.raises(ConfigError, match="available"):
        allegro_bio.build_model("huge", ["H"])
    with pytest.raises(ConfigError, match="Hx"):
        allegro_bio.build_model("small", ["H", "Hx"])


def test_same_seed_same_weights_and_dtypes_agree():
    a = allegro_bio.build_model("small", ["H", "O"], seed=3, dtype="float64")
    b = allegro_bio.build_model("small", ["H", "O"], seed=3, dtype="float32")
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        torch.testing.assert_close(pa.double(), pb.double(), atol=1e-6, rtol=1e-6)
    assert b.net.per_type_shift.dtype == torch.float64  # final sums stay float64


def test_torch_export_matches_eager():
    model = allegro_bio.build_model("small", ["H", "C", "O"], seed=0, dtype="float32")
    net = model.net
    torch.manual_seed(0)
    n, e = 9, 40
    center_type = torch.randint(0, 3, (n,))
    edge_center = torch.randint(0, n, (e,))
    neighbor_type = torch.randint(0, 3, (e,))
    vec = torch.randn(e, 3) * 1.5
    ref = net(vec, edge_center, center_type, neighbor_type)
    dim_e = torch.export.Dim("edges", min=2)
    dim_n = torch.export.Dim("atoms", min=2)
    exported = torch.export.export(
        net, (vec, edge_center, center_type, neighbor_type),
        dynamic_shapes=({0: dim_e}, {0: dim_e}, {0: dim_n}, {0: dim_e}),
    )
    got = exported.module()(vec, edge_center, center_type, neighbor_type)
    torch.testing.assert_close(got, ref)
    # another size through the same exported program
    vec2, ec2 = torch.randn(61, 3) * 1.5, torch.randint(0, 12, (61,))
    ct2, nt2 = torch.randint(0, 3, (12,)), torch.randint(0, 3, (61,))
    torch.testing.assert_close(exported.module()(vec2, ec2, ct2, nt2), net(vec2, ec2, ct2, nt2))
