"""Process-wide settings that make repeated model evaluations (MD steps) cheap on CPU.

Every energy+forces evaluation allocates the same large activation arrays (tens to hundreds of
MB) and frees them again. With glibc's default malloc, arrays above 32 MB are ``mmap``-ed and
handed back to the kernel on free, so each step page-faults and zero-fills them anew. On the
2-core development machine that cost more than the network itself: the small model on 1,536
waters took 400-1,900 ms per evaluation (median of 8 ~ 810 ms) with the default malloc and a
steady 245 ms once freed memory was kept (``python docs/bench_malloc.py``).

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds so freed arrays stay in the
heap and are reused by the next step. Memory is then not returned to the system while the
process lives (its resident size stays at its peak), which is what an MD process wants.
Set ``ALLEGRO_BIO_KEEP_FREED_MEMORY=0`` to leave malloc alone. It is a no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import resource
from typing import Any

log = logging.getLogger(__name__)

#: Environment variable that disables :func:`keep_freed_memory` when set to ``0``.
ENV_SWITCH = "ALLEGRO_BIO_KEEP_FREED_MEMORY"

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: Allocations up to this size come from the heap (bytes); glibc's default is 128 kB, dynamic to 32 MB.
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap kept before trimming (bytes).
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
#: Extra heap requested from the kernel each time it grows (bytes).
TOP_PAD = 256 << 20

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse instead of returning it to the kernel.

    Idempotent; returns True when the setting is in effect. Called by ``AllegroCalculator``,
    ``AllegroForce``, ``allegro_bio.md.run`` and the benchmarks.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        log.info("%s=0: malloc left at its defaults", ENV_SWITCH)
        return False
    mallopt = _mallopt()
    if mallopt is None:  # not glibc (macOS, musl without mallopt): nothing to do
        return False
    ok = all(mallopt(opt, value) == 1 for opt, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD),
    ))
    _applied = ok
    if ok:
        log.info("malloc keeps freed memory (mmap threshold %d MB): repeated evaluations reuse it", MMAP_THRESHOLD >> 20)
    return ok


def mmap_large_allocations(threshold: int = 128 << 10) -> bool:
    """For measuring memory: serve every allocation above ``threshold`` bytes by ``mmap`` (and
    switch off glibc's dynamic threshold, which otherwise rises to 32 MB after the first frees),
    so the resident size follows the live arrays and a peak-RSS increase is a true peak.

    Only before :func:`keep_freed_memory` (which it would undo); returns False afterwards or off glibc.
    """
    mallopt = _mallopt()
    return not _applied and mallopt is not None and mallopt(_M_MMAP_THRESHOLD, int(threshold)) == 1


def _mallopt() -> Any:
    """glibc's ``mallopt(int, int) -> int``, or None where the C library has none."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def minor_page_faults() -> int:
    """Minor page faults of this process so far (a first touch of fresh memory costs one per 4 kB page)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def set_tf32(allow: bool) -> bool:
    """Let (``allow``) or forbid float32 matrix products and convolutions on CUDA to use TF32
    tensor cores (10-bit mantissa inputs, float32 sums; ~2-8x faster matmuls on Ampere and later).

    Process-wide, as in PyTorch (``torch.backends.cuda.matmul.allow_tf32``,
    ``torch.backends.cudnn.allow_tf32``); no effect on CPU work. :func:`allegro_bio.load`'s callers
    (``as_model``: ASE, OpenMM, MD, evaluation) apply a model file's ``allow_tf32`` metadata here,
    so a model runs as it was validated. Returns the previous matmul setting.
    """
    import torch

    before = bool(torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(allow)
    torch.backends.cudnn.allow_tf32 = bool(allow)
    if before != bool(allow):
        log.info("TF32 for float32 CUDA matmuls %s", "allowed" if allow else "off")
    return before
