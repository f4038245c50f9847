"""The object every builder returns: topology, positions, box, composition, converters."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Residue names counted as water / monatomic ions in compositions.
WATER_NAMES = frozenset({"HOH", "WAT", "TIP3", "SOL", "H2O"})
ION_NAMES = frozenset({"NA", "CL", "K", "CA", "MG", "ZN", "Na+", "Cl-", "NA+", "CL-", "Ca2+", "SOD", "CLA", "POT", "CAL"})
NUCLEIC_NAMES = frozenset({"A", "C", "G", "U", "DA", "DC", "DG", "DT", "RA", "RC", "RG", "RU",
                           "A3", "A5", "C3", "C5", "G3", "G5", "U3", "U5", "RA3", "RA5", "RU3", "RU5", "RC3",
                           "RC5", "RG3", "RG5", "DA3", "DA5", "DC3", "DC5", "DG3", "DG5", "DT3", "DT5"})


@dataclass
class BuiltSystem:
    """A molecular system ready for simulation.

    Attributes
    ----------
    name
        Short name (``"dhfr"``, ``"water"``, ...).
    topology
        ``openmm.app.Topology`` (periodic box set when the system is periodic).
    positions_A
        ``(n_atoms, 3)`` float64 array of positions in Å (not necessarily wrapped into the box).
    box_A
        ``(3, 3)`` box vectors in Å (rows), or ``None`` for an open system.
    description
        Where the structure came from and how it was built.
    formal_charge
        Net formal charge (e) when known.
    info
        Build details (timings, counts of removed waters, ...).

    ``positions`` and ``box_vectors`` give the same data as OpenMM quantities (nm).
    """

    name: str
    topology: Any
    positions_A: np.ndarray
    box_A: np.ndarray | None
    description: str = ""
    formal_charge: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    # -- OpenMM views -----------------------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.positions_A.shape[0])

    @property
    def positions(self):
        """Positions as an OpenMM ``Quantity`` (nm) wrapping an ``(n_atoms, 3)`` array."""
        from openmm import unit

        return unit.Quantity(self.positions_A / 10.0, unit.nanometer)

    @property
    def box_vectors(self):
        """Periodic box vectors as a tuple of three ``Vec3`` in nm (OpenMM's form), or ``None``."""
        if self.box_A is None:
            return None
        from openmm import Vec3, unit

        return tuple(Vec3(*(np.asarray(v, dtype=float) / 10.0)) for v in self.box_A) * unit.nanometer

    @property
    def elements(self) -> list[str]:
        """Element symbol of every atom."""
        return [a.element.symbol for a in self.topology.atoms()]

    # -- composition ------------------------------------------------------------------------
    def composition(self) -> dict[str, Any]:
        """Counts: atoms, elements, residues, protein/nucleic residues, waters, ions (by name), charge."""
        elements = Counter(self.elements)
        waters = protein = nucleic = other = 0
        ions: Counter = Counter()
        for res in self.topology.residues():
            if res.name in WATER_NAMES:
                waters += 1
            elif res.name in ION_NAMES or (len(res) == 1 and res.name.upper() in {n.upper() for n in ION_NAMES}):
                ions[res.name] += 1
            elif res.name in NUCLEIC_NAMES:
                nucleic += 1
            elif _is_amino_acid(res):
                protein += 1
            else:
                other += 1
        out: dict[str, Any] = dict(
            n_atoms=self.n_atoms,
            elements=dict(sorted(elements.items(), key=lambda kv: -kv[1])),
            n_residues=self.topology.getNumResidues(),
            n_chains=self.topology.getNumChains(),
            protein_residues=protein,
            nucleic_residues=nucleic,
            other_residues=other,
            waters=waters,
            ions=dict(ions),
            formal_charge=self.formal_charge,
        )
        if self.box_A is not None:
            out["box_A"] = np.round(np.asarray(self.box_A), 4).tolist()
            volume = abs(np.linalg.det(self.box_A))
            out["density_g_cm3"] = round(self.mass_amu() / volume * 1.66053906660, 4)
        return out

    def mass_amu(self) -> float:
        """Total mass (amu)."""
        from openmm import unit

        return float(sum(a.element.mass.value_in_unit(unit.dalton) for a in self.topology.atoms()))

    def summary(self) -> str:
        """A one-paragraph human-readable composition."""
        c = self.composition()
        el = ", ".join(f"{k} {v:,}" for k, v in c["elements"].items())
        parts = [f"{self.name}: {c['n_atoms']:,} atoms ({el})"]
        if c["protein_residues"]:
            parts.append(f"{c['protein_residues']:,} amino-acid residues")
        if c["nucleic_residues"]:
            parts.append(f"{c['nucleic_residues']:,} nucleotides")
        if c["other_residues"]:
            parts.append(f"{c['other_residues']:,} other residues")
        parts.append(f"{c['waters']:,} waters")
        if c["ions"]:
            parts.append("ions " + ", ".join(f"{k} {v}" for k, v in c["ions"].items()))
        if c.get("box_A") is not None:
            b = np.asarray(c["box_A"])
            parts.append("box " + " × ".join(f"{x:.2f}" for x in np.linalg.norm(b, axis=1)) + " Å")
            parts.append(f"{c['density_g_cm3']:.3f} g/cm³")
        if self.formal_charge is not None:
            parts.append(f"net charge {self.formal_charge:+d} e")
        return "; ".join(parts)

    def __str__(self) -> str:
        return self.summary()

    def subset(self, atom_indices, name: str | None = None, periodic: bool = False) -> "BuiltSystem":
        """A new system of the given atoms (topology, bonds and positions copied); open
        boundaries unless ``periodic`` (then the same box). E.g. the first residues of a protein
        without solvent, for quick demonstrations."""
        from openmm import Vec3, app, unit

        keep = sorted(int(i) for i in atom_indices)
        wanted = set(keep)
        top = app.Topology()
        atom_map, res_map, chain_map = {}, {}, {}
        for atom in self.topology.atoms():
            if atom.index not in wanted:
                continue
            res = atom.residue
            if res.chain not in chain_map:
                chain_map[res.chain] = top.addChain(res.chain.id)
            if res not in res_map:
                res_map[res] = top.addResidue(res.name, chain_map[res.chain], res.id, res.insertionCode)
            atom_map[atom] = top.addAtom(atom.name, atom.element, res_map[res])
        for a, b in self.topology.bonds():
            if a in atom_map and b in atom_map:
                top.addBond(atom_map[a], atom_map[b])
        box = self.box_A if periodic else None
        if box is not None:
            top.setPeriodicBoxVectors([Vec3(*(np.asarray(v, dtype=float) / 10.0)) for v in box] * unit.nanometer)
        return BuiltSystem(name or f"{self.name}-subset", top, self.positions_A[keep].copy(), box,
                           description=f"{len(keep)} atoms of {self.name}", formal_charge=None)

    # -- conversions ------------------------------------------------------------------------
    def to_ase(self):
        """An ``ase.Atoms`` (Å), periodic in all directions when the system has a box."""
        from ase import Atoms

        numbers = [a.element.atomic_number for a in self.topology.atoms()]
        if self.box_A is None:
            return Atoms(numbers=numbers, positions=self.positions_A.copy(), pbc=False)
        return Atoms(numbers=numbers, positions=self.positions_A.copy(), cell=np.asarray(self.box_A), pbc=True)

    def to_mdtraj(self):
        """A one-frame ``mdtraj.Trajectory`` (for analysis and plotting)."""
        import mdtraj

        top = mdtraj.Topology.from_openmm(self.topology)
        traj = mdtraj.Trajectory(self.positions_A[None] / 10.0, top)
        if self.box_A is not None:
            traj.unitcell_vectors = (np.asarray(self.box_A) / 10.0)[None]
        return traj

    def write_pdb(self, path: str | Path) -> Path:
        """Write a PDB file (with CRYST1 for periodic systems). Atom serials wrap above 99,999
        (PDB format limit); use ``write_cif`` for very large systems."""
        from openmm import app

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            app.PDBFile.writeFile(self.topology, self.positions, fh, keepIds=False)
        return path

    def write_cif(self, path: str | Path) -> Path:
        """Write a PDBx/mmCIF file (no atom-count limit)."""
        from openmm import app

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            app.PDBxFile.writeFile(self.topology, self.positions, fh)
        return path

    # -- classical preparation ---------------------------------------------------------------
    def minimize_amber14(self, max_iterations: int = 200, tolerance_kj_mol_nm: float = 10.0, platform: str | None = None) -> float:
        """Minimise in place with amber14 + TIP3P (PME); needs templates for every residue.

        Returns the final MM potential energy (kJ/mol). Raises ``ValueError`` from OpenMM naming
        the residue when a template is missing (e.g. factor IX's GLA/BHA).
        """
        import openmm
        from openmm import app, unit

        ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
        method = app.PME if self.box_A is not None else app.NoCutoff
        system = ff.createSystem(self.topology, nonbondedMethod=method, constraints=app.HBonds)
        integrator = openmm.VerletIntegrator(0.001)
        kwargs = {} if platform is None else {"platform": openmm.Platform.getPlatformByName(platform)}
        sim = app.Simulation(self.topology, system, integrator, **kwargs)
        sim.context.setPositions(self.positions)
        if self.box_A is not None:
            sim.context.setPeriodicBoxVectors(*self.box_vectors)
        openmm.LocalEnergyMinimizer.minimize(sim.context, tolerance_kj_mol_nm, max_iterations)
        state = sim.context.getState(getPositions=True, getEnergy=True)
        self.positions_A = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom).astype(np.float64)
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        self.info["amber14_minimized_energy_kj_mol"] = energy
        return energy


_AMINO = frozenset({"ALA", "ARG", "ASN", "ASP", "ASH", "CYS", "CYX", "CYM", "GLN", "GLU", "GLH", "GLY", "HIS", "HID",
                    "HIE", "HIP", "HSD", "HSE", "HSP", "ILE", "LEU", "LYS", "LYN", "MET", "PHE", "PRO", "SER", "THR",
                    "TRP", "TYR", "VAL", "ACE", "NME", "NALA", "GLA", "BHA", "SEC", "MSE", "PYL", "HYP"})


def _is_amino_acid(res) -> bool:
    if res.name in _AMINO:
        return True
    names = {a.name for a in res.atoms()}
    return {"N", "CA", "C"} <= names
