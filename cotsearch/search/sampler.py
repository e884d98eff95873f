"""The Optuna sampler of a search, from its space's settings. Ray-free, so that the benchmark's
simulated searches (cotsearch.bench) build exactly the sampler `tune` uses without loading Ray."""

from __future__ import annotations

import optuna

from cotsearch.search.space import SearchSpace


def sampler_name(space: SearchSpace) -> str:
    """The sampler a search of the space uses: its setting, else TPE for one objective and
    NSGA-II for several."""
    return space.search.sampler or ("tpe" if len(space.objectives) == 1 else "nsga2")


def make_sampler(space: SearchSpace, offset: int = 0) -> optuna.samplers.BaseSampler:
    """Seeded; TPE and NSGA-II read the budgets from each trial's constraints. `offset` (the
    trials already in a resumed study) moves the seed on, so a resumed search draws new
    samples instead of replaying the first ones."""
    name = sampler_name(space)
    seed = space.search.seed + offset
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, space.search.trials))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, space.search.trials // 2)))
    return optuna.samplers.RandomSampler(seed=seed)
