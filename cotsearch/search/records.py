"""The search's records, all read from the Optuna study in the run directory: trials.csv,
the best feasible trial, the choices as the tables show them, and exports. Ray- and torch-free."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_bytes, atomic_write_text
from cotsearch.process.watchdog import FAILURE_NOTE
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import TrialId, TrialRecord, TrialState, search_trial

STUDY_NAME = "cotsearch"
INTERRUPTED = "the search was stopped while it ran"
NOISE_FILE = "noise.json"  # the run's noise, confirmation and choice (cotsearch.search.confirm)

COLUMNS = ["trial", "state", "val_top1", "val_top1_se", "val_images", "epochs", "macs", "macs_conv", "params", "latency_ms", "latency_shared", "spec_hash",
           "duration_s", "val_s", "node", "gpu_ids", "reason"]
# A trial without a state of ours was never told by the searcher: running, queued, or (told
# failed by fail_interrupted) stopped by Ctrl-C or a kill.
_OPTUNA_STATES = {optuna.trial.TrialState.RUNNING: TrialState.RUNNING, optuna.trial.TrialState.WAITING: TrialState.WAITING,
                  optuna.trial.TrialState.COMPLETE: TrialState.COMPLETE, optuna.trial.TrialState.FAIL: TrialState.INTERRUPTED}


def trial_dir(run_dir: str | Path, trial: TrialId) -> Path:
    """Where a trial keeps its spec.yaml and model.safetensors."""
    return Path(run_dir) / "trials" / trial.dirname


def worker_failure(run_dir: str | Path, trial: TrialId) -> str:
    """Why a trial whose worker died without reporting failed: the reason it left on disk (a
    timeout), else a pointer to Ray's log."""
    note = trial_dir(run_dir, trial) / FAILURE_NOTE
    return note.read_text().strip() if note.exists() else "the trial's worker raised or died (see Ray's log)"


def study_storage(run_dir: Path) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{run_dir.resolve() / 'study.db'}",
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def open_study(run_dir: Path, must_exist: bool = False) -> optuna.Study:
    if must_exist and not (run_dir / "study.db").exists():
        raise CotsearchError(f"{run_dir}: not a cotsearch run directory (it has no study.db)")
    return optuna.load_study(study_name=STUDY_NAME, storage=study_storage(run_dir))


def record_of(trial: FrozenTrial) -> TrialRecord:
    """A study's trial as trials.csv holds it, from the user attributes the searcher set."""
    a = trial.user_attrs
    if "state" in a:
        state, reason = TrialState(a["state"]), a.get("reason")
    else:
        state = _OPTUNA_STATES.get(trial.state, TrialState.STOPPED)  # PRUNED: a searcher of ours never prunes
        reason = INTERRUPTED if state == TrialState.INTERRUPTED else a.get("reason")
    return TrialRecord(
        trial=trial.number, state=state, sampled=json.loads(a.get("sampled", "{}")),
        val_top1=a.get("val_top1") if state.trained else None, epochs=a.get("epoch"), macs=a.get("macs"),
        macs_conv=a.get("macs_conv"), params=a.get("params", a.get("params_count")),  # runs before issue 28: params_count
        latency_ms=a.get("latency_ms"), latency_shared=a.get("latency_shared"), spec_hash=a.get("spec_hash"),
        duration_s=a.get("duration_s"), node=a.get("node"), gpu_ids=a.get("gpu_ids"), reason=reason,
        spec_json=a.get("spec"), val_images=a.get("val_images"), val_s=a.get("val_s"), on_ray=bool(a.get("on_ray")))


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of the study, read once."""
    return [record_of(t) for t in study.get_trials(deepcopy=False)]


def finished(rows: list[TrialRecord]) -> int:
    """Trials that count towards --trials (TrialRecord.counted)."""
    return sum(r.counted for r in rows)


def write_trials_csv(rows: list[TrialRecord], path: Path) -> None:
    """trials.csv: a line per trial (COLUMNS), then a column per parameter."""
    param_names = sorted({k for r in rows for k in r.sampled})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS + [f"param:{p}" for p in param_names])
    for r in rows:
        writer.writerow([getattr(r, c) if getattr(r, c) is not None else "" for c in COLUMNS]
                        + [r.sampled.get(p, "") for p in param_names])
    atomic_write_text(path, buffer.getvalue())


def best_record(rows: list[TrialRecord]) -> TrialRecord | None:
    """The fully trained trial with the best validation top-1 (ties: fewer MACs)."""
    done = [r for r in rows if r.state == TrialState.COMPLETE and r.val_top1 is not None]
    return max(done, key=lambda r: (r.val_top1, -(r.macs or 0)), default=None)


def choice_text(value: Any) -> str:
    """A choice as the tables and plots write it: a list (a pattern of blocks) [cot, conv] as cot+conv."""
    return "+".join(map(str, value)) if isinstance(value, list) else str(value)


def describe_choices(values: dict[str, Any]) -> str:
    """A sample's decoded choices in one short line for a table cell: stages.1.blocks=[cot, conv] -> s1=cot+conv."""
    return " ".join(f"{key.replace('stages.', 's').replace('.blocks', '')}={choice_text(value)}"
                    for key, value in values.items())


def choice_labels(space: SearchSpace) -> dict[str, dict]:
    """Each parameter's encoded choice (as Optuna stores it) -> its text."""
    return {name: {label: choice_text(value) for label, value in zip(p.labels(), p.choice)}
            for name, p in space.params.items() if p.choice is not None}


def chosen_trial(run_dir: Path) -> int | None:
    """The trial the search's confirmation chose (noise.json, cotsearch.search.confirm), if any."""
    path = Path(run_dir) / NOISE_FILE
    chosen = json.loads(path.read_text()).get("chosen") if path.exists() else None
    return int(chosen["name"]) if chosen and chosen["kind"] == "candidate" else None


def export_trial(run_dir: Path, trial: str | int | None, output: Path) -> TrialRecord | None:
    """Copy a trial's model file (or, for a .yaml output, its spec) to `output`; by default the
    chosen trial's (confirmed, else the best reading)."""
    rows = records(open_study(run_dir, must_exist=True))
    trial = chosen_trial(run_dir) if trial is None else trial
    if trial is None:
        record = best_record(rows)
        if record is None:
            raise CotsearchError(f"{run_dir}: no trial has finished training yet; nothing to export")
        source_dir = trial_dir(run_dir, search_trial(record.trial))
    else:
        wanted_id = TrialId.parse(str(trial))
        source_dir = trial_dir(run_dir, wanted_id) if wanted_id is not None else None
        record = next((r for r in rows if search_trial(r.trial) == wanted_id), None)
        if source_dir is None or not source_dir.is_dir():
            known = ", ".join(sorted(p.name.lstrip("0") or "0" for p in (run_dir / "trials").glob("*")))
            raise CotsearchError(f"--trial {trial}: no such trial in {run_dir}; trials with files: {known or 'none'}")
    wanted = "spec.yaml" if output.suffix in (".yaml", ".yml") else "model.safetensors"
    source = source_dir / wanted
    if not source.exists():
        raise CotsearchError(f"{source}: the trial has no {wanted} (it failed or was stopped before its first epoch)")
    atomic_write_bytes(output, source.read_bytes())
    return record


def copy_best(run_dir: Path, record: TrialRecord) -> Path:
    best = run_dir / "best"
    best.mkdir(exist_ok=True)
    for name in ("spec.yaml", "model.safetensors"):
        src = trial_dir(run_dir, search_trial(record.trial)) / name
        if src.exists():
            atomic_write_bytes(best / name, src.read_bytes())
    return best
