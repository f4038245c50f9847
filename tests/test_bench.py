"""`allegro-bio bench`: records, pair counts, and failure reporting (cheap: water192 only)."""

from __future__ import annotations

import argparse
import json

import numpy as np
from ase.neighborlist import neighbor_list

from allegro_bio.bench import build_case, cli
from allegro_bio.bench.run import count_pairs, measure_case_isolated
from allegro_bio.model import preset_config
from allegro_bio.neighbors import build_graph, type_indices

KEYS = {
    "implementation", "preset", "case", "n_atoms", "n_pairs", "n_pairs_rmax", "median_ms", "atom_steps_per_s",
    "pairs_per_s", "nl_ms", "peak_rss_mb", "dtype", "device", "threads", "torch_version",
}
TYPES = ["H", "C", "N", "O", "S"]


def test_bench_cli_water192(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "--cases", "water192", "--repeats", "1", "--threads", "1", "--json", str(out)])
    assert args.func(args) == 0
    (rec,) = json.loads(out.read_text())
    assert KEYS <= rec.keys()
    assert (rec["implementation"], rec["preset"], rec["case"], rec["status"]) == ("allegro_bio", "small", "water192", "ok")
    assert (rec["dtype"], rec["device"], rec["threads"]) == ("float32", "cpu", 1)
    assert rec["n_atoms"] == 192
    assert rec["n_pairs_rmax"] == 5180  # documented for the shipped box at 4.0 Å
    assert 0 < rec["n_pairs"] <= rec["n_pairs_rmax"]
    assert rec["median_ms"] > 0 and rec["nl_ms"] > 0
    assert np.isclose(rec["atom_steps_per_s"], 192 / (rec["median_ms"] / 1e3))
    assert np.isclose(rec["pairs_per_s"], rec["n_pairs"] / (rec["median_ms"] / 1e3))
    assert 50 < rec["peak_rss_mb"] < 8000
    assert "water192" in capsys.readouterr().out


def test_per_pair_cutoff_count_matches_ase():
    """``n_pairs`` under the paper's per-ordered-pair cutoffs, against ASE's neighbour list."""
    atoms = build_case("water192")
    rc = np.array(preset_config("paper", TYPES).cutoff_matrix())
    types = type_indices(atoms.numbers, TYPES)
    n = count_pairs(atoms.positions, types, build_graph(atoms.positions, atoms.cell.array, atoms.pbc, 4.0), rc)
    i, j, d = neighbor_list("ijd", atoms, 4.0)
    assert len(i) == 5180
    assert n == int(np.count_nonzero(d < rc[types[i], types[j]])) < 5180


def test_failed_case_is_reported():
    rec = measure_case_isolated("water192", preset="no-such-preset", repeats=1)
    assert rec["status"] == "failed" and "no-such-preset" in rec["error"]
    assert rec["median_ms"] is None and rec["case"] == "water192"
