"""Two objectives, top-1 (maximized) and MACs (minimized): how much of the table's true front a
simulated search finds, as the hypervolume of what it found against that of the true front,
both judged by the reference recipe, from one fixed reference point (HW-NAS-Bench's measure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cotsearch.bench.simulate import Lookup, optuna_order, search_order
from cotsearch.bench.table import Bench
from cotsearch.search.sampler import make_sampler
from cotsearch.search.space import SearchSpace


def hypervolume(top1: np.ndarray, macs: np.ndarray, reference: tuple[float, float]) -> float:
    """The area that the points (top-1, MACs) dominate above the reference point's top-1 and
    below its MACs. Written here because two objectives need only a sort and a sum (the area is
    a staircase), while Optuna's hypervolume is private and pymoo a large dependency for it."""
    ref_top1, ref_macs = reference
    keep = (np.asarray(top1) > ref_top1) & (np.asarray(macs) < ref_macs)
    area, best = 0.0, ref_top1
    for m, t in sorted(zip(np.asarray(macs)[keep], np.asarray(top1)[keep]), key=lambda p: (p[0], -p[1])):
        if t > best:  # on the front: better than every cheaper point
            area += (t - best) * (ref_macs - m)
            best = t
    return area


def reference_point(bench: Bench, space: SearchSpace | None) -> tuple[float, float]:
    """Fixed per table: the lowest reference top-1 of its specs, and the space's MACs budget
    (else the table's largest MACs)."""
    macs = np.array([float(bench.search[h][0]["macs"]) for h in bench.specs])
    budget = space.budgets.max_macs if space is not None and space.budgets.max_macs else None
    return float(bench.truth().min()), float(budget or macs.max())


@dataclass
class FrontOutcome:
    strategy: str
    ratios: np.ndarray  # per run: hypervolume of the trained specs (reference top-1) / the true front's
    stand_ins: int  # proposals the table lacked, read as their nearest table spec (cotsearch.bench.simulate.Lookup)

    def summary(self) -> tuple[float, float]:
        """Mean ratio and the half-width of its 95% interval over runs."""
        r = self.ratios
        return float(r.mean()), 1.96 * float(r.std(ddof=1)) / math.sqrt(len(r)) if len(r) > 1 else float("nan")


def simulate_fronts(bench: Bench, space: SearchSpace, strategy: str, budget: int, runs: int,
                    reading: str = "val_top1") -> FrontOutcome:
    """`runs` seeded searches for both objectives (the reading a search sees, and MACs), each
    training `budget` specs; per run, the hypervolume of what it trained, judged by the
    reference top-1, over the hypervolume of all the table's specs. Every trained spec counts,
    not only those the search's own readings put on its front: the user picks from them later
    with better measurements."""
    truth = bench.truth()
    macs = np.array([float(bench.search[h][0]["macs"]) for h in bench.specs])
    point = reference_point(bench, space)
    whole = hypervolume(truth, macs, point)
    ratios, stand_ins = [], 0
    for run in range(runs):
        lookup = Lookup(bench, space, np.random.default_rng(run), reading)
        if strategy == "random":
            order = search_order(lookup, "random", budget, run)
        else:
            settings = space.search.model_copy(update={"sampler": strategy, "seed": run, "trials": budget})
            sampler = make_sampler(space.model_copy(update={"search": settings}))  # TPE and NSGA-II take two objectives
            order = optuna_order(lookup, sampler, budget, with_macs=True)
        found = [i for i, _ in order]
        ratios.append(hypervolume(truth[found], macs[found], point) / whole if whole > 0 else float("nan"))
        stand_ins += lookup.stand_ins
    return FrontOutcome(strategy, np.array(ratios), stand_ins)
