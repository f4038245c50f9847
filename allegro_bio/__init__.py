"""allegro_bio: the Allegro potential for biomolecular simulation.

Quick use::

    import allegro_bio
    model = allegro_bio.build_model("small", type_names=["H", "C", "N", "O", "S"])
    allegro_bio.save(model, "model.pt")
    atoms.calc = allegro_bio.AllegroCalculator("model.pt")

Units: Å, eV, eV/Å, eV/Å³ (ASE); nm and kJ/mol at the OpenMM boundary.
"""

from ._version import __version__
from .errors import AllegroError, ConfigError, InvalidStructureError, ModelFileError, UnknownElementError
from .model import AllegroConfig, available_presets, build_model
from .deploy import DeployedModel, load, save
from .ase import AllegroCalculator
from .openmm import AllegroForce, create_mixed_system

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
