"""The end of a search: trials.csv, noise.json and best/, the chosen model tested once, and the
top trials, the confirmation's intervals and its verdicts printed."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cotsearch.files import atomic_write_text
from cotsearch.search import confirm
from cotsearch.search.confirm import Confirmation
from cotsearch.search.records import best_record, copy_best, describe_choices, finished, write_trials_csv
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import TrialRecord, TrialState


@dataclass
class SearchOutcome:
    run_dir: Path
    best_trial: int | None
    best_val_top1: float | None
    best_test_top1: float | None
    best_macs: int | None
    finished: int
    infeasible: int
    confirmation: Confirmation | None = None


def finish(space: SearchSpace, run_dir: Path, rows: list[TrialRecord], runs: list[dict],
           console: Console) -> SearchOutcome:
    """Write trials.csv (from `rows`, the study's records), noise.json and best/; test the chosen
    model; print the top trials, the confirmation and its verdicts. (The report, a layer above,
    is the command's to write.)"""
    write_trials_csv(rows, run_dir / "trials.csv")
    planned = {str(c.id) for c in confirm.planned_runs(space, rows)}
    runs = [r for r in runs if r["number"] in planned]  # runs of settings a resumed search changed are left out
    confirm.write_runs(run_dir, runs)
    confirmation = confirm.summarize(rows, runs, confirm.candidates(space, rows))
    confirm.write_noise(run_dir, confirmation)
    by_number = {str(r.trial): r for r in rows}
    # confirmed: the best mean over fresh seeds (ties: the cheaper); else the best single reading
    best = by_number[confirmation.chosen.name] if confirmation.chosen else best_record(rows)
    test_top1 = None
    if best is not None and (copy_best(run_dir, best) / "model.safetensors").exists():
        with console.status(f"testing the chosen model (trial {best.trial}) on the test set"):
            test_top1 = _test_best(space, run_dir / "best", confirmation)
    out = Console()
    out = out if out.is_terminal else Console(width=240)  # in a file, one line per trial
    out.print(_top_trials_table(space, rows, confirm.reference_means(runs)))
    if confirmation.specs:
        out.print(_confirmation_table(confirmation))
    count = Counter(r.state for r in rows)
    shown = (TrialState.COMPLETE, TrialState.STOPPED, TrialState.FAILED, TrialState.INFEASIBLE, TrialState.INTERRUPTED)
    console.print(f"trials: { {s.value: count[s] for s in shown} }; records in {run_dir / 'trials.csv'}", soft_wrap=True)
    console.print(f"noise: {confirmation.sentence()}", soft_wrap=True)
    if best is None:
        console.print("no trial finished training: no best model", soft_wrap=True)
    else:
        budget = space.budgets.max_macs
        chosen = confirmation.chosen
        if chosen and confirmation.noise.known:
            reading = (f"confirmed val top-1 {chosen.mean.mean:.2%} ± {chosen.mean.half:.2%} (95% CI, {len(chosen.runs)} "
                       f"fresh seeds; its search reading {best.val_top1:.2%})")
        elif chosen:
            reading = (f"confirmed val top-1 {chosen.mean.mean:.2%} over {len(chosen.runs)} fresh seeds, no interval "
                       f"(the noise could not be measured); its search reading {best.val_top1:.2%}")
        else:
            reading = f"val top-1 {best.val_top1:.2%} (one reading, not confirmed)"
        console.print(f"best: trial {best.trial}, {reading}, test top-1 "
                      f"{'-' if test_top1 is None else f'{test_top1:.2%}'}, {best.macs / 1e6:.2f} M MACs"
                      f"{f' (budget {budget / 1e6:.1f} M)' if budget else ''} -> {run_dir / 'best'}", soft_wrap=True)
        for c in (c for c in confirmation.comparisons if chosen and c.candidate == chosen.name):
            console.print(f"verdict: trial {c.candidate} {c.verdict} {c.reference} ({c.difference.points()}, 95% CI, "
                          "same seeds)", soft_wrap=True)
        if chosen and confirmation.comparisons:
            console.print(f"(the verdicts hold for this recipe, {space.train.epochs} epochs on "
                          f"{space.train.train_limit or 'all'} images: a longer training can order specs otherwise, "
                          "as README 'Does the search work?' measured; on its cot_design benchmark (interim: 2-3 "
                          "reference runs a spec) resnet_tiny scaled by width to the budget beat every search "
                          "strategy's choice by 0.6 to 1.1 points under a longer training, TPE tied random sampling, "
                          "and TPE pre-screened by NASWOT, that space's default, chose best, 0.4 points above it)",
                          soft_wrap=True)
        if not chosen:
            why = ("`search.confirm` is off" if space.search.confirm is None
                   else "every confirmation run of the candidates failed (confirm.json says why)")
            console.print(f"verdict: none ({why}); a single reading cannot say whether the best trial beats the "
                          "references", soft_wrap=True)
        elif not space.search.references:
            console.print("verdict: none (the space names no reference presets to compare with)", soft_wrap=True)
        elif not confirmation.comparisons:
            console.print("verdict: none (no reference run and candidate run share a seed, or the noise could not "
                          "be measured; confirm.json says which runs failed)", soft_wrap=True)
    return SearchOutcome(run_dir, best and best.trial, best and best.val_top1, test_top1, best and best.macs,
                         finished(rows), count[TrialState.INFEASIBLE], confirmation)


def _top_trials_table(space: SearchSpace, rows: list[TrialRecord], references: list[dict]) -> Table:
    table = Table(title=f"top trials of {space.name} (one validation reading each, ± its binomial standard error; "
                        "the test set is only used for the chosen one)")
    for col in ("trial", "state", "val top-1", "MACs", "params", "latency ms", "choices"):
        table.add_column(col, justify="left" if col in ("state", "choices") else "right", no_wrap=col != "choices")
    trained = sorted((r for r in rows if r.trained), key=lambda r: -(r.val_top1 or 0))
    for r in trained[:8]:
        state = r.state.value if r.state == TrialState.COMPLETE else f"stopped after {r.epochs} epochs"
        se = f" ± {r.val_top1_se:.2%}" if r.val_top1_se is not None else ""
        table.add_row(str(r.trial), state, f"{r.val_top1:.2%}{se}", f"{(r.macs or 0) / 1e6:.1f}M",
                      f"{(r.params or 0) / 1e6:.2f}M", "-" if r.latency_ms is None else f"{r.latency_ms:.2f}",
                      describe_choices(space.decode(r.sampled)))
    for ref in references:
        if ref.get("val_top1") is not None:
            table.add_row(f"ref {ref['name']}", f"reference, mean of {ref['runs']}", f"{ref['val_top1']:.2%}",
                          f"{(ref['macs'] or 0) / 1e6:.1f}M", f"{(ref['params'] or 0) / 1e6:.2f}M",
                          "-" if ref.get("latency_ms") is None else f"{ref['latency_ms']:.2f}", "")
    return table


def _confirmation_table(confirmation: Confirmation) -> Table:
    """Each confirmed spec's mean over fresh seeds with its 95% interval, and each candidate
    against each reference (same seeds)."""
    references = [s for s in confirmation.specs if s.kind == "reference"]
    table = Table(title="confirmation: trained again with fresh seeds (95% intervals from the pooled seed noise)")
    for col in ("spec", "MACs", "search reading", "confirmed val top-1", *[f"vs {r.name}" for r in references]):
        table.add_column(col, justify="left" if col == "spec" else "right")
    for s in confirmation.specs:
        chosen = " (chosen)" if confirmation.chosen is s else ""
        cells = []
        for ref in references:
            c = next((c for c in confirmation.comparisons if c.candidate == s.name and c.reference == ref.name
                      and s.kind == "candidate"), None)
            cells.append(f"{c.verdict}: {c.difference.points()}" if c else "")
        table.add_row(f"{s.label}{chosen}", f"{s.macs / 1e6:.1f}M",
                      "-" if s.search_reading is None else f"{s.search_reading:.2%}",
                      f"{s.mean.mean:.2%} ± {s.mean.half:.2%} ({len(s.runs)} seeds)", *cells)
    return table


def _test_best(space: SearchSpace, best_dir: Path, confirmation: Confirmation) -> float:
    """The best model's top-1 on the test set: reported once, never used to choose."""
    from cotsearch.cost.latency import resolve_device
    from cotsearch.data.load import load_data
    from cotsearch.export.model_file import load_model
    from cotsearch.train.loop import evaluate

    recipe = space.train
    data = load_data(recipe.data, val_size=recipe.val_size, input_size=recipe.input_size)
    config = recipe.train_config()
    device = resolve_device(config.device)
    model = load_model(best_dir / "model.safetensors", device)
    _, top1 = evaluate(model, data.test, config, device)
    result = {"test_top1": top1, "test_images": len(data.test), "spec_hash": model.spec.spec_hash(),
              "input_size": model.spec.input_size,
              "confirmed": None if confirmation.chosen is None else {
                  "val_top1_mean": confirmation.chosen.mean.mean,
                  "ci95": [confirmation.chosen.mean.low, confirmation.chosen.mean.high]
                  if confirmation.noise.known else None,
                  "seeds": sorted(confirmation.chosen.runs)}}
    atomic_write_text(best_dir / "result.json", json.dumps(result, indent=2))
    return top1
