"""The network compiled ahead of time: an AOTInductor package (``.pt2``) of the per-chunk step.

What is compiled is one chunk's ``(vec [P, 3] Å, edge_center [P], center_type [C], neighbor_type [P])
→ (centre energies [C] eV float64, ∂E/∂vec [P, 3] eV/Å)``: the network forward *and* its force
backward, unfolded by ``make_fx`` into one graph of ATen ops, exported with ``torch.export`` (P and C
dynamic) and compiled by inductor into C++ loops and BLAS calls (AOTInductor). The neighbour
filter, the chunking and the force/virial sums stay outside: in :class:`ChunkedPotential` (Python,
or TorchScript as :class:`PackagePotential` inside openmm-torch's ``TorchForce``) or in the LAMMPS
plugin (C++, no Python and no TorchScript).

Compared with the TorchScript file: fused kernels like ``compile=True``'s, with the forward and
the force backward in one graph, and no compile at each process start (the package loads in
under a second). Small preset, 1,536 waters, 2 CPU cores: 0.37× the TorchScript file's time
per evaluation; paper preset, 192 waters: 0.66× (docs/benchmarks.md). The compile happens once,
in :func:`export_package` (30–60 s on 2 cores, small or paper preset). The kernels are built for
the CPU (or GPU) they are compiled on: compile where the package will run (a cluster's compute
node, not a laptop with another instruction set).

Packages hold the same metadata keys as the TorchScript file (``allegro_bio.deploy``), read in
Python by :func:`allegro_bio.load` and in C++ by ``AOTIModelPackageLoader::get_metadata()``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Tuple

import torch

from .config import AllegroConfig
from .potential import AllegroPotential, ChunkedPotential

#: File suffix of an AOTInductor package (what ``torch._inductor.aoti_compile_and_package`` writes).
SUFFIX = ".pt2"

#: Smallest pair and centre counts the package is compiled for (inductor specialises sizes 0 and
#: 1); smaller chunks are padded with pairs beyond the cutoff and an empty centre, which add zero.
MIN_PAIRS = 2
MIN_CENTERS = 2

#: Inductor settings of the package: OpenMP threads chosen at run time (``at::set_num_threads``,
#: ``OMP_NUM_THREADS``, ``pair_style allegro threads N``), not fixed to the compiling machine's count.
INDUCTOR_CONFIGS = {"cpp.dynamic_threads": True}

#: A padding pair's length beyond r_max (Å): its envelope, features and gradient are exactly 0
#: (the LAMMPS plugin's padded buffers use the same distance).
PAD_BEYOND_CUTOFF = 1.0


class ChunkStep(torch.nn.Module):
    """One chunk's centre energies and their gradient with respect to the pair vectors."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        vec = vec.detach().requires_grad_(True)
        energy = self.net(vec, edge_center, center_type, neighbor_type)
        (grad,) = torch.autograd.grad([energy.sum()], [vec])
        return energy, grad


@contextlib.contextmanager
def _e3nn_eager() -> Iterator[None]:
    """Build e3nn modules with plain Python spherical harmonics: its default TorchScript function
    reads sizes as integers, which fixes the pair count in a symbolic trace."""
    from e3nn import get_optimization_defaults, set_optimization_defaults

    before = get_optimization_defaults()["jit_mode"]
    set_optimization_defaults(jit_mode="eager")
    try:
        yield
    finally:
        set_optimization_defaults(jit_mode=before)


@contextlib.contextmanager
def _no_duck_shapes() -> Iterator[None]:
    """Trace without duck shaping, so a pair count that happens to equal a width stays symbolic."""
    import torch.fx.experimental._config as fx_config

    before = fx_config.use_duck_shape
    fx_config.use_duck_shape = False
    try:
        yield
    finally:
        fx_config.use_duck_shape = before


def example_chunk(model: ChunkedPotential, num_pairs: int = 97, num_centers: int = 11, seed: int = 0):
    """Synthetic chunk inputs for tracing: float64 pair vectors of 0.9–3.5 Å (as the chunk driver
    passes them; the network casts to its dtype inside the graph), every type present, on the
    model's device (the package is compiled for the device of its example inputs)."""
    tensors = _example_chunk_cpu(len(model.type_names), num_pairs, num_centers, seed)
    device = model.cutoff_matrix.device
    return tuple(t.to(device) for t in tensors)


def _example_chunk_cpu(t: int, num_pairs: int, num_centers: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(num_pairs, 3, generator=gen, dtype=torch.float64), dim=1)
    length = 0.9 + 2.6 * torch.rand(num_pairs, 1, generator=gen, dtype=torch.float64)
    vec = direction * length
    edge_center = torch.sort(torch.randint(0, num_centers, (num_pairs,), generator=gen)).values
    center_type = torch.arange(num_centers) % t
    neighbor_type = torch.randint(0, t, (num_pairs,), generator=gen)
    return vec, edge_center, center_type, neighbor_type


def trace_step(model: AllegroPotential) -> torch.fx.GraphModule:
    """The chunk step of ``model`` (forward + force backward) as one FX graph of ATen ops with
    symbolic pair and centre counts; weights are embedded as constants (frozen, inference only)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from . import clone

    with _e3nn_eager():
        traced_model = clone(model).eval().requires_grad_(False)
    traced_model.net.use_fusable_ops()
    step = ChunkStep(traced_model.net)
    with _no_duck_shapes():
        return make_fx(step, tracing_mode="symbolic", _allow_non_fake_inputs=True,
                       _error_on_data_dependent_ops=True)(*example_chunk(model))


def export_package(model: AllegroPotential, path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Compile ``model``'s chunk step with AOTInductor into the package ``path`` (``.pt2``) with
    ``metadata`` (strings).

    Needs a C++ compiler (g++); takes ~1 min on 2 cores for the small preset. The package is
    compiled for ``model``'s device and this machine's CPU instruction set."""
    from torch.export import Dim

    from .compiled import _cpp_compiler

    if not _cpp_compiler():  # the kernels (CPU) or the wrapper around them (CUDA) are C++
        raise RuntimeError("writing an AOTInductor package needs a C++ compiler (g++ or clang++ on PATH, or $CXX); "
                           "none was found. Install one (Debian: apt install g++) or save a TorchScript file (.pt).")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = trace_step(model)
    example = example_chunk(model)
    pairs, centers = Dim("pairs", min=MIN_PAIRS), Dim("centers", min=MIN_CENTERS)
    exported = torch.export.export(graph, example, dynamic_shapes=({0: pairs}, {0: pairs}, {0: centers}, {0: pairs}))
    # compiled in a scratch folder under the final name (the archive's top folder is named after
    # the file), then moved: a failed compile leaves no file behind
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".aoti-") as scratch:
        tmp = Path(scratch) / path.name
        torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp), inductor_configs=INDUCTOR_CONFIGS | {
            "aot_inductor.metadata": {str(k): str(v) for k, v in metadata.items()}})
        os.replace(tmp, path)
    return path


def load_runner(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """The compiled step of package ``path`` and its metadata (``dict[str, str]``)."""
    device = torch.device(device)
    index = device.index if device.index is not None else (0 if device.type == "cuda" else -1)
    runner = torch._inductor.aoti_load_package(str(path), device_index=index)
    return runner, dict(runner.get_metadata())


class AOTIPotential(ChunkedPotential):
    """The ``compute`` contract running an AOTInductor package's chunk step, called from Python
    (the LAMMPS plugin drives the same step from C++; :class:`PackagePotential` from TorchScript)."""

    def __init__(self, config: AllegroConfig, runner, device: str | torch.device = "cpu") -> None:
        super().__init__(config)
        self.runner = runner
        self.min_pairs: int = MIN_PAIRS
        self.min_centers: int = MIN_CENTERS
        self.pad_length: float = self.r_max + PAD_BEYOND_CUTOFF
        self.to(device)

    def forward(
        self, pos: torch.Tensor, atom_type: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        """Atom energies [n_local] (eV), as ``AllegroPotential.forward`` (forces are computed too)."""
        return self.compute(pos, atom_type, edge_index, edge_shift, n_local, False)[0]

    def _energy_and_grad(
        self, vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        p, c = vec.shape[0], center_type.shape[0]
        vec = vec.detach()
        pad_p, pad_c = max(0, self.min_pairs - p), max(0, self.min_centers - c)
        if pad_p > 0 or pad_c > 0:  # pairs beyond every cutoff on centre 0, and an empty centre: they add exactly zero
            far = torch.tensor([[self.pad_length, 0.0, 0.0]], dtype=vec.dtype, device=vec.device)
            vec = torch.cat([vec, far.expand(pad_p, 3)])
            edge_center = torch.cat([edge_center, edge_center.new_zeros([pad_p])])
            neighbor_type = torch.cat([neighbor_type, neighbor_type.new_zeros([pad_p])])
            center_type = torch.cat([center_type, center_type.new_zeros([pad_c])])
        energy, grad = self._run(vec.to(torch.float64), edge_center, center_type, neighbor_type)
        if p == 0:
            return energy[:c], None
        return energy[:c], grad[:p].to(vec.dtype)

    def _run(
        self, vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The package's step: (centre energies, ∂E/∂vec)."""
        energy, grad = self.runner(vec, edge_center, center_type, neighbor_type)
        return energy, grad


class PackagePotential(AOTIPotential):
    """:class:`AOTIPotential` that TorchScript can compile: the package runs through the TorchBind
    class ``torch.classes.allegro_bio.PackageRunner`` (:mod:`.package_runner`), so openmm-torch's
    ``TorchForce`` calls it from C++ with no Python per step. Scripted, it saves and loads with
    the package inside, in processes that have called ``package_runner.load_library()``."""

    def __init__(self, config: AllegroConfig, runner, device: str | torch.device = "cpu") -> None:
        super().__init__(config, runner, device)
        self.package_device: str = torch.device(device).type  # what the package's kernels were compiled for

    def _run(
        self, vec: torch.Tensor, edge_center: torch.Tensor, center_type: torch.Tensor, neighbor_type: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if vec.device.type != self.package_device:  # e.g. a CPU package in a CUDA OpenMM context
            raise RuntimeError("this AOTInductor package was compiled for " + self.package_device + " but got inputs on "
                               + vec.device.type + ": write the package for that device (allegro-bio deploy --from "
                               "model.pt model.pt2 on the machine and device that run it)")
        out = self.runner.run([vec, edge_center, center_type, neighbor_type])
        return out[0], out[1]


def scripted_package(path: str | os.PathLike, config: AllegroConfig, max_edges_per_chunk: int,
                     device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Package ``path`` as a TorchScript :class:`PackagePotential` (builds the runner library once)."""
    from .package_runner import package_runner

    module = PackagePotential(config, package_runner(path, device), device)
    module.max_edges_per_chunk = int(max_edges_per_chunk)
    return torch.jit.script(module.eval())
