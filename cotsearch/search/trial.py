"""One trial, as Ray Tune runs it on any node: build the spec the driver sent, check the latency
budget on this device, train, report every epoch (ASHA may stop it there), and keep the
weights of the last finished epoch in the run directory.

Anything the trial raises (an error, a NaN loss, out of memory) is reported as a failed
result with its reason, so the search records it and goes on.

Ray's entry point is session.run_trial; `train_trial` is the trial itself and needs no Ray, so
rows of a sweep can also be trained where Ray is not installed (experiments/cot_placement_bench)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

from cotsearch.cost.latency import measure_latency, resolve_device
from cotsearch.cost.memory import check_fits
from cotsearch.data.load import load_data
from cotsearch.export.model_file import save_model
from cotsearch.files import atomic_write_text
from cotsearch.process.node_gate import NodeGate
from cotsearch.process.watchdog import Watchdog
from cotsearch.search.records import trial_dir
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import TrialConfig, TrialKind, TrialResult, TrialState, failed
from cotsearch.train.loop import evaluate, init_model, train


class WorkerData:
    """The data sets a trial worker keeps between its trials (Ray reuses workers): a later trial
    of the same recipe starts with its data in memory. At most `recipes` at once, the oldest
    dropped first (experiments/cot_placement_bench trains rows of two recipes in one worker)."""

    def __init__(self, recipes: int = 2):
        self.recipes, self.loaded = recipes, {}

    def get(self, space: SearchSpace):
        recipe = space.train
        key = (recipe.data, recipe.train_limit, recipe.val_size, recipe.input_size)
        if key not in self.loaded:
            while len(self.loaded) >= self.recipes:
                self.loaded.pop(next(iter(self.loaded)))  # the oldest
            self.loaded[key] = load_data(recipe.data, train_limit=recipe.train_limit, val_size=recipe.val_size,
                                         input_size=recipe.input_size,
                                         workers=max(0, int(space.search.cpus_per_trial) - 1))
        return self.loaded[key]


WORKER_DATA = WorkerData()  # this worker process's: every trial it runs goes through it


def train_trial(config: TrialConfig, space: SearchSpace, run_dir: str, report_to: Callable[[dict], None],
                node: str) -> None:
    """Train the spec the driver fixed for this trial (`config.spec`, already fitted to the data
    and priced as `config.cost`): nothing here re-derives it. Every result goes to `report_to`
    (a TrialResult's report), the last one saying how the trial ended."""
    started = time.time()
    torch.set_num_threads(max(1, int(space.search.cpus_per_trial)))
    spec, cost, number = config.spec, config.cost, str(config.id)
    out = trial_dir(run_dir, config.id)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "spec.yaml", spec.to_yaml())
    base = {"node": node, "gpu_ids": os.environ.get("CUDA_VISIBLE_DEVICES", ""), "number": number,
            "trial_started_at": started, "spec_hash": config.spec_hash}
    watchdog = Watchdog(space.search.trial_timeout_s, out)

    def report(result: TrialResult) -> None:
        report_to(result.model_copy(update={**base, "duration_s": time.time() - started}).report())

    gate = None
    try:
        gate = NodeGate()
        data = WORKER_DATA.get(space)
        config_train = space.train.train_config()
        if config.seed is not None:  # a sweep, a confirmation and a reference train each spec with several seeds
            config_train = config_train.model_copy(update={"seed": config.seed})
        device = resolve_device(config_train.device)
        base["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        check_fits(spec.name or number, cost, config_train.batch_size, device, training=True)
        model = init_model(spec, seed=config_train.seed)
        base["spec_hash"] = model.spec.spec_hash()  # what was built, checked against the config where it is recorded
        costs = {"macs": cost.macs, "params": cost.params}
        # Every trial measures its latency on its own device (about a second): budgets,
        # objectives and the Pareto plot use it, and its record says whether another trial
        # ran on the node meanwhile.
        with gate.measuring(space.search.latency_isolated) as measured:
            latency = measure_latency(model, device, space.budgets.latency_batch_size, min_run_time=0.2).median_ms
        costs.update(latency_ms=latency, latency_shared=measured.shared)
        limit = space.budgets.max_latency_ms
        if limit is not None and latency > limit and not config.never_refused:
            report(TrialResult(outcome=TrialState.INFEASIBLE,
                               reason=f"over budget: latency {latency:.2f} ms > {limit} ms on {device}",
                               constraints=space.constraints(cost, latency), **costs, val_top1=0.0, epoch=0))
            return
        extra = {**data.metadata(), "trial": number, "search": space.name}
        # A sweep reads every epoch's top-1 (the benchmark's per-epoch rankings); a search
        # validates where its scheduler compares trials, and at the end. A confirmation or a
        # reference run is read once, at its end: nothing compares it before.
        validated = (set(range(1, config_train.epochs + 1)) if config.id.kind == TrialKind.SWEEP
                     else {config_train.epochs} if config.never_refused
                     else set(space.search.validation_epochs(config_train.epochs)))
        val_seconds = 0.0

        def on_epoch(m) -> None:
            nonlocal val_seconds
            val_seconds += m.val_seconds
            save_model(model, out / "model.safetensors", extra={**extra, "epoch": m.epoch, "val_top1": m.val_top1})
            final = config.id.kind == TrialKind.SWEEP and m.epoch == config_train.epochs  # a sweep's final model
            test = {"test_top1": evaluate(model, data.test, config_train, device)[1]} if final else {}
            reading = {} if m.val_top1 is None else {"val_top1": m.val_top1, "val_loss": m.val_loss,
                                                     "val_images": len(data.val)}
            # Ray may hold a trial that ASHA stopped in this report until its worker is reused
            # (reuse_actors): meanwhile it neither trains on the node nor is hung.
            with gate.aside(), watchdog.waiting_on_ray():
                report(TrialResult(**reading, train_loss=m.train_loss, epoch=m.epoch, images_per_s=m.train_images_per_s,
                                   val_s=val_seconds, seed=config_train.seed, **costs, **test))

        with gate.training() as between_steps:
            train(model, data, config_train, on_epoch=on_epoch, on_step=between_steps, test=False,
                  validate=validated.__contains__)
    except Exception as e:  # noqa: BLE001 -- every failure is a result for the search, with its reason
        report(failed(f"{type(e).__name__}: {e}"[:500]))
    finally:
        if gate is not None:
            gate.close()
        watchdog.cancel()
