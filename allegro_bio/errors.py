"""Typed errors. Every error a user can trigger with bad input derives from ``ValueError``."""

from __future__ import annotations


class AllegroError(ValueError):
    """Base class of every allegro_bio input error (a ``ValueError``)."""


class ConfigError(AllegroError):
    """A model configuration field is unknown or has an invalid value."""


class UnknownElementError(AllegroError):
    """The structure contains elements the model was not trained on."""


class InvalidStructureError(AllegroError):
    """NaN/inf positions, overlapping atoms, or a singular / too small periodic cell."""


class ModelFileError(AllegroError):
    """A model file is missing, corrupt, not an allegro_bio model, or of an incompatible version."""


class DataError(AllegroError):
    """A training/evaluation data file or frame is unreadable, incomplete or inconsistent (names file and frame)."""
