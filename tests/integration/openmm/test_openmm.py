"""AllegroForce in real OpenMM contexts: both backends against AllegroCalculator, dynamics,
mixed ML/MM systems, OpenMM-ML, serialisation and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401  (before openmmtorch)
import openmm
from openmm import app, unit

import allegro_bio
from allegro_bio.data import water64
from allegro_bio.errors import AllegroError, InvalidStructureError, UnknownElementError
from allegro_bio.openmm_module import EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL
from allegro_bio.testing import evaluator

BACKENDS = ["torch", "python"]


def water_topology(atoms) -> tuple[app.Topology, np.ndarray]:
    """OpenMM topology (HOH residues, periodic box) and positions (nm) of an ASE water box."""
    top = app.Topology()
    chain = top.addChain()
    for k in range(0, len(atoms), 3):
        res = top.addResidue("HOH", chain)
        o = top.addAtom("O", app.element.oxygen, res)
        h1 = top.addAtom("H1", app.element.hydrogen, res)
        h2 = top.addAtom("H2", app.element.hydrogen, res)
        top.addBond(o, h1)
        top.addBond(o, h2)
    top.setPeriodicBoxVectors(np.asarray(atoms.cell) / 10.0 * unit.nanometer)
    return top, atoms.positions / 10.0


def ml_system(top: app.Topology, force: openmm.Force) -> openmm.System:
    system = openmm.System()
    for atom in top.atoms():
        system.addParticle(atom.element.mass)
    if top.getPeriodicBoxVectors() is not None:
        system.setDefaultPeriodicBoxVectors(*top.getPeriodicBoxVectors())
    system.addForce(force)
    return system


def energy_forces(system, positions_nm, platform="Reference", box=None):
    integrator = openmm.VerletIntegrator(0.5 * unit.femtosecond)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(positions_nm * unit.nanometer)
    if box is not None:
        ctx.setPeriodicBoxVectors(*box)
    st = ctx.getState(getEnergy=True, getForces=True)
    return (st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    m = allegro_bio.build_model("small", ["H", "C", "N", "O", "S"], seed=1, dtype="float64")
    return allegro_bio.save(m, tmp_path_factory.mktemp("omm") / "m64.pt")


@pytest.fixture(scope="module")
def model32(tmp_path_factory):
    m = allegro_bio.build_model("small", ["H", "C", "N", "O", "S"], seed=1, dtype="float32")
    return allegro_bio.save(m, tmp_path_factory.mktemp("omm") / "m32.pt")


def _reference(model_path, atoms):
    r = evaluator(allegro_bio.AllegroCalculator(model_path), stress=False)(atoms)
    return r.energy * EV_TO_KJ_PER_MOL, r.forces * EV_PER_A_TO_KJ_PER_MOL_NM


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_water_box_matches_ase(backend, platform, model64):
    atoms = water64()
    top, pos = water_topology(atoms)
    e, f = energy_forces(ml_system(top, allegro_bio.AllegroForce(model64, top, backend=backend)), pos, platform)
    e_ref, f_ref = _reference(model64, atoms)
    # CPU platform hands positions over in float32: ~1e-7 relative position noise
    rtol = 1e-9 if platform == "Reference" else 2e-5
    assert e == pytest.approx(e_ref, rel=rtol, abs=1e-6)
    np.testing.assert_allclose(f, f_ref, atol=max(1e-6, rtol * 100 * np.abs(f_ref).max()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_model_matches_ase(backend, model32):
    atoms = water64()
    top, pos = water_topology(atoms)
    e, f = energy_forces(ml_system(top, allegro_bio.AllegroForce(model32, top, backend=backend)), pos)
    e_ref, f_ref = _reference(model32, atoms)
    assert e == pytest.approx(e_ref, rel=1e-5)
    np.testing.assert_allclose(f, f_ref, atol=1e-4 * np.abs(f_ref).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_molecules_split_across_the_boundary(backend, model64):
    """Positions unwrapped (OpenMM does not wrap) and shifted so waters straddle the faces."""
    atoms = water64()
    top, pos = water_topology(atoms)
    shifted = pos + np.array([0.61, -0.3, 0.95])  # nm: many molecules now cross the box faces
    shifted[::7] += np.asarray(atoms.cell)[0] / 10.0  # some atoms a whole box away
    e, f = energy_forces(ml_system(top, allegro_bio.AllegroForce(model64, top, backend=backend)), shifted)
    e_ref, f_ref = _reference(model64, atoms)
    assert e == pytest.approx(e_ref, rel=1e-9)
    np.testing.assert_allclose(f, f_ref, atol=1e-6 * np.abs(f_ref).max())


@pytest.fixture(scope="module")
def alanine():
    from openmmtools import testsystems

    return testsystems.AlanineDipeptideExplicit(nonbondedMethod=app.NoCutoff, constraints=None, rigid_water=False)


@pytest.mark.long
@pytest.mark.parametrize("backend", BACKENDS)
def test_solvated_alanine_dipeptide_whole_system_matches_ase(backend, alanine, model64):
    from ase import Atoms

    top = alanine.topology
    box = np.array([[v.value_in_unit(unit.angstrom) for v in vec] for vec in top.getPeriodicBoxVectors()])
    pos = alanine.positions.value_in_unit(unit.nanometer)
    atoms = Atoms([a.element.symbol for a in top.atoms()], positions=pos * 10.0, cell=box, pbc=True)
    e, f = energy_forces(ml_system(top, allegro_bio.AllegroForce(model64, top, backend=backend)), pos)
    e_ref, f_ref = _reference(model64, atoms)
    assert e == pytest.approx(e_ref, rel=1e-9)
    np.testing.assert_allclose(f, f_ref, atol=1e-6 * np.abs(f_ref).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_system_is_ml_region_plus_remaining_mm(backend, alanine, model64):
    """E_mixed = E_Allegro(peptide) + E_MM(full) − E_MM(peptide alone), exactly with NoCutoff."""
    from ase import Atoms

    top, mm = alanine.topology, alanine.system
    pos = alanine.positions.value_in_unit(unit.nanometer)
    ml_atoms = [a.index for a in top.atoms() if a.residue.name != "HOH"]
    assert len(ml_atoms) == 22
    mixed = allegro_bio.create_mixed_system(top, mm, ml_atoms, model64, backend=backend)
    e_mixed, _ = energy_forces(mixed, pos)
    e_mm_full, _ = energy_forces(mm, pos)
    from openmmtools import testsystems

    vac = testsystems.AlanineDipeptideVacuum(constraints=None)
    e_mm_peptide, _ = energy_forces(vac.system, pos[ml_atoms])
    peptide = Atoms([a.element.symbol for a in top.atoms() if a.index in ml_atoms], positions=pos[ml_atoms] * 10.0)
    e_ml, _ = _reference(model64, peptide)
    assert e_mixed == pytest.approx(e_ml + e_mm_full - e_mm_peptide, abs=1e-4)


def test_interpolation_between_mm_and_ml(alanine, model64):
    top, mm = alanine.topology, alanine.system
    pos = alanine.positions.value_in_unit(unit.nanometer)
    ml_atoms = [a.index for a in top.atoms() if a.residue.name != "HOH"]
    plain = allegro_bio.create_mixed_system(top, mm, ml_atoms, model64)
    lam = allegro_bio.create_mixed_system(top, mm, ml_atoms, model64, interpolate=True)
    ctx = openmm.Context(lam, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos * unit.nanometer)
    energies = {}
    for value in (1.0, 0.0, 0.25):
        ctx.setParameter("lambda_interpolate", value)
        energies[value] = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert energies[1.0] == pytest.approx(energy_forces(plain, pos)[0], abs=1e-6)
    assert energies[0.0] == pytest.approx(energy_forces(mm, pos)[0], abs=1e-4)
    assert energies[0.25] == pytest.approx(0.25 * energies[1.0] + 0.75 * energies[0.0], abs=1e-4)


def _rigid_water(top: app.Topology) -> openmm.System:
    ff = app.ForceField("amber14/tip3p.xml")
    return ff.createSystem(top, nonbondedMethod=app.PME, nonbondedCutoff=0.6 * unit.nanometer, rigidWater=True,
                           ewaldErrorTolerance=1e-6)


def _gentle(tmp_path, zbl: bool = True):
    """Untrained weights give forces of O(100) eV/Å at σ = 1 eV; σ = 0.002 eV keeps them ~0.3 eV/Å.
    ZBL stays on: it is what keeps an untrained model's atoms apart."""
    m = allegro_bio.build_model("small", ["H", "O"], seed=2, dtype="float64", per_type_scale=(0.002, 0.002), zbl=zbl)
    return allegro_bio.save(m, tmp_path / "gentle.pt")


def _nve_drift(system, pos, steps: int = 4000, dt_fs: float = 0.5) -> tuple[float, float]:
    """Slope of total energy (kJ/mol/atom/ns) and max |ΔE| (kJ/mol) over ``steps`` Verlet steps."""
    integrator = openmm.VerletIntegrator(dt_fs * unit.femtosecond)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(pos * unit.nanometer)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 1)

    def total() -> float:
        st = ctx.getState(getEnergy=True)
        return (st.getPotentialEnergy() + st.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole)

    e0, series = total(), []
    chunk = steps // 40
    for _ in range(40):
        integrator.step(chunk)
        series.append(total())
    t_ns = np.arange(1, 41) * chunk * dt_fs * 1e-6
    de = np.array(series) - e0
    return float(np.polyfit(t_ns, de, 1)[0] / system.getNumParticles()), float(np.abs(de).max())


@pytest.mark.long
def test_nve_drift_of_a_water_box(tmp_path):
    """2 ps NVE with 0.5 fs steps: rigid TIP3P water (SETTLE, PME) plus an Allegro force (torch backend).

    The seeded model is untrained, so TIP3P holds the liquid together. Forces are conservative
    (the torch backend equals AllegroCalculator to 1e-9, which passes finite differences); what
    remains is integration error on an untrained, ZBL-stiffened landscape, and it varies from run
    to run because the CPU platform's multithreaded sums make the trajectory diverge. Measured:
    MM only 1.03 kJ/mol/atom/ns; MM + Allegro 0.84, ~7 and 16.4 kJ/mol/atom/ns in three runs
    (max |ΔE| 1.9–6 kJ/mol against ~480 kJ/mol kinetic energy). The bound below is set from that
    spread: it catches a blow-up or non-conservative forces, not the quality of an untrained model."""
    atoms = water64()
    top, pos = water_topology(atoms)
    mm = _rigid_water(top)
    drift_mm, dev_mm = _nve_drift(openmm.XmlSerializer.clone(mm), pos)
    mm.addForce(allegro_bio.AllegroForce(_gentle(tmp_path), top, backend="torch"))
    drift, dev = _nve_drift(mm, pos)
    print(f"NVE 2 ps: MM only {drift_mm:.3g} kJ/mol/atom/ns (max |dE| {dev_mm:.3g} kJ/mol); "
          f"MM + Allegro {drift:.3g} kJ/mol/atom/ns (max |dE| {dev:.3g} kJ/mol)")
    assert abs(drift_mm) < 5.0
    assert abs(drift) < 40.0
    assert dev < 20.0


@pytest.mark.long
def test_langevin_1000_steps_stays_finite(tmp_path):
    """Whole-system Allegro (untrained, ZBL on), 1,000 Langevin steps of 0.5 fs on the CPU platform."""
    atoms = water64()
    top, pos = water_topology(atoms)
    system = ml_system(top, allegro_bio.AllegroForce(_gentle(tmp_path), top))
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
    sim = app.Simulation(top, system, integrator, openmm.Platform.getPlatformByName("CPU"))
    sim.context.setPositions(pos * unit.nanometer)
    sim.step(1000)
    st = sim.context.getState(getEnergy=True, getPositions=True)
    assert np.isfinite(st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    assert np.isfinite(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)).all()


def test_collapsed_atoms_stop_the_torch_backend_with_a_message(model64):
    atoms = water64()
    top, pos = water_topology(atoms)
    bad = pos.copy()
    bad[4] = bad[3] + 0.001  # atom 4 (H of water 1) 0.017 Å from atom 3 (its O)
    system = ml_system(top, allegro_bio.AllegroForce(model64, top, backend="torch"))
    with pytest.raises(openmm.OpenMMException, match=r"atoms 3 and 4 are 0\.017\d* Å apart \(< 0\.1"):
        energy_forces(system, bad)


def test_python_backend_round_trips_through_xml(model64):
    atoms = water64()
    top, pos = water_topology(atoms)
    system = ml_system(top, allegro_bio.AllegroForce(model64, top, backend="python"))
    clone = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    assert energy_forces(clone, pos)[0] == pytest.approx(energy_forces(system, pos)[0], rel=1e-12)


def test_torch_backend_cannot_be_deserialised_with_these_wheels():
    """Known upstream crash (openmmtorch 1.5 / OpenMM 8.6.1 PyPI wheels): deserialising any TorchForce
    segfaults. Run in a subprocess so the suite notices if it ever starts working."""
    import subprocess
    import sys

    code = (
        "import torch, openmm, openmmtorch\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, positions):\n"
        "        return torch.sum(positions ** 2)\n"
        "s = openmm.System(); s.addParticle(1.0); s.addForce(openmmtorch.TorchForce(torch.jit.script(M())))\n"
        "openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(s))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode != 0, "TorchForce deserialisation works now: enable XML round trips for the torch backend"


def test_openmm_ml_potential(model64, alanine):
    from openmmml import MLPotential

    potential = MLPotential("allegro", modelPath=str(model64))
    water = water64()
    top, pos = water_topology(water)
    e, f = energy_forces(potential.createSystem(top), pos)
    e_ref, f_ref = _reference(model64, water)
    assert e == pytest.approx(e_ref, rel=1e-9)
    ml_atoms = [a.index for a in alanine.topology.atoms() if a.residue.name != "HOH"]
    mixed = potential.createMixedSystem(alanine.topology, alanine.system, ml_atoms)
    ours = allegro_bio.create_mixed_system(alanine.topology, alanine.system, ml_atoms, model64)
    apos = alanine.positions.value_in_unit(unit.nanometer)
    assert energy_forces(mixed, apos)[0] == pytest.approx(energy_forces(ours, apos)[0], abs=1e-4)


def test_works_when_openmm_was_imported_before_torch(model64):
    """OpenMM's plugin loading at import fails for openmm-torch if torch is not loaded yet."""
    import subprocess
    import sys

    code = (
        "import openmm, sys\n"
        "from openmm import app, unit\n"
        "import allegro_bio\n"
        "from allegro_bio.data import water64\n"
        "a = water64()\n"
        "top = app.Topology(); ch = top.addChain()\n"
        "for s in a.get_chemical_symbols():\n"
        "    top.addAtom(s, app.element.get_by_symbol(s), top.addResidue('X', ch))\n"
        "top.setPeriodicBoxVectors(a.cell[:] / 10 * unit.nanometer)\n"
        "system = openmm.System()\n"
        "[system.addParticle(1.0) for _ in range(len(a))]\n"
        "system.setDefaultPeriodicBoxVectors(*top.getPeriodicBoxVectors())\n"
        f"system.addForce(allegro_bio.AllegroForce({str(model64)!r}, top, backend='torch'))\n"
        "ctx = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName('CPU'))\n"
        "ctx.setPositions(a.positions / 10 * unit.nanometer)\n"
        "print(ctx.getState(getEnergy=True).getPotentialEnergy())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "kJ/mol" in proc.stdout


def test_bad_input_is_refused_before_the_first_step(model64):
    atoms = water64()
    top, _ = water_topology(atoms)
    model_ho = allegro_bio.build_model("small", ["H", "C"], seed=0)
    with pytest.raises(UnknownElementError, match=r"O at atoms \[0, 3, 6, 9, 12\]"):
        allegro_bio.AllegroForce(model_ho, top)
    small = water_topology(atoms)[0]
    small.setPeriodicBoxVectors(np.eye(3) * 0.7 * unit.nanometer)
    with pytest.raises(InvalidStructureError, match="smaller than twice the model cutoff"):
        allegro_bio.AllegroForce(model64, small)
    with pytest.raises(AllegroError, match=r"out of range .* 192 atoms: \[192, -1\]"):
        allegro_bio.AllegroForce(model64, top, atoms=[0, 192, -1])
    with pytest.raises(AllegroError, match="precision"):
        allegro_bio.AllegroForce(model64, top, precision="half")
    with pytest.raises(AllegroError, match="backend"):
        allegro_bio.AllegroForce(model64, top, backend="jax")
    with pytest.raises(AllegroError, match="torch device .* got 'gpu0'"):
        allegro_bio.AllegroForce(model64, top, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(AllegroError, match="'cuda' requested but torch sees no CUDA device"):
            allegro_bio.AllegroForce(model64, top, backend="python", device="cuda")


def test_python_backend_device_option_and_no_openmm_torch(model64, monkeypatch):
    """device= is where the python backend evaluates (kept through XML); without openmm-torch,
    'auto' takes the python backend and 'torch' names the missing package."""
    import sys

    top, pos = water_topology(water64())
    force = allegro_bio.AllegroForce(model64, top, backend="python", device="cpu")
    clone = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(ml_system(top, force)))
    ref = energy_forces(ml_system(top, allegro_bio.AllegroForce(model64, top, backend="torch")), pos)
    got = energy_forces(clone, pos)
    assert got[0] == pytest.approx(ref[0], rel=1e-12)
    np.testing.assert_allclose(got[1], ref[1], atol=1e-8)
    monkeypatch.setitem(sys.modules, "openmmtorch", None)  # import openmmtorch now raises ImportError
    assert isinstance(allegro_bio.AllegroForce(model64, top), openmm.PythonForce)
    with pytest.raises(AllegroError, match="backend 'torch' needs openmm-torch"):
        allegro_bio.AllegroForce(model64, top, backend="torch")


@pytest.mark.long
def test_padded_pair_buffer_is_exact_and_rarely_reallocated(model64):
    """The torch backend's padded pair buffer (fake pairs beyond the cutoff) changes nothing, and
    along a 0.5 fs-like trajectory of a water box it grows once (first call) and then rarely."""
    from allegro_bio.neighbors import type_indices
    from allegro_bio.openmm_module import AllegroOpenMMModule

    model = allegro_bio.load(model64)
    atoms = water64().repeat((2, 1, 1))
    types = torch.as_tensor(type_indices(atoms.numbers, model.type_names))
    idx = torch.arange(len(atoms))
    box = torch.as_tensor(np.asarray(atoms.cell)) / 10.0
    padded = torch.jit.script(AllegroOpenMMModule(model.module, types, idx, False, True, model.r_max, pad=True))
    plain = torch.jit.script(AllegroOpenMMModule(model.module, types, idx, False, True, model.r_max, pad=False))
    rng = np.random.default_rng(0)
    pos = torch.as_tensor(atoms.positions) / 10.0
    velocity = torch.as_tensor(rng.normal(0.0, 2e-4, pos.shape))  # nm per step, ~thermal H at 0.5 fs
    for step in range(40):
        pos = pos + velocity
        e1, f1 = padded(pos, box)
        if step % 10 == 0:
            e2, f2 = plain(pos, box)
            assert float(e1) == pytest.approx(float(e2), rel=1e-13, abs=1e-9)
            assert torch.allclose(f1, f2, rtol=0, atol=1e-9)
    assert padded.capacity > 0 and 1 <= padded.reallocations <= 3, padded.reallocations
    e_ref, f_ref = _reference(model64, atoms.__class__(atoms.numbers, positions=pos.numpy() * 10.0, cell=atoms.cell, pbc=True))
    assert float(e1) == pytest.approx(e_ref, rel=1e-10)
    assert np.allclose(f1.numpy(), f_ref, atol=1e-6)


@pytest.mark.long
def test_verlet_list_is_exact_and_searches_rarely(model64):
    """The torch backend's Verlet list (pairs within r_max + skin, re-searched only after an atom
    moved skin/2 or the box changed) gives at every step what a fresh search gives, across a
    drift, an atom wrapped to the other side of the box and a barostat-like box scaling."""
    from allegro_bio.neighbors import type_indices
    from allegro_bio.openmm_module import AllegroOpenMMModule

    model = allegro_bio.load(model64)
    atoms = water64().repeat((2, 1, 1))
    types = torch.as_tensor(type_indices(atoms.numbers, model.type_names))
    idx = torch.arange(len(atoms))
    cached = torch.jit.script(AllegroOpenMMModule(model.module, types, idx, False, True, model.r_max, skin=0.6))
    fresh = torch.jit.script(AllegroOpenMMModule(model.module, types, idx, False, True, model.r_max, skin=0.0))
    rng = np.random.default_rng(1)
    box = torch.as_tensor(np.asarray(atoms.cell)) / 10.0
    pos = torch.as_tensor(atoms.positions) / 10.0
    velocity = torch.as_tensor(rng.normal(0.0, 5e-4, pos.shape))  # nm per step: ~0.1 Å max per step
    for step in range(30):
        pos = pos + velocity
        if step == 12:
            pos[5] += box[0]  # the atom wrapped into the neighbouring image: same physics
        if step == 20:
            box, pos = box * 1.002, pos * 1.002  # an isotropic barostat move
        e1, f1 = cached(pos, box)
        e2, f2 = fresh(pos, box)
        assert float(e1) == pytest.approx(float(e2), rel=1e-12, abs=1e-9)
        scale = float(f2.abs().max())  # ~1e5 kJ/mol/nm (untrained); pair order differs: float64 rounding
        assert float((f1 - f2).abs().max()) < 1e-12 * scale, (step, float((f1 - f2).abs().max()), scale)
    assert fresh.rebuilds == 30
    assert 3 <= cached.rebuilds <= 15, cached.rebuilds


@pytest.mark.long
def test_python_backend_verlet_list_is_exact_and_searches_rarely(model64, monkeypatch):
    """The python backend reuses its neighbour list across steps (skin 1 Å) like the torch backend:
    the same energies and forces as a search every step, in real contexts, with fewer searches."""
    import allegro_bio.neighbors as nb

    calls = []
    search = nb.neighbor_list
    monkeypatch.setattr(nb, "neighbor_list", lambda *a: calls.append(a[3]) or search(*a))
    atoms = water64()
    top, pos = water_topology(atoms)
    contexts = []
    for skin in (1.0, 0.0):
        system = ml_system(top, allegro_bio.AllegroForce(model64, top, backend="python", skin=skin))
        contexts.append(openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference")))
    rng = np.random.default_rng(3)
    velocity = rng.normal(0.0, 2e-4, pos.shape)  # nm per step
    for step in range(12):
        pos = pos + velocity
        out = []
        for ctx in contexts:
            ctx.setPositions(pos * unit.nanometer)
            st = ctx.getState(getEnergy=True, getForces=True)
            out.append((st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                        st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)))
        assert out[0][0] == pytest.approx(out[1][0], rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(out[0][1], out[1][1], rtol=0, atol=1e-12 * np.abs(out[1][1]).max())
    with_skin = sum(1 for c in calls if c > 4.5)  # searches at r_max + 1 Å; the others at r_max
    assert len(calls) - with_skin >= 12 and 1 <= with_skin <= 6, calls


@pytest.mark.parametrize("backend", BACKENDS)
def test_openmm_runs_a_package(backend, eager64, packages, alanine):
    """Real OpenMM contexts: an AOTInductor package equals the eager model with both backends (the
    torch backend runs it inside TorchScript through the TorchBind runner), for a water box and
    for the peptide of a solvated alanine dipeptide as an ML region."""
    atoms = water64()
    top, pos = water_topology(atoms)
    e, f = energy_forces(ml_system(top, allegro_bio.AllegroForce(str(packages["float64"]), top, backend=backend)), pos)
    ref = evaluator(eager64, stress=False)(atoms)
    assert e == pytest.approx(ref.energy * EV_TO_KJ_PER_MOL, rel=1e-10)
    np.testing.assert_allclose(f, ref.forces * EV_PER_A_TO_KJ_PER_MOL_NM, rtol=0, atol=1e-7 * np.abs(f).max())

    from ase import Atoms

    top = alanine.topology
    pos = alanine.positions.value_in_unit(unit.nanometer)
    ml_atoms = [a.index for a in top.atoms() if a.residue.name != "HOH"]
    force = allegro_bio.AllegroForce(str(packages["float64"]), top, atoms=ml_atoms, backend=backend)
    e, f = energy_forces(ml_system(top, force), pos)
    peptide = Atoms([a.element.symbol for a in top.atoms() if a.index in ml_atoms], positions=pos[ml_atoms] * 10.0)
    ref = evaluator(eager64, stress=False)(peptide)
    assert e == pytest.approx(ref.energy * EV_TO_KJ_PER_MOL, rel=1e-10)
    np.testing.assert_allclose(f[ml_atoms], ref.forces * EV_PER_A_TO_KJ_PER_MOL_NM, rtol=0, atol=1e-7 * np.abs(f).max())
    assert not np.delete(f, ml_atoms, axis=0).any()


def test_package_backend_choice_without_a_compiler(packages, monkeypatch):
    """Without a compiler for the TorchBind runner, backend='torch' names the problem and 'auto'
    runs the package with the python backend instead."""
    from allegro_bio.model import package_runner

    def no_compiler() -> None:
        raise package_runner.RunnerBuildError("running an AOTInductor package inside openmm-torch's TorchForce needs "
                                              "a C++ compiler")

    monkeypatch.setattr(package_runner, "load_library", no_compiler)
    top, _ = water_topology(water64())
    with pytest.raises(AllegroError, match="small64.pt2: running an AOTInductor package .* needs a C\\+\\+ compiler"):
        allegro_bio.AllegroForce(str(packages["float64"]), top, backend="torch")
    assert isinstance(allegro_bio.AllegroForce(str(packages["float64"]), top), openmm.PythonForce)


@pytest.mark.long
@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_file_matches_ase(backend, model64, tmp_path):
    """A file written with `deploy --stream-tile` (the low-memory evaluation) gives the same energy
    and forces in OpenMM (the torch backend runs it in TorchScript from C++) as the plain file in ASE."""
    from allegro_bio.cli import main

    streamed = tmp_path / "streamed.pt"
    assert main(["deploy", "--from", str(model64), str(streamed), "--stream-tile", "500"]) == 0
    assert allegro_bio.load(streamed).stream_tile == 500
    atoms = water64()
    top, pos = water_topology(atoms)
    e, f = energy_forces(ml_system(top, allegro_bio.AllegroForce(streamed, top, backend=backend)), pos)
    e_ref, f_ref = _reference(model64, atoms)
    assert e == pytest.approx(e_ref, rel=1e-9, abs=1e-6)
    np.testing.assert_allclose(f, f_ref, atol=1e-7 * np.abs(f_ref).max())
