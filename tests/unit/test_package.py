"""``import allegro_bio`` exposes its names and submodules lazily."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import allegro_bio


def test_every_public_submodule_is_listed():
    found = {m.name for m in pkgutil.iter_modules(allegro_bio.__path__) if not m.name.startswith("_")}
    assert found - {"argtypes", "errors"} == set(allegro_bio.SUBMODULES)
    assert set(allegro_bio.SUBMODULES) <= set(dir(allegro_bio))


def test_submodules_are_attributes_after_a_plain_import():
    """As the README and the model card write them, in a fresh interpreter."""
    code = ("import allegro_bio\n"
            "assert callable(allegro_bio.systems.dhfr) and callable(allegro_bio.md.run)\n"
            "assert callable(allegro_bio.analysis.backbone_rmsd) and allegro_bio.pretrained.path().is_file()\n"
            "try:\n    allegro_bio.no_such_name\nexcept AttributeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "has no attribute 'no_such_name'" in out.stdout
