"""The GPU checks of issue 8, prepared on a machine with PyPI and run in one command on a lent GPU machine.

A lent GPU machine has its own Python (3.12) and torch (2.11, CUDA 13), no internet, no openmm and
no reference implementation, and a session gets ~15 minutes of it. So:

``python -m allegro_bio.bench.gpu_suite prepare DIR`` (here, with PyPI) downloads wheels of what that
image lacks (ase, vesin, openmm, nequip, nequip-allegro and their dependencies) into
``DIR/wheels`` and writes the cases it cannot build (DHFR) to ``DIR/cases``;

``python -m allegro_bio.bench.gpu_suite run --out OUT --budget-s S --wheels DIR/wheels`` (there)
installs the wheels if they are not importable, then runs the steps below in order of importance
until the time budget is spent, each step in its own try: one that fails is recorded and the next
runs. It writes ``OUT/gpu_suite.json`` (every record, rewritten after each step) and
``OUT/gpu_suite.txt`` (the tables).

Steps: the physics checks on CUDA (float64: forces against finite differences, rotations, periodic
images, stress, CUDA = CPU; float32 with TF32 off and on against float64); the paper preset on DHFR
(TF32 off/on) and on a 1,032,192-atom water box (chunked); the small and paper presets side by
side with the reference; the module OpenMM's ``TorchForce`` calls, on the GPU (against the CPU,
host↔device copies per step); MD steps (OpenMM's python backend and ASE) against the raw model on the
GPU; pairs per chunk on DHFR; the AOTInductor package compiled for CUDA. The device command is in
docs/benchmarks.md ("Running the GPU checks").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

#: Wheels the GPU image lacks (its torch, e3nn, numpy, scipy, h5py, matplotlib, tqdm, lightning are used as they are).
#: Versions as in the development venv, where the side-by-side runs were measured.
WHEELS = ("ase==3.29.0", "vesin==0.6.2", "vesin-torch==0.6.2", "nequip==0.19.1", "nequip-allegro==0.8.3", "hydra-core==1.3.8",
          "omegaconf==2.3.1", "lmdb==3.0.0", "matscipy==1.3.1", "openmm==8.6.1", "antlr4-python3-runtime==4.9.3")
#: Cases written for machines that cannot build them (DHFR needs openmm and openmmtools).
CACHED_CASES = ("dhfr",)
#: Fraction of the GPU's memory the chunks of one evaluation may take (the default chunk is sized for a CPU).
GPU_CHUNK_FRACTION = 0.3


def prepare(folder: Path, python_version: str = "3.12") -> None:
    """Download :data:`WHEELS` for CPython ``python_version`` on x86-64 Linux into ``folder/wheels`` and
    write :data:`CACHED_CASES` into ``folder/cases``."""
    from .cases import save_case_cache

    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    binary = [w for w in WHEELS if not w.startswith("antlr4")]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--platform", "manylinux2014_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_34_x86_64",
                    "-d", str(wheels), *binary], check=True)
    # antlr4-python3-runtime 4.9.3 (hydra's pin) is published as a source archive only: build its wheel here
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels),
                    "antlr4-python3-runtime==4.9.3"], check=True)
    for path in save_case_cache(CACHED_CASES, folder / "cases"):
        print(f"wrote {path}")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"{folder}: {size / 2**20:.1f} MiB (the device tool carries at most 64 MiB with the working tree)")


def install_wheels(wheels: Path) -> None:
    """Install the wheels in ``wheels`` without an index or dependencies, where they are not importable."""
    missing = [m for m in ("ase", "vesin", "vesin_torch", "nequip", "allegro", "openmm") if importlib.util.find_spec(m) is None]
    if missing and wheels.is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                        *map(str, sorted(wheels.glob("*.whl")))], check=True)


class Suite:
    """Runs steps within a time budget and keeps every record and table."""

    def __init__(self, out: Path, budget_s: float, device: str) -> None:
        self.out, self.device = out, device
        self.deadline = time.monotonic() + budget_s
        self.records: list[dict[str, Any]] = []
        self.text: list[str] = []
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def step(self, name: str, estimate_s: float, body: Callable[[], Any]) -> None:
        """Run ``body`` unless fewer than ``estimate_s`` seconds are left; record what happened."""
        if self.left() < estimate_s:
            self.log(f"== {name}: skipped ({self.left():.0f} s left, needs ~{estimate_s:.0f} s)")
            self.records.append({"step": name, "status": "skipped"})
            return self.save()
        self.log(f"== {name} ({self.left():.0f} s left)")
        start = time.monotonic()
        try:
            body()
            status = "ok"
        except Exception as exc:  # a failed step is a result: recorded, and the next step runs
            status = f"failed: {type(exc).__name__}: {exc}"
            self.log(traceback.format_exc())
        self.log(f"-- {name}: {status} in {time.monotonic() - start:.0f} s")
        self.records.append({"step": name, "status": status, "seconds": time.monotonic() - start})
        self.save()

    def log(self, line: str) -> None:
        print(line, flush=True)
        self.text.append(line)

    def bench(self, step: str, preset: str, cases: list[str], **kwargs: Any) -> None:
        """``run_bench`` on this suite's device, records tagged with ``step``, table logged."""
        from .run import format_table, run_bench

        records = run_bench(preset, cases, device=self.device, progress=False, **kwargs)
        for r in records:
            r["step"] = step
        self.records.extend(records)
        self.log(format_table(records))
        bad = [r["error"] for r in records if r["status"] != "ok"]
        if bad:
            raise RuntimeError("; ".join(bad))

    def save(self) -> None:
        (self.out / "gpu_suite.json").write_text(json.dumps(self.records, indent=1, default=str) + "\n")
        (self.out / "gpu_suite.txt").write_text("\n".join(self.text) + "\n")


def environment(suite: Suite) -> None:
    """Versions, the GPU, and a C++ compiler (AOTInductor needs one for its wrapper)."""
    import shutil

    import torch

    import allegro_bio

    info = {"step": "environment", "python": sys.version.split()[0], "torch": torch.__version__,
            "cuda": torch.version.cuda, "allegro_bio": allegro_bio.__version__, "cxx": shutil.which("g++")}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gb=p.total_memory / 1e9, multiprocessors=p.multi_processor_count)
    info["peer"] = importlib.util.find_spec("allegro") is not None
    info["openmm"] = importlib.util.find_spec("openmm") is not None
    info["openmm_torch"] = importlib.util.find_spec("openmmtorch") is not None
    suite.records.append(info)
    suite.log(json.dumps(info))


def physics(suite: Suite) -> None:
    """The physics checklist on the device in float64 (a seeded model), the device against the CPU,
    and the packaged model's file in float32 (TF32 off and on) against float64 on 1,536 waters."""
    import numpy as np
    from ase.build import molecule

    import allegro_bio
    from allegro_bio import testing
    from allegro_bio.data import water_box
    from allegro_bio.deploy import as_model
    from allegro_bio.inference import evaluate
    from allegro_bio.runtime import set_tf32

    types = ["H", "C", "N", "O", "S"]
    m64 = allegro_bio.build_model("small", types, seed=1, dtype="float64").to(suite.device)
    f = testing.evaluator(m64)
    mol = molecule("CH3CH2OH")
    mol.positions += 0.05 * np.random.default_rng(0).standard_normal(mol.positions.shape)
    testing.assert_forces_match_finite_differences(f, mol)
    testing.assert_invariant(f, mol)
    testing.assert_strictly_local(f, mol, m64.r_max)
    water = water_box((1, 1, 1))
    testing.assert_periodic_images(f, water)
    testing.assert_stress_matches_strain(f, water)
    cpu = evaluate(allegro_bio.build_model("small", types, seed=1, dtype="float64"), water.positions, water.numbers,
                   water.cell.array, water.pbc)
    dev = evaluate(m64, water.positions, water.numbers, water.cell.array, water.pbc, device=suite.device)
    row = {"step": "physics", "float64_device_vs_cpu_energy": abs(dev.energy - cpu.energy),
           "float64_device_vs_cpu_force": float(np.abs(dev.forces - cpu.forces).max())}
    assert row["float64_device_vs_cpu_energy"] < 1e-8 and row["float64_device_vs_cpu_force"] < 1e-8, row
    # the packaged (trained) model's TorchScript file, as ASE and OpenMM load it, in both dtypes
    big = water_box((2, 2, 2))
    m64 = as_model(None, device=suite.device, dtype="float64")
    ref = evaluate(m64, big.positions, big.numbers, big.cell.array, big.pbc, device=suite.device)
    m32 = as_model(None, device=suite.device, dtype="float32")
    for tf32 in (False, True):
        set_tf32(tf32)
        got = evaluate(m32, big.positions, big.numbers, big.cell.array, big.pbc, device=suite.device)
        key = "tf32" if tf32 else "float32"
        row[f"{key}_energy_error_per_atom"] = abs(got.energy - ref.energy) / len(big)
        row[f"{key}_force_rmse"] = float(np.sqrt(np.mean((got.forces - ref.forces) ** 2)))
        row[f"{key}_force_max_error"] = float(np.abs(got.forces - ref.forces).max())
    set_tf32(False)
    row["force_rms"] = float(np.sqrt(np.mean(ref.forces**2)))
    suite.records.append(row)
    suite.log(json.dumps(row))


def md_steps(suite: Suite, cases: list[str]) -> None:
    """MD steps with the packaged model on the device against its raw evaluation there: OpenMM
    (CPU platform) with the python backend, and ASE (``allegro-bio bench --openmm --device``)."""
    from .openmm_bench import format_openmm_table, run_openmm_bench

    records = run_openmm_bench(cases, ["python", "ase"], platform="CPU", steps=10, raw_repeats=5, device=suite.device,
                               progress=False)
    for r in records:
        r["step"] = "md-steps"
    suite.records.extend(records)
    suite.log(format_openmm_table(records))
    bad = [r["error"] for r in records if r["status"] != "ok"]
    if bad:
        raise RuntimeError("; ".join(bad))


def torchforce_module(suite: Suite, cases: list[str], steps: int = 5) -> None:
    """The module OpenMM's ``TorchForce`` calls every step (torch backend: Verlet list, padded pairs,
    network), scripted and run on the device with positions and box there, as the CUDA platform
    passes them (float32, nm). Checks its energy and forces against the same module on the CPU,
    then profiles ``steps`` steady steps (atoms nudged by 1e-4 nm: no list rebuild) and counts per
    step the host↔device copies (``Memcpy`` events on the GPU) and the scalar reads the host waits
    for (``aten::_local_scalar_dense``: the Verlet-list check, the closest pair, ``one_hot``'s range
    checks, chunk bounds).
    openmm-torch itself cannot run on the lent image (its wheels need torch 2.9.1)."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    from ..deploy import as_model
    from ..neighbors import type_indices
    from ..openmm_module import AllegroOpenMMModule
    from .cases import build_case

    def module_on(device: str) -> Any:
        model = as_model(None, device=device, dtype="float32")
        types = torch.as_tensor(type_indices(atoms.numbers, model.type_names))
        wrapper = AllegroOpenMMModule(model.module, types, torch.arange(len(atoms)), False, True, model.r_max)
        return torch.jit.script(wrapper).to(device)

    for case in cases:
        atoms = build_case(case)
        pos_nm = torch.as_tensor(atoms.positions / 10.0, dtype=torch.float32)
        box_nm = torch.as_tensor(atoms.cell.array / 10.0, dtype=torch.float32)
        e_cpu, f_cpu = module_on("cpu")(pos_nm, box_nm)
        dev = module_on(suite.device)
        pos, box = pos_nm.to(suite.device), box_nm.to(suite.device)
        for _ in range(3):  # warm-up: list built, TorchScript's profiling runs
            energy, forces = dev(pos, box)
        row: dict[str, Any] = {"step": "torchforce-module", "case": case, "atoms": len(atoms),
                               "forces_device": str(forces.device), "energy_error_kj_mol": abs(float(energy) - float(e_cpu)),
                               "force_max_error_kj_mol_nm": float((forces.cpu() - f_cpu).abs().max())}
        nudge = 1e-4 * torch.randn(pos.shape, generator=torch.Generator().manual_seed(0)).to(suite.device)
        cuda = torch.device(suite.device).type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        rebuilds = int(dev.rebuilds)
        times = []
        with profile(activities=activities) as prof:
            for k in range(steps):
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                energy, forces = dev(pos + (k + 1) * nudge, box)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        names = [e.name for e in prof.events()]
        row.update(
            ms_per_step_profiled=1e3 * float(np.median(times)),
            memcpy_htod_per_step=sum("HtoD" in n for n in names) / steps,
            memcpy_dtoh_per_step=sum("DtoH" in n for n in names) / steps,
            scalar_reads_per_step=sum(n == "aten::_local_scalar_dense" for n in names) / steps,
            rebuilds_in_steady_steps=int(dev.rebuilds) - rebuilds, reallocations=int(dev.reallocations),
        )
        suite.records.append(row)
        suite.log(json.dumps(row))
        assert forces.device == pos.device, row  # forces returned where the positions came from
        assert row["energy_error_kj_mol"] < 1e-2 * len(atoms) and row["force_max_error_kj_mol_nm"] < 5.0, row


def gpu_chunk(preset: str, fraction: float = GPU_CHUNK_FRACTION) -> int:
    """Pairs per chunk that fill ``fraction`` of the GPU's memory (by the model's own estimate)."""
    import torch

    from ..model import preset_config
    from ..model.potential import default_chunk
    from .run import TYPE_NAMES

    total = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 2e9
    return default_chunk(preset_config(preset, TYPE_NAMES), budget_bytes=fraction * total)


def run(out: Path, budget_s: float, device: str = "cuda", quick: bool = False) -> list[dict[str, Any]]:
    """All steps on ``device`` within ``budget_s`` seconds (``quick``: the smallest cases only, for a
    dry run of the suite on a CPU)."""
    suite = Suite(out, budget_s, device)
    water_small = ["water192"] if quick else ["water1536", "water6144", "water24576"]
    water_paper = ["water192"] if quick else ["water192", "water1536"]
    big = ["water192"] if quick else ["dhfr"]
    million = ["water192"] if quick else ["water1032192"]
    tf32_modes = (False,) if device == "cpu" else (False, True)
    paper_chunk = gpu_chunk("paper") if device != "cpu" else None
    suite.step("environment", 0, lambda: environment(suite))
    suite.step("physics", 30, lambda: physics(suite))
    for tf32 in tf32_modes:
        suite.step(f"paper-dhfr-tf32-{int(tf32)}", 60, lambda tf32=tf32: suite.bench(
            "paper-dhfr", "paper", big, forms=["eager"], repeats=3, chunk=paper_chunk, tf32=tf32))
    suite.step(f"paper-1M-water-tf32-{int(device != 'cpu')}", 150, lambda: suite.bench(
        "paper-1M-water", "paper", million, forms=["eager"], repeats=2, chunk=paper_chunk, tf32=device != "cpu"))
    peer = importlib.util.find_spec("allegro") is not None
    for tf32 in tf32_modes:
        suite.step(f"small-side-by-side-tf32-{int(tf32)}", 90, lambda tf32=tf32: suite.bench(
            "small-side-by-side", "small", water_small, forms=["eager", "torchscript"], peer=peer, repeats=5,
            chunk=gpu_chunk("small") if device != "cpu" else None, tf32=tf32))
        suite.step(f"paper-side-by-side-tf32-{int(tf32)}", 90, lambda tf32=tf32: suite.bench(
            "paper-side-by-side", "paper", water_paper, forms=["eager", "torchscript"], peer=peer, repeats=5,
            chunk=paper_chunk, tf32=tf32))
    suite.step("torchforce-module", 45, lambda: torchforce_module(suite, ["water192"] if quick else ["water1536"]))
    if importlib.util.find_spec("openmm") is not None:
        suite.step("md-steps", 90, lambda: md_steps(suite, ["water192"] if quick else ["water1536", "water6144"]))
    for chunk in (4096, 32768, 262144):
        suite.step(f"paper-dhfr-chunk-{chunk}", 40, lambda chunk=chunk: suite.bench(
            "paper-dhfr-chunk", "paper", big, forms=["eager"], repeats=3, chunk=chunk))
    # the streamed (low-memory) evaluation beside eager in one large chunk: memory per pair and time
    suite.step("paper-dhfr-streamed", 60, lambda: suite.bench(
        "paper-dhfr-streamed", "paper", big, forms=["eager", "streamed"], repeats=3,
        chunk=262144 if device != "cpu" else None, stream_tile=32768 if device != "cpu" else None))
    suite.step("small-aoti", 180, lambda: suite.bench(
        "small-aoti", "small", water_small[:2], forms=["eager", "aoti"], repeats=5))
    suite.log(f"done; {suite.left():.0f} s of the budget left")
    suite.save()
    return suite.records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allegro_bio.bench.gpu_suite", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="download the wheels the GPU image lacks and write the cached cases")
    p.add_argument("folder", type=Path)
    p.add_argument("--python-version", default="3.12")
    r = sub.add_parser("run", help="run the GPU checks within a time budget")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--budget-s", type=float, default=480.0)
    r.add_argument("--device", default="cuda")
    r.add_argument("--wheels", type=Path, default=None, help="install these wheels first where not importable")
    r.add_argument("--quick", action="store_true", help="smallest cases only (a dry run on a CPU)")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.folder, args.python_version)
        return 0
    if args.wheels is not None:
        install_wheels(args.wheels)
    records = run(args.out, args.budget_s, args.device, args.quick)
    return 0 if all(not str(r.get("status", "ok")).startswith("failed") for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
