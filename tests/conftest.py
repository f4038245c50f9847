"""Test tiers and shared fixtures.

Tiers (markers registered in pyproject.toml):

- fast tier, ``python -m pytest -q -m "not slow"``: unit tests, the physics suite on every
  evaluation form in float64 and float32, the ASE and OpenMM equalities on both backends, the
  deployed-file contract and the bad-input errors;
- the whole suite, ``python -m pytest -q``: also LAMMPS under MPI, notebooks, training runs,
  long MD, benchmarks and the executed README.

``slow`` is added to every test marked ``mpi``, ``notebook`` or ``long``, so one expression selects
the fast tier. Fixtures live in ``tests/fixtures`` (models and packages in ``fixtures.models``,
structures in ``fixtures.structures``); tests import helpers from there, never from this file.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["fixtures.models", "fixtures.lammps"]

#: Markers that put a test in the slow tier.
SLOW_MARKERS = ("mpi", "notebook", "long")


def pytest_configure(config: pytest.Config) -> None:
    # one torch thread per xdist worker: two workers on two cores, not four threads fighting
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(int(os.environ.get("ALLEGRO_BIO_TEST_THREADS", "1")))


#: Fixtures that compile before their first use; a test that uses one is a ``compile`` test.
COMPILING_FIXTURES = ("packages", "compiled_calculators", "plugin")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)
        if not item.get_closest_marker("compile") and any(f in item.fixturenames for f in COMPILING_FIXTURES):
            item.add_marker(pytest.mark.compile)
        if item.get_closest_marker("compile"):
            # with pytest -n 2 --dist loadgroup, one worker takes every compiling test (each compiled
            # object built once) while the other runs the rest
            item.add_marker(pytest.mark.xdist_group("compile"))
