"""Does a reference recipe agree with itself? Reads a pilot sweep (`cotsearch sweep ... --seeds 2`)
and prints, over its specs, the Kendall tau of seed 0's test top-1 against seed 1's (the noise
ceiling of any ranking by that recipe), a bootstrap 95% interval over specs, one run's seed
noise and the spread of the specs' means.

    python experiments/cot_design_bench/calibrate.py experiments/cot_design_bench/pilot-e6-n8000
"""

import sys
from pathlib import Path

import numpy as np

from cotsearch.bench.analysis import kendall_tau, read_table


def calibrate(folder: Path, boot: int = 2000) -> dict:
    table = read_table(folder)
    pairs = [sorted(rows, key=lambda r: int(r["seed"]))[:2] for rows in table.values() if len(rows) >= 2]
    a = np.array([float(x["test_top1"]) for x, _ in pairs])
    b = np.array([float(y["test_top1"]) for _, y in pairs])
    rng = np.random.default_rng(0)
    taus = [kendall_tau(a[i], b[i]) for i in (rng.integers(len(a), size=len(a)) for _ in range(boot))
            if len(set(a[i])) > 1 and len(set(b[i])) > 1]
    return {"specs": len(a), "tau": kendall_tau(a, b), "tau_ci95": np.percentile(taus, [2.5, 97.5]).tolist(),
            "seed_sd": float(np.std(a - b, ddof=1) / np.sqrt(2)), "spread_sd": float(np.std((a + b) / 2, ddof=1)),
            "macs": [float(min(r[0]["macs"] for r in table.values())), float(max(r[0]["macs"] for r in table.values()))]}


if __name__ == "__main__":
    result = calibrate(Path(sys.argv[1]))
    print(f"{sys.argv[1]}: {result['specs']} specs with two seeds; seed 0 against seed 1: Kendall tau "
          f"{result['tau']:+.3f} (95% bootstrap interval over specs {result['tau_ci95'][0]:+.2f} to "
          f"{result['tau_ci95'][1]:+.2f}); one run's seed noise {100 * result['seed_sd']:.2f} points, the specs' "
          f"means spread by {100 * result['spread_sd']:.2f} points; MACs {result['macs'][0] / 1e6:.1f} M to "
          f"{result['macs'][1] / 1e6:.1f} M")
