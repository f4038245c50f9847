"""Shared structures and model forms for the physics suite."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

import allegro_bio
from allegro_bio.data import water64

TYPES = ["H", "C", "N", "O", "S"]


def water_cluster(n_molecules: int = 5) -> Atoms:
    """The ``n_molecules`` waters nearest the centre of the equilibrated 64-water box, open boundaries."""
    box = water64()
    o = box.positions[::3]
    order = np.argsort(np.linalg.norm(o - o.mean(0), axis=1))[:n_molecules]
    idx = np.concatenate([[3 * k, 3 * k + 1, 3 * k + 2] for k in order])
    a = box[idx]
    a.pbc = False
    a.cell = np.zeros((3, 3))
    return a


def organic() -> Atoms:
    """Methanethiol next to acetamide, closest intermolecular contact 2.4 Å: H, C, N, O and S
    within each other's cutoff, no unphysical overlap."""
    a = molecule("CH3SH")
    b = molecule("CH3CONH2")
    direction = np.array([1.0, 0.15, 0.1]) / np.linalg.norm([1.0, 0.15, 0.1])
    for t in np.arange(1.0, 10.0, 0.01):
        d = np.linalg.norm(a.positions[:, None] - (b.positions + t * direction)[None], axis=-1).min()
        if d >= 2.4:
            break
    b.positions += t * direction
    return a + b


def small_triclinic_box(seed: int = 3) -> Atoms:
    """4 rigid waters in a triclinic periodic cell of ~5 Å (< 2 × r_max: atoms see their own
    images), randomly oriented with every intermolecular distance above 1.6 Å (about 0.85 g/cm³)."""
    from ase.neighborlist import neighbor_list
    from scipy.spatial.transform import Rotation

    cell = np.array([[5.0, 0.0, 0.0], [0.6, 5.1, 0.0], [0.3, -0.4, 5.3]])
    water = molecule("H2O").positions
    centres = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]) @ cell
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        pos = np.concatenate([c + water @ Rotation.random(random_state=rng.integers(1 << 31)).as_matrix().T for c in centres])
        a = Atoms("OH2" * 4, positions=pos, cell=cell, pbc=True)
        i, j, d = neighbor_list("ijd", a, 1.6)
        if np.all(i // 3 == j // 3):
            a.wrap()
            return a
    raise RuntimeError("could not place waters")


@pytest.fixture(scope="session")
def eager64():
    return allegro_bio.build_model("small", TYPES, seed=1, dtype="float64", avg_num_neighbors=8.0)


@pytest.fixture(scope="session")
def eager32():
    return allegro_bio.build_model("small", TYPES, seed=1, dtype="float32", avg_num_neighbors=8.0)


@pytest.fixture(scope="session")
def model_files(tmp_path_factory, eager64, eager32):
    d = tmp_path_factory.mktemp("models")
    return {
        "float64": allegro_bio.save(eager64, d / "small64.pt"),
        "float32": allegro_bio.save(eager32, d / "small32.pt"),
    }


FORMS = ["eager", "deployed", "streamed", "calculator", "compiled", "package", "torchscript-package"]

#: Pairs per tile of the "streamed" form: small, so every structure of the suite spans several tiles.
STREAM_TILE = 37


@pytest.fixture(scope="session")
def packages(tmp_path_factory, eager64, eager32):
    """The physics-suite models as AOTInductor packages (~30-40 s each): float64 by
    ``save(model, "….pt2")``, float32 by ``allegro-bio deploy --from small32.pt small32.pt2``."""
    from allegro_bio.cli import main

    d = tmp_path_factory.mktemp("packages")
    pt32 = allegro_bio.save(eager32, d / "small32.pt")
    assert main(["deploy", "--from", str(pt32), str(d / "small32.pt2")]) == 0
    return {"float64": allegro_bio.save(eager64, d / "small64.pt2"), "float32": d / "small32.pt2"}


@pytest.fixture(scope="session")
def compiled_calculators(model_files):
    """``AllegroCalculator(file, compile=True)`` per dtype, built once: each compiles at its first call."""
    return {dtype: allegro_bio.AllegroCalculator(path, compile=True) for dtype, path in model_files.items()}


@pytest.fixture(params=[(f, d) for f in FORMS for d in ("float64", "float32")], ids=lambda p: f"{p[0]}-{p[1]}")
def form(request, eager64, eager32, model_files, compiled_calculators, packages):
    """(evaluator, dtype) for every model form and dtype."""
    from allegro_bio.testing import evaluator

    kind, dtype = request.param
    if kind == "eager":
        model = eager64 if dtype == "float64" else eager32
    elif kind == "deployed":
        model = allegro_bio.load(model_files[dtype])
    elif kind == "streamed":  # the deployed file evaluating in tiles of pairs (scripted streamed_energy_and_grad)
        model = allegro_bio.load(model_files[dtype])
        model.stream_tile = STREAM_TILE
    elif kind == "compiled":
        model = compiled_calculators[dtype]
    elif kind == "package":
        model = allegro_bio.load(packages[dtype])
    elif kind == "torchscript-package":  # as OpenMM's torch backend runs a package (TorchBind runner)
        from allegro_bio.model.aoti import scripted_package

        pkg = allegro_bio.load(packages[dtype])
        model = scripted_package(pkg.path, pkg.module.config, pkg.module.max_edges_per_chunk)
    else:
        model = allegro_bio.AllegroCalculator(model_files[dtype])
    return evaluator(model), dtype
