"""`cotsearch sweep`: a tabular benchmark of a space (as NAS-Bench-201 is of its own). Many of
its feasible specs, each trained with several seeds, by the search's own trial code
(cotsearch.search.trial); specs are fitted to the data and priced here, as the searcher does.
This module is what a sweep is (its rows, table and EDF) and needs no Ray;
cotsearch.bench.sweep_runner runs the rows on Ray Tune, with the same resources, cluster
support and failure handling as `tune`.

The output directory holds `rows/` (one JSON file per finished (spec, seed) row, written the
moment the row ends, so a sweep killed at any point resumes with `--resume DIR` without
training a finished row again; failed rows are run again), `proxies.json` (every spec's
zero-cost proxies), `sweep.csv` (every row: the choices, spec hash, params, MACs, latency,
validation top-1 after each epoch, test top-1 of the final model, proxies) and `edf.png`
(the space's error distribution, pycls style).
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import numpy as np
import optuna
from matplotlib.figure import Figure
from rich.console import Console

from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_text
from cotsearch.search.prescreen import Candidate, feasible, random_candidates
from cotsearch.search.scaled_presets import ScaledPreset, scale_to_budget
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import TrialConfig, TrialId, TrialKind, TrialResult, TrialState

MAX_ENUMERATED = 20_000  # --all: combinations of choices that may be enumerated
FINISHED = (TrialState.COMPLETE, TrialState.INFEASIBLE)  # rows a resumed sweep keeps; failed ones run again
ROWS, TABLE, PROXIES, EDF = "rows", "sweep.csv", "proxies.json", "edf.png"


def enumerate_specs(space: SearchSpace) -> list[Candidate]:
    """Every feasible spec of a space of choices, walked by Optuna's BruteForceSampler
    (so `when` conditions hold as in a search); one candidate per distinct spec."""
    ranged = [path for path, p in space.params.items() if p.choice is None]
    if ranged:
        raise CotsearchError(f"--all: {ranged[0]} is a range, not a choice; sample the space with --archs N")
    combinations = int(np.prod([len(p.choice) for p in space.params.values()]))
    if combinations > MAX_ENUMERATED:
        raise CotsearchError(f"--all: up to {combinations:,} combinations of choices, more than {MAX_ENUMERATED:,}; "
                             "sample the space with --archs N")
    found: dict[str, Candidate] = {}

    def visit(trial: optuna.Trial) -> float:
        candidate = feasible(space, space.sample(trial))
        if candidate is not None:
            found.setdefault(candidate.spec.spec_hash(), candidate)
        return 0.0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.BruteForceSampler(seed=0)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per visited combination
    try:
        optuna.create_study(sampler=sampler).optimize(visit)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return sorted(found.values(), key=lambda c: json.dumps(c.sampled, sort_keys=True))


def sample_specs(space: SearchSpace, archs: int, seed: int) -> list[Candidate]:
    """`archs` distinct feasible specs drawn at random (each parameter uniformly; infeasible
    draws rejected, repeated specs drawn again): uniform over the feasible specs of a space
    of choices without `when` conditions."""
    found: dict[str, Candidate] = {}
    misses = 0
    for candidate in random_candidates(space, seed):
        if len(found) == archs or misses == space.search.max_infeasible:
            break
        new = candidate is not None and candidate.spec.spec_hash() not in found
        misses = 0 if new else misses + 1
        if new:
            found[candidate.spec.spec_hash()] = candidate
    if len(found) < archs:
        raise CotsearchError(f"--archs {archs}: only {len(found)} distinct feasible specs found in "
                             f"{space.search.max_infeasible} draws in a row; ask for fewer, or use --all")
    return list(found.values())


def sweep_candidates(space: SearchSpace, archs: int | None, scaled_presets: list[str] | None = None,
                     ) -> tuple[list[Candidate], dict[str, str], list[ScaledPreset]]:
    """A sweep's specs: every feasible spec of the space (archs None) or its first `archs` seeded
    draws, then each of `scaled_presets` scaled to the budget; the scaled presets' labels by spec
    hash; and the scaled presets. One that is a sampled spec already stays one of them, unnamed."""
    candidates = enumerate_specs(space) if archs is None else sample_specs(space, archs, space.search.seed)
    sampled = {c.spec.spec_hash() for c in candidates}
    scaled = [s for s in (scale_to_budget(space, name) for name in dict.fromkeys(scaled_presets or []))
              if s.spec.spec_hash() not in sampled]
    return (candidates + [Candidate({}, s.spec, s.cost) for s in scaled], {s.spec.spec_hash(): s.label for s in scaled},
            scaled)


def row_configs(candidates: list[Candidate], seeds: int, recipe_seed: int,
                named: dict[str, str] | None = None) -> list[TrialConfig]:
    """The trials' configs, one per (spec, seed): row seed s trains with recipe seed + s,
    and the trial reports the final model's test top-1. `named`: spec hash -> the label of a
    spec trained beside the space's sample (a scaled preset)."""
    return [TrialConfig(id=TrialId(kind=TrialKind.SWEEP, key=c.spec.spec_hash(), seed=s), spec=c.spec, cost=c.cost,
                        seed=recipe_seed + s, sampled=c.sampled, label=(named or {}).get(c.spec.spec_hash()))
            for c in candidates for s in range(seeds)]


def score_proxies(space: SearchSpace, candidates: list[Candidate], out: Path, console: Console) -> dict[str, dict]:
    """Every candidate's zero-cost proxies (seed 0, the first batch of the training split),
    kept in proxies.json as each is scored, so a resumed sweep does not score it again."""
    from cotsearch.data.load import load_data
    from cotsearch.search.proxies import proxy_batch, score_spec

    path = out / PROXIES
    scores = json.loads(path.read_text()) if path.exists() else {}
    todo = [c for c in candidates if c.spec.spec_hash() not in scores]
    if not todo:
        return scores
    recipe = space.train
    data = load_data(recipe.data, train_limit=recipe.train_limit, val_size=recipe.val_size, input_size=recipe.input_size)
    x, y = proxy_batch(data, recipe.batch_size)
    with console.status(f"scoring {len(todo)} specs with the zero-cost proxies") as status:
        for i, c in enumerate(todo, 1):
            scores[c.spec.spec_hash()] = score_spec(c.spec, x, y, device=recipe.device)[0]
            atomic_write_text(path, json.dumps(scores, indent=1))
            status.update(f"scored {i}/{len(todo)} specs with the zero-cost proxies")
    return scores


def make_row(config: TrialConfig, last: TrialResult, curve: dict[int, float], proxies: dict[str, dict],
             failure: str | None = None) -> dict:
    """The record of one finished (spec, seed) row: its trial's config, the trial's last
    result, its learning curve (epoch -> validation top-1) and the spec's proxies. `failure`
    is the reason of a trial that died without reporting one."""
    spec_hash = config.spec_hash
    if last.outcome == TrialState.FAILED or failure is not None:
        state, error = TrialState.FAILED, last.error or failure or "the trial's worker raised or died"
    elif last.outcome == TrialState.INFEASIBLE:
        state, error = TrialState.INFEASIBLE, last.reason
    else:
        state, error = TrialState.COMPLETE, ""
    return {"spec_hash": spec_hash, "seed": config.id.seed, "state": state.value, **(config.sampled or {}),
            **({"named": config.label} if config.label else {}),
            "params": config.cost.params, "macs": config.cost.macs, "latency_ms": last.latency_ms,
            "latency_shared": last.latency_shared,
            **{f"val_top1_epoch_{e}": curve[e] for e in sorted(curve)},
            "val_top1": curve[max(curve)] if curve else None, "test_top1": last.test_top1,
            "epochs": max(curve, default=0), "duration_s": last.duration_s, "node": last.node,
            "device": last.device, **proxies.get(spec_hash, {}), "error": error}


def write_row(out: Path, number: str, row: dict) -> None:
    """rows/NUMBER.json, written at once: a sweep stopped later keeps this row."""
    atomic_write_text(out / ROWS / f"{number}.json", json.dumps(row))


def read_rows(out: Path) -> dict[str, dict]:
    """Row number -> the row, of every row written so far."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / ROWS).glob("*.json"))}


def write_table(out: Path, rows: list[dict]) -> Path:
    """sweep.csv: one line per row, the columns in first-seen order (epochs in order)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["spec_hash"], r["seed"])):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    atomic_write_text(out / TABLE, buffer.getvalue())
    return out / TABLE


def spec_errors(rows: list[dict]) -> dict[str, float]:
    """Spec hash -> test error (1 - top-1), averaged over its finished seeds; of the space's
    specs only (not the named ones trained beside them)."""
    by_spec: dict[str, list[float]] = {}
    for r in rows:
        if r["state"] == TrialState.COMPLETE and r.get("test_top1") is not None and not r.get("named"):
            by_spec.setdefault(r["spec_hash"], []).append(1.0 - float(r["test_top1"]))
    return {h: float(np.mean(v)) for h, v in by_spec.items()}


def _edf(ax, errors: list[float], label: str) -> None:
    """pycls's EDF: the fraction of networks whose error is below x."""
    if not errors:
        return
    xs = np.sort(errors)
    ax.step(np.r_[xs[0], xs], np.arange(len(xs) + 1) / len(xs), where="post", label=f"{label} (n={len(xs)})")


def plot_edf(rows: list[dict], params: list[str]) -> Figure:
    """The error EDF of every spec, then one panel per parameter with a curve per value."""
    errors = spec_errors(rows)
    choice_of = {r["spec_hash"]: r for r in rows}
    cols = min(3, len(params) + 1)
    panels = len(params) + 1
    fig = Figure(figsize=(4.2 * cols, 3.4 * -(-panels // cols)))
    axes = fig.subplots(-(-panels // cols), cols, squeeze=False).ravel()
    _edf(axes[0], list(errors.values()), "all specs")
    axes[0].set_title("every spec")
    for ax, param in zip(axes[1:], params):
        values = sorted({str(choice_of[h].get(param, "")) for h in errors})
        for value in values:
            _edf(ax, [e for h, e in errors.items() if str(choice_of[h].get(param, "")) == value], value or "(unset)")
        ax.set_title(param)
    for ax in axes[:panels]:
        ax.set_xlabel("test error (mean over seeds)")
        ax.set_ylabel("cumulative fraction of specs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


