"""The docstring examples run; the CLI deploys and reports errors."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

from fixtures import REPO

import allegro_bio
from allegro_bio import cli

ROOT = REPO


@pytest.mark.parametrize("module", ["allegro_bio.model", "allegro_bio.ase", "allegro_bio.testing"])
def test_docstring_examples(module):
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_cli_deploy_with_overrides(tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert cli.main(["deploy", str(out), "--types", "H", "O", "--set", "r_max=5.0",
                     "--set", 'per_edge_type_cutoff={"H": {"O": 1.5}}']) == 0
    m = allegro_bio.load(out)
    assert m.r_max == 5.0 and m.type_names == ["H", "O"]
    assert float(m.cutoff_matrix[0, 1]) == 1.5 and float(m.cutoff_matrix[1, 0]) == 5.0
    assert "wrote" in capsys.readouterr().out


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    assert cli.main(["deploy", str(tmp_path / "m.pt"), "--set", "l_max=9"]) == 2
    err = capsys.readouterr().err
    assert "l_max must be 0, 1, 2 or 3" in err and "Traceback" not in err
    assert not (tmp_path / "m.pt").exists()
