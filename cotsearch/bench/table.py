"""A sweep's tables as the benchmark's analysis reads them: the search recipe's rows and the
reference recipe's rows of the same specs (cotsearch.bench.sweep wrote both), the reference
top-1 each spec is judged by, its seed noise, and each choice's main effect."""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from cotsearch.arch.yaml_io import format_validation_error
from cotsearch.bench.sweep import TABLE
from cotsearch.errors import CotsearchError
from cotsearch.search.rundir import SPACE_FILE
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import TrialState
from cotsearch.stats import Noise


def read_table(folder: Path) -> dict[str, list[dict]]:
    """Spec hash -> its complete rows in a sweep's sweep.csv."""
    path = Path(folder) / TABLE
    if not path.exists():
        raise CotsearchError(f"{folder}: no {TABLE}; run `cotsearch sweep` there first")
    with open(path, newline="") as f:
        table: dict[str, list[dict]] = {}
        for row in csv.DictReader(f):
            if row["state"] == TrialState.COMPLETE and row["test_top1"]:
                table.setdefault(row["spec_hash"], []).append(row)
    return table


def read_space(folder: Path) -> SearchSpace:
    """The space a sweep was made with, or a one-line error naming its file."""
    path = Path(folder) / SPACE_FILE
    if not path.is_file():
        raise CotsearchError(f"{folder}: no {SPACE_FILE}; not a folder `cotsearch sweep` wrote")
    try:
        return SearchSpace.model_validate_json(path.read_bytes())
    except ValidationError as e:
        raise CotsearchError(format_validation_error(e, str(path), SearchSpace)) from None


def as_number(text: str) -> float:
    return float(text) if text not in ("", None) else float("nan")


@dataclass
class Bench:
    """The space's specs in both tables, their rows, and their reference test top-1 (mean over
    seeds). `named`: label -> spec hash of specs a sweep trained beside the space's sample
    (scaled presets, cotsearch.search.scaled_presets), in both tables; they are not among
    `specs`, so no simulated search can find them, but their rows are in `search` and
    `reference` for comparison."""

    specs: list[str]
    search: dict[str, list[dict]]
    reference: dict[str, list[dict]]
    epochs: int
    named: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, search_dir: Path, reference_dir: Path) -> Bench:
        search, reference = read_table(search_dir), read_table(reference_dir)
        both = set(search) & set(reference)
        named = {rows[0]["named"]: h for h, rows in sorted(search.items()) if h in both and rows[0].get("named")}
        specs = sorted(both - set(named.values()))
        if len(specs) < 3:
            raise CotsearchError(f"{search_dir} and {reference_dir} share {len(specs)} trained specs; need 3 or more")
        epochs = read_space(search_dir).train.epochs
        kept = [*specs, *named.values()]
        return cls(specs, {h: search[h] for h in kept}, {h: reference[h] for h in kept}, epochs, named)

    def truth_of(self, spec_hash: str) -> float:
        """A spec's reference test top-1, the mean over its seeds."""
        return float(np.mean([as_number(r["test_top1"]) for r in self.reference[spec_hash]]))

    def truth(self) -> np.ndarray:
        """The space's specs' reference test top-1, in the order of `specs`."""
        return np.array([self.truth_of(h) for h in self.specs])

    def truth_seeds(self) -> float:
        """The reference seeds the space's specs' truths average: the harmonic mean of their
        counts, the count whose mean carries the truths' average noise."""
        return float(statistics.harmonic_mean([len(self.reference[h]) for h in self.specs]))

    def search_mean(self, column: str) -> np.ndarray:
        return np.array([np.mean([as_number(r[column]) for r in self.search[h]]) for h in self.specs])

    def search_runs(self, column: str) -> list[list[float]]:
        """Every spec's readings of `column` in the search table, by seed."""
        return [[as_number(r[column]) for r in sorted(self.search[h], key=lambda r: int(r["seed"]))] for h in self.specs]


def seed_noise(bench: Bench) -> tuple[Noise, float]:
    """(one reference run's test top-1 noise around its spec's mean, pooled over every seed of the
    specs with two or more; the standard deviation of the specs' mean top-1)."""
    noise = Noise.pooled([[as_number(r["test_top1"]) for r in bench.reference[h]] for h in bench.specs])
    return noise, float(np.std(bench.truth(), ddof=1))


def seed_pairs(table: dict[str, list[dict]], specs: list[str], column: str) -> tuple[np.ndarray, np.ndarray]:
    """(seed-0 run, seed-1 run) of `column` for the specs with two seeds or more."""
    twice = [sorted(table[h], key=lambda r: int(r["seed"]))[:2] for h in specs if len(table[h]) >= 2]
    return np.array([as_number(a[column]) for a, _ in twice]), np.array([as_number(b[column]) for _, b in twice])


def reading_pairs(table: dict[str, list[dict]], specs: list[str], column: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Two independent readings of `column` a spec, and k, the seeds each averages (pair_label
    names them). A reading is the mean of k seeds, k the number of seeds most specs have (a
    reference read as a 3-seed mean is checked 3 against 3; a failed run does not change k): the
    mean of seeds 0..k-1 against that of seeds k..2k-1, over the specs that hold all of them.
    Where fewer than 3 specs do, k is the largest that 3 specs hold twice over; at 1, seed 0
    against seed 1 (seed_pairs)."""
    counts = [len(table[h]) for h in specs]
    most = max(set(counts), key=lambda n: (counts.count(n), -n))  # the most common count; a tie to the fewer
    held = [{int(r["seed"]): as_number(r[column]) for r in table[h]} for h in specs]
    for k in range(most, 1, -1):
        whole = [seeds for seeds in held if all(s in seeds for s in range(2 * k))]
        if len(whole) >= 3:
            first = np.array([np.mean([seeds[s] for s in range(k)]) for seeds in whole])
            second = np.array([np.mean([seeds[s] for s in range(k, 2 * k)]) for seeds in whole])
            return first, second, k
    return *seed_pairs(table, specs, column), 1


def pair_label(k: int) -> str:
    """What reading_pairs compared, in words."""
    return "seed 0 against seed 1" if k == 1 else f"the mean of seeds 0-{k - 1} against that of seeds {k}-{2 * k - 1}"


def choice_effects(bench: Bench, params: list[str]) -> list[tuple[str, str, int, float, float, float]]:
    """(parameter, value, specs, mean reference top-1, its 95% CI half-width, mean search val
    top-1) for every value of every parameter: on an exhaustive table of a space of choices,
    each value's mean is over every combination of the other choices (a main effect)."""
    truth, val = bench.truth(), bench.search_mean("val_top1")
    found = []
    for param in params:
        values = [str(bench.reference[h][0].get(param, "")) for h in bench.specs]
        for value in sorted(set(values)):
            pick = np.array([v == value for v in values])
            n = int(pick.sum())
            ci = 1.96 * float(np.std(truth[pick], ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
            found.append((param, value, n, float(truth[pick].mean()), ci, float(val[pick].mean())))
    return found
