"""``torch.classes.allegro_bio.PackageRunner``: an AOTInductor package callable from TorchScript.

TorchScript cannot call an AOTInductor package, and openmm-torch's ``TorchForce`` runs TorchScript
only. This module compiles a small TorchBind class (``csrc/package_runner.cpp``, ~15 s with g++,
once per machine and torch version, cached under ``$XDG_CACHE_HOME/allegro_bio/package_runner``)
that holds a package and runs its chunk step; :class:`~allegro_bio.model.aoti.PackagePotential`
calls it from TorchScript. The class pickles as the package's bytes, so the TorchScript module
that holds it saves and loads whole, in any process that has called :func:`load_library`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "package_runner.cpp"
LIBRARY_NAME = "libpackagerunner.so"
#: Environment variable that overrides where the compiled library is cached.
ENV_DIR = "ALLEGRO_BIO_RUNNER_DIR"


class RunnerBuildError(RuntimeError):
    """The TorchBind runner could not be compiled (no compiler, no torch headers, compile error)."""


def _build_flags() -> tuple[list[str], list[str]]:
    """(compile flags, link flags) for torch's headers and libraries."""
    root = Path(torch.__file__).resolve().parent
    includes = [root / "include", root / "include" / "torch" / "csrc" / "api" / "include"]
    libdir = root / "lib"
    if not all(p.is_dir() for p in includes) or not list(libdir.glob("libtorch_cpu.*")):
        raise RunnerBuildError(f"the torch installation at {root} has no C++ headers or libraries")
    abi = int(torch.compiled_with_cxx11_abi())
    compile_flags = ["-shared", "-fPIC", "-O2", "-std=c++17", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"] + [f"-I{p}" for p in includes]
    link_flags = [f"-L{libdir}", "-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{libdir}"]
    return compile_flags, link_flags


def library_path() -> Path:
    """Where the compiled library for this source and torch version is (or will be) cached."""
    digest = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode()).hexdigest()[:16]
    env = os.environ.get(ENV_DIR)
    root = Path(env).expanduser() if env else Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "allegro_bio" / "package_runner"
    return root / digest / LIBRARY_NAME


def build_library(force: bool = False) -> Path:
    """Compile the runner library if it is not cached yet (or ``force``); its path.

    Written under a temporary name and moved into place, so an interrupted or failed compile
    leaves nothing that looks like a library."""
    from .compiled import _cpp_compiler

    path = library_path()
    if path.is_file() and not force:
        return path
    cxx = _cpp_compiler()
    if cxx is None:
        raise RunnerBuildError("running an AOTInductor package inside openmm-torch's TorchForce needs a C++ compiler "
                               "(g++ or clang++ on PATH, or $CXX) to build its runner once; none was found. Install "
                               "one (Debian: apt install g++), or use AllegroForce(..., backend='python').")
    compile_flags, link_flags = _build_flags()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch_dir = tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-")
    except OSError as exc:
        raise RunnerBuildError(f"cannot write the package runner library under {path.parent} ({exc}); set "
                               f"${ENV_DIR} to a writable directory") from exc
    with scratch_dir as scratch:
        tmp = Path(scratch) / LIBRARY_NAME
        cmd = [cxx, *compile_flags, str(SOURCE), "-o", str(tmp), *link_flags]
        log.info("compiling the AOTInductor package runner for TorchScript (once per machine, ~15 s): %s", path)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RunnerBuildError(f"compiling {SOURCE.name} failed ({cxx}, exit {done.returncode}):\n{done.stderr[-3000:]}")
        os.replace(tmp, path)
    return path


def load_library() -> None:
    """Make ``torch.classes.allegro_bio.PackageRunner`` available in this process (builds it once)."""
    if _loaded():
        return
    torch.ops.load_library(str(build_library()))


def _loaded() -> bool:
    try:
        torch.classes.allegro_bio.PackageRunner  # noqa: B018 - raises when not registered
    except (RuntimeError, AttributeError):
        return False
    return True


def package_runner(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.ScriptObject:
    """A ``PackageRunner`` holding package ``path`` (its bytes: the object saves and loads whole)."""
    load_library()
    path = Path(path)
    device = torch.device(device)
    index = -1 if device.type == "cpu" else (device.index if device.index is not None else 0)
    return torch.classes.allegro_bio.PackageRunner(path.read_bytes(), path.name, index)
