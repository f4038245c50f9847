"""OpenMM-ML plugin: ``MLPotential("allegro", modelPath="model.pt")`` builds systems with :func:`AllegroForce`.

Registered through the ``openmmml.potentials`` entry point (see pyproject.toml), so with
``pip install openmmml`` users write::

    from openmmml import MLPotential
    potential = MLPotential("allegro", modelPath="model.pt")
    system = potential.createSystem(topology)                        # whole system
    system = potential.createMixedSystem(topology, mm_system, atoms)  # ML region

Extra keyword arguments ``backend`` and ``precision`` are passed on to ``AllegroForce``.
"""

from __future__ import annotations

from typing import Any, Iterable

try:  # openmmml is optional: define real subclasses when it is installed
    from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory
except ImportError:  # pragma: no cover - exercised only without openmmml
    MLPotentialImpl = MLPotentialImplFactory = object  # type: ignore[misc, assignment]


class AllegroPotentialImpl(MLPotentialImpl):
    """Adds an :func:`~allegro_bio.openmm.AllegroForce` for the model at ``modelPath``."""

    def __init__(self, name: str, modelPath: Any = None, **args: Any) -> None:
        if modelPath is None:
            raise ValueError("MLPotential('allegro', modelPath=...) needs the path of a deployed allegro_bio model file")
        self.model = modelPath

    def addForces(self, topology, system, atoms: Iterable[int] | None, forceGroup: int, **args: Any) -> None:
        from .openmm import AllegroForce

        options = {k: args[k] for k in ("backend", "precision") if k in args}
        system.addForce(AllegroForce(self.model, topology, atoms=atoms, force_group=forceGroup, **options))


class AllegroPotentialImplFactory(MLPotentialImplFactory):
    """Factory that OpenMM-ML finds through the ``openmmml.potentials`` entry point ``allegro``."""

    def createImpl(self, name: str, **args: Any) -> AllegroPotentialImpl:
        return AllegroPotentialImpl(name, **args)
