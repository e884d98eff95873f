"""Confirmation: what a search says it found, stated with its noise.

After the searched trials, the best few candidates (by the one reading the search saw) and
the space's reference presets are trained again with the same fresh seeds (`search.confirm`;
without it, the references alone with two seeds). From those runs come: the seed noise of one
run, pooled over every spec trained more than once; each spec's mean with a 95% interval;
each candidate's paired difference from each reference, and whether it beats, ties or loses
to it; and the choice: the best confirmed mean, ties within the interval going to the cheaper
spec. The search's own reading of the winner is left out of its mean: it was chosen for being
high (the winner's curse).

The runs are recorded in confirm.json as they finish (a resumed search trains only the rest);
references.json (each reference's mean) and noise.json are derived from them. Ray-free.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from cotsearch.arch.spec import BackboneSpec
from cotsearch.cost.analytic import estimate_cost
from cotsearch.files import atomic_write_text
from cotsearch.search.records import NOISE_FILE
from cotsearch.search.scaled_presets import reference_specs
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import TrialConfig, TrialId, TrialKind, TrialRecord, TrialResult, TrialState
from cotsearch.stats import Interval, Noise, Verdict, choose, mean_interval, paired_difference, verdict

RUNS_FILE, REFERENCES_FILE = "confirm.json", "references.json"


def candidates(space: SearchSpace, rows: list[TrialRecord]) -> list[TrialRecord]:
    """The fully trained trials with the best readings, one per spec, best first."""
    if space.search.confirm is None:
        return []
    done = sorted((r for r in rows if r.state == TrialState.COMPLETE and r.val_top1 is not None),
                  key=lambda r: (-r.val_top1, r.macs or 0, r.trial))
    picked, seen = [], set()
    for r in done:
        if r.spec_hash not in seen:
            picked.append(r)
            seen.add(r.spec_hash)
    return picked[: space.search.confirm.top]


def planned_runs(space: SearchSpace, rows: list[TrialRecord]) -> list[TrialConfig]:
    """The confirmation's trial configs: every candidate and every reference with each of the
    reference seeds, fitted to the data and priced here, as the searched trials are."""
    seeds = space.search.reference_seeds(space.train.seed)
    references = reference_specs(space)
    reference_hashes = {spec.spec_hash() for spec in references.values()}
    # a candidate that is a reference preset's network is not trained twice: with the same seeds
    # and recipe its runs are the reference's (summarize reads them for it)
    specs = [(TrialKind.CONFIRM, r.trial, BackboneSpec.model_validate_json(r.spec_json))
             for r in candidates(space, rows) if r.spec_hash not in reference_hashes]
    specs += [(TrialKind.REFERENCE, name, spec) for name, spec in references.items()]
    return [TrialConfig(id=TrialId(kind=kind, key=key, seed=seed), spec=spec, cost=estimate_cost(spec), seed=seed)
            for kind, key, spec in specs for seed in seeds]


def read_runs(run_dir: Path) -> list[dict]:
    path = run_dir / RUNS_FILE
    return json.loads(path.read_text()) if path.exists() else []


def run_record(config: TrialConfig, result: TrialResult) -> dict:
    """What confirm.json keeps of one finished run."""
    return {"number": str(config.id), "kind": "candidate" if config.id.kind == TrialKind.CONFIRM else "reference",
            "name": str(config.id.key), "seed": config.seed, "spec_hash": config.spec_hash,
            **{k: getattr(result, k) for k in ("val_top1", "val_images", "macs", "params", "latency_ms",
                                               "latency_shared", "epoch", "error")}}


def write_runs(run_dir: Path, runs: list[dict]) -> None:
    atomic_write_text(run_dir / RUNS_FILE, json.dumps(runs, indent=2))
    atomic_write_text(run_dir / REFERENCES_FILE, json.dumps(reference_means(runs), indent=2))


def reference_means(runs: list[dict]) -> list[dict]:
    """references.json: each reference's mean over its finished runs (the report's and the
    Pareto plot's), with how many runs it is over."""
    out = []
    for name in dict.fromkeys(r["name"] for r in runs if r["kind"] == "reference"):
        mine = [r for r in runs if r["kind"] == "reference" and r["name"] == name]
        ok = [r for r in mine if r.get("val_top1") is not None and not r.get("error")]
        first = (ok or mine)[0]
        out.append({"name": name, "val_top1": sum(r["val_top1"] for r in ok) / len(ok) if ok else None,
                    "runs": len(ok), "seeds": [r["seed"] for r in ok],
                    **{k: first.get(k) for k in ("macs", "params", "latency_ms", "latency_shared", "epoch")},
                    "error": None if ok else first.get("error")})
    return out


@dataclass
class Spec:
    """One confirmed spec: a candidate (`name` its trial number) or a reference preset."""

    kind: str
    name: str
    macs: float
    runs: dict[int, float]  # seed -> validation top-1
    mean: Interval
    search_reading: float | None = None  # candidates: the reading that made them one

    @property
    def label(self) -> str:
        return f"trial {self.name}" if self.kind == "candidate" else self.name


@dataclass
class Comparison:
    candidate: str
    reference: str
    difference: Interval
    verdict: Verdict


@dataclass
class Confirmation:
    noise: Noise
    specs: list[Spec]
    comparisons: list[Comparison]
    chosen: Spec | None
    trials_spread: float  # standard deviation of the search's fully trained readings
    trials: int

    def sentence(self) -> str:
        """What a user can and cannot conclude from this run, in one plain sentence."""
        if not self.noise.known:
            return ("the seed noise was not measured (no spec was trained twice): no ranking of this run can be "
                    "told apart from noise")
        resolution = self.noise.t() * self.noise.sd * math.sqrt(2)
        spread = (f"the {self.trials} trained trials' readings differ by {100 * self.trials_spread:.2f} points (sd)"
                  if self.trials >= 2 else "too few trials were trained to measure their spread")
        # Where the trials differ by no more than one run's noise, a search picks no better than random
        # sampling (the placement benchmark): say so. Single readings spread by own^2 + noise^2.
        own = math.sqrt(max(self.trials_spread ** 2 - self.noise.sd ** 2, 0.0)) if self.trials >= 2 else math.inf
        flat = (f"; the trials' own differences, the noise taken out, are {100 * own:.2f} points, no more than one "
                "run's noise: which of them is best is mostly chance (README 'Does the search work?' measured a "
                "space like that)" if own <= self.noise.sd else "")
        return (f"{spread}; one run's seed noise is {100 * self.noise.sd:.2f} points (sd, {self.noise.dof} degrees of "
                f"freedom from {self.noise.specs} specs trained with several seeds): single readings within "
                f"{100 * resolution:.2f} points of each other are not reliably ordered{flat}")

    def to_dict(self) -> dict:
        """noise.json's content; unknown values are null, never NaN (which strict JSON lacks)."""
        return _no_nan(self._dict())

    def _dict(self) -> dict:
        return {"seed_sd": self.noise.sd if self.noise.known else None, "dof": self.noise.dof,
                "specs_with_several_seeds": self.noise.specs, "trials_spread_sd": self.trials_spread,
                "trials": self.trials, "sentence": self.sentence(),
                "specs": [{"kind": s.kind, "name": s.name, "macs": s.macs, "runs": s.runs, "mean": s.mean.mean,
                           "ci95": [s.mean.low, s.mean.high], "search_reading": s.search_reading} for s in self.specs],
                "comparisons": [{"candidate": c.candidate, "reference": c.reference, "difference": c.difference.mean,
                                 "ci95": [c.difference.low, c.difference.high], "verdict": c.verdict}
                                for c in self.comparisons],
                "chosen": self.chosen and {"kind": self.chosen.kind, "name": self.chosen.name}}


def summarize(rows: list[TrialRecord], runs: list[dict], confirmed: list[TrialRecord] | None = None) -> Confirmation:
    """The noise, every confirmed spec's interval, the comparisons and the choice. `runs`: the
    confirmation's finished runs (those of its current plan); `confirmed`: its candidates, best
    first (default: every candidate with runs)."""
    readings = [r.val_top1 for r in rows if r.state == TrialState.COMPLETE and r.val_top1 is not None]
    ok = [r for r in runs if r.get("val_top1") is not None and not r.get("error")]
    by_hash: dict[str, dict[int, float]] = {}  # one network's runs, however many roles it has
    for r in ok:
        by_hash.setdefault(r["spec_hash"], {})[r["seed"]] = r["val_top1"]
    noise = Noise.pooled([list(g.values()) for g in by_hash.values()])
    by_trial = {str(r.trial): r for r in rows}
    macs = {r["spec_hash"]: r.get("macs") or 0 for r in ok}
    if confirmed is None:
        confirmed = [by_trial[n] for n in dict.fromkeys(r["name"] for r in ok if r["kind"] == "candidate")]
    specs = [Spec("candidate", str(c.trial), macs[c.spec_hash], by_hash[c.spec_hash],
                  mean_interval(list(by_hash[c.spec_hash].values()), noise), c.val_top1)
             for c in confirmed if c.spec_hash in by_hash]
    references = dict.fromkeys((r["name"], r["spec_hash"]) for r in ok if r["kind"] == "reference")
    specs += [Spec("reference", name, macs[h], by_hash[h], mean_interval(list(by_hash[h].values()), noise))
              for name, h in references]
    comparisons = []
    for c in (s for s in specs if s.kind == "candidate"):
        for ref in (s for s in specs if s.kind == "reference"):
            diff = paired_difference(c.runs, ref.runs, noise)
            if diff is not None and noise.known:
                comparisons.append(Comparison(c.name, ref.name, diff, verdict(diff)))
    confirmed_specs = {s.name: s for s in specs if s.kind == "candidate"}
    chosen = None
    if confirmed_specs:
        key = choose({k: s.mean for k, s in confirmed_specs.items()}, {k: s.macs for k, s in confirmed_specs.items()}, noise,
                     {k: len(s.runs) for k, s in confirmed_specs.items()})
        chosen = confirmed_specs[key]
    return Confirmation(noise, specs, comparisons, chosen, _sd(readings), len(readings))


def write_noise(run_dir: Path, confirmation: Confirmation) -> None:
    atomic_write_text(run_dir / NOISE_FILE, json.dumps(confirmation.to_dict(), indent=2))


def read_confirmation(run_dir: Path) -> dict | None:
    path = run_dir / NOISE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _no_nan(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) >= 2 else float("nan")
