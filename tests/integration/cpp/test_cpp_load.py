"""The deployed model file loads and evaluates from C++ (libtorch), as the LAMMPS plugin will do.

Compiles ``load_model.cpp`` (beside this file) with g++ against the libtorch inside the installed torch
wheel (headers in ``torch/include``, libraries in ``torch/lib``; ``find_package(Torch)`` is not
used because it needs a CUDA toolkit for CUDA wheels), runs it on a saved float64 model and
compares its energy, forces, virial and metadata with the Python evaluation.

The binary is cached under ``$XDG_CACHE_HOME/allegro_bio/cpp`` (default ``~/.cache``), keyed
by the source, the compile command and the torch version, so it is rebuilt only when one of
those changes (compilation takes about a minute on two cores).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

import allegro_bio
from allegro_bio.inference import evaluate
from allegro_bio.neighbors import build_graph, type_indices

from fixtures.structures import water_cluster

SOURCE = Path(__file__).parent / "load_model.cpp"
TYPES = ["H", "C", "N", "O", "S"]


def _compile_command(source: Path, output: Path) -> list[str]:
    root = Path(torch.__file__).resolve().parent
    includes = [root / "include", root / "include" / "torch" / "csrc" / "api" / "include"]
    libs = [root / "lib"]
    abi = int(torch.compiled_with_cxx11_abi())
    cmd = ["g++", "-std=c++17", "-O1", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    cmd += [f"-I{p}" for p in includes]
    cmd += [str(source), "-o", str(output)]
    cmd += [f"-L{p}" for p in libs] + [f"-Wl,-rpath,{p}" for p in libs]
    cmd += ["-ltorch_cpu", "-lc10"]
    return cmd


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "allegro_bio" / "cpp"


@pytest.fixture(scope="session")
def load_model_exe() -> Path:
    """The compiled ``load_model`` program, built once per source/torch/compiler combination."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.fail("g++ not found on PATH: the C++ loading test needs a C++17 compiler (apt-get install g++)")
    version = subprocess.run([gxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    key_cmd = _compile_command(SOURCE, Path("load_model"))
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), " ".join(key_cmd), torch.__version__, torch.__file__, version]).encode()
    ).hexdigest()[:16]
    exe = _cache_dir() / key / "load_model"
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    # build under a temporary name and rename, so parallel or interrupted runs never see half a binary
    fd, tmp = tempfile.mkstemp(dir=exe.parent, prefix="load_model.", suffix=".tmp")
    os.close(fd)
    try:
        cmd = _compile_command(SOURCE, Path(tmp))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            pytest.fail(f"compiling {SOURCE.name} failed ({' '.join(cmd)}):\n{proc.stderr[-6000:]}")
        print(f"\ncompiled {SOURCE.name} in {elapsed:.1f} s -> {exe}", file=sys.stderr)
        os.chmod(tmp, 0o755)
        os.replace(tmp, exe)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return exe


def _structure():
    """Five waters and a methanethiol, open boundaries: H, C, O and S within each other's cutoff."""
    atoms = water_cluster(5)
    thiol = molecule("CH3SH")
    thiol.positions += atoms.positions.mean(0) + np.array([4.0, 0.0, 0.0]) - thiol.positions.mean(0)
    atoms += thiol
    atoms.pbc = False
    atoms.cell = np.zeros((3, 3))
    return atoms


def _write_input(path: Path, types: np.ndarray, positions: np.ndarray, edge_index: np.ndarray, shift: np.ndarray):
    lines = [f"{len(types)} {edge_index.shape[1]}"]
    lines += [f"{int(t)} {x!r} {y!r} {z!r}" for t, (x, y, z) in zip(types, positions.tolist())]
    lines += [f"{int(i)} {int(j)} {sx!r} {sy!r} {sz!r}" for (i, j), (sx, sy, sz) in zip(edge_index.T, shift.tolist())]
    path.write_text("\n".join(lines) + "\n")


def _parse_output(text: str) -> dict:
    out: dict = {"meta": {}, "atom_energy": {}, "force": {}}
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "meta":
            key, _, value = rest.partition(" ")
            out["meta"][key] = value
        elif tag == "energy":
            out["energy"] = float(rest)
        elif tag in ("atom_energy", "force"):
            idx, *vals = rest.split()
            out[tag][int(idx)] = [float(v) for v in vals]
        elif tag == "virial":
            out["virial"] = np.array([float(v) for v in rest.split()]).reshape(3, 3)
    out["atom_energy"] = np.array([out["atom_energy"][k][0] for k in sorted(out["atom_energy"])])
    out["force"] = np.array([out["force"][k] for k in sorted(out["force"])])
    return out


@pytest.mark.long
@pytest.mark.compile
def test_cpp_loads_and_matches_python(load_model_exe, tmp_path):
    model = allegro_bio.build_model("small", TYPES, seed=0, dtype="float64")
    path = allegro_bio.save(model, tmp_path / "model64.pt")
    deployed = allegro_bio.load(path)

    atoms = _structure()
    positions = atoms.positions
    cell = np.zeros((3, 3))
    graph = build_graph(positions, cell, atoms.pbc, model.r_max)
    types = type_indices(atoms.numbers, model.type_names)
    assert graph.edge_index.shape[1] > 0
    _write_input(tmp_path / "input.txt", types, positions, graph.edge_index, graph.shift)

    proc = subprocess.run([str(load_model_exe), str(path), str(tmp_path / "input.txt")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"load_model failed (rc {proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    cpp = _parse_output(proc.stdout)

    # metadata as written by save()
    meta = allegro_bio.deploy.metadata_of(model)
    for key in ("r_max", "type_names", "num_types", "model_dtype", "per_edge_type_cutoff"):
        assert cpp["meta"][key] == meta[key], key
    assert float(cpp["meta"]["r_max"]) == model.r_max
    assert cpp["meta"]["type_names"].split() == TYPES
    cut = np.array([float(x) for x in cpp["meta"]["per_edge_type_cutoff"].split()]).reshape(len(TYPES), len(TYPES))
    np.testing.assert_array_equal(cut, model.cutoff_matrix.numpy())

    n = len(atoms)
    assert cpp["atom_energy"].shape == (n,) and cpp["force"].shape == (n, 3)
    for reference in (deployed, model):
        ref = evaluate(reference, positions, atoms.numbers, cell, atoms.pbc, compute_virial=True, graph=graph)
        d_e = abs(cpp["energy"] - ref.energy)
        d_ae = np.abs(cpp["atom_energy"] - ref.energies).max()
        d_f = np.abs(cpp["force"] - ref.forces).max()
        d_w = np.abs(cpp["virial"] - ref.virial).max()
        print(f"{type(reference).__name__}: |dE| {d_e:.3g} eV, max|dE_i| {d_ae:.3g} eV, max|dF| {d_f:.3g} eV/A, "
              f"max|dW| {d_w:.3g} eV (E = {ref.energy:.6f} eV, max|F| = {np.abs(ref.forces).max():.3g} eV/A)")
        assert np.abs(ref.forces).max() > 1e-3  # a meaningful comparison: forces are not all zero
        assert d_e <= 1e-10 * max(1.0, abs(ref.energy))
        assert d_ae <= 1e-10
        assert d_f <= 1e-10
        assert d_w <= 1e-10
