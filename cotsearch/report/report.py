"""`cotsearch report RUN_DIR`: a search as one self-contained HTML file (its figures embedded
as base64 PNGs, so it opens offline and can be sent as it is) with the PNGs beside it.

Everything is read from the run directory (study.db, space.json, references.json,
best/result.json, noise.json), so the report of a search still running works too: run it again
for the latest. `cotsearch tune` writes it at its end."""

from __future__ import annotations

import base64
import difflib
import html
import json
import warnings
from collections import Counter
from datetime import datetime
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial

from cotsearch.arch.spec import BackboneSpec
from cotsearch.data.shape import DataShape
from cotsearch.files import atomic_write_bytes, atomic_write_text, check_writable, figure_png, is_our_figure
from cotsearch.report import plot
from cotsearch.search.confirm import read_confirmation
from cotsearch.search.records import best_record, choice_labels, finished, open_study, records
from cotsearch.search.rundir import SPACE_FILE
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import TrialRecord, TrialState

REPORT = "report.html"
TOP_TRIALS = 10
STATES = [s for s in TrialState if s != TrialState.WAITING]  # counted, in this order (queued reruns are not)


def write_report(run_dir: Path, output: Path | None = None) -> Path:
    """Write the report of the run in `run_dir` (default: RUN_DIR/report.html) and its PNGs
    beside it; returns the report's path."""
    run_dir = Path(run_dir)
    study = open_study(run_dir, must_exist=True)
    space = SearchSpace.model_validate_json((run_dir / SPACE_FILE).read_text())
    references_file = run_dir / "references.json"
    references = json.loads(references_file.read_text()) if references_file.exists() else []
    trials = study.get_trials(deepcopy=False)
    rows = records(study)
    shared = any(r.latency_shared for r in rows)
    output = Path(output) if output is not None else run_dir / REPORT
    importances, importance_note = param_importances(trials)
    figures = {
        "pareto": ("Validation top-1 against cost",
                   ("Each trained trial at its MACs and measured latency; the line is the Pareto front. Samples "
                    "over a budget were priced, never trained: they lie in the grey strip at their cost.")
                   + (" Hollow points: latency measured while another trial ran on the same node (a neighbour's "
                      "load makes it slower)." if shared else ""),
                   plot.plot_pareto(rows, references, space.budgets.model_dump())),
        "best_so_far": ("Best so far",
                        ("Validation top-1 of every trained trial and the best fully trained one so far, by trial "
                         "number and by time."),
                        plot.plot_best_so_far(rows, finished_minutes(trials))),
        "learning_curves": ("Learning curves",
                            "Validation top-1 at each validation (ASHA's rungs and the last epoch); ASHA stops the trials that fall behind at its rungs.",
                            plot.plot_learning_curves(learning_curves(trials), {r.trial: r.state for r in rows})),
        "importances": ("Parameter importances", importance_note, plot.plot_importances(importances, importance_note)),
        "choices": ("Top-1 per choice",
                    ("Validation top-1 of the trained trials for each value of each parameter (red: stopped early "
                     "by ASHA, so trained for fewer epochs)."),
                    plot.plot_choices({name: p.labels() if p.choice is not None else None
                                       for name, p in space.params.items()}, rows, choice_labels(space))),
    }
    # Made in memory, checked, then written, the page first: a report that cannot be written
    # leaves nothing beside it, and a PNG of the user's is not overwritten outside the run directory.
    pngs = {output.parent / f"{name}.png": figure_png(fig) for name, (_, _, fig) in figures.items()}
    sections = []
    for (title, caption, _), png in zip(figures.values(), pngs.values()):
        image = base64.b64encode(png).decode("ascii")
        sections.append(f'<h2>{_e(title)}</h2>\n<p class="note">{_e(caption)}</p>\n'
                        f'<img alt="{_e(title)}" src="data:image/png;base64,{image}">')
    confirmation = read_confirmation(run_dir)
    chosen = (confirmation or {}).get("chosen")
    best = next((r for r in rows if chosen and str(r.trial) == chosen["name"]), None) or best_record(rows)
    page = _page(space, run_dir, rows, references, sections, best, _best_test_top1(run_dir, best), confirmation)
    ours = None if output.parent.resolve() == run_dir.resolve() else is_our_figure
    for path in (output, *pngs):
        check_writable(path, "-o", ours if path in pngs else None, "a figure of a cotsearch report")
    atomic_write_text(output, page)
    for path, png in pngs.items():
        atomic_write_bytes(path, png)
    return output


def learning_curves(trials: list[FrozenTrial]) -> dict[int, dict[int, float]]:
    """Each trial's validation top-1 per epoch: what the searcher reported to Optuna, and its
    last result (Ray gives a searcher no result for the epoch on which the scheduler stops a
    trial, and multi-objective studies keep no intermediate values)."""
    curves = {}
    for t in trials:
        curve = dict(t.intermediate_values)
        epoch, top1 = t.user_attrs.get("epoch"), t.user_attrs.get("val_top1")
        if epoch and top1 is not None:
            curve.setdefault(epoch, top1)
        if curve:
            curves[t.number] = curve
    return curves


def finished_minutes(trials: list[FrozenTrial]) -> dict[int, float]:
    """Minutes from the search's first trial to each trial's end."""
    started = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    return {t.number: (t.datetime_complete - started).total_seconds() / 60 for t in trials if t.datetime_complete}


def param_importances(trials: list[FrozenTrial]) -> tuple[dict[str, float] | None, str]:
    """Optuna's PED-ANOVA importances of the parameters for validation top-1, over the fully
    trained trials (as Optuna, it leaves out those stopped early); None and the reason when
    there are too few."""
    complete = [t for t in trials if t.user_attrs.get("state") == TrialState.COMPLETE]
    if len(complete) < 2:
        return None, f"Parameter importances need at least 2 fully trained trials; the run has {len(complete)}."
    study = optuna.create_study(direction="maximize")
    study.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                value=t.user_attrs["val_top1"]) for t in complete])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # Optuna's "too few trials" warnings
        values = optuna.importance.get_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    if caught:
        return None, f"No parameter importances from {len(complete)} fully trained trials: {caught[0].message}"
    return values, (f"PED-ANOVA importance of each parameter for reaching the top 10% of validation top-1, "
                    f"over the {len(complete)} fully trained trials.")


def spec_diff(space: SearchSpace, spec_json: str) -> str:
    """A trial's spec as a unified diff against the space's base (fitted to the same data)."""
    spec = BackboneSpec.model_validate_json(spec_json)
    base = DataShape(spec.in_chans, spec.num_classes, spec.input_size).apply(space.base_spec())
    base = base.model_copy(update={"name": spec.name})
    return "\n".join(difflib.unified_diff(base.to_yaml().splitlines(), spec.to_yaml().splitlines(),
                                          "base", spec.name or "trial", lineterm=""))


def _best_test_top1(run_dir: Path, best: TrialRecord | None) -> float | None:
    result = run_dir / "best" / "result.json"
    if best is None or not result.exists():
        return None
    data = json.loads(result.read_text())
    return data["test_top1"] if data.get("spec_hash") == best.spec_hash else None


def _e(value) -> str:
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _mega(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value / 1e6:.{digits}f}M"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of cells that are already HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _confirmation_html(confirmation: dict | None) -> str:
    """The run's noise and the confirmed specs with their intervals and verdicts (noise.json)."""
    if confirmation is None:
        return "<p>Not measured yet: the search writes noise.json when its confirmation ends.</p>"
    rows = []
    for spec in confirmation["specs"]:
        label = f"trial {spec['name']}" if spec["kind"] == "candidate" else spec["name"]
        chosen = confirmation["chosen"] == {"kind": spec["kind"], "name": spec["name"]}
        verdicts = "<br>".join(f"{_e(c['verdict'])} {_e(c['reference'])}: {100 * c['difference']:+.2f} points "
                               f"[{100 * c['ci95'][0]:+.2f}, {100 * c['ci95'][1]:+.2f}]"
                               for c in confirmation["comparisons"]
                               if spec["kind"] == "candidate" and c["candidate"] == spec["name"])
        rows.append([_e(label) + (" <b>(chosen)</b>" if chosen else ""), _mega(spec["macs"], 1),
                     _pct(spec["search_reading"]), f"{_pct(spec['mean'])} [{_pct(spec['ci95'][0])}, "
                     f"{_pct(spec['ci95'][1])}]", str(len(spec["runs"])), verdicts])
    table = _table(["spec", "MACs", "search reading", "confirmed val top-1 [95% CI]", "seeds", "against the references"],
                   rows) if rows else ""
    return f"<p>{_e(confirmation['sentence'][0].upper() + confirmation['sentence'][1:])}.</p>\n{table}"


def _page(space: SearchSpace, run_dir: Path, rows: list[TrialRecord], references: list[dict],
          sections: list[str], best: TrialRecord | None, test_top1: float | None,
          confirmation: dict | None = None) -> str:
    counts = Counter(r.state for r in rows)
    done = finished(rows)
    banner = ""
    if counts[TrialState.RUNNING] or done < space.search.trials:
        banner = (f'<p class="banner">In progress or stopped early: {done} of {space.search.trials} trials finished, '
                  f'{counts[TrialState.RUNNING]} running. Run <code>cotsearch report {_e(run_dir)}</code> again for the '
                  f'latest.</p>')
    labels = choice_labels(space)

    def choices(r: TrialRecord) -> str:
        return "<br>".join(f"{_e(k)} = {_e(labels.get(k, {}).get(v, v))}" for k, v in r.sampled.items())

    def latency(value: float | None, shared: bool | None = False) -> str:
        return "-" if value is None else f"{value:.2f}" + (" (shared node)" if shared else "")

    trained = sorted((r for r in rows if r.trained and r.val_top1 is not None), key=lambda r: -r.val_top1)
    top = [[str(r.trial), r.state if r.state == TrialState.COMPLETE else f"{r.state} after {r.epochs} epochs",
            _pct(r.val_top1) + (f" ± {_pct(r.val_top1_se)}" if r.val_top1_se is not None else ""),
            str(r.epochs or "-"), _mega(r.macs, 1), _mega(r.params, 2),
            latency(r.latency_ms, r.latency_shared), choices(r)] for r in trained[:TOP_TRIALS]]
    diffs = "".join(f"<details{' open' if i == 0 else ''}><summary>trial {r.trial}: spec against the base</summary>"
                    f"{_diff_html(spec_diff(space, r.spec_json))}</details>"
                    for i, r in enumerate(trained[:TOP_TRIALS]) if r.spec_json)
    summary = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
    chosen = next((c for c in (confirmation or {}).get("specs", [])
                   if best and c["kind"] == "candidate" and c["name"] == str(best.trial)), None)
    confirmed = (f" (confirmed: {_pct(chosen['mean'])}, 95% CI [{_pct(chosen['ci95'][0])}, {_pct(chosen['ci95'][1])}] "
                 f"over {len(chosen['runs'])} fresh seeds)") if chosen else " (one reading, not confirmed)"
    best_line = (f"Best: trial {best.trial}, validation top-1 {_pct(best.val_top1)}{confirmed}, test top-1 "
                 f"{_pct(test_top1)}, {_mega(best.macs, 2)} MACs." if best else "No trial is fully trained yet.")
    refs = _table(["preset", "val top-1", "epochs", "MACs", "params", "latency ms", "error"],
                  [[_e(r["name"]), _pct(r.get("val_top1")), str(r.get("epoch") or "-"), _mega(r.get("macs"), 1),
                    _mega(r.get("params"), 2), latency(r.get("latency_ms")), _e(r.get("error") or "")]
                   for r in references]) if references else "<p>No reference presets in this run.</p>"
    settings = yaml.safe_dump(json.loads(space.model_dump_json(by_alias=True)), sort_keys=False)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cotsearch report: {_e(space.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em auto; max-width: 1280px; color: #222; }}
img {{ display: block; max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
.note {{ color: #555; }} .banner {{ background: #fff4ce; padding: 0.6em; }}
pre {{ background: #f6f6f6; padding: 0.6em; font-size: 0.85em; overflow-x: auto; }}
.add {{ color: #1a7f37; }} .del {{ color: #cf222e; }}
</style></head><body>
<h1>Search {_e(space.name)}</h1>
<p class="note">{_e(run_dir.resolve())}, report written {datetime.now():%Y-%m-%d %H:%M}.</p>
{banner}
<p>Trials: {_e(summary) or "none yet"}. {best_line}</p>
{chr(10).join(sections)}
<h2>Noise and confirmation</h2>
{_confirmation_html(confirmation)}
<h2>Top trials</h2>
<p class="note">One validation reading each, ± its binomial standard error (what the reading would move by on other
images; seed noise comes on top, see above).</p>
{_table(["trial", "state", "val top-1", "epochs", "MACs", "params", "latency ms", "choices"], top)
 if top else "<p>No trial trained yet.</p>"}
{diffs}
<h2>References</h2>
<p class="note">The space's reference presets, trained with the same recipe: the mean of their seeds.</p>
{refs}
<h2>Settings</h2>
<p class="note">The run's space, recipe and search settings (space.json, shown as YAML).</p>
<pre>{_e(settings)}</pre>
</body></html>
"""


def _diff_html(diff: str) -> str:
    if not diff:
        return "<pre>the base spec itself</pre>"
    lines = []
    for line in diff.splitlines():
        kind = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        lines.append(f'<span class="{kind}">{_e(line)}</span>' if kind else _e(line))
    return "<pre>" + "\n".join(lines) + "</pre>"
