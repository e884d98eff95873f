"""What every phase of a search and a sweep runs in: a Ray session around a locked run directory,
the trial code as Ray Tune's trainable, and the one Tuner factory, with the same storage and
failure handling for every phase."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import optuna
import ray
from ray import tune

from cotsearch.errors import CotsearchError
from cotsearch.search.rundir import prepare_run_dir
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import RAY_KEY, TrialConfig


def _without_notices(record: logging.LogRecord) -> bool:
    """Drop Ray's notice that token authentication, its default, is on: nothing for a user
    of cotsearch to do about it (setting RAY_AUTH_MODE would have to precede `import ray`)."""
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _init_ray(address: str | None) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), or start a local one. True if started here."""
    address = address or os.environ.get("RAY_ADDRESS")
    logging.getLogger("ray").setLevel(logging.WARNING)
    for handler in logging.getLogger("ray").handlers:
        handler.addFilter(_without_notices)
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            # "local": a Ray of its own, even where another one runs on this machine
            ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                     num_cpus=os.cpu_count())
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise CotsearchError(f"--address {address}: cannot join the Ray cluster ({str(e).splitlines()[0]})") from None
    return True


def alive_nodes() -> list[dict]:
    """The resources of each alive node of the cluster."""
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def trials_per_node(space: SearchSpace, nodes: list[dict]) -> list[int]:
    """How many trials each of these nodes can run at once."""
    cpus, gpus = space.search.cpus_per_trial, space.search.gpus_per_trial

    def fits(available: float, needed: float) -> float:  # 1.0 / 0.1 is 10 trials, though 1.0 // 0.1 == 9.0
        return int(available / needed + 1e-9) if needed else float("inf")

    return [int(min(fits(n.get("CPU", 0), cpus), fits(n.get("GPU", 0), gpus))) for n in nodes]


def check_resources(space: SearchSpace) -> None:
    """A trial needing more CPUs or GPUs than any node has would wait forever: say so now."""
    nodes = alive_nodes()
    if not any(trials_per_node(space, nodes)):
        cpus, gpus = space.search.cpus_per_trial, space.search.gpus_per_trial
        largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        raise CotsearchError(f"--cpus-per-trial {cpus:g} --gpus-per-trial {gpus:g}: no node of the Ray cluster has that "
                             f"much (the largest has {largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs)")


@contextmanager
def ray_session(space: SearchSpace, run_dir: Path, resume: bool, address: str | None):
    """What a search and a sweep both do around their trials: join Ray (or start it here),
    check that a node can run a trial, and prepare and lock the run directory; yields the
    space to run (resuming: the saved one) and undoes it all in reverse."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Ray tables; our own progress lines
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C stops the run (see ctrl_c.py)
    # a trial validates only where its scheduler compares trials and at its end (see
    # SearchSettings.validation_epochs), yet reports every epoch so that its progress shows;
    # Tune's check that each result holds the metric would refuse those reports
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started_ray = _init_ray(address)
    try:
        check_resources(space)
        space, lock = prepare_run_dir(space, run_dir, resume)
        try:
            yield space
        finally:
            lock.close()
    finally:
        if started_ray:
            ray.shutdown()


def run_trial(config: dict, space_json: str, run_dir: str) -> None:
    """Ray Tune's trainable: one trial, in a worker. The trial's code (torch, timm) is
    imported here and not at the top, so the driver, which never trains, starts in 1.7 s
    instead of 4.3 s and holds 0.6 GB less until it needs torch: to test the best model at
    the end, or to score samples with a zero-cost proxy (search.prescreen)."""
    from cotsearch.search.trial import train_trial

    node = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"
    train_trial(TrialConfig.from_ray(config), SearchSpace.model_validate_json(space_json), run_dir, tune.report, node)


def make_tuner(space: SearchSpace, run_dir: Path, name: str, callbacks: list, param_space: dict | None = None,
               dirname=lambda config: config.id.dirname, **tune_config) -> tune.Tuner:
    """A Tuner for one phase (the search, the confirmation, a sweep) in RUN_DIR/NAME: a trial's
    folder named by `dirname` of its TrialConfig, and a trial whose worker or node dies run again
    up to `max_retries` times. `reuse_actors`: a trial starts on the worker of one that ended
    (torch imported, data loaded), seconds sooner; train_trial keeps nothing else between trials."""
    trainable = tune.with_parameters(run_trial, space_json=space.model_dump_json(by_alias=True),
                                     run_dir=str(run_dir.resolve()))
    return tune.Tuner(
        tune.with_resources(trainable, {"cpu": space.search.cpus_per_trial, "gpu": space.search.gpus_per_trial}),
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=space.search.max_concurrent_trials,
                                    trial_dirname_creator=lambda trial: dirname(TrialConfig.from_ray(trial.config)),
                                    **tune_config),
        run_config=tune.RunConfig(storage_path=str(run_dir.resolve()), name=name, verbose=0, callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=space.search.max_retries)))


def grid_tuner(space: SearchSpace, run_dir: Path, configs: list[TrialConfig], name: str, callbacks: list) -> tune.Tuner:
    """A Tuner that trains each of these configs once (the confirmation's runs, a sweep's rows)."""
    grid = tune.grid_search([c.model_dump(mode="json") for c in configs])
    return make_tuner(space, run_dir, name, callbacks, param_space={RAY_KEY: grid})
