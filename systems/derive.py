"""Derive the compact structure files the builders read (``allegro_bio/systems/data/*.npz``).

Run once from the repository root (the sources are the files in this folder, see PROVENANCE.md)::

    python systems/derive.py            # ~1 min on one core; needs openmm and pdbfixer, no network

Each ``.npz`` holds one OpenMM topology in flat arrays (chain ids; residue names, ids and
chains; atom names, elements and residues; bonds) and positions as int32 in units of 1e-4 Å,
compressed. ``allegro_bio.systems.io.load_npz`` reads them back.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "allegro_bio" / "systems" / "data"
sys.path.insert(0, str(HERE.parent))


def _bytes(path: Path) -> bytes:
    return gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()


def _tmp_copy(path: Path, suffix: str) -> str:
    """OpenMM's readers want a real file name: decompress ``path`` into a temporary file."""
    import tempfile

    fh = tempfile.NamedTemporaryFile("wb", suffix=suffix, delete=False)
    fh.write(_bytes(path))
    fh.close()
    return fh.name


def main() -> None:
    import torch  # noqa: F401  (docs/known-issues.md: before openmm)
    from openmm import app, unit

    from allegro_bio.systems.io import save_npz

    OUT.mkdir(parents=True, exist_ok=True)

    # DHFR (JAC): topology from the prmtop, coordinates and box from the inpcrd.
    prmtop = app.AmberPrmtopFile(_tmp_copy(HERE / "dhfr" / "JAC.prmtop.gz", ".prmtop"))
    crd = app.AmberInpcrdFile(_tmp_copy(HERE / "dhfr" / "JAC.inpcrd.gz", ".inpcrd"))
    pos = crd.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    box = np.array([v.value_in_unit(unit.angstrom) for v in crd.getBoxVectors()])
    charges = [prmtop._prmtop.getCharges()]  # noqa: SLF001 (formal charge of the benchmark, for the record)
    q = float(np.sum(np.asarray(charges[0], dtype=float)))
    save_npz(OUT / "dhfr.npz", prmtop.topology, pos, box, formal_charge=round(q))
    print("dhfr", prmtop.topology.getNumAtoms(), "atoms, charge", round(q, 3))

    # factor IX: the 90,906-atom benchmark frame (PDB, gzip).
    pdb = app.PDBFile(_tmp_copy(HERE / "factorIX" / "factorIX_amber_benchmark_full_90906.pdb.gz", ".pdb"))
    pos = pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    box = np.array([v.value_in_unit(unit.angstrom) for v in pdb.topology.getPeriodicBoxVectors()])
    save_npz(OUT / "factor_ix.npz", pdb.topology, pos, box, formal_charge=0)
    print("factor_ix", pdb.topology.getNumAtoms(), "atoms")

    # STMV: one protonated coat protein (chain A, altloc A), 60 operators, one protonated RNA duplex.
    pdb = app.PDBFile(str(HERE / "stmv" / "1A34_chainA_protonated_pdbfixer.pdb"))
    pos = pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    save_npz(OUT / "stmv_protein.npz", pdb.topology, pos, None, formal_charge=None)
    print("stmv protein", pdb.topology.getNumAtoms(), "atoms")

    from pdbfixer import PDBFixer

    fixer = PDBFixer(filename=_tmp_copy(HERE / "stmv" / "1A34.cif.gz", ".cif"))
    modeller = app.Modeller(fixer.topology, fixer.positions)
    modeller.delete([c for c in modeller.topology.chains() if c.id not in ("B", "C")])
    modeller.delete([r for r in modeller.topology.residues() if r.name not in ("A", "U")])
    fixer.topology, fixer.positions = modeller.topology, modeller.positions
    fixer.findMissingResidues()
    fixer.missingResidues = {}
    fixer.findMissingAtoms()
    fixer.addMissingAtoms(seed=0)
    fixer.addMissingHydrogens(7.0)
    # 1A34 already models the 5' phosphate with HOP3; PDBFixer's 5'-terminal template adds an
    # HO5' to the O5' that is bonded to that phosphorus: remove it.
    modeller = app.Modeller(fixer.topology, fixer.positions)
    modeller.delete([a for a in modeller.topology.atoms()
                     if a.name == "HO5'" and any(b.name == "P" for b in a.residue.atoms())])
    fixer.topology, fixer.positions = modeller.topology, modeller.positions
    pos = np.asarray(fixer.positions.value_in_unit(unit.angstrom))
    save_npz(OUT / "stmv_rna.npz", fixer.topology, pos, None, formal_charge=None)
    print("stmv rna duplex", fixer.topology.getNumAtoms(), "atoms")

    ops = np.loadtxt(HERE / "stmv" / "1A34_icosahedral_operators.txt").reshape(-1, 3, 3)
    np.save(OUT / "stmv_operators.npy", ops)
    print("operators", ops.shape)


if __name__ == "__main__":
    main()
