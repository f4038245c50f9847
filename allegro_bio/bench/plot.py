"""Plot of benchmark records: time per atom against system size, one line per implementation/form."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_scaling(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Write a log-x plot of µs per atom-step (= 1e6 / atom_steps_per_s) against atoms to ``path``.

    Flat lines mean cost linear in atoms. Failed records are skipped. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    lines: dict[tuple[str, str], list[tuple[int, float, str]]] = {}
    for r in records:
        if r.get("status") == "ok":
            key = (r["implementation"], r.get("form", "eager"))
            lines.setdefault(key, []).append((r["n_atoms"], 1e6 / r["atom_steps_per_s"], r["case"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (impl, form), pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{impl} ({form})")
        for n, us, case in pts:
            ax.annotate(case, (n, us), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.set_xlabel("atoms")
    ax.set_ylabel("µs per atom per energy+forces evaluation")
    ax.set_ylim(bottom=0)
    ok = [r for r in records if r.get("status") == "ok"]
    if ok:
        r = ok[0]
        ax.set_title(f"preset {r['preset']}, {r['dtype']}, {r['device']}, {r['threads']} threads", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
