"""The search report's figures, each a plain matplotlib `Figure` (no pyplot state): the Pareto
panels, the best so far, the learning curves, the parameter importances and top-1 per value
of every choice."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter, PercentFormatter

from cotsearch.search.trial_types import TrialRecord, TrialState

TOP1 = PercentFormatter(1.0)
STOPPED_COLOR = "tab:red"


def _top1_axes(ax, xlabel: str) -> None:
    """Validation top-1 on the y axis, a light grid, and a legend when anything is labelled."""
    ax.yaxis.set_major_formatter(TOP1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation top-1")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)


def _note(ax, text: str) -> None:
    """A grey line in the middle of a panel that has nothing to draw."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", wrap=True, color="grey")


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another (higher top-1 and lower cost), sorted by cost."""
    front, best = [], float("-inf")
    for cost, top1 in sorted(points, key=lambda p: (p[0], -p[1])):
        if top1 > best:
            front.append((cost, top1))
            best = top1
    return front


def plot_pareto(rows: list[TrialRecord], references: list[dict], budgets: dict) -> Figure:
    """Top-1 against MACs and against latency. The y axis spans the trained trials (and the
    references); infeasible samples, never trained, lie in a grey strip below it at their cost.
    A trial whose latency was measured while another trial ran on its node is drawn hollow."""
    panels = [("macs", "MACs (M)", 1e-6, budgets.get("max_macs")),
              ("latency_ms", "latency (ms)", 1.0, budgets.get("max_latency_ms"))]
    fig = Figure(figsize=(11, 4.8))
    for ax, (key, label, scale, limit) in zip(fig.subplots(1, 2), panels):
        trained = [r for r in rows if r.trained and r.val_top1 is not None and getattr(r, key) is not None]
        infeasible = [r for r in rows if r.state == TrialState.INFEASIBLE and getattr(r, key) is not None]
        refs = [ref for ref in references if ref.get(key) is not None and ref.get("val_top1") is not None]
        top1s = [r.val_top1 for r in trained] + [ref["val_top1"] for ref in refs]
        low, high = (min(top1s), max(top1s)) if top1s else (0.0, 1.0)
        pad = max(high - low, 0.02) * 0.1
        strip = low - 2.5 * pad  # the infeasible samples' row, below every trained one
        ax.set_ylim(strip - 1.5 * pad, high + pad)
        ax.axhspan(strip - 1.5 * pad, low - pad, color="0.93", zorder=0)

        def cost(items, key=key, scale=scale):
            return [getattr(r, key) * scale for r in items]

        # a reading ASHA stopped after fewer epochs is not comparable with a finished one: drawn
        # apart (red triangles) and left off the front; hollow: latency measured beside another trial
        finished = [r for r in trained if r.state == TrialState.COMPLETE]
        stopped = [r for r in trained if r.state != TrialState.COMPLETE]
        after = "/".join(map(str, sorted({r.epochs for r in stopped if r.epochs})))
        for group, marker, color, label in ((finished, "o", "tab:blue", "fully trained"),
                                            (stopped, "v", STOPPED_COLOR,
                                             f"stopped by ASHA: reading after {after} epochs (not comparable)")):
            beside = [r for r in group if key == "latency_ms" and r.latency_shared]
            alone = [r for r in group if r not in beside]
            if alone:
                ax.scatter(cost(alone), [r.val_top1 for r in alone], marker=marker, c=color, label=label, zorder=3)
            if beside:
                ax.scatter(cost(beside), [r.val_top1 for r in beside], marker=marker, facecolors="none",
                           edgecolors=color, label=f"{label}, latency measured beside another trial", zorder=3)
        if infeasible:
            ax.scatter(cost(infeasible), [strip] * len(infeasible), marker="x", c="tab:red",
                       label=f"infeasible, not trained ({len(infeasible)})", zorder=2)
        front = pareto_front(list(zip(cost(finished), [r.val_top1 for r in finished])))
        if front:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", c="tab:blue", alpha=0.5,
                    label="Pareto front")
        for ref in refs:
            ax.scatter([ref[key] * scale], [ref["val_top1"]], marker="*", s=160, c="tab:orange", zorder=4)
            ax.annotate(ref["name"], (ref[key] * scale, ref["val_top1"]), textcoords="offset points", xytext=(5, 5))
        if limit is not None:
            ax.axvline(limit * scale, c="tab:red", ls="--", lw=1, label="budget")
        costs = cost(trained + infeasible) + [ref[key] * scale for ref in refs]
        if costs and min(costs) > 0 and max(costs) > 8 * min(costs):
            ax.set_xscale("log")  # one slow outlier must not squeeze the rest against the axis
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        if not costs:
            _note(ax, f"no {label.split(' ')[0]} measured")
        ax.set_yticks([t for t in ax.get_yticks() if low - pad <= t <= high + pad])
        _top1_axes(ax, label)
    fig.tight_layout()
    return fig


def plot_best_so_far(rows: list[TrialRecord], finished_min: dict[int, float]) -> Figure:
    """Every trained trial's top-1 and the best fully trained one so far, against the trial
    number and against the minutes since the search started (`finished_min`: when each ended)."""
    fig = Figure(figsize=(11, 4))
    trained = [r for r in rows if r.trained and r.val_top1 is not None]
    for ax, x_of, label in zip(fig.subplots(1, 2), (lambda r: r.trial, lambda r: finished_min[r.trial]),
                               ("trial number", "minutes since the search started")):
        for state, color in ((TrialState.COMPLETE, "tab:blue"), (TrialState.STOPPED, STOPPED_COLOR)):
            mine = [r for r in trained if r.state == state]
            if mine:
                ax.scatter([x_of(r) for r in mine], [r.val_top1 for r in mine], c=color, s=18, zorder=3,
                           label="fully trained" if state == TrialState.COMPLETE else "stopped early by ASHA")
        complete = sorted((r for r in trained if r.state == TrialState.COMPLETE), key=x_of)
        if complete:
            best = np.maximum.accumulate([r.val_top1 for r in complete])
            ax.step([x_of(r) for r in complete], best, where="post", c="tab:blue", label="best so far")
        else:
            _note(ax, "no trial fully trained yet")
        _top1_axes(ax, label)
    fig.tight_layout()
    return fig


def plot_learning_curves(curves: dict[int, dict[int, float]], states: dict[int, TrialState]) -> Figure:
    """Validation top-1 per epoch of every trial; where each curve ends says how the trial
    ended: trained to the last epoch, stopped by ASHA, still running, or failed."""
    fig = Figure(figsize=(11, 4.5))
    ax = fig.subplots()
    ends = {TrialState.COMPLETE: ("o", "tab:blue", "tab:blue", "trained to the last epoch"),
            TrialState.STOPPED: ("X", STOPPED_COLOR, STOPPED_COLOR, "stopped by ASHA"),
            TrialState.RUNNING: ("o", "none", "tab:blue", "still running"),
            None: ("s", "0.4", "0.4", "failed or interrupted")}  # None: any other end
    shown = set()
    for number, curve in sorted(curves.items()):
        end = states[number] if states[number] in ends else None
        marker, face, edge, _ = ends[end]
        epochs = sorted(curve)
        ax.plot(epochs, [curve[e] for e in epochs], c=edge, alpha=0.6, lw=1)
        ax.scatter([epochs[-1]], [curve[epochs[-1]]], marker=marker, facecolors=face, edgecolors=edge,
                   s=45 if end == TrialState.STOPPED else 22, zorder=3)
        shown.add(end)
    if curves:
        ax.legend(handles=[Line2D([], [], ls="", marker=m, markerfacecolor=f, markeredgecolor=e, label=text)
                           for end, (m, f, e, text) in ends.items() if end in shown], fontsize=8)
        ax.set_xlim(0.5, max(max(c) for c in curves.values()) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        _note(ax, "no epoch reported yet")
    _top1_axes(ax, "epoch")
    fig.tight_layout()
    return fig


def plot_importances(importances: dict[str, float] | None, note: str) -> Figure:
    """Horizontal bars, most important on top; `note` alone where none could be computed."""
    fig = Figure(figsize=(8, 0.8 + 0.45 * max(3, len(importances or {}))))
    ax = fig.subplots()
    if importances:
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color="tab:blue")
        ax.set_xlabel("importance for validation top-1 (PED-ANOVA)")
    else:
        ax.set_axis_off()
        _note(ax, note)
    fig.tight_layout()
    return fig


def plot_choices(params: dict[str, list[str] | None], rows: list[TrialRecord], labels: dict[str, dict]) -> Figure:
    """Top-1 of every trained trial per value of each parameter: a box and the trials as points
    (red: stopped early by ASHA). `params` maps each parameter to its choices (None for a
    range, drawn as a scatter); `labels` gives a choice's text."""
    trained = [r for r in rows if r.trained and r.val_top1 is not None]
    cols = min(3, len(params))
    nrows = -(-len(params) // cols)
    fig = Figure(figsize=(3.6 * cols, 3.4 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    rng = np.random.default_rng(0)  # the same jitter in every report of a run
    for ax, (name, choices) in zip(axes, params.items()):
        mine = [r for r in trained if name in r.sampled]
        colors = [STOPPED_COLOR if r.state == TrialState.STOPPED else "tab:blue" for r in mine]
        if choices is None:
            ax.scatter([r.sampled[name] for r in mine], [r.val_top1 for r in mine], c=colors, s=18)
        else:
            groups = [[r.val_top1 for r in mine if r.sampled[name] == c] for c in choices]
            filled = [i for i, g in enumerate(groups) if g]
            if filled:
                ax.boxplot([groups[i] for i in filled], positions=filled, widths=0.5, showfliers=False,
                           medianprops={"color": "0.3"})
            x = [choices.index(r.sampled[name]) + rng.uniform(-0.15, 0.15) for r in mine]
            ax.scatter(x, [r.val_top1 for r in mine], c=colors, s=18, zorder=3)
            ax.set_xticks(range(len(choices)), [f"{labels[name][c]}\n(n={len(g)})" for c, g in zip(choices, groups)],
                          fontsize=8)
            ax.set_xlim(-0.6, len(choices) - 0.4)
        ax.set_title(name, fontsize=10)
        ax.yaxis.set_major_formatter(TOP1)
        ax.grid(alpha=0.3, axis="y")
    for ax in axes[len(params):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig
