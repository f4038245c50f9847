"""`allegro-bio bench --openmm`: records, rates and failure reporting (cheap: water192, 1 step)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import numpy as np

from allegro_bio.bench import build_case, cli, openmm_bench
from allegro_bio.bench.openmm_bench import measure_openmm_isolated, ml_topology_system

KEYS = {
    "implementation", "backend", "platform", "case", "n_atoms", "ms_per_step", "ns_per_day", "atom_steps_per_s",
    "raw_model_ms", "overhead_ratio", "steps", "status", "error", "torch_version", "threads", "load_avg_1min",
}


@pytest.mark.long
def test_bench_openmm_cli_water192(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "--openmm", "--cases", "water192", "--steps", "1", "--repeats", "1",
                              "--threads", "1", "--backends", "torch", "python", "ase", "ase-compiled", "torch-aoti",
                              "--json", str(out)])
    assert args.func(args) == 0
    records = json.loads(out.read_text())
    assert [r["backend"] for r in records] == ["torch", "python", "ase", "ase-compiled", "torch-aoti"]
    for rec in records:
        assert KEYS <= rec.keys()
        assert (rec["implementation"], rec["platform"], rec["case"], rec["status"]) == (
            "allegro_bio-openmm", "CPU", "water192", "ok")
        assert (rec["n_atoms"], rec["steps"], rec["threads"], rec["error"]) == (192, 1, 1, None)
        assert rec["warmup_steps"] == 2 and len(rec["times_ms"]) == 1
        assert rec["model"] == "packaged allegro-bio-xtb-small" and rec["dynamics"] == "Langevin 300 K"
        for key in ("ms_per_step", "ns_per_day", "atom_steps_per_s", "raw_model_ms", "overhead_ratio"):
            assert math.isfinite(rec[key]) and rec[key] > 0, key
        assert np.isclose(rec["overhead_ratio"], rec["ms_per_step"] / rec["raw_model_ms"])
        assert np.isclose(rec["ns_per_day"], 0.5e-6 * 86400 / (rec["ms_per_step"] / 1e3))
        assert np.isclose(rec["atom_steps_per_s"], 192 / (rec["ms_per_step"] / 1e3))
    table = capsys.readouterr().out
    assert "water192" in table and "python" in table and "ase" in table and "overhead" in table


def test_topology_and_system_from_atoms():
    atoms = build_case("water192")
    top, system, pos = ml_topology_system(atoms)
    assert top.getNumAtoms() == system.getNumParticles() == 192
    assert [a.element.symbol for a in top.atoms()][:3] == ["O", "H", "H"]
    assert np.allclose(pos * 10.0, atoms.positions)
    assert top.getPeriodicBoxVectors() is not None


def test_default_cases_agree():
    assert cli.OPENMM_CASES == openmm_bench.OPENMM_CASES
    assert cli.OPENMM_BACKENDS == openmm_bench.OPENMM_BACKENDS
    assert cli.AOTI_BACKENDS == openmm_bench.AOTI_BACKENDS
    assert cli.SMALL_ATOMS == openmm_bench.SMALL_ATOMS


@pytest.mark.long
def test_failed_run_is_reported():
    rec = measure_openmm_isolated("water192", backend="torch", platform="NoSuchPlatform", steps=1, raw_repeats=1)
    assert rec["status"] == "failed" and "NoSuchPlatform" in rec["error"]
    assert rec["ms_per_step"] is None and rec["overhead_ratio"] is None and rec["case"] == "water192"


@pytest.mark.long
def test_interleaved_backends_share_one_process(tmp_path, capsys):
    """--interleave: one process per case, the backends' steps taken in turn; same records, flagged."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "inter.json"
    args = parser.parse_args(["bench", "--openmm", "--interleave", "--cases", "water192", "--steps", "2", "--repeats", "1",
                              "--threads", "1", "--backends", "torch", "python", "--json", str(out)])
    assert args.func(args) == 0
    records = json.loads(out.read_text())
    assert [(r["backend"], r["status"], r["interleaved"]) for r in records] == [("torch", "ok", True), ("python", "ok", True)]
    for rec in records:
        assert KEYS <= rec.keys() and len(rec["times_ms"]) == 2 and rec["n_atoms"] == 192
        assert np.isclose(rec["overhead_ratio"], rec["ms_per_step"] / rec["raw_model_ms"])
    assert records[0]["raw_model_ms"] == records[1]["raw_model_ms"]  # one raw timing of the shared .pt model
    assert "interleaved in one process" in capsys.readouterr().out
    args = parser.parse_args(["bench", "--openmm", "--interleave", "--cases", "water192", "--backends", "torch", "ase"])
    assert args.func(args) == 2
    assert "OpenMM backends only" in capsys.readouterr().out
    failed = openmm_bench.measure_openmm_interleaved_isolated("water192", ["torch", "python"], platform="NoSuchPlatform",
                                                              steps=1, raw_repeats=1)
    assert [(r["backend"], r["status"]) for r in failed] == [("torch", "failed"), ("python", "failed")]
    assert "NoSuchPlatform" in failed[0]["error"]


@pytest.mark.long
def test_device_option(capsys):
    """--device applies to the python and ASE backends (the torch backends run on the platform's device):
    torch backends with a GPU device are refused, records carry the device."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--openmm", "--device", "cuda", "--backends", "torch", "python"])
    assert args.func(args) == 2
    assert "platform's device" in capsys.readouterr().out
    rec = measure_openmm_isolated("water192", backend="torch-aoti", steps=1, raw_repeats=1, device="cuda")
    assert rec["status"] == "failed" and "device 'cpu'" in rec["error"] and rec["device"] == "cuda"
    rec = openmm_bench.measure_openmm("water192", backend="python", steps=1, raw_repeats=1, warmup=1, device="cpu")
    assert rec["status"] == "ok" and rec["device"] == "cpu"
