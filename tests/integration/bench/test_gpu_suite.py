"""The prepared GPU checks (allegro_bio.bench.gpu_suite): budget, records and the case cache, on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from allegro_bio.bench import cases, gpu_suite


@pytest.mark.long
def test_suite_keeps_to_its_budget_and_records_every_step(tmp_path):
    """With 1 s of budget only the free step runs; every other step is recorded as skipped, and a
    failing step is recorded without stopping the suite."""
    records = gpu_suite.run(tmp_path, budget_s=1.0, device="cpu", quick=True)
    steps = {r["step"]: r.get("status") for r in records if "step" in r and "status" in r}
    assert steps["environment"] == "ok"
    assert steps["physics"] == "skipped" and steps["small-aoti"] == "skipped"
    env = next(r for r in records if r["step"] == "environment" and "torch" in r)
    assert env["python"] and env["torch"]
    saved = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert len(saved) == len(records) and (tmp_path / "gpu_suite.txt").read_text().startswith("== environment")

    suite = gpu_suite.Suite(tmp_path / "s", 60.0, "cpu")
    suite.step("boom", 0, lambda: 1 / 0)
    suite.step("after", 0, lambda: None)
    assert [r["status"].split(":")[0] for r in suite.records] == ["failed", "ok"]
    assert "ZeroDivisionError" in suite.records[0]["status"]


def test_case_cache_round_trip(tmp_path, monkeypatch):
    """Cases written by save_case_cache are read back by build_case from $ALLEGRO_BIO_BENCH_CASES
    (how a GPU machine without openmm gets DHFR)."""
    (path,) = cases.save_case_cache(["water192"], tmp_path)
    built = cases.build_case("water192")
    data = dict(np.load(path))
    data["positions"] = data["positions"] + 0.25  # mark the cached copy
    np.savez(path, **data)
    monkeypatch.setenv(cases.CACHE_ENV, str(tmp_path))
    cached = cases.build_case("water192")
    np.testing.assert_allclose(cached.positions, built.positions + 0.25)
    assert (cached.numbers == built.numbers).all() and np.allclose(cached.cell.array, built.cell.array)
    assert cached.pbc.all()
    assert "water1032192" in cases.CASE_NAMES and "water1032192" not in cases.DEFAULT_CASES
    assert cases.N_ATOMS["water1032192"] == 192 * 16 * 16 * 21


@pytest.mark.long
def test_torchforce_module_step_reads_few_scalars_per_step(tmp_path):
    """The suite's TorchForce-module step, run on the CPU: the module matches itself on the CPU,
    steady steps rebuild no list, and the host waits for at most 8 scalars per step (7 now: the
    Verlet-list check, the closest pair, one_hot's range checks; on a GPU each is a device→host
    copy). A new per-step read on the MD path fails this."""
    suite = gpu_suite.Suite(tmp_path, 600.0, "cpu")
    gpu_suite.torchforce_module(suite, ["water192"], steps=3)
    (row,) = [r for r in suite.records if r.get("step") == "torchforce-module"]
    assert row["forces_device"] == "cpu" and row["rebuilds_in_steady_steps"] == 0 and row["reallocations"] == 1
    assert row["memcpy_htod_per_step"] == 0 and row["memcpy_dtoh_per_step"] == 0
    assert 1 <= row["scalar_reads_per_step"] <= 8, row
