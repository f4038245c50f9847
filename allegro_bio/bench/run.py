"""Time energy + forces of an untrained seeded model on each case, one fresh process per case.

Units in records: times in ms, rates per second, memory in MB (2**20 bytes), counts of
ordered pairs i→j.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch

from ..model import build_model
from ..neighbors import Graph, build_graph, type_indices
from .cases import CASE_NAMES, build_case

#: Species of the benchmarked model, in type order.
TYPE_NAMES: list[str] = ["H", "C", "N", "O", "S"]
IMPLEMENTATION = "allegro_bio"

Record = dict[str, Any]


def peak_rss_mb() -> float:
    """Peak resident memory (MB) of this process since it started.

    Reads ``VmHWM`` from ``/proc/self/status``: ``getrusage().ru_maxrss`` survives ``exec``, so a
    spawned child would report at least its parent's peak. Falls back to ``ru_maxrss`` off Linux.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def count_pairs(positions: np.ndarray, types: np.ndarray, graph: Graph, cutoff_matrix: np.ndarray) -> int:
    """Ordered pairs closer than their per-species-pair cutoff ``cutoff_matrix[type_i, type_j]`` (Å)."""
    i, j = graph.edge_index
    d2 = np.sum((positions[j] - positions[i] + graph.shift) ** 2, axis=1)
    rc = cutoff_matrix[types[i], types[j]]
    return int(np.count_nonzero(d2 < rc * rc))


def _base(case: str, preset: str, dtype: str, device: str, threads: int | None = None) -> Record:
    return {
        "implementation": IMPLEMENTATION, "preset": preset, "case": case, "dtype": dtype, "device": device,
        "torch_version": torch.__version__, "threads": threads or torch.get_num_threads(),
    }


def failed_record(case: str, preset: str, dtype: str, device: str, error: str, threads: int | None = None) -> Record:
    """A record for a case that did not finish: measurements are ``None``, ``status`` is ``"failed"``."""
    rec = _base(case, preset, dtype, device, threads)
    keys = ("n_atoms", "n_pairs", "n_pairs_rmax", "median_ms", "atom_steps_per_s", "pairs_per_s", "nl_ms", "peak_rss_mb")
    rec.update(dict.fromkeys(keys), status="failed", error=error)
    return rec


def measure_case(
    case: str, preset: str = "small", dtype: str = "float32", device: str = "cpu", repeats: int = 5,
    threads: int | None = None, seed: int = 0,
) -> Record:
    """Benchmark one case in this process: neighbour list once, then 1 warm-up + ``repeats`` timed
    energy+forces evaluations (autograd on, no virial). Returns one record (see module doc for units)."""
    if threads is not None:
        torch.set_num_threads(threads)
    atoms = build_case(case)
    model = build_model(preset, type_names=TYPE_NAMES, seed=seed, dtype=dtype).to(device)
    positions, cell, pbc = atoms.get_positions(), atoms.cell.array, atoms.pbc

    t0 = time.perf_counter()
    graph = build_graph(positions, cell, pbc, model.r_max)
    nl_ms = 1e3 * (time.perf_counter() - t0)
    types = type_indices(atoms.numbers, model.type_names)
    n_pairs = count_pairs(positions, types, graph, model.cutoff_matrix.cpu().numpy())

    n = len(atoms)
    args = (
        torch.as_tensor(positions, device=device),
        torch.as_tensor(types, dtype=torch.long, device=device),
        torch.as_tensor(graph.edge_index, device=device),
        torch.as_tensor(graph.shift, device=device),
    )
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def evaluate() -> float:
        sync()
        start = time.perf_counter()
        with torch.enable_grad():
            model.compute(*args, n, False)
        sync()
        return time.perf_counter() - start

    evaluate()  # warm-up
    times = [evaluate() for _ in range(repeats)]
    median_s = statistics.median(times)
    rec = _base(case, preset, dtype, device)
    rec.update(
        n_atoms=n, n_pairs=n_pairs, n_pairs_rmax=int(graph.edge_index.shape[1]),
        median_ms=1e3 * median_s, atom_steps_per_s=n / median_s, pairs_per_s=n_pairs / median_s,
        nl_ms=nl_ms, peak_rss_mb=peak_rss_mb(), times_ms=[1e3 * t for t in times], repeats=repeats,
        num_weights=model.num_weights(), chunk_pairs=model.max_edges_per_chunk, seed=seed,
        cpu_count=os.cpu_count(), load_avg_1min=os.getloadavg()[0], status="ok", error=None,
    )
    if torch.device(device).type == "cuda":
        rec["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return rec


def _child(conn: Any, measure: Callable[..., Record], failed: Callable[[dict[str, Any], str], Record],
           kwargs: dict[str, Any]) -> None:
    try:
        rec = measure(**kwargs)
    except Exception as exc:  # reported as a failed case (e.g. torch's out-of-memory error)
        rec = failed(kwargs, f"{type(exc).__name__}: {exc}")
    conn.send(rec)
    conn.close()


def run_isolated(measure: Callable[..., Record], failed: Callable[[dict[str, Any], str], Record],
                 kwargs: dict[str, Any]) -> Record:
    """``measure(**kwargs)`` in a fresh spawned process (so peak memory is its own); an exception,
    crash or kill (e.g. by the out-of-memory killer) gives ``failed(kwargs, why)`` instead of ending
    the run. ``measure`` and ``failed`` must be module-level functions (they are pickled)."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, measure, failed, kwargs), daemon=True)
    proc.start()
    send.close()
    try:
        rec: Record = receive.recv()
    except EOFError:
        proc.join()
        why = " (SIGKILL: out of memory?)" if proc.exitcode == -9 else ""
        rec = failed(kwargs, f"worker process died with exit code {proc.exitcode}{why}")
    proc.join()
    return rec


def _failed(kwargs: dict[str, Any], error: str) -> Record:
    keys = ("case", "preset", "dtype", "device")
    return failed_record(*(kwargs[k] for k in keys), error=error, threads=kwargs["threads"])


def measure_case_isolated(
    case: str, preset: str = "small", dtype: str = "float32", device: str = "cpu", repeats: int = 5,
    threads: int | None = None, seed: int = 0,
) -> Record:
    """:func:`measure_case` in a fresh spawned process (see :func:`run_isolated`)."""
    kwargs = dict(case=case, preset=preset, dtype=dtype, device=device, repeats=repeats, threads=threads, seed=seed)
    return run_isolated(measure_case, _failed, kwargs)


def run_bench(
    preset: str = "small", cases: Iterable[str] = CASE_NAMES, dtype: str = "float32", device: str = "cpu",
    repeats: int = 5, threads: int | None = None, seed: int = 0, isolate: bool = True, progress: bool = True,
) -> list[Record]:
    """Benchmark ``cases`` one after another (each in its own process if ``isolate``); one record per case."""
    from tqdm.auto import tqdm

    records: list[Record] = []
    bar = tqdm(list(cases), desc=f"bench {preset}", unit="case", disable=not progress)
    for case in bar:
        bar.set_postfix_str(case)
        measure = measure_case_isolated if isolate else measure_case
        records.append(measure(case, preset, dtype, device, repeats, threads, seed))
    return records


def format_table(records: list[Record]) -> str:
    """A fixed-width text table of records (ms per evaluation, rates per second, memory in MB)."""
    head = ("case", "atoms", "pairs<rmax", "pairs<rc", "NL ms", "ms/eval", "atom-steps/s", "pairs/s", "peak RSS MB")
    rows = [head]
    failures = []
    for r in records:
        if r["status"] != "ok":
            failures.append(f"{r['case']}: FAILED: {r['error']}")
            continue
        rows.append((
            r["case"], f"{r['n_atoms']:,}", f"{r['n_pairs_rmax']:,}", f"{r['n_pairs']:,}", f"{r['nl_ms']:.1f}",
            f"{r['median_ms']:.1f}", f"{r['atom_steps_per_s']:,.0f}", f"{r['pairs_per_s']:.3g}", f"{r['peak_rss_mb']:,.0f}",
        ))
    widths = [max(len(row[k]) for row in rows) for k in range(len(head))]
    lines = ["  ".join(cell.rjust(w) if k else cell.ljust(w) for k, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines += failures
    if records:
        r = records[0]
        lines.insert(0, f"{IMPLEMENTATION} preset={r['preset']} dtype={r['dtype']} device={r['device']} "
                        f"threads={r['threads']} torch={r['torch_version']}")
    return "\n".join(lines)
