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

from ..model import build_from_config, preset_config
from ..neighbors import Graph, build_graph, type_indices
from .cases import DEFAULT_CASES, build_case

#: Species of the benchmarked model, in type order (factor IX brings Ca²⁺ and Cl⁻).
TYPE_NAMES: list[str] = ["H", "C", "N", "O", "S", "Ca", "Cl"]
IMPLEMENTATION = "allegro_bio"
#: The reference implementation (nequip + nequip-allegro), see :mod:`.peer`.
PEER_IMPLEMENTATION = "nequip-allegro"

Record = dict[str, Any]


def _status_mb(key: str) -> float | None:
    """A memory line (``"VmHWM:"``, ``"VmRSS:"``) of ``/proc/self/status`` in MB; None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory (MB) of this process since it started (or since its last reset).

    Reads ``VmHWM`` from ``/proc/self/status``: ``getrusage().ru_maxrss`` survives ``exec``, so a
    spawned child would report at least its parent's peak. Falls back to ``ru_maxrss`` off Linux.
    """
    peak = _status_mb("VmHWM:")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def count_pairs(positions: np.ndarray, types: np.ndarray, graph: Graph, cutoff_matrix: np.ndarray) -> int:
    """Ordered pairs closer than their per-species-pair cutoff ``cutoff_matrix[type_i, type_j]`` (Å)."""
    i, j = graph.edge_index
    d2 = np.sum((positions[j] - positions[i] + graph.shift) ** 2, axis=1)
    rc = cutoff_matrix[types[i], types[j]]
    return int(np.count_nonzero(d2 < rc * rc))


def _base(case: str, preset: str, dtype: str, device: str, threads: int | None = None, tf32: bool = False) -> Record:
    return {
        "implementation": IMPLEMENTATION, "form": "eager", "preset": preset, "case": case, "dtype": dtype,
        "device": device, "tf32": bool(tf32), "torch_version": torch.__version__,
        "threads": threads or torch.get_num_threads(),
    }


def failed_record(case: str, preset: str, dtype: str, device: str, error: str, threads: int | None = None,
                  tf32: bool = False) -> Record:
    """A record for a case that did not finish: measurements are ``None``, ``status`` is ``"failed"``."""
    rec = _base(case, preset, dtype, device, threads, tf32)
    keys = ("n_atoms", "n_pairs", "n_pairs_rmax", "median_ms", "atom_steps_per_s", "pairs_per_s", "nl_ms", "peak_rss_mb")
    rec.update(dict.fromkeys(keys), status="failed", error=error)
    return rec


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux ≥ 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def evaluation_memory_mb(evaluate: Callable[[], Any], device: str | torch.device = "cpu") -> float | None:
    """Peak memory (MB) one call of ``evaluate`` adds (None if not measurable): resident memory of
    the process on the CPU, memory allocated by torch on a CUDA ``device``.

    On the CPU it is exact after :func:`allegro_bio.runtime.mmap_large_allocations` (large arrays
    are mapped and unmapped, so RSS follows them); after
    :func:`allegro_bio.runtime.keep_freed_memory` a call reuses freed heap memory instead of adding
    to the peak, and the figure is a lower bound. On CUDA it is always exact (torch's allocator
    counts its live blocks).
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        evaluate()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    before = _status_mb("VmRSS:")
    if before is None or not _reset_peak_rss():
        return None
    evaluate()
    return peak_rss_mb() - before


class _Timed:
    """One implementation under test: how to call it once, and what it evaluates."""

    def __init__(self, implementation: str, form: str, evaluate: Callable[[], Any], n_pairs: int, extra: Record) -> None:
        self.implementation, self.form, self.evaluate, self.n_pairs, self.extra = implementation, form, evaluate, n_pairs, extra
        self.times: list[float] = []
        self.eval_mb: float | None = None


def measure_case(
    case: str, preset: str = "small", dtype: str = "float32", device: str = "cpu", repeats: int = 5,
    threads: int | None = None, seed: int = 0, peer: bool = False, forms: Iterable[str] = ("eager",),
    chunk: int | None = None, tf32: bool = False, stream_tile: int | None = None,
) -> list[Record]:
    """Benchmark one case in this process; one record per implementation and form.

    Ours in each of ``forms`` (``"eager"``: the ``AllegroPotential``; ``"torchscript"``: the
    deployed, scripted file as ASE/OpenMM/LAMMPS run it; ``"compiled"``: ``torch.compile``, as
    ``AllegroCalculator(compile=True)`` runs it, its compile time in ``compile_s``; ``"aoti"``: the
    AOTInductor package ``save(model, "model.pt2")`` writes, as LAMMPS and Python run it, its
    export time in ``compile_s``) and, with ``peer``, the reference in its
    eager and TorchScript forms at the same hyperparameters (see :mod:`.peer`). Weights are
    frozen (inference). Steps: neighbour list once; one evaluation each with the default malloc
    to measure the memory it adds (``eval_peak_mb``); then
    :func:`~allegro_bio.runtime.keep_freed_memory`, 1 warm-up round (2 with TorchScript) and ``repeats`` timed
    rounds, the implementations taking turns within each round so that load changes on a
    shared machine hit all of them alike. Autograd forces, no virial, unless ``peer`` (the
    reference always computes the stress of a periodic cell, so then ours does too). ``tf32``
    (CUDA only) lets float32 matmuls of every implementation, and the matmul peak, use TF32.
    """
    from ..runtime import keep_freed_memory, mmap_large_allocations
    from .flops import flops_per_pair, matmul_peak_flops
    from .memory import saved_bytes_per_pair

    if threads is not None:
        torch.set_num_threads(threads)
    if torch.device(device).type == "cuda":
        from ..runtime import set_tf32

        set_tf32(tf32)  # the peer is built with the same setting (peer.build_peer)
    elif tf32:
        raise ValueError("tf32 is a mode of CUDA matmuls: it needs device='cuda'")
    precise_memory = mmap_large_allocations()  # until keep_freed_memory below: RSS follows live arrays
    atoms = build_case(case)
    config = preset_config(preset, TYPE_NAMES, dtype=dtype)
    if peer:
        from .peer import peer_expressible

        config = peer_expressible(config)
    model = build_from_config(config, seed=seed).to(device).requires_grad_(False)
    if chunk is not None:  # pairs per chunk of centre atoms (default: the model's, from a memory budget)
        model.max_edges_per_chunk = int(chunk)
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
    virial = bool(peer)
    saved_bpp = saved_bytes_per_pair(model, *args)
    timed: list[_Timed] = []
    for form in forms:
        start = time.perf_counter()
        net = _form(model, form, stream_tile)
        extra: Record = {"n_pairs_rmax": int(graph.edge_index.shape[1]), "nl_ms": nl_ms,
                         "num_weights": model.num_weights(), "chunk_pairs": model.max_edges_per_chunk}
        if form == "streamed":
            extra["stream_tile"] = net.stream_tile
        if form == "aoti":
            extra["compile_s"] = time.perf_counter() - start
        evaluate = (lambda net=net: net.compute(*args, n, virial))
        if form == "compiled":  # compile now (its first call), so the memory and times below are steady-state
            start = time.perf_counter()
            with torch.enable_grad():
                evaluate()
            extra["compile_s"] = time.perf_counter() - start
        timed.append(_Timed(IMPLEMENTATION, form, evaluate, n_pairs, extra))
    if peer:
        from .peer import FORMS, build_peer, peer_evaluator, peer_inputs, peer_version

        data = peer_inputs(atoms, config, device)
        for form in FORMS:
            net = build_peer(config, seed=seed, form=form, device=device, tf32=tf32)
            timed.append(_Timed(PEER_IMPLEMENTATION, form, peer_evaluator(net, data), int(data["edge_index"].shape[1]),
                                {"num_weights": sum(p.numel() for p in net.parameters()), "peer_version": peer_version()}))
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def run(t: _Timed) -> float:
        sync()
        start = time.perf_counter()
        with torch.enable_grad():
            t.evaluate()
        sync()
        return time.perf_counter() - start

    for t in timed:  # first call: memory it adds, with the default malloc (also a warm-up)
        t.eval_mb = evaluation_memory_mb(lambda t=t: run(t), device)
    keep_freed_memory()
    scripted = peer or any(t.form == "torchscript" for t in timed)
    for _ in range(2 if scripted else 1):  # TorchScript's profiling executor optimises on its second call
        for t in timed:
            run(t)
    for _ in range(repeats):
        for t in timed:
            t.times.append(run(t))
    peak_flops = matmul_peak_flops(device=device, dtype=torch.float32 if dtype == "float32" else torch.float64)
    flops = flops_per_pair(config)["total"]

    records = []
    for t in timed:
        median_s = statistics.median(t.times)
        rec = _base(case, preset, dtype, device, tf32=tf32)
        rec.update(
            implementation=t.implementation, form=t.form, n_atoms=n, n_pairs=t.n_pairs,
            median_ms=1e3 * median_s, atom_steps_per_s=n / median_s, pairs_per_s=t.n_pairs / median_s,
            eval_peak_mb=t.eval_mb, bytes_per_pair=None if t.eval_mb is None else t.eval_mb * 2**20 / max(t.n_pairs, 1),
            memory_exact=bool(precise_memory and t.eval_mb is not None),
            peak_rss_mb=peak_rss_mb(), times_ms=[1e3 * x for x in t.times], repeats=repeats, virial=virial,
            two_body_mlp=list(config.two_body_mlp), seed=seed, cpu_count=os.cpu_count(),
            load_avg_1min=os.getloadavg()[0], status="ok", error=None, **t.extra,
        )
        if t.implementation == IMPLEMENTATION:
            rec.update(saved_bytes_per_pair=saved_bpp, flops_per_pair=flops, achieved_flops=flops * t.n_pairs / median_s, matmul_peak_flops=peak_flops,
                       fraction_of_matmul_peak=flops * t.n_pairs / median_s / peak_flops)
        if torch.device(device).type == "cuda":
            rec["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        records.append(rec)
    peers = [r for r in records if r["implementation"] == PEER_IMPLEMENTATION]
    if peers:
        best = min(peers, key=lambda r: r["median_ms"])
        for r in records:
            r["peer_best_form"] = best["form"]
            r["ratio_vs_peer"] = best["median_ms"] / r["median_ms"] if r["implementation"] == IMPLEMENTATION else None
    return records


def _form(model: torch.nn.Module, form: str, stream_tile: int | None = None) -> Any:
    """Our ``model`` in one of the timed forms: eager, torchscript (the deployed file), compiled,
    aoti (the AOTInductor package) or streamed (eager, pairs streamed through each layer in tiles of
    ``stream_tile``, default :data:`~allegro_bio.model.potential.DEFAULT_STREAM_TILE`)."""
    if form == "streamed":
        from ..model import clone
        from ..model.potential import DEFAULT_STREAM_TILE

        streamed = clone(model).requires_grad_(False)
        streamed.stream_tile = int(stream_tile or DEFAULT_STREAM_TILE)
        return streamed
    if form == "torchscript":
        return _scripted(model)
    if form == "aoti":
        return _deployed(model, "model.pt2")
    if form == "compiled":
        from ..model.compiled import compile_potential

        return compile_potential(model)
    return model


def _scripted(model: torch.nn.Module) -> torch.jit.ScriptModule:
    """``model`` as deployed: saved to a model file and loaded back (scripted, frozen weights)."""
    return _deployed(model, "model.pt")


def _deployed(model: torch.nn.Module, name: str) -> Any:
    """``model`` saved as file ``name`` (``.pt``: TorchScript; ``.pt2``: AOTInductor) and loaded back."""
    import tempfile

    from ..deploy import load, save

    device = model.cutoff_matrix.device
    with tempfile.TemporaryDirectory(prefix="allegro-bench-") as tmp:
        return load(save(model, os.path.join(tmp, name)), device=device).module


def _child(conn: Any, measure: Callable[..., Record], failed: Callable[[dict[str, Any], str], Record],
           kwargs: dict[str, Any]) -> None:
    try:
        rec = measure(**kwargs)
    except Exception as exc:  # reported as a failed case (e.g. torch's out-of-memory error)
        rec = failed(kwargs, f"{type(exc).__name__}: {exc}")
    conn.send(rec)
    conn.close()


def run_isolated(measure: Callable[..., Any], failed: Callable[[dict[str, Any], str], Any], kwargs: dict[str, Any]) -> Any:
    """``measure(**kwargs)`` in a fresh spawned process (so peak memory is its own); an exception,
    crash or kill (e.g. by the out-of-memory killer) gives ``failed(kwargs, why)`` instead of ending
    the run. ``measure`` and ``failed`` must be module-level functions (they are pickled)."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, measure, failed, kwargs), daemon=True)
    proc.start()
    send.close()
    try:
        rec = receive.recv()
    except EOFError:
        proc.join()
        why = " (SIGKILL: out of memory?)" if proc.exitcode == -9 else ""
        rec = failed(kwargs, f"worker process died with exit code {proc.exitcode}{why}")
    proc.join()
    return rec


def _failed(kwargs: dict[str, Any], error: str) -> list[Record]:
    keys = ("case", "preset", "dtype", "device")
    return [failed_record(*(kwargs[k] for k in keys), error=error, threads=kwargs["threads"], tf32=kwargs.get("tf32", False))]


def measure_case_isolated(
    case: str, preset: str = "small", dtype: str = "float32", device: str = "cpu", repeats: int = 5,
    threads: int | None = None, seed: int = 0, peer: bool = False, forms: Iterable[str] = ("eager",),
    chunk: int | None = None, tf32: bool = False, stream_tile: int | None = None,
) -> list[Record]:
    """:func:`measure_case` in a fresh spawned process (see :func:`run_isolated`)."""
    kwargs = dict(case=case, preset=preset, dtype=dtype, device=device, repeats=repeats, threads=threads, seed=seed,
                  peer=peer, forms=tuple(forms), chunk=chunk, tf32=tf32, stream_tile=stream_tile)
    return run_isolated(measure_case, _failed, kwargs)


def run_bench(
    preset: str = "small", cases: Iterable[str] = DEFAULT_CASES, dtype: str = "float32", device: str = "cpu",
    repeats: int = 5, threads: int | None = None, seed: int = 0, isolate: bool = True, progress: bool = True,
    peer: bool = False, forms: Iterable[str] = ("eager",), chunk: int | None = None, tf32: bool = False,
    stream_tile: int | None = None,
) -> list[Record]:
    """Benchmark ``cases`` one after another (each in its own process if ``isolate``); records of
    every case, implementation and form (see :func:`measure_case`)."""
    from tqdm.auto import tqdm

    records: list[Record] = []
    bar = tqdm(list(cases), desc=f"bench {preset}", unit="case", disable=not progress)
    for case in bar:
        bar.set_postfix_str(case)
        measure = measure_case_isolated if isolate else measure_case
        records.extend(measure(case, preset, dtype, device, repeats, threads, seed, peer, tuple(forms), chunk, tf32,
                               stream_tile))
    return records


def format_table(records: list[Record]) -> str:
    """A fixed-width text table of records (ms per evaluation, rates per second, memory in MB;
    ``B/pair``: memory one evaluation adds per ordered pair; ``%peak``: achieved FLOP/s of the
    counted matmul work over this machine's dense matmul FLOP/s; ``×peer``: speed-up over the
    reference's faster form)."""
    head = ("case", "impl", "form", "atoms", "pairs", "ms/eval", "atom-steps/s", "pairs/s", "B/pair", "%peak", "×peer",
            "peak RSS MB")
    rows = [head]
    failures = []
    for r in records:
        if r["status"] != "ok":
            failures.append(f"{r['case']}: FAILED: {r['error']}")
            continue
        bpp, frac, ratio = r.get("bytes_per_pair"), r.get("fraction_of_matmul_peak"), r.get("ratio_vs_peer")
        rows.append((
            r["case"], r["implementation"], r.get("form", "eager"), f"{r['n_atoms']:,}", f"{r['n_pairs']:,}",
            f"{r['median_ms']:.1f}", f"{r['atom_steps_per_s']:,.0f}", f"{r['pairs_per_s']:.3g}",
            "-" if bpp is None else f"{bpp:,.0f}", "-" if frac is None else f"{100 * frac:.0f}",
            "-" if ratio is None else f"{ratio:.2f}", f"{r['peak_rss_mb']:,.0f}",
        ))
    widths = [max(len(row[k]) for row in rows) for k in range(len(head))]
    lines = ["  ".join(cell.rjust(w) if k > 2 else cell.ljust(w) for k, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines += failures
    ok = [r for r in records if r["status"] == "ok"]
    if records:
        r = records[0]
        tf32 = " tf32=on" if r.get("tf32") else ""
        lines.insert(0, f"preset={r['preset']} dtype={r['dtype']} device={r['device']}{tf32} threads={r['threads']} "
                        f"torch={r['torch_version']}")
    if ok and ok[0].get("matmul_peak_flops"):
        lines.append(f"dense float matmul peak here: {ok[0]['matmul_peak_flops'] / 1e9:.0f} GFLOP/s; "
                     f"counted work {ok[0]['flops_per_pair'] / 1e6:.3g} MFLOP per pair (forward + force backward)")
    if ok and ok[0].get("saved_bytes_per_pair"):
        lines.append(f"autograd keeps {ok[0]['saved_bytes_per_pair']:,.0f} B per pair for the forces (ours, exact)")
    for r in ok:
        if r.get("compile_s") is not None:
            what = "writing the AOTInductor package took" if r.get("form") == "aoti" else "torch.compile took"
            lines.append(f"{r['case']}: {what} {r['compile_s']:.1f} s (first call, not in ms/eval)")
    return "\n".join(lines)
