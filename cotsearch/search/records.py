"""The search's records, all read from the Optuna study in the run directory: trials.csv,
the best feasible trial, the top-trials table, and exports."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import optuna

from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_bytes, atomic_write_text
from cotsearch.process.watchdog import FAILURE_NOTE
from cotsearch.search.stats import binomial_se

STUDY_NAME = "cotsearch"
TRAINED_STATES = ("complete", "stopped")  # "stopped": ended early by ASHA
INTERRUPTED = "the search was stopped while it ran"
NOISE_FILE = "noise.json"  # the run's noise, confirmation and choice (cotsearch.search.confirm)

COLUMNS = ["trial", "state", "val_top1", "val_top1_se", "val_images", "epochs", "macs", "macs_conv", "params", "latency_ms", "latency_shared", "spec_hash",
           "duration_s", "val_s", "node", "gpu_ids", "reason"]


def trial_dir(run_dir: str | Path, number: int | str) -> Path:
    """Where a trial keeps its spec.yaml and model.safetensors (references: ref-NAME)."""
    return Path(run_dir) / "trials" / (f"{number:04d}" if isinstance(number, int) else str(number))


def worker_failure(run_dir: str | Path, number: int | str) -> str:
    """Why a trial whose worker died without reporting failed: the reason it left on disk (a
    timeout), else a pointer to Ray's log."""
    note = trial_dir(run_dir, number) / FAILURE_NOTE
    return note.read_text().strip() if note.exists() else "the trial's worker raised or died (see Ray's log)"


def study_storage(run_dir: Path) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{run_dir.resolve() / 'study.db'}",
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def open_study(run_dir: Path, must_exist: bool = False) -> optuna.Study:
    if must_exist and not (run_dir / "study.db").exists():
        raise CotsearchError(f"{run_dir}: not a cotsearch run directory (it has no study.db)")
    return optuna.load_study(study_name=STUDY_NAME, storage=study_storage(run_dir))


@dataclass
class TrialRecord:
    trial: int
    state: str
    sampled: dict
    val_top1: float | None
    epochs: int | None
    macs: int | None
    macs_conv: int | None
    params: int | None
    latency_ms: float | None
    latency_shared: bool | None  # another trial ran on the node while it was measured
    spec_hash: str | None
    duration_s: float | None
    node: str | None
    gpu_ids: str | None
    reason: str | None
    spec_json: str | None
    val_images: int | None = None  # the validation images val_top1 was read on
    val_s: float | None = None  # of duration_s, spent validating

    @property
    def trained(self) -> bool:
        return self.state in TRAINED_STATES

    @property
    def val_top1_se(self) -> float | None:
        """The reading's binomial standard error (how much it would move on other images)."""
        return binomial_se(self.val_top1, self.val_images) if self.val_top1 is not None and self.val_images else None


def records(study: optuna.Study) -> list[TrialRecord]:
    out = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        state, reason = a.get("state"), a.get("reason")
        if state is None:  # told failed without a record of ours: stopped by Ctrl-C or a kill
            interrupted = t.state == optuna.trial.TrialState.FAIL
            state = "interrupted" if interrupted else t.state.name.lower()
            reason = INTERRUPTED if interrupted else reason
        out.append(TrialRecord(
            t.number, state, json.loads(a.get("sampled", "{}")), a.get("val_top1") if state in TRAINED_STATES else None,
            a.get("epoch"), a.get("macs"), a.get("macs_conv"), a.get("params_count"), a.get("latency_ms"),
            a.get("latency_shared"), a.get("spec_hash"), a.get("duration_s"), a.get("node"), a.get("gpu_ids"), reason, a.get("spec"),
            a.get("val_images"), a.get("val_s"),
        ))
    return out


def write_trials_csv(study: optuna.Study, path: Path) -> list[TrialRecord]:
    """trials.csv from the study; returns the records it wrote."""
    rows = records(study)
    param_names = sorted({k for r in rows for k in r.sampled})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS + [f"param:{p}" for p in param_names])
    for r in rows:
        writer.writerow([getattr(r, c) if getattr(r, c) is not None else "" for c in COLUMNS]
                        + [r.sampled.get(p, "") for p in param_names])
    atomic_write_text(path, buffer.getvalue())
    return rows


def best_record(study: optuna.Study) -> TrialRecord | None:
    """The fully trained trial with the best validation top-1 (ties: fewer MACs)."""
    done = [r for r in records(study) if r.state == "complete" and r.val_top1 is not None]
    return max(done, key=lambda r: (r.val_top1, -(r.macs or 0)), default=None)


def chosen_trial(run_dir: Path) -> int | None:
    """The trial the search's confirmation chose (noise.json, cotsearch.search.confirm), if any."""
    path = Path(run_dir) / NOISE_FILE
    chosen = json.loads(path.read_text()).get("chosen") if path.exists() else None
    return int(chosen["name"]) if chosen and chosen["kind"] == "candidate" else None


def export_trial(run_dir: Path, trial: str | int | None, output: Path) -> TrialRecord | None:
    """Copy a trial's model file (or, for a .yaml output, its spec) to `output`; by default the
    chosen trial's (confirmed, else the best reading)."""
    study = open_study(run_dir, must_exist=True)
    trial = chosen_trial(run_dir) if trial is None else trial
    if trial is None:
        record = best_record(study)
        if record is None:
            raise CotsearchError(f"{run_dir}: no trial has finished training yet; nothing to export")
        source_dir = trial_dir(run_dir, record.trial)
    else:
        key = int(trial) if str(trial).isdigit() else str(trial)
        source_dir = trial_dir(run_dir, key)
        record = next((r for r in records(study) if r.trial == key), None)
        if not source_dir.is_dir():
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
        src = trial_dir(run_dir, record.trial) / name
        if src.exists():
            atomic_write_bytes(best / name, src.read_bytes())
    return best
