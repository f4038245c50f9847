"""LAMMPS bridge: the ``pair_style allegro`` plugin, its build, data files and example inputs.

``allegro-bio lammps build`` compiles ``allegroplugin.so`` (sources in ``allegro_bio/lammps/src``);
``allegro-bio lammps write-data`` writes structures with the model's type order;
``allegro-bio lammps example`` writes ready-to-run inputs (water box, DHFR). See docs/lammps.md.
"""

from .paths import ENV_DIR, PLUGIN_NAME, default_plugin_dir

__all__ = ["ENV_DIR", "PLUGIN_NAME", "default_plugin_dir"]
