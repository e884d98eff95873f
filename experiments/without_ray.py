"""A sweep's rows trained without Ray, for a GPU machine where Ray is not installed.

`cotsearch sweep` runs rows as Ray Tune trials. The GPU machine the benchmarks ran on has
PyTorch but no Ray (and nothing can be installed there from the network), so this script
trains the same rows with the same trial code (cotsearch.search.trial.train_trial) in a pool
of local processes sharing the GPU, and writes the same row files. `cotsearch sweep
... --resume DIR` then finds every row finished and only writes sweep.csv and edf.png.
Cluster support, retries and the trials' model files are what Ray adds; none is needed here.

    prepare  (here, with cotsearch installed): the run directory exactly as `cotsearch sweep`
             with the same arguments makes it (space.json, proxies.json unless --no-proxies),
             and its rows appended to a plan file: seed 0 of every spec first, then seed 1, ...,
             so that a run stopped by its deadline leaves whole seeds; a plan holds several sweeps
    run      (on the GPU machine): trains the plan's unfinished rows, in the plan's order, until
             a deadline, appending each finished row to one JSON-lines file as it ends
    collect  (here): files those rows under each DIR/rows/, as `cotsearch sweep` would have
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path


def prepare(plan_file: Path, space_file: Path, out: Path, archs: int | None, seeds: int, recipe: dict,
            proxies: bool, scaled_presets: list[str]) -> None:
    """Append the rows of `cotsearch sweep SPACE (--archs N | --all) --seeds S [recipe] [--scaled-preset P]
    --out OUT` (or --resume OUT, where OUT exists) to the plan, seed-major; rows already planned are kept once."""
    import optuna
    from rich.console import Console

    from cotsearch.bench.sweep import row_configs, score_proxies, sweep_candidates
    from cotsearch.files import atomic_write_text
    from cotsearch.search.rundir import prepare_run_dir
    from cotsearch.search.space import SearchSpace, load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as `cotsearch sweep`: no "study created" line for the draw
    space = SearchSpace.model_validate(load_space(str(space_file)).values_with(
        train={k: v for k, v in recipe.items() if v is not None}))
    space, lock = prepare_run_dir(space, out, resume=(out / "space.json").exists())
    try:
        candidates, named, _ = sweep_candidates(space, archs, scaled_presets)
        if proxies:
            score_proxies(space, candidates, out, Console(stderr=True))
        rows = sorted(row_configs(candidates, seeds, space.train.seed, named), key=lambda c: c.id.seed)
    finally:
        lock.close()
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else []
    planned = {(t["dir"], row_number(t)) for t in plan}
    added = [t for t in ({"dir": str(out), "config": c.model_dump(mode="json")} for c in rows)
             if (t["dir"], row_number(t)) not in planned]
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan_file, json.dumps(plan + added))  # a stopped prepare leaves the old plan whole
    print(f"{plan_file}: {len(plan) + len(added)} rows ({len(added)} added for {out}: {len(candidates)} specs x {seeds} seeds)")


def row_number(task: dict) -> str:
    """A planned row's number, as its row file is named (DIR/rows/NUMBER.json)."""
    from cotsearch.search.trial_types import TrialId

    return str(TrialId.model_validate(task["config"]["id"]))


def _train_row(task: dict) -> tuple[dict, dict] | None:
    """One row in a worker process; None when the deadline has passed before it starts."""
    if time.time() > task["deadline"]:
        return None
    from cotsearch.bench.sweep import make_row
    from cotsearch.search.space import SearchSpace
    from cotsearch.search.trial import train_trial
    from cotsearch.search.trial_types import TrialConfig, TrialResult

    space = SearchSpace.model_validate_json(task["space"])
    config = TrialConfig.model_validate(task["config"])
    reported: list[dict] = []
    with tempfile.TemporaryDirectory() as run_dir:  # the trial's model file is not kept
        train_trial(config, space, run_dir, reported.append, socket.gethostname())
    results = [TrialResult.of(r) for r in reported]
    curve = {r.epoch: r.val_top1 for r in results if r.is_epoch and r.val_top1 is not None}
    return task, make_row(config, results[-1] if results else TrialResult(), curve, task["proxies"],
                          None if results else "the trial reported nothing")


def check_triton() -> bool:
    """Before training CoT layers on CUDA: the Triton kernels against the unfold reference
    (forward and both gradients, fp32 and bf16, odd sizes, a map smaller than the window).
    False (and the workers fall back to the PyTorch path) if any differs."""
    import torch

    from cotsearch.nn.layers.aggregation import local_aggregate_unfold
    from cotsearch.nn.layers.aggregation_triton import TritonAggregate

    ok = True
    for n, c, h, w, heads, k in [(8, 64, 28, 28, 4, 3), (3, 24, 5, 9, 2, 3), (2, 16, 2, 2, 1, 3), (4, 32, 14, 14, 8, 5)]:
        for dtype, tol in [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)]:
            gen = torch.Generator(device="cuda").manual_seed(0)
            v = torch.randn(n, c, h, w, device="cuda", generator=gen).to(dtype).requires_grad_()
            a = torch.randn(n, heads, k * k, h, w, device="cuda", generator=gen).to(dtype).requires_grad_()
            g = torch.randn(n, c, h, w, device="cuda", generator=gen).to(dtype)
            outs = []
            for fn in (TritonAggregate.apply, local_aggregate_unfold):
                try:
                    out = fn(v, a, k)
                    grads = torch.autograd.grad(out, (v, a), g)
                except Exception as e:  # noqa: BLE001 -- no working Triton here: say so, train without it
                    print(f"triton failed: {type(e).__name__}: {e}"[:500])
                    return False
                outs.append([out.float(), *(x.float() for x in grads)])
            errors = [((x - y).abs().max() / y.abs().max().clamp_min(1e-6)).item() for x, y in zip(*outs)]
            good = max(errors) < tol
            ok &= good
            print(f"triton vs unfold {(n, c, h, w)} heads {heads} k {k} {str(dtype)[6:]}: relative max error "
                  f"out {errors[0]:.1e}, d values {errors[1]:.1e}, d attn {errors[2]:.1e} {'ok' if good else 'MISMATCH'}")
    return ok


def run(plan_file: Path, rows_file: Path, workers: int, deadline_s: float, data: str | None) -> None:
    """Train the plan's rows not yet finished, `workers` at a time; start none after
    `deadline_s`, and append each finished row to `rows_file` as it ends."""
    from cotsearch.bench.sweep import FINISHED, make_row, read_rows
    from cotsearch.search.trial_types import TrialConfig, TrialResult

    started = time.time()
    import torch

    if torch.cuda.is_available():
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
        if not check_triton():
            os.environ["COTSEARCH_TRITON"] = "0"  # the spawned workers use the PyTorch aggregation
            print("Triton kernels differ from the reference: training with the PyTorch aggregation", flush=True)
    plan = json.loads(plan_file.read_text())
    dirs = list(dict.fromkeys(t["dir"] for t in plan))
    done = {(d, n) for d in dirs for n, row in read_rows(Path(d)).items() if row["state"] in FINISHED}
    if rows_file.exists():
        done |= {(r["dir"], r["number"]) for r in map(json.loads, rows_file.read_text().splitlines())
                 if r["row"]["state"] in FINISHED}
    spaces, proxies = {}, {}
    for d in dirs:
        space = json.loads((Path(d) / "space.json").read_text())
        if data:
            space["train"]["data"] = data
        spaces[d] = json.dumps(space)
        scored = Path(d) / "proxies.json"
        proxies[d] = json.loads(scored.read_text()) if scored.exists() else {}
    tasks = [{**t, "space": spaces[t["dir"]], "deadline": started + deadline_s, "proxies": proxies[t["dir"]]}
             for t in plan if (t["dir"], row_number(t)) not in done]
    print(f"{len(plan) - len(tasks)} of {len(plan)} rows finished; training {len(tasks)} with {workers} workers, "
          f"none started after {deadline_s:.0f} s", flush=True)
    finished = 0
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool, open(rows_file, "a") as log:
        tasks_of = {pool.submit(_train_row, t): t for t in tasks}
        pending = set(tasks_of)
        while pending:
            ended, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in ended:
                task = tasks_of[future]
                try:
                    done_row = future.result()
                except Exception as e:  # noqa: BLE001 -- the worker died outside the trial: a failed row
                    done_row = task, make_row(TrialConfig.model_validate(task["config"]), TrialResult(), {}, {},
                                              f"{type(e).__name__}: {e}"[:500])
                if done_row is None:
                    continue
                task, row = done_row
                number = row_number(task)
                log.write(json.dumps({"dir": task["dir"], "number": number, "row": row}) + "\n")
                log.flush()
                finished += 1
                what = row["error"] or f"val {row['val_top1']:.4f} test {row['test_top1']:.4f}"
                print(f"[{time.time() - started:5.0f}s] {finished}/{len(tasks)} {task['dir']} {number} {row['state']} "
                      f"{row['duration_s'] or 0:.1f}s: {what}", flush=True)
    print(f"{finished} rows in {time.time() - started:.0f} s", flush=True)


def collect(rows_file: Path) -> None:
    from cotsearch.bench.sweep import write_row

    lines = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
    for r in lines:
        write_row(Path(r["dir"]), r["number"], r["row"])
    print(f"filed {len(lines)} rows from {rows_file}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="add a sweep's rows to a plan (these options mean what `cotsearch sweep`'s do; --data is run's)")
    p.add_argument("plan_file", type=Path)
    p.add_argument("space_file", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the sweep's run directory, relative to the repository")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--archs", type=int)
    which.add_argument("--all", action="store_true")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--epochs", type=int)
    p.add_argument("--train-limit", type=int)
    p.add_argument("--val-size", type=int)
    p.add_argument("--no-proxies", action="store_true")
    p.add_argument("--scaled-preset", action="append", default=[])
    r = sub.add_parser("run")
    r.add_argument("plan_file", type=Path)
    r.add_argument("rows_file", type=Path)
    r.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    r.add_argument("--deadline", type=float, default=float("inf"), help="seconds after which no row starts")
    r.add_argument("--data", help="the data source, where Fashion-MNIST is not in the Debian package's folder")
    c = sub.add_parser("collect")
    c.add_argument("rows_file", type=Path)
    args = parser.parse_args()
    from cotsearch.errors import CotsearchError

    try:
        dispatch(args)
    except CotsearchError as e:  # a user's mistake (a space file, a run directory): one line, as the CLI says it
        sys.exit(f"error: {e}")


def dispatch(args: argparse.Namespace) -> None:
    if args.command == "prepare":
        prepare(args.plan_file, args.space_file, args.out, None if args.all else args.archs, args.seeds,
                {"epochs": args.epochs, "train_limit": args.train_limit, "val_size": args.val_size},
                not args.no_proxies, args.scaled_preset)
    elif args.command == "run":
        run(args.plan_file, args.rows_file, args.workers, args.deadline, args.data)
    else:
        collect(args.rows_file)


if __name__ == "__main__":
    sys.exit(main())
