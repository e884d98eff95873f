"""Is NASWOT pre-screening's gain on this table a fact of the specs, or of the noise in the truth
it is judged by? The simulated searches choose from the search table alone, never reading the
reference, so the same chosen specs can be judged by each reference seed on its own: two
independent truths. A gain that holds under both is not their noise. Prints, at 16, 32 and 64
trainings (200 runs each, as analysis.md), the mean reference top-1 of the chosen specs of random
sampling, TPE with confirmation and TPE pre-screened by NASWOT with confirmation (the space's
default), judged by seed 0's run alone and by seed 1's. From the repository root:

    python experiments/cot_design_bench/prescreen_check.py > experiments/cot_design_bench/prescreen-check.txt
"""

from pathlib import Path

import numpy as np
import optuna

from cotsearch.bench import simulate
from cotsearch.bench.table import Bench, as_number, read_space
from cotsearch.search.space import Confirm, Prescreen

HERE = Path(__file__).parent
RUNS = 200

if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bench = Bench.load(HERE / "search", HERE / "reference")
    space = read_space(HERE / "search")
    confirm = space.search.confirm or Confirm()
    screen = space.search.prescreen or Prescreen(proxy="naswot")
    by_seed = {seed: np.array([next(as_number(r["test_top1"]) for r in bench.reference[h] if int(r["seed"]) == seed)
                               for h in bench.specs]) for seed in (0, 1)}
    print(f"{len(bench.specs)} specs; the chosen spec's reference test top-1 judged by one reference seed alone, "
          f"mean over {RUNS} simulated runs reading val_top1 (points)")
    for budget in (16, 32, 64):
        chosen = {
            "random": simulate.simulate(bench, space, "random", budget, RUNS)[:, -1],
            "tpe + confirmation": np.array([r.chosen for r in simulate.simulate_confirmed(
                bench, space, "tpe", budget, RUNS, confirm, {})]),
            f"tpe, pre-screened by {screen.proxy} + confirmation": np.array([r.chosen for r in simulate.simulate_confirmed(
                bench, space, "tpe", budget, RUNS, confirm, {}, screen=screen)]),
        }
        screened = list(chosen.values())[-1]
        for seed, top1 in by_seed.items():
            means = ", ".join(f"{name} {100 * top1[picked].mean():.2f}" for name, picked in chosen.items())
            gain = 100 * (top1[screened].mean() - top1[chosen["random"]].mean())
            print(f"{budget} trainings, seed {seed} alone: {means}; pre-screened - random {gain:+.2f} "
                  f"({len(set(screened.tolist()))} distinct specs chosen by the pre-screened search)", flush=True)
