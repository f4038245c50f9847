"""The torch.compile path (``AllegroCalculator(compile=True)``): same results as the uncompiled model,
no recompiling as the structure changes, saved as the plain potential, clear errors. The physics
suite (test_physics.py) runs on it too, as form "compiled"."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import allegro_bio
from allegro_bio import testing as T
from allegro_bio.model.compiled import CompiledPotential, compile_potential

from fixtures.structures import small_triclinic_box, water_cluster


def test_compiled_matches_uncompiled_across_sizes_and_chunks(eager64, compiled_calculators):
    """Structures of different sizes, each evaluated in several chunks of different sizes, through one
    compiled graph: float64 energies, forces and stress equal the eager model's to 1e-10."""
    calc = compiled_calculators["float64"]
    plain = T.evaluator(eager64)
    compiled = T.evaluator(calc)
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    chunk = calc.model.max_edges_per_chunk
    try:
        calc.model.max_edges_per_chunk = 97  # a few centre atoms per chunk: chunk sizes differ
        for atoms in (water_cluster(4), small_triclinic_box(), small_triclinic_box().repeat((2, 1, 1))):
            ref, got = plain(atoms), compiled(atoms)
            np.testing.assert_allclose(got.energy, ref.energy, rtol=1e-12, atol=1e-10)
            np.testing.assert_allclose(got.forces, ref.forces, rtol=1e-10, atol=1e-10)
            if atoms.pbc.all():
                np.testing.assert_allclose(got.stress, ref.stress, rtol=1e-10, atol=1e-12)
    finally:
        calc.model.max_edges_per_chunk = chunk
    # dynamic shapes: new pair and atom counts reuse the compiled graphs (at most one recompile
    # when a dimension first varies); dynamo's cache limit would otherwise fall back to eager silently
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - before <= 2


def test_compiled_model_saves_as_the_plain_potential(tmp_path, eager64, compiled_calculators):
    compiled = compiled_calculators["float64"].model
    assert isinstance(compiled, CompiledPotential)
    path = allegro_bio.save(compiled, tmp_path / "from_compiled.pt")
    atoms = small_triclinic_box()
    ref = T.evaluator(eager64)(atoms)
    got = T.evaluator(allegro_bio.load(path))(atoms)
    np.testing.assert_allclose(got.forces, ref.forces, rtol=1e-12, atol=1e-12)


def test_compiled_model_uses_the_fusable_ops(eager64, compiled_calculators):
    """The compiled model gathers environments with ``gather`` and unrolls the small preset's first
    product (14 terms); the eager model and the plain copy that ``save`` writes do neither."""
    compiled = compiled_calculators["float64"].model
    assert [layer.gather_pairs for layer in compiled.net.layers] == [True, True]
    assert [layer.tp.unrolled for layer in compiled.net.layers] == [True, False]  # the last layer is diagonal
    assert compiled.net.layers[0].tp.num_terms() == 14
    for plain in (eager64, compiled.eager()):
        assert not any(layer.gather_pairs or layer.tp.unrolled for layer in plain.net.layers)


def test_compile_needs_an_eager_model(model_files):
    with pytest.raises(TypeError, match="to_eager"):
        compile_potential(allegro_bio.load(model_files["float64"]))


def test_missing_compiler_is_a_clear_error(monkeypatch, eager64):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        compile_potential(eager64)
