"""`allegro-bio bench`: records, pair counts, and failure reporting (cheap: water192 only)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from ase.neighborlist import neighbor_list

import allegro_bio
import allegro_bio.errors

from allegro_bio.bench import build_case, cli
from allegro_bio.bench.flops import flops_per_pair
from allegro_bio.bench.peer import peer_available
from allegro_bio.bench.run import TYPE_NAMES as BENCH_TYPES
from allegro_bio.bench.run import count_pairs, measure_case_isolated
from allegro_bio.model import preset_config
from allegro_bio.neighbors import build_graph, type_indices

KEYS = {
    "implementation", "preset", "case", "n_atoms", "n_pairs", "n_pairs_rmax", "median_ms", "atom_steps_per_s",
    "pairs_per_s", "nl_ms", "peak_rss_mb", "dtype", "device", "threads", "torch_version",
}
TYPES = ["H", "C", "N", "O", "S"]


@pytest.mark.long
def test_bench_cli_water192(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "--cases", "water192", "--repeats", "1", "--threads", "1", "--json", str(out)])
    assert args.func(args) == 0
    (rec,) = json.loads(out.read_text())
    assert KEYS <= rec.keys()
    assert (rec["implementation"], rec["preset"], rec["case"], rec["status"]) == ("allegro_bio", "small", "water192", "ok")
    assert (rec["dtype"], rec["device"], rec["threads"], rec["tf32"]) == ("float32", "cpu", 1, False)
    assert rec["n_atoms"] == 192
    assert rec["n_pairs_rmax"] == 5180  # documented for the shipped box at 4.0 Å
    assert 0 < rec["n_pairs"] <= rec["n_pairs_rmax"]
    assert rec["median_ms"] > 0 and rec["nl_ms"] > 0
    assert np.isclose(rec["atom_steps_per_s"], 192 / (rec["median_ms"] / 1e3))
    assert np.isclose(rec["pairs_per_s"], rec["n_pairs"] / (rec["median_ms"] / 1e3))
    assert 50 < rec["peak_rss_mb"] < 8000
    assert rec["eval_peak_mb"] is None or 0 <= rec["eval_peak_mb"] < rec["peak_rss_mb"]
    assert rec["flops_per_pair"] == flops_per_pair(preset_config("small", BENCH_TYPES))["total"]
    assert 0 < rec["fraction_of_matmul_peak"] < 1.5 and rec["matmul_peak_flops"] > 1e9
    assert "ratio_vs_peer" not in rec  # only with --peer
    assert 1000 < rec["saved_bytes_per_pair"] < 5000
    assert "water192" in capsys.readouterr().out


@pytest.mark.long
def test_bench_compiled_forms(tmp_path, capsys):
    """--forms compiled aoti: the torch.compile path and the AOTInductor package, timed after their
    compile, which is reported apart."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "--cases", "water192", "--repeats", "1", "--forms", "eager", "compiled", "aoti",
                              "--json", str(out)])
    assert args.func(args) == 0
    eager, compiled, aoti = json.loads(out.read_text())
    assert (eager["form"], compiled["form"], aoti["form"]) == ("eager", "compiled", "aoti")
    for rec in (compiled, aoti):
        assert rec["status"] == "ok" and rec["n_pairs"] == eager["n_pairs"] and rec["compile_s"] > 0
    table = capsys.readouterr().out
    assert "torch.compile took" in table and "writing the AOTInductor package took" in table


@pytest.mark.parametrize("preset,bound", [("small", 5_000), ("paper", 62_000)])
def test_saved_memory_per_pair_is_bounded(preset, bound):
    """What autograd keeps per pair for the forces (deterministic, unlike peak RSS): small 4.7 kB and
    paper 58 kB on water192 at this version (7.0 and 69 kB before the irrep-major environment
    weights, scatter_add sums and the diagonal last-layer product). A change that keeps more fails here."""
    from allegro_bio.bench.memory import saved_bytes_per_pair

    model = allegro_bio.build_model(preset, BENCH_TYPES, seed=0, dtype="float32").requires_grad_(False)
    atoms = build_case("water192")
    graph = build_graph(atoms.positions, atoms.cell.array, atoms.pbc, model.r_max)
    args = (torch.as_tensor(atoms.positions), torch.as_tensor(type_indices(atoms.numbers, model.type_names)),
            torch.as_tensor(graph.edge_index), torch.as_tensor(graph.shift))
    assert 0.5 * bound < saved_bytes_per_pair(model, *args) <= bound


@pytest.mark.long
def test_bench_streamed_form(tmp_path):
    """`bench --forms eager streamed --stream-tile N`: the low-memory evaluation timed beside eager."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "--cases", "water192", "--repeats", "1", "--forms", "eager", "streamed",
                              "--stream-tile", "1000", "--json", str(out)])
    assert args.func(args) == 0
    eager, streamed = json.loads(out.read_text())
    assert (eager["form"], streamed["form"], streamed["stream_tile"]) == ("eager", "streamed", 1000)
    assert "stream_tile" not in eager and streamed["n_pairs"] == eager["n_pairs"] and streamed["median_ms"] > 0
    refused = parser.parse_args(["bench", "--cases", "water192", "--stream-tile", "1000"])  # no streamed form
    assert refused.func(refused) == 2


@pytest.mark.long
def test_streamed_evaluation_keeps_no_whole_pair_array_for_autograd():
    """The streamed evaluation's memory bound, guarded without timing or RSS: autograd never keeps
    a tensor with more rows than one tile (the per-atom environments aside), whatever the number
    of pairs, and the arrays kept between passes are the 192 floats per pair of the layer inputs."""
    model = allegro_bio.build_model("small", BENCH_TYPES, seed=0, dtype="float32").requires_grad_(False)
    model.stream_tile = 500
    atoms = build_case("water192")
    graph = build_graph(atoms.positions, atoms.cell.array, atoms.pbc, model.r_max)
    args = (torch.as_tensor(atoms.positions), torch.as_tensor(type_indices(atoms.numbers, model.type_names)),
            torch.as_tensor(graph.edge_index), torch.as_tensor(graph.shift), len(atoms), False)
    n_pairs = count_pairs(atoms.positions, args[1].numpy(), graph, model.cutoff_matrix.numpy())
    assert n_pairs > 8 * model.stream_tile
    rows: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.dim() > 0 and t.shape[0] != len(atoms):
            rows.append(int(t.shape[0]))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.compute(*args)
    assert rows and max(rows) <= model.stream_tile
    kept = model.net.layers[0].update  # layer 0's outputs are what the streamed pass keeps per pair
    x = torch.zeros(3, model.config.latent_dim)
    v = model.net.initial_features(x, torch.zeros(3, 4))
    x1, v1 = kept(x, v, torch.zeros(3, 4 * model.config.num_tensor_features))
    assert x1[0].numel() + v1[0].numel() == 192


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_flop_count_matches_torch_profiler(preset):
    """The analytic FLOPs per pair (used for the achieved-FLOP/s figure) against torch's own count
    of one energy+forces evaluation (matmul, bmm, mul, add kernels) of water192."""
    from torch.profiler import ProfilerActivity, profile

    model = allegro_bio.build_model(preset, TYPES, seed=0).requires_grad_(False)
    atoms = build_case("water192")
    graph = build_graph(atoms.positions, atoms.cell.array, atoms.pbc, 4.0)
    types = type_indices(atoms.numbers, TYPES)
    n_pairs = count_pairs(atoms.positions, types, graph, model.cutoff_matrix.numpy())
    args = (torch.as_tensor(atoms.positions), torch.as_tensor(types), torch.as_tensor(graph.edge_index),
            torch.as_tensor(graph.shift))
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        model.compute(*args, len(atoms), False)
    counted = sum(e.flops for e in prof.key_averages()) / n_pairs
    assert counted == pytest.approx(flops_per_pair(model.config)["total"], rel=0.05)


def test_peer_mapping_keeps_hyperparameters():
    """The reference gets our widths: the paper preset's two-body MLP is made expressible on both sides."""
    from allegro_bio.bench.peer import peer_expressible, peer_model_kwargs

    small = preset_config("small", TYPES)
    assert peer_expressible(small) == small
    paper = peer_expressible(preset_config("paper", TYPES))
    assert paper.two_body_mlp == (128, 512, 512, 1024) and paper.latent_mlp == (1024, 1024, 1024)
    kw = peer_model_kwargs(paper)
    assert (kw["num_layers"], kw["num_tensor_features"], kw["l_max"], kw["parity"]) == (2, 64, 2, True)
    assert (kw["num_scalar_features"], kw["allegro_mlp_hidden_layers_depth"], kw["allegro_mlp_hidden_layers_width"]) == (1024, 2, 1024)
    assert (kw["radial_chemical_embed_dim"], kw["scalar_embed_mlp_hidden_layers_depth"]) == (128, 2)
    assert kw["per_edge_type_cutoff"] == {"H": {"H": 3.0, "C": 1.25, "O": 1.25}, "O": {"H": 3.0}}
    assert kw["pair_potential"]["chemical_species"] == TYPES and kw["model_dtype"] == "float32"
    with pytest.raises(allegro_bio.errors.ConfigError, match="one width"):
        peer_model_kwargs(preset_config("paper", TYPES))


@pytest.mark.long
@pytest.mark.skipif(not peer_available(), reason="reference implementation not installed (pip install '.[peer]')")
def test_side_by_side_with_the_reference(tmp_path):
    """--peer: ours and the reference's two forms on the same structure, same pairs, with ratios."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "--cases", "water192", "--repeats", "1", "--peer", "--json", str(out),
                              "--plot", str(tmp_path / "scaling.png")])
    assert args.func(args) == 0
    recs = json.loads(out.read_text())
    assert {(r["implementation"], r["form"]) for r in recs} == {
        ("allegro_bio", "eager"), ("allegro_bio", "torchscript"), ("nequip-allegro", "eager"), ("nequip-allegro", "torchscript")}
    assert len({r["n_pairs"] for r in recs}) == 1  # the same ordered pairs within the cutoffs
    ours = [r for r in recs if r["implementation"] == "allegro_bio"]
    best_peer = min(r["median_ms"] for r in recs if r["implementation"] == "nequip-allegro")
    for r in ours:
        assert r["ratio_vs_peer"] == pytest.approx(best_peer / r["median_ms"]) and r["virial"] is True
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


def test_per_pair_cutoff_count_matches_ase():
    """``n_pairs`` under the paper's per-ordered-pair cutoffs, against ASE's neighbour list."""
    atoms = build_case("water192")
    rc = np.array(preset_config("paper", TYPES).cutoff_matrix())
    types = type_indices(atoms.numbers, TYPES)
    n = count_pairs(atoms.positions, types, build_graph(atoms.positions, atoms.cell.array, atoms.pbc, 4.0), rc)
    i, j, d = neighbor_list("ijd", atoms, 4.0)
    assert len(i) == 5180
    assert n == int(np.count_nonzero(d < rc[types[i], types[j]])) < 5180


def test_tf32_needs_cuda(capsys):
    """--tf32 on is a CUDA matmul mode: refused on the CPU (exit 2), and by measure_case too."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--cases", "water192", "--tf32", "on"])
    assert args.func(args) == 2
    assert "--device cuda" in capsys.readouterr().out
    args = parser.parse_args(["bench", "--openmm", "--tf32", "on"])
    assert args.func(args) == 2
    (rec,) = measure_case_isolated("water192", repeats=1, tf32=True)
    assert rec["status"] == "failed" and "device='cuda'" in rec["error"] and rec["tf32"] is True


@pytest.mark.long
def test_failed_case_is_reported():
    (rec,) = measure_case_isolated("water192", preset="no-such-preset", repeats=1)
    assert rec["status"] == "failed" and "no-such-preset" in rec["error"]
    assert rec["median_ms"] is None and rec["case"] == "water192"
