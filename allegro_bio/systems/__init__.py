"""Ready-to-simulate systems: water boxes, DHFR, factor IX, STMV and any protein from a PDB file.

Every builder returns a :class:`BuiltSystem` with ``.topology`` (OpenMM), ``.positions`` and
``.box_vectors`` (OpenMM quantities, nm), ``.n_atoms``, ``.composition()``, ``.summary()``,
``.to_ase()`` (Å) and ``.write_pdb(path)``.

Examples
--------
>>> from allegro_bio import systems
>>> box = systems.water_box(n_waters=64)
>>> box.n_atoms, box.composition()["waters"]
(192, 64)
"""

from ._system import BuiltSystem
from .builders import N_ATOMS, STMV_BENCHMARK_ATOMS, dhfr, factor_ix, from_pdb, stmv, water_box
from .solvate import formal_charge

#: Builders by the names ``allegro-bio md --system`` accepts.
BUILDERS = {"water": water_box, "dhfr": dhfr, "factor_ix": factor_ix, "stmv": stmv}

__all__ = ["BUILDERS", "BuiltSystem", "N_ATOMS", "STMV_BENCHMARK_ATOMS", "dhfr", "factor_ix", "formal_charge",
           "from_pdb", "stmv", "water_box"]
