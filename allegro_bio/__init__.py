"""allegro_bio: the Allegro potential for biomolecular simulation.

Quick use::

    import allegro_bio
    model = allegro_bio.build_model("small", type_names=["H", "C", "N", "O", "S"])
    allegro_bio.save(model, "model.pt")
    atoms.calc = allegro_bio.AllegroCalculator("model.pt")

Units: Å, eV, eV/Å, eV/Å³ (ASE); nm and kJ/mol at the OpenMM boundary.
"""

from importlib import import_module as _import_module

from ._version import __version__
from .errors import AllegroError, ConfigError, InvalidStructureError, ModelFileError, UnknownElementError

# Heavy names (torch, e3nn, OpenMM) are imported on first use, so light entry points such as
# the LAMMPS launcher's plugin-path lookup (allegro_bio.lammps.paths) do not import torch.
_LAZY = {
    "AllegroConfig": ".model", "available_presets": ".model", "build_model": ".model",
    "DeployedModel": ".deploy", "load": ".deploy", "save": ".deploy",
    "AllegroCalculator": ".ase",
    "AllegroForce": ".openmm", "create_mixed_system": ".openmm",
}


#: Subpackages and modules reachable as attributes after ``import allegro_bio`` (imported on first
#: use): ``allegro_bio.systems.dhfr()``, ``allegro_bio.md.run(...)``, ``allegro_bio.analysis…``.
SUBMODULES = (
    "analysis", "ase", "bench", "cli", "data", "datagen", "deploy", "inference", "lammps", "md", "model",
    "neighbors", "openmm", "openmm_module", "openmmml", "pretrained", "runtime", "systems", "testing", "train",
)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in SUBMODULES:
        return _import_module(f".{name}", __name__)  # the import binds it in globals()
    raise AttributeError(f"module 'allegro_bio' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(SUBMODULES))


__all__ = [
    "AllegroCalculator",
    "AllegroConfig",
    "AllegroError",
    "AllegroForce",
    "ConfigError",
    "DeployedModel",
    "InvalidStructureError",
    "ModelFileError",
    "UnknownElementError",
    "__version__",
    "available_presets",
    "create_mixed_system",
    "build_model",
    "load",
    "save",
]
