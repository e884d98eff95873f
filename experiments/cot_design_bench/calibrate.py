"""Does a reference recipe agree with itself? Reads a pilot sweep (`cotsearch sweep ... --seeds 2`)
and prints, over its specs, the Kendall tau of seed 0's test top-1 against seed 1's (the noise
ceiling of any ranking by that recipe; with 2k seeds, of the mean of the first k against the
mean of the others), a bootstrap 95% interval over specs, one run's seed
noise and the spread of the specs' means; and, from those two, how many seeds a reading would
have to average for two readings to agree at the target tau (if the specs' own differences and
the noise are normal, Pearson's r between two k-seed means is own^2 / (own^2 + noise^2 / k),
and Kendall's tau is 2/pi asin(r)).

    python experiments/cot_design_bench/calibrate.py experiments/cot_design_bench/pilot-e8-n16000
"""

import math
import sys
from pathlib import Path

import numpy as np

from cotsearch.bench.ranking import kendall_tau
from cotsearch.bench.table import read_table


def seed_noise(top1: np.ndarray) -> float:
    """One run's seed sd from a specs x seeds table, after taking out each seed's offset (shared by
    every spec, so it moves no ranking): the residual of a two-way layout without interaction."""
    resid = top1 - top1.mean(axis=1, keepdims=True) - top1.mean(axis=0, keepdims=True) + top1.mean()
    return float(np.sqrt((resid ** 2).sum() / ((top1.shape[0] - 1) * (top1.shape[1] - 1))))


def calibrate(folder: Path, boot: int = 2000) -> dict:
    """With 2k seeds a spec, a reading is the mean of k: seeds 0..k-1 against seeds k..2k-1."""
    table = read_table(folder)
    runs = [sorted(rows, key=lambda r: int(r["seed"])) for rows in table.values() if len(rows) >= 2]
    k = min(len(r) for r in runs) // 2
    top1 = np.array([[float(r["test_top1"]) for r in rows[:2 * k]] for rows in runs])
    a, b = top1[:, :k].mean(axis=1), top1[:, k:].mean(axis=1)
    rng = np.random.default_rng(0)
    taus = [kendall_tau(a[i], b[i]) for i in (rng.integers(len(a), size=len(a)) for _ in range(boot))
            if len(set(a[i])) > 1 and len(set(b[i])) > 1]
    return {"specs": len(a), "seeds_per_reading": k, "seeds": 2 * k, "tau": kendall_tau(a, b),
            "tau_ci95": np.percentile(taus, [2.5, 97.5]).tolist(),
            "seed_sd": seed_noise(top1),
            "spread_sd": float(np.std(top1.mean(axis=1), ddof=1)),
            "macs": [float(min(r[0]["macs"] for r in table.values())), float(max(r[0]["macs"] for r in table.values()))]}


TARGET = 0.6


def predicted_tau(own_sd: float, seed_sd: float, seeds: int) -> float:
    """Kendall tau of two independent means of `seeds` runs each, for normal spec effects and noise."""
    r = own_sd ** 2 / (own_sd ** 2 + seed_sd ** 2 / seeds)
    return 2 / math.pi * math.asin(r)


def seeds_needed(own_sd: float, seed_sd: float, target: float = TARGET, most: int = 64) -> int | None:
    return next((k for k in range(1, most + 1) if predicted_tau(own_sd, seed_sd, k) >= target), None)


if __name__ == "__main__":
    result = calibrate(Path(sys.argv[1]))
    k = result["seeds_per_reading"]
    pair = "seed 0 against seed 1" if k == 1 else f"the mean of seeds 0-{k - 1} against that of seeds {k}-{2 * k - 1}"
    print(f"{sys.argv[1]}: {result['specs']} specs with {result['seeds']} seeds; {pair}: Kendall tau "
          f"{result['tau']:+.3f} (95% bootstrap interval over specs {result['tau_ci95'][0]:+.2f} to "
          f"{result['tau_ci95'][1]:+.2f}); one run's seed noise {100 * result['seed_sd']:.2f} points, the specs' "
          f"means spread by {100 * result['spread_sd']:.2f} points; MACs {result['macs'][0] / 1e6:.1f} M to "
          f"{result['macs'][1] / 1e6:.1f} M")
    # The means of n seeds spread by own^2 + noise^2 / n.
    own = math.sqrt(max(result["spread_sd"] ** 2 - result["seed_sd"] ** 2 / result["seeds"], 0.0))
    needed = seeds_needed(own, result["seed_sd"])
    print(f"the specs' own spread, less the noise in those means: {100 * own:.2f} points; predicted tau of one run "
          f"against another {predicted_tau(own, result['seed_sd'], 1):+.2f}"
          + (f", of a {k}-seed mean against another {predicted_tau(own, result['seed_sd'], k):+.2f}" if k > 1 else "")
          + f" (measured {result['tau']:+.2f}); "
          + (f"a reading would need the mean of {needed} seeds for tau {TARGET}" if needed else
             f"no mean of up to 64 seeds reaches tau {TARGET}"))
