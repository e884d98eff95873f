"""Does a reference recipe agree with itself? Reads a pilot sweep (`cotsearch sweep ... --seeds 2`)
and prints, over its specs, the Kendall tau of seed 0's test top-1 against seed 1's (the noise
ceiling of any ranking by that recipe; with 2k seeds, of the mean of the first k against the
mean of the others), a bootstrap 95% interval over specs, one run's seed
noise and the spread of the specs' means; and, from those two, how many seeds a reading would
have to average for two readings to agree at the target tau (if the specs' own differences and
the noise are normal, Pearson's r between two k-seed means is own^2 / (own^2 + noise^2 / k),
and Kendall's tau is 2/pi asin(r)); and, by the same model, the measured tau stepped up to two
means of all n seeds (Spearman-Brown: what the analysis's truth, the mean of every seed, reaches)
and the most a predictor reaches against such a mean.
Every spec's first n seeds are read, n the fewest any spec has; with more than 2, also the mean
tau of one run against another over every pair of seeds.
Given a second pilot of the same specs (another machine, say), also the tau of one pilot's
means against the other's. With `--metric val_top1`, the first folder is a search-recipe sweep
read as a search reads it, and the second a reference sweep of some of its specs (the pilot's 20
are the first 20 of the table's draw): how well the search's reading ranks like the reference.

    python experiments/cot_design_bench/calibrate.py experiments/cot_design_bench/pilot-e8-n16000
    python experiments/cot_design_bench/calibrate.py experiments/cot_design_bench/pilot-e8-n16000-gpu \
        experiments/cot_design_bench/pilot-e8-n16000
    python experiments/cot_design_bench/calibrate.py experiments/cot_design_bench/search \
        experiments/cot_design_bench/pilot-e8-n16000 --metric val_top1
"""

import argparse
import math
from pathlib import Path

import numpy as np

from cotsearch.bench.ranking import kendall_tau, normal_rank_correlations, predictor_ceiling, spearman_brown
from cotsearch.bench.table import pair_label, read_space, read_table


def seed_noise(top1: np.ndarray) -> float:
    """One run's seed sd from a specs x seeds table, after taking out each seed's offset (shared by
    every spec, so it moves no ranking): the residual of a two-way layout without interaction."""
    resid = top1 - top1.mean(axis=1, keepdims=True) - top1.mean(axis=0, keepdims=True) + top1.mean()
    return float(np.sqrt((resid ** 2).sum() / ((top1.shape[0] - 1) * (top1.shape[1] - 1))))


def seed_table(folder: Path, seeds: int | None = None,
               metric: str = "test_top1") -> tuple[list[str], np.ndarray, list[float]]:
    """The space's specs with at least `seeds` seeds (None: 2; scaled presets left out, as `cotsearch
    analyze` ranks them apart), their `metric` (specs x n seeds: each spec's first n, n = `seeds`
    or the fewest any of them has), and their MACs."""
    table = read_table(folder)
    runs = {h: sorted(rows, key=lambda r: int(r["seed"])) for h, rows in table.items()
            if len(rows) >= (seeds or 2) and not rows[0].get("named")}
    n = seeds or min(len(r) for r in runs.values())
    top1 = np.array([[float(r[metric]) for r in rows[:n]] for rows in runs.values()])
    return list(runs), top1, [float(rows[0]["macs"]) for rows in runs.values()]


def tau_with_ci(a: np.ndarray, b: np.ndarray, boot: int = 2000) -> tuple[float, list[float]]:
    """Kendall tau and its 95% bootstrap interval over specs."""
    rng = np.random.default_rng(0)
    taus = [kendall_tau(a[i], b[i]) for i in (rng.integers(len(a), size=len(a)) for _ in range(boot))
            if len(set(a[i])) > 1 and len(set(b[i])) > 1]
    return kendall_tau(a, b), np.percentile(taus, [2.5, 97.5]).tolist()


def calibrate(folder: Path, seeds: int | None = None, metric: str = "test_top1") -> dict:
    """With n seeds a spec, a reading is the mean of k = n // 2: seeds 0..k-1 against seeds k..2k-1."""
    _, top1, macs = seed_table(folder, seeds, metric)
    n = top1.shape[1]
    k = n // 2
    tau, ci = tau_with_ci(top1[:, :k].mean(axis=1), top1[:, k:2 * k].mean(axis=1))
    pairs = [kendall_tau(top1[:, i], top1[:, j]) for i in range(n) for j in range(i + 1, n)]
    return {"specs": len(top1), "seeds_per_reading": k, "seeds": n, "tau": tau, "tau_ci95": ci,
            "pair_tau_mean": float(np.mean(pairs)), "pairs": len(pairs),
            "seed_sd": seed_noise(top1),
            "spread_sd": float(np.std(top1.mean(axis=1), ddof=1)),
            "macs": [min(macs), max(macs)]}


def across(folder: Path, other: Path, seeds: int | None = None, metric: str = "test_top1") -> dict:
    """One pilot's n-seed means of `metric` against another's of test top-1 (what a reference is
    judged by), over the specs both hold (`seeds` as seed_table's; for another metric than test
    top-1, the other is a reference and is read with all its seeds)."""
    specs, top1, _ = seed_table(folder, seeds, metric)
    other_specs, other_top1, _ = seed_table(other, seeds if metric == "test_top1" else None)
    means = dict(zip(specs, top1.mean(axis=1)))
    other_means = dict(zip(other_specs, other_top1.mean(axis=1)))
    shared = [h for h in specs if h in other_means]
    a, b = np.array([means[h] for h in shared]), np.array([other_means[h] for h in shared])
    tau, ci = tau_with_ci(a, b)
    return {"specs": len(shared), "seeds": top1.shape[1], "other_seeds": other_top1.shape[1], "tau": tau, "tau_ci95": ci,
            "offset": float((a - b).mean()), "same_recipe": metric == "test_top1" and recipe(folder) == recipe(other)}


def recipe(folder: Path) -> dict:
    """A sweep's training recipe as its space.json wrote it, less what changes no result."""
    return read_space(folder).train.model_dump(exclude={"device", "eval_batch_size"})


TARGET = 0.6


def predicted_tau(own_sd: float, seed_sd: float, seeds: int, other_seeds: int | None = None) -> float:
    """Kendall tau of two independent means of `seeds` runs and `other_seeds` (default: as many)
    runs, for normal spec effects and noise: Pearson r = own^2 / sqrt((own^2 + noise^2 / k1)
    (own^2 + noise^2 / k2)), Kendall tau 2/pi asin r."""
    k1, k2 = seeds, other_seeds or seeds
    r = own_sd ** 2 / math.sqrt((own_sd ** 2 + seed_sd ** 2 / k1) * (own_sd ** 2 + seed_sd ** 2 / k2))
    return normal_rank_correlations(r)[0]


def seeds_needed(own_sd: float, seed_sd: float, target: float = TARGET, most: int = 64) -> int | None:
    return next((k for k in range(1, most + 1) if predicted_tau(own_sd, seed_sd, k) >= target), None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pilot", type=Path)
    parser.add_argument("other", type=Path, nargs="?", help="a second pilot of the same specs (or a reference "
                                                            "sweep of some of them), read by its test top-1")
    parser.add_argument("--seeds", type=int, help="read the specs with this many seeds or more, their first this "
                                                   "many (default: the specs with 2 or more, as many as the fewest has)")
    parser.add_argument("--metric", choices=["test_top1", "val_top1"], default="test_top1",
                        help="the reading compared (val_top1: what a search reads)")
    args = parser.parse_args()
    result = calibrate(args.pilot, args.seeds, args.metric)
    k = result["seeds_per_reading"]
    print(f"{args.pilot}: {result['specs']} specs with {result['seeds']} seeds; {args.metric}, {pair_label(k)}: "
          f"Kendall tau "
          f"{result['tau']:+.3f} (95% bootstrap interval over specs {result['tau_ci95'][0]:+.2f} to "
          f"{result['tau_ci95'][1]:+.2f}); one run's seed noise {100 * result['seed_sd']:.2f} points, the specs' "
          f"means spread by {100 * result['spread_sd']:.2f} points; MACs {result['macs'][0] / 1e6:.1f} M to "
          f"{result['macs'][1] / 1e6:.1f} M")
    if result["tau"] > 0:  # what the mean of all the seeds (the analysis's truth) would reach, from the measured tau
        whole = spearman_brown(result["tau"], result["seeds"] / k)[0]
        print(f"stepped up from the measured tau (normal model, Spearman-Brown): two means of {result['seeds']} seeds "
              f"would agree at Kendall tau {whole:+.3f}; no predictor would rank the specs against such a mean better "
              f"than {predictor_ceiling(whole)[0]:+.3f}, on average")
    if result["pairs"] > 1:
        print(f"one run against another, over the {result['pairs']} pairs of seeds: mean Kendall tau "
              f"{result['pair_tau_mean']:+.3f}")
    # The means of n seeds spread by own^2 + noise^2 / n.
    own = math.sqrt(max(result["spread_sd"] ** 2 - result["seed_sd"] ** 2 / result["seeds"], 0.0))
    needed = seeds_needed(own, result["seed_sd"])
    print(f"the specs' own spread, less the noise in those means: {100 * own:.2f} points; predicted tau of one run "
          f"against another {predicted_tau(own, result['seed_sd'], 1):+.2f}"
          + (f", of a {k}-seed mean against another {predicted_tau(own, result['seed_sd'], k):+.2f}" if k > 1 else "")
          + f" (measured {result['tau']:+.2f}), of two {result['seeds']}-seed means "
          + f"{predicted_tau(own, result['seed_sd'], result['seeds']):+.2f}; "
          + (f"a reading would need the mean of {needed} seeds for tau {TARGET}" if needed else
             f"no mean of up to 64 seeds reaches tau {TARGET}"))
    if args.other:
        x = across(args.pilot, args.other, args.seeds, args.metric)
        print(f"the mean of {x['seeds']} seeds here against the mean of {x['other_seeds']} in {args.other} (its "
              f"test_top1), over "
              f"{x['specs']} specs: Kendall tau {x['tau']:+.3f} (95% bootstrap interval {x['tau_ci95'][0]:+.2f} to "
              f"{x['tau_ci95'][1]:+.2f}"
              + (f"; predicted from this pilot's spread and noise "
                 f"{predicted_tau(own, result['seed_sd'], x['seeds'], x['other_seeds']):+.2f}" if x["same_recipe"] else
                 "; another recipe, so no prediction")
              + ")" + (f"; top-1 here {100 * x['offset']:+.2f} points on average" if args.metric == "test_top1" else ""))
