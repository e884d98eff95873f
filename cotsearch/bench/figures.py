"""The analysis's figures: the simulated searches' curves and each predictor against the reference."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cotsearch.bench.ranking import kendall_tau
from cotsearch.bench.simulate import TOP_FRACTION, Outcome, half_width
from cotsearch.bench.table import Bench


def plot_curves(outcomes: dict[str, list[Outcome]], truth: np.ndarray, named: dict[str, float]) -> Figure:
    """Per reading, a row: reference top-1 of the chosen spec (95% CI of the mean), regret and
    how often it is in the top 5%, against the trainings spent; a search with confirmation is
    one point at its whole budget."""
    fig = Figure(figsize=(16, 4.2 * len(outcomes)))
    grid = fig.subplots(len(outcomes), 3, squeeze=False)
    top = np.sort(truth)[::-1][math.ceil(TOP_FRACTION * len(truth)) - 1]
    for axes, (reading, found) in zip(grid, outcomes.items()):
        for i, outcome in enumerate(found):
            style = {"color": f"C{i % 10}", "label": outcome.name}
            per_run = (outcome.top1, truth.max() - outcome.top1, (outcome.top1 >= top).astype(float))
            if outcome.confirmed is not None:
                at = sum(outcome.trainings)
                for ax, values in zip(axes, per_run):
                    ax.errorbar([at], [values.mean()], yerr=[half_width(values[:, -1])], fmt="D", ms=7, capsize=3, **style)
                continue
            trials = np.arange(1, outcome.top1.shape[1] + 1)
            style["ls"] = "--" if "pre-screened" in outcome.name else "-"
            for ax, values in zip(axes, per_run):
                ax.plot(trials, values.mean(0), **style)
            half = np.array([half_width(column) for column in outcome.top1.T])
            axes[0].fill_between(trials, outcome.top1.mean(0) - half, outcome.top1.mean(0) + half,
                                 color=style["color"], alpha=0.12)
        for label, value in named.items():
            axes[0].axhline(value, ls=":", lw=1, c="grey")
            axes[0].annotate(label, (1, value), fontsize=7, color="grey", va="bottom")
        titles = ("reference top-1 of the chosen spec", "regret to the best spec",
                  f"chosen spec in the top {TOP_FRACTION:.0%}")
        for ax, title in zip(axes, titles):
            ax.set_title(f"{title}\n(reading {reading})", fontsize=10)
            ax.set_xlabel("trainings (trials, and confirmation runs)")
            ax.grid(alpha=0.3)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*grid[0][0].get_legend_handles_labels(), fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    return fig


def plot_predictors(bench: Bench, predictors: dict[str, np.ndarray]) -> Figure:
    """Each predictor against the reference top-1, one panel each."""
    truth = bench.truth()
    cols = 3
    rows = -(-len(predictors) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (label, values) in zip(axes, predictors.items()):
        ax.scatter(values, truth, s=12)
        ok = np.isfinite(values)
        ax.set_title(f"{label}: tau {kendall_tau(values[ok], truth[ok]):+.2f}", fontsize=9)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel("reference test top-1")
        ax.grid(alpha=0.3)
        if values[ok].min() > 0 and values[ok].max() > 8 * values[ok].min():
            ax.set_xscale("log")  # synflow spans orders of magnitude
    for ax in axes[len(predictors):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
