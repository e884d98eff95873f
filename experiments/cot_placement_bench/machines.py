"""What moves across machines, and what the 10,000-image validation reads: the search recipe's
seed-0 rows trained on a CPU (search-val10000-cpu) against the same rows on an H200
(search-val10000), beside two seeds on one machine. The README quotes its output (machines.txt).

    python experiments/cot_placement_bench/machines.py > experiments/cot_placement_bench/machines.txt
"""

from itertools import combinations
from pathlib import Path

import numpy as np

from cotsearch.bench.ranking import kendall_tau
from cotsearch.bench.table import read_table

HERE = Path(__file__).resolve().parent


def by_seed(folder: Path, column: str, seeds: int | None = None) -> tuple[list[str], np.ndarray]:
    """The specs and their `column` (specs x seeds, in seed order; the first `seeds` of each)."""
    table = read_table(folder)
    specs = sorted(table)
    return specs, np.array([[float(r[column]) for r in sorted(table[h], key=lambda r: int(r["seed"]))][:seeds]
                            for h in specs])


if __name__ == "__main__":
    cpu_specs, cpu = by_seed(HERE / "search-val10000-cpu", "val_top1")
    gpu_specs, gpu = by_seed(HERE / "search-val10000", "val_top1")
    _, gpu_test = by_seed(HERE / "search-val10000", "test_top1")
    _, old_val = by_seed(HERE / "reference", "val_top1", 1)
    _, old_test = by_seed(HERE / "reference", "test_top1", 1)
    assert cpu_specs == gpu_specs, "the two runs hold other specs"
    seeds = gpu.shape[1]
    difference = gpu[:, 0] - cpu[:, 0]
    print(f"val top-1 on 10,000 images after epoch 3, {len(gpu_specs)} specs, seed 0 on the CPU and on the H200:")
    print(f"  H200 minus CPU: mean {100 * difference.mean():+.2f} points, sd {100 * difference.std(ddof=1):.2f} points")
    print(f"  one run's seed noise on the H200 (sd within a spec, pooled over its {seeds} seeds): "
          f"{100 * np.sqrt(gpu.var(axis=1, ddof=1).mean()):.2f} points")
    print(f"  Kendall tau, CPU seed 0 against H200 seed 0: {kendall_tau(cpu[:, 0], gpu[:, 0]):+.3f}")
    pairs = [kendall_tau(gpu[:, i], gpu[:, j]) for i, j in combinations(range(seeds), 2)]
    print(f"  Kendall tau, one H200 seed against another: {np.mean(pairs):+.3f} (the mean over {len(pairs)} pairs)")
    r_new = np.mean([np.corrcoef(gpu[:, s], gpu_test[:, s])[0, 1] for s in range(seeds)])
    r_old = np.corrcoef(old_val[:, 0], old_test[:, 0])[0, 1]
    print(f"one run's val top-1 against its own test top-1, Pearson r over the specs: {r_new:.2f} (10,000 validation "
          f"images, the mean over {seeds} seeds); {r_old:.2f} (the reference table's seed 0, 2,000 validation images)")
