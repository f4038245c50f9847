"""Trained models shipped with the package, resolved by name.

``path(name=None)`` gives the file of a packaged model (``None``: the default), ``available()``
lists the names, ``load(name)`` returns the :class:`~allegro_bio.DeployedModel`. Every model
here has a ``MODEL_CARD`` (``<name>.md``) next to it: data, method, metrics and known limits.
Anything that takes a model (``AllegroCalculator``, ``AllegroForce``, ``allegro-bio md``)
accepts one of these names in place of a path.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ..errors import ModelFileError

#: The model used when none is given.
DEFAULT = "allegro-bio-xtb-small"


def _dir() -> Path:
    return Path(str(files(__package__)))


def available() -> list[str]:
    """Names of the packaged models (files ``<name>.pt`` in this folder)."""
    return sorted(p.stem for p in _dir().glob("*.pt"))


def path(name: str | None = None) -> Path:
    """File of the packaged model ``name`` (default :data:`DEFAULT`)."""
    name = DEFAULT if name is None else name
    p = _dir() / f"{name}.pt"
    if not p.is_file():
        have = available()
        raise ModelFileError(
            f"no packaged model named {name!r}; packaged models: {have or 'none (this install ships no trained model)'}"
        )
    return p


def card(name: str | None = None) -> str:
    """The model card (Markdown) of a packaged model."""
    return path(name).with_suffix(".md").read_text()


def load(name: str | None = None, device: str = "cpu"):
    """The packaged model ``name`` as a :class:`~allegro_bio.DeployedModel`."""
    from ..deploy import load as load_file

    return load_file(path(name), device=device)


def is_name(model: object) -> bool:
    """Whether ``model`` is a string naming a packaged model rather than a file path."""
    return isinstance(model, str) and not Path(model).exists() and model in available()
