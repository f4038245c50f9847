"""AOTInductor packages (``save(model, "model.pt2")``): the compiled per-chunk step against the
eager network, chunk edge cases, metadata and errors. The physics suite runs on packages as form
"package" (test_physics.py); OpenMM runs them in test_openmm.py, LAMMPS in test_lammps.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
from ase import Atoms

import allegro_bio
from allegro_bio.data import water64
from allegro_bio.deploy import to_eager
from allegro_bio.errors import ModelFileError
from allegro_bio.testing import evaluator

from fixtures.structures import organic


def _close(got, ref, tol: float) -> None:
    assert got.energy == pytest.approx(ref.energy, rel=tol, abs=tol)
    np.testing.assert_allclose(got.forces, ref.forces, rtol=0, atol=tol * max(1.0, np.abs(ref.forces).max()))
    np.testing.assert_allclose(got.energies, ref.energies, rtol=0, atol=tol * max(1.0, np.abs(ref.energies).max()))
    if ref.stress is not None:
        np.testing.assert_allclose(got.stress, ref.stress, rtol=0, atol=tol * max(1.0, np.abs(ref.stress).max()))


def test_package_equals_eager_in_many_chunks(eager64, packages):
    """float64: the package (its own chunk loop, chunks of 300 pairs here) equals the eager network."""
    pkg = allegro_bio.load(packages["float64"])
    assert pkg.is_aoti and pkg.model_dtype == "float64" and pkg.type_names == eager64.type_names
    assert pkg.max_edges_per_chunk == eager64.max_edges_per_chunk  # from the package metadata
    pkg.max_edges_per_chunk = 300
    atoms = water64()
    _close(evaluator(pkg)(atoms), evaluator(eager64)(atoms), 1e-10)


def test_package_metadata_is_the_model_files(model_files, packages):
    ts, pkg = allegro_bio.load(model_files["float32"]), allegro_bio.load(packages["float32"])
    for key in ("r_max", "type_names", "num_types", "model_dtype", "per_edge_type_cutoff", "config", "format_version"):
        assert pkg.metadata[key] == ts.metadata[key], key
    assert not ts.is_aoti


@pytest.mark.parametrize("atoms", [
    Atoms("H", positions=[[0.0, 0.0, 0.0]]),                                    # one centre, no pair
    Atoms("HO", positions=[[0.0, 0.0, 0.0], [0.97, 0.0, 0.0]]),                 # two pairs
    Atoms("OS", positions=[[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]),                  # two centres, no pair
], ids=["atom", "dimer", "far-apart"])
def test_chunks_smaller_than_the_compiled_minimum(eager64, packages, atoms):
    """The package is compiled for >= 2 pairs and centres: smaller chunks are padded exactly."""
    pkg = allegro_bio.load(packages["float64"])
    _close(evaluator(pkg)(atoms), evaluator(eager64)(atoms), 1e-12)


def test_calculator_and_compile_flag_accept_a_package(eager64, packages):
    atoms = organic()
    ref = evaluator(eager64)(atoms)
    _close(evaluator(allegro_bio.AllegroCalculator(str(packages["float64"])))(atoms), ref, 1e-10)
    calc = allegro_bio.AllegroCalculator(str(packages["float64"]), compile=True)  # compiled already: no-op
    _close(evaluator(calc)(atoms), ref, 1e-10)
    # forward(): atom energies only, as the TorchScript file's
    import torch

    from allegro_bio.neighbors import build_graph, type_indices

    pkg = allegro_bio.load(packages["float64"])
    g = build_graph(atoms.positions, np.asarray(atoms.cell), atoms.pbc, pkg.r_max)
    energies = pkg(torch.as_tensor(atoms.positions), torch.as_tensor(type_indices(atoms.numbers, pkg.type_names)),
                   torch.as_tensor(g.edge_index), torch.as_tensor(g.shift), len(atoms))
    np.testing.assert_allclose(energies.numpy(), ref.energies, rtol=0, atol=1e-10 * np.abs(ref.energies).max())


def test_package_errors_name_the_problem(tmp_path, packages):
    bad = tmp_path / "corrupt.pt2"
    bad.write_bytes(b"PK\x03\x04 this is no package")
    with pytest.raises(ModelFileError, match="corrupt.pt2 is not a readable AOTInductor package"):
        allegro_bio.load(bad)
    with pytest.raises(ModelFileError, match="model file not found: .*missing.pt2"):
        allegro_bio.load(tmp_path / "missing.pt2")
    with pytest.raises(ModelFileError, match="compiled for float64; it cannot run in torch.float32"):
        allegro_bio.AllegroCalculator(str(packages["float64"]), dtype="float32")
    with pytest.raises(ModelFileError, match="holds compiled kernels, not weights"):
        to_eager(allegro_bio.load(packages["float64"]))


def test_writing_a_package_without_a_compiler_is_a_clear_error(monkeypatch, tmp_path, eager64):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler"):
        allegro_bio.save(eager64, tmp_path / "m.pt2")
    assert not list(tmp_path.iterdir()), "a failed save left files behind"


def test_torchscript_package_potential_equals_the_python_one(eager64, packages, tmp_path):
    """``PackagePotential`` (the package through the TorchBind runner, scripted: what openmm-torch's
    TorchForce runs) equals the Python-driven package and the eager network, in many chunks and
    in chunks below the compiled minimum, and saves and loads whole (the runner pickles as the
    package's bytes)."""
    import torch

    from allegro_bio.model.aoti import scripted_package
    from allegro_bio.neighbors import build_graph, type_indices

    pkg = allegro_bio.load(packages["float64"])
    scripted = scripted_package(pkg.path, pkg.module.config, 300)
    assert isinstance(scripted, torch.jit.ScriptModule)
    torch.jit.save(scripted, str(tmp_path / "module.pt"))
    reloaded = torch.jit.load(str(tmp_path / "module.pt"))
    for atoms, chunk in ((water64(), 300), (organic(), 1), (Atoms("H", positions=[[0.0, 0.0, 0.0]]), 300)):
        g = build_graph(atoms.positions, np.asarray(atoms.cell), atoms.pbc, pkg.r_max)
        args = (torch.as_tensor(atoms.positions), torch.as_tensor(type_indices(atoms.numbers, pkg.type_names)),
                torch.as_tensor(g.edge_index), torch.as_tensor(g.shift), len(atoms), True)
        ref = eager64.compute(*args)
        for module in (pkg.module, scripted, reloaded):
            module.max_edges_per_chunk = chunk
            for got, want in zip(module.compute(*args), ref):
                np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=0,
                                           atol=1e-10 * max(1.0, float(want.abs().max())))
    reloaded.package_device = "cuda"  # as if a CPU context ran a CUDA package: refused, not crashed
    with pytest.raises(torch.jit.Error, match="compiled for cuda but got inputs on cpu"):
        reloaded.compute(*args)


def test_package_runner_errors_name_the_problem(monkeypatch, tmp_path):
    """A corrupt package in the runner, and building the runner without a compiler or into an
    unwritable cache: clear errors, and a failed build leaves no library behind."""
    import torch

    from allegro_bio.model import package_runner

    package_runner.load_library()
    bad = tmp_path / "corrupt.pt2"
    bad.write_bytes(b"PK\x03\x04 this is no package")
    with pytest.raises(RuntimeError, match="'corrupt.pt2' is not a readable AOTInductor package"):
        package_runner.package_runner(bad)
    monkeypatch.setenv(package_runner.ENV_DIR, str(tmp_path / "cache"))
    path_before = os.environ["PATH"]
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(package_runner.RunnerBuildError, match="needs a C\\+\\+ compiler"):
        package_runner.build_library(force=True)
    assert not package_runner.library_path().exists()
    monkeypatch.setenv("PATH", path_before)  # a compiler again, but an unwritable cache
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv(package_runner.ENV_DIR, str(tmp_path / "file" / "cache"))
    with pytest.raises(package_runner.RunnerBuildError, match="cannot write the package runner library under .*"
                       "ALLEGRO_BIO_RUNNER_DIR"):
        package_runner.build_library(force=True)
    assert torch.classes.allegro_bio.PackageRunner is not None  # the loaded library is unaffected
