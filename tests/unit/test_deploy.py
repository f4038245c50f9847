"""The deployed file: metadata, round trip, fresh-process loading, bad files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import allegro_bio
from allegro_bio import pretrained
from allegro_bio.errors import ModelFileError
from allegro_bio.inference import evaluate
from allegro_bio.model import clone

from fixtures.structures import organic


def test_metadata_keys(model_files):
    m = allegro_bio.load(model_files["float32"])
    md = m.metadata
    assert md["r_max"] == "4.0" and md["type_names"] == "H C N O S" and md["num_types"] == "5"
    assert md["model_dtype"] == "float32" and md["allow_tf32"] == "0" and md["zbl"] == "1"
    assert len(md["per_edge_type_cutoff"].split()) == 25
    assert md["units"] == "eV Angstrom" and md["allegro_bio_version"] == allegro_bio.__version__
    assert json.loads(md["config"])["num_tensor_features"] == 32


def test_round_trip_is_exact(eager64, model_files):
    """The file is the eager model in inference mode (frozen weights) bit for bit. Trainable
    weights make autograd take other (slower) kernels: equal to float64 rounding."""
    a = organic()
    frozen = clone(eager64).requires_grad_(False)
    ref = evaluate(frozen, a.positions, a.numbers, np.zeros((3, 3)), False)
    got = evaluate(allegro_bio.load(model_files["float64"]), a.positions, a.numbers, np.zeros((3, 3)), False)
    assert got.energy == ref.energy
    np.testing.assert_array_equal(got.forces, ref.forces)
    trainable = evaluate(eager64, a.positions, a.numbers, np.zeros((3, 3)), False)
    np.testing.assert_allclose(got.forces, trainable.forces, rtol=1e-11, atol=1e-11)


def test_loads_in_fresh_process_without_allegro_bio(model_files, eager64, tmp_path):
    """Plain torch.jit.load + compute, in a process that never imports allegro_bio."""
    a = organic()
    ref = evaluate(eager64, a.positions, a.numbers, np.zeros((3, 3)), False)
    np.save(tmp_path / "pos.npy", a.positions)
    types = np.array([["H", "C", "N", "O", "S"].index(s) for s in a.get_chemical_symbols()])
    np.save(tmp_path / "types.npy", types)
    script = f"""
import sys, numpy as np, torch
m = torch.jit.load({str(model_files['float64'])!r})
pos = torch.tensor(np.load({str(tmp_path / 'pos.npy')!r}))
t = torch.tensor(np.load({str(tmp_path / 'types.npy')!r}))
n = len(pos)
i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
keep = i != j
ei = torch.stack([i[keep], j[keep]])
e, f, w = m.compute(pos, t, ei, torch.zeros(ei.shape[1], 3, dtype=torch.float64), n, False)
assert "allegro_bio" not in sys.modules
print(repr(float(e.sum())))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip()) == pytest.approx(ref.energy, abs=1e-10)


def test_dtype_option_casts_and_keeps_float64_sums(model_files):
    m = allegro_bio.load(model_files["float32"]).to(dtype=torch.float64)
    assert m.model_dtype == "float64"
    assert m.module.net.per_type_shift.dtype == torch.float64
    dtypes = {n: t.dtype for n, t in m.module.named_parameters()}
    assert dtypes["net.two_body.net.0.weight"] == torch.float64


def test_missing_file():
    with pytest.raises(ModelFileError, match="not found: .*nothere.pt"):
        allegro_bio.load("nothere.pt")
    with pytest.raises(ModelFileError, match="nothere.pt"):
        allegro_bio.AllegroCalculator("nothere.pt")


def test_corrupt_file(tmp_path, model_files):
    bad = tmp_path / "corrupt.pt"
    data = model_files["float32"].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt.pt.*not a readable TorchScript"):
        allegro_bio.load(bad)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="text.pt"):
        allegro_bio.load(text)


def test_torchscript_file_that_is_not_ours(tmp_path):
    path = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(ModelFileError, match="not an allegro_bio model"):
        allegro_bio.load(path)


def test_newer_format_is_refused(tmp_path, eager32):
    from allegro_bio import deploy

    path = tmp_path / "future.pt"
    extra = deploy.metadata_of(eager32)
    extra[deploy.FORMAT] = "999"
    torch.jit.save(torch.jit.script(eager32), str(path), _extra_files=extra)
    with pytest.raises(ModelFileError, match="format 999.*upgrade"):
        allegro_bio.load(path)


def test_failed_save_leaves_no_partial_file(tmp_path):
    with pytest.raises(TypeError):
        allegro_bio.save(torch.nn.Linear(2, 2), tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_calculator_dtype_option_upcasts_an_eager_float32_model(eager32, eager64):
    a = organic()
    calc = allegro_bio.AllegroCalculator(eager32, dtype="float64")
    a.calc = calc
    ref = evaluate(eager64, a.positions, a.numbers, np.zeros((3, 3)), False)
    assert a.get_potential_energy() == pytest.approx(ref.energy, rel=1e-6)  # same seed, weights rounded to float32
    assert eager32.net.two_body.net[0].weight.dtype == torch.float32  # the caller's model is untouched


def test_redeploy_keeps_weights_and_metadata(eager64, model_files, tmp_path, capsys):
    """`allegro-bio deploy --from OLD NEW`: same outputs and description, this version's code."""
    from allegro_bio.cli import main

    new = tmp_path / "new.pt"
    assert main(["deploy", "--from", str(model_files["float64"]), str(new)]) == 0
    old_m, new_m = allegro_bio.load(model_files["float64"]), allegro_bio.load(new)
    assert new_m.metadata["training_description"] == old_m.metadata["training_description"]
    assert new_m.config == old_m.config
    a = organic()
    ref = evaluate(old_m, a.positions, a.numbers, np.zeros((3, 3)), False)
    got = evaluate(new_m, a.positions, a.numbers, np.zeros((3, 3)), False)
    assert got.energy == pytest.approx(ref.energy, rel=1e-13)
    np.testing.assert_allclose(got.forces, ref.forces, rtol=1e-11, atol=1e-11)
    assert "wrote" in capsys.readouterr().out


def test_tf32_metadata_is_written_kept_and_applied(model_files, tmp_path):
    """`deploy --tf32 on` writes allow_tf32=1; `--from` keeps a file's setting unless told; every
    engine's loader (as_model) sets the process's CUDA TF32 flags from the file (as nequip does),
    which only CUDA matmuls read, so this runs on any machine."""
    from allegro_bio.cli import main
    from allegro_bio.deploy import as_model

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        on = tmp_path / "tf32.pt"
        assert main(["deploy", str(on), "--tf32", "on"]) == 0
        assert allegro_bio.load(on).metadata["allow_tf32"] == "1"
        kept, off = tmp_path / "kept.pt", tmp_path / "off.pt"
        assert main(["deploy", "--from", str(on), str(kept)]) == 0
        assert main(["deploy", "--from", str(on), str(off), "--tf32", "off"]) == 0
        assert allegro_bio.load(kept).allow_tf32 and not allegro_bio.load(off).allow_tf32
        as_model(str(on))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        as_model(str(model_files["float32"]))  # written with the default: TF32 off
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_stream_tile_is_written_kept_and_refused_where_it_cannot_apply(model_files, eager64, tmp_path):
    """`deploy --stream-tile N` writes a .pt file that streams (same results); `--from` keeps it
    unless told; loaded files take it as a setting; packages, torch.compile and bad values refuse it."""
    from allegro_bio.cli import main
    from allegro_bio.model import clone
    from allegro_bio.model.compiled import compile_potential

    streamed = tmp_path / "streamed.pt"
    assert main(["deploy", "--from", str(model_files["float64"]), str(streamed), "--stream-tile", "40"]) == 0
    m = allegro_bio.load(streamed)
    assert m.stream_tile == 40
    a = organic()
    ref = evaluate(allegro_bio.load(model_files["float64"]), a.positions, a.numbers, np.zeros((3, 3)), False)
    got = evaluate(m, a.positions, a.numbers, np.zeros((3, 3)), False)
    assert got.energy == pytest.approx(ref.energy, abs=1e-10)
    np.testing.assert_allclose(got.forces, ref.forces, atol=1e-10)
    kept, off = tmp_path / "kept.pt", tmp_path / "off.pt"
    assert main(["deploy", "--from", str(streamed), str(kept)]) == 0
    assert main(["deploy", "--from", str(streamed), str(off), "--stream-tile", "0"]) == 0
    assert allegro_bio.load(kept).stream_tile == 40 and allegro_bio.load(off).stream_tile == 0
    with pytest.raises(SystemExit) as exc:  # argparse: "--stream-tile: ... ≥ 0"
        main(["deploy", str(tmp_path / "neg.pt"), "--stream-tile", "-3"])
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="stream_tile"):
        m.stream_tile = -1
    s = clone(eager64)
    s.stream_tile = 64
    with pytest.raises(ModelFileError, match="stream"):
        allegro_bio.save(s, tmp_path / "streamed.pt2")
    assert not (tmp_path / "streamed.pt2").exists()
    with pytest.raises(ValueError, match="stream_tile"):
        compile_potential(s)


def test_redeploy_drops_constants_older_code_stored(tmp_path):
    """A file from an older network version may hold derived buffers this version no longer keeps
    (e.g. the removed sparse product's indices, as in the packaged model): they are dropped. An
    extra weight is an error naming it."""
    from allegro_bio.deploy import to_eager

    m = allegro_bio.build_model("small", ["H", "C", "N", "O", "S"], seed=3, dtype="float64")
    m.net.layers[0].tp.register_buffer("nz_in", torch.arange(5))
    old = allegro_bio.load(allegro_bio.save(m, tmp_path / "old.pt"))
    a = organic()
    ref = evaluate(old, a.positions, a.numbers, np.zeros((3, 3)), False)
    got = evaluate(to_eager(old), a.positions, a.numbers, np.zeros((3, 3)), False)
    np.testing.assert_allclose(got.forces, ref.forces, rtol=1e-12, atol=1e-12)
    del m.net.layers[0].tp.nz_in
    m.net.layers[0].tp.extra_weight = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    with pytest.raises(ModelFileError, match="extra_weight"):
        to_eager(allegro_bio.load(allegro_bio.save(m, tmp_path / "foreign.pt")))
    if pretrained.available():  # the packaged file holds such buffers
        packaged = pretrained.load()
        assert to_eager(packaged).num_weights() == sum(p.numel() for p in packaged.module.parameters())
