"""pareto.png: validation top-1 against MACs and against latency, feasible and infeasible
trials marked, the Pareto front drawn, and the reference presets where they were trained."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from cotsearch.files import save_figure
from cotsearch.search.records import TrialRecord


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another (higher top-1 and lower cost), sorted by cost."""
    front, best = [], float("-inf")
    for cost, top1 in sorted(points, key=lambda p: (p[0], -p[1])):
        if top1 > best:
            front.append((cost, top1))
            best = top1
    return front


def plot_pareto(rows: list[TrialRecord], references: list[dict], path: Path, budgets: dict) -> None:
    axes_spec = [("macs", "MACs (M)", 1e-6, budgets.get("max_macs")), ("latency_ms", "latency (ms)", 1.0, budgets.get("max_latency_ms"))]
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    for ax, (key, label, scale, limit) in zip(axes, axes_spec):
        trained = [r for r in rows if r.trained and getattr(r, key) is not None]
        infeasible = [r for r in rows if r.state == "infeasible" and getattr(r, key) is not None]
        ax.scatter([getattr(r, key) * scale for r in trained], [r.val_top1 for r in trained], c="tab:blue",
                   label="trained", zorder=3)
        if infeasible:
            ax.scatter([getattr(r, key) * scale for r in infeasible], [0.0] * len(infeasible), marker="x",
                       c="tab:red", label="infeasible (not trained)", zorder=2)
        front = pareto_front([(getattr(r, key) * scale, r.val_top1) for r in trained])
        if front:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", c="tab:blue", alpha=0.5, label="Pareto front")
        for ref in references:
            if ref.get(key) is not None and ref.get("val_top1") is not None:
                ax.scatter([ref[key] * scale], [ref["val_top1"]], marker="*", s=160, c="tab:orange", zorder=4)
                ax.annotate(ref["name"], (ref[key] * scale, ref["val_top1"]), textcoords="offset points", xytext=(5, 5))
        if limit is not None:
            ax.axvline(limit * scale, c="tab:red", ls="--", lw=1, label="budget")
        if not trained and not infeasible:
            ax.text(0.5, 0.5, f"no {label.split(' ')[0]} measured", transform=ax.transAxes, ha="center", color="grey")
        ax.set_xlabel(label)
        ax.set_ylabel("validation top-1")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
