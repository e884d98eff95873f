"""Does the search recipe rank the specs like the reference, before the reference table exists?
The pilots trained the table's first 20 specs (the same draw) with the reference recipe, so the
search half can be read against them; and against seed 0 of the reference half as far as it goes. Prints, for each pilot: Kendall tau of the search's
2-seed means of validation top-1 (after each epoch) against the pilot's means of test top-1,
with 95% bootstrap intervals over specs; the choices whose effect the two recipes disagree on
(a difference of means with a 95% normal interval over specs); the tau within each stem type;
where the scaled presets rank under the search recipe; and from which of its own epochs the
reference recipe ranks the specs as it ends (seed 0's validation top-1 after each epoch
against seed 1's test top-1: two runs, so no noise is shared).

    python experiments/cot_design_bench/early_check.py > experiments/cot_design_bench/search/early-check.txt
"""

import os
from pathlib import Path

import numpy as np
from calibrate import seed_table, tau_with_ci

from cotsearch.bench.ranking import kendall_tau
from cotsearch.bench.sweep import TABLE
from cotsearch.bench.table import read_table

HERE = Path(os.path.relpath(Path(__file__).parent))  # paths as the output prints them
SEARCH = HERE / "search"
REFERENCE = HERE / "reference"  # the table's reference half, while it is made: seed 0 of every spec it has
PILOTS = [HERE / "pilot-e8-n16000", HERE / "pilot-e8-n16000-gpu"]
CONTRASTS = [("stem.type", "deep", "small"), ("width_mult", "1.5", "1.0")]


def means(folder: Path, metric: str = "test_top1", seeds: int | None = None) -> dict[str, float]:
    """Each spec's mean over its first `seeds` seeds (None: as many as the fewest of those with 2 or more)."""
    specs, runs, _ = seed_table(folder, seeds, metric)
    return dict(zip(specs, runs.mean(axis=1)))


def contrast(values: dict[str, float], choices: dict[str, dict], param: str, a: str, b: str) -> str:
    """mean(a) - mean(b) in points, with a 95% normal interval over specs."""
    x = np.array([v for h, v in values.items() if choices[h][param] == a])
    y = np.array([v for h, v in values.items() if choices[h][param] == b])
    half = 1.96 * np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
    return f"{100 * (x.mean() - y.mean()):+.2f} ± {100 * half:.2f} points ({len(x)} {a} specs, {len(y)} {b})"


def main() -> None:
    table = read_table(SEARCH)
    choices = {h: rows[0] for h, rows in table.items()}
    search = means(SEARCH, "val_top1")
    by_epoch = {epoch: means(SEARCH, f"val_top1_epoch_{epoch}") for epoch in (1, 2, 3)}
    print(f"{SEARCH}: {len(search)} specs, 2-seed means of val top-1")
    for param, a, b in CONTRASTS:
        print(f"  {param} {a} - {b}: {contrast(search, choices, param, a, b)}")
    readings = [(pilot, None, "") for pilot in PILOTS]
    if (REFERENCE / TABLE).exists():
        readings.append((REFERENCE, 1, ", seed 0 only"))
    for folder, seeds, which in readings:
        reference = means(folder, seeds=seeds)
        shared = [h for h in reference if h in search]
        print(f"{folder} (test top-1, the reference recipe{which}), over its {len(shared)} specs:")
        for epoch, at_epoch in by_epoch.items():
            tau, ci = tau_with_ci(np.array([at_epoch[h] for h in shared]), np.array([reference[h] for h in shared]))
            print(f"  search's val top-1 after epoch {epoch} against it: Kendall tau {tau:+.3f} "
                  f"(95% bootstrap interval {ci[0]:+.2f} to {ci[1]:+.2f})")
        for param, a, b in CONTRASTS:
            print(f"  {param} {a} - {b}: search recipe {contrast({h: search[h] for h in shared}, choices, param, a, b)}; "
                  f"reference {contrast(reference, choices, param, a, b)}")
        for stem in ("deep", "small"):
            within = [h for h in shared if choices[h]["stem.type"] == stem]
            tau = kendall_tau(np.array([search[h] for h in within]), np.array([reference[h] for h in within]))
            print(f"  within the {len(within)} {stem}-stem specs: Kendall tau {tau:+.3f}")
    reference_epochs()
    for rows in table.values():
        if rows[0].get("named"):
            value = float(np.mean([float(r["val_top1"]) for r in rows]))
            rank = 1 + sum(v > value for v in search.values())
            print(f"{rows[0]['named']}: val top-1 {value:.2%} under the search recipe, rank {rank} of {len(search) + 1}")


def reference_epochs() -> None:
    """The reference recipe's seed 0 after each of its epochs against its seed 1 at the end."""
    if not (REFERENCE / TABLE).exists():
        return
    runs = {h: {int(r["seed"]): r for r in rows} for h, rows in read_table(REFERENCE).items()
            if not rows[0].get("named")}
    both = [h for h, seeds in runs.items() if {0, 1} <= set(seeds)]
    other = np.array([float(runs[h][1]["test_top1"]) for h in both])
    epochs = int(runs[both[0]][0]["epochs"])
    print(f"{REFERENCE}: seed 0's val top-1 (its 1,000 images) after each epoch against seed 1's test top-1, "
          f"over the {len(both)} specs with both")
    for epoch in range(1, epochs + 1):
        tau, ci = tau_with_ci(np.array([float(runs[h][0][f"val_top1_epoch_{epoch}"]) for h in both]), other)
        print(f"  epoch {epoch}: Kendall tau {tau:+.3f} (95% bootstrap interval {ci[0]:+.2f} to {ci[1]:+.2f})")


if __name__ == "__main__":
    main()
