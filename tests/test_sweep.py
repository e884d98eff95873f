"""The benchmark's machinery: zero-cost proxies checked by hand on tiny networks, the placement
space, pre-screening in the searcher, a small sweep end to end (killed and resumed), and the
analysis on a synthetic table whose outcomes are known in advance."""

import csv
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import torch
import yaml
from torch import nn

import cotsearch
from cotsearch.bench import analysis, ranking, simulate, table
from cotsearch.bench.sweep import enumerate_specs, read_rows, write_table
from cotsearch.search import proxies
from cotsearch.search.prescreen import Screen, cutoff, random_candidates
from cotsearch.search.sampler import make_sampler
from cotsearch.search.searcher import StudySearcher
from cotsearch.search.space import PROXY_NAMES, Confirm, Prescreen, load_space
from cotsearch.search.trial_types import TrialConfig, TrialId, TrialKind, failed

from helpers import REPO, SPACES, cli

# A 4-stage network small enough to train in a second on the fake data set.
TINY_BASE = {"name": "tiny", "in_chans": 1, "num_classes": 10, "input_size": 28, "stem": {"type": "small", "width": 8},
             "stages": [{"depth": 1, "planes": 8}, {"depth": 1, "planes": 8, "stride": 2},
                        {"depth": 1, "planes": 16, "stride": 2}, {"depth": 1, "planes": 16, "stride": 2}]}


NINE_SPECS = {"stages.2.blocks": {"choice": ["cot", "conv", "se_conv"]},
              "stages.3.blocks": {"choice": ["cot", "conv", "se_conv"]}}


def write_tiny_space(tmp_path, data_dir, search=None, train=None, params=NINE_SPECS):
    """A space over TINY_BASE (default: 3 x 3 = 9 specs) on the fake Fashion-MNIST folder."""
    space = {"name": "tiny_placement", "base": TINY_BASE, "params": params,
             "train": {"data": f"fashion-mnist:{data_dir}", "epochs": 2, "train_limit": 200, "val_size": 100,
                       "batch_size": 50, **(train or {})},
             "search": {"seed": 0, "cpus_per_trial": 1, "trials": 4, **(search or {})}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a busy machine two threads contend and run many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- proxies, by hand ----------------------------------------------------------------------

def linear(weight, bias=None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        if bias is not None:
            layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return layer


W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
X2 = torch.tensor([[1.0, -2.0], [-1.0, 1.0]])  # codes after W: (1, 0, 0) and (0, 1, 0): Hamming distance 2
Y2 = torch.tensor([0, 1])


@pytest.mark.parametrize("act", [nn.ReLU, nn.SiLU])
def test_naswot_kernel_of_two_inputs(act):
    # K = [[3, 3 - 2], [3 - 2, 3]], det 8
    assert proxies.naswot(nn.Sequential(linear(W), act()), X2, Y2) == pytest.approx(math.log(8))
    # A second ReLU on the same codes (an identity layer in between) doubles N_A and the distance: det 36 - 4
    deeper = nn.Sequential(linear(W), nn.ReLU(), linear(np.eye(3)), nn.ReLU())
    assert proxies.naswot(deeper, X2, Y2) == pytest.approx(math.log(32))


def test_synflow_of_a_linear_chain_is_its_depth_times_the_flow():
    torch.manual_seed(1)
    first, second = nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)
    flow = second.weight.double().abs().sum(0) @ first.weight.double().abs().sum(1)  # R for an all-ones input
    # Synaptic saliency is conserved layer by layer (Tanaka et al. 2020): each layer sums to R.
    assert proxies.synflow(nn.Sequential(first, second), torch.randn(5, 3), torch.zeros(5)) == pytest.approx(
        2 * flow.item(), rel=1e-9)


def cross_entropy_gradient(weight, bias, x, y):
    """d mean cross-entropy / d W of a linear classifier, written out: (softmax - one-hot)^T x / n."""
    logits = x @ weight.T + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p.T @ x / len(y)


def test_snip_and_grad_norm_of_a_linear_classifier():
    rng = np.random.default_rng(0)
    weight, bias, x, y = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
    grad = cross_entropy_gradient(weight, bias, x, y)
    tx, ty = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    assert proxies.snip(linear(weight, bias), tx, ty) == pytest.approx(np.abs(weight * grad).sum(), rel=1e-5)
    assert proxies.grad_norm(linear(weight, bias), tx, ty) == pytest.approx(np.linalg.norm(grad), rel=1e-5)


def test_zico_of_a_zero_linear_classifier_on_two_mini_batches():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 4)), np.array([0, 2])
    weight = np.zeros((3, 4))
    g1, g2 = (cross_entropy_gradient(weight, np.zeros(3), x[i:i + 1], y[i:i + 1]) for i in (0, 1))
    mean_abs, std = (abs(g1) + abs(g2)) / 2, abs(g1 - g2) / 2
    varies = std > 0
    expected = math.log((mean_abs[varies] / std[varies]).sum())
    layer = nn.Linear(4, 3, bias=False)
    nn.init.zeros_(layer.weight)
    assert proxies.zico(layer, torch.tensor(x, dtype=torch.float32), torch.tensor(y)) == pytest.approx(expected, rel=1e-5)


def test_jacob_cov_of_a_linear_network():
    # Every image has the same input Jacobian: the correlation matrix is all ones, its
    # eigenvalues n (once) and 0 (n - 1 times).
    torch.manual_seed(0)
    net, n, k = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3)), 6, proxies.JACOB_K
    expected = -(math.log(n + k) + 1 / (n + k)) - (n - 1) * (math.log(k) + 1 / k)
    assert proxies.jacob_cov(net, torch.randn(n, 5), torch.zeros(n)) == pytest.approx(expected, rel=1e-6)


def test_every_proxy_of_a_spec_is_finite_and_fixed_by_its_seed():
    assert set(proxies.SCORES) | {"params", "macs"} == set(PROXY_NAMES)
    spec = cotsearch.BackboneSpec.model_validate(TINY_BASE | {"stages": [s | {"blocks": kind} for s, kind in
                                                              zip(TINY_BASE["stages"], ["cot", "conv", "se_conv", "cot"])]})
    x, y = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 10
    first, seconds = proxies.score_spec(spec, x, y, seed=0)
    again, _ = proxies.score_spec(spec, x, y, seed=0)
    other, _ = proxies.score_spec(spec, x, y, seed=1)
    assert list(first) == list(PROXY_NAMES) and all(math.isfinite(v) for v in first.values())
    assert first == again
    assert {n for n in proxies.SCORES if other[n] != first[n]} == set(proxies.SCORES)  # each depends on the weights
    cost = cotsearch.estimate_cost(spec)
    assert (first["params"], first["macs"]) == (cost.params, cost.macs)
    assert all(s >= 0 for s in seconds.values())


# -- the placement space and pre-screening ---------------------------------------------------

def test_the_placement_space_holds_81_specs_with_the_presets_and_the_official_placements():
    space = load_space(SPACES / "cot_placement.yaml")
    specs = {c.spec.spec_hash(): c.sampled for c in enumerate_specs(space)}
    assert len(specs) == 81
    for preset, kind in (("cotnet_tiny", "cot"), ("resnet_tiny", "conv")):
        assert specs[space.data_shape().apply(cotsearch.load_spec(preset)).spec_hash()] == {
            f"stages.{i}.blocks": kind for i in range(4)}
    for last in (1, 2, 3):  # cotnet50_cccl, _ccll, _clll: CoT in the last 1, 2 or 3 stages
        placed = {f"stages.{i}.blocks": "cot" if i >= 4 - last else "conv" for i in range(4)}
        assert placed in specs.values()
    assert (space.train.epochs, space.train.train_limit, space.train.val_size, space.train.batch_size) == (3, 6000, 10000, 64)
    assert space.search.scheduler == "none" and space.search.prescreen is None and not space.budgets.names()


@pytest.mark.parametrize("prescreen, message", [
    ({"proxy": "nope"}, "search.prescreen.proxy: Input should be 'naswot', 'synflow'"),
    ({"proxy": "zico", "keep": 0}, "search.prescreen.keep: Input should be greater than 0"),
    ({"proxy": "zico", "pool": "200"}, "search.prescreen.pool: Input should be a valid integer"),
    ({"proxy": "zico", "colour": 1}, "search.prescreen.colour: unknown key"),
])
def test_bad_prescreen_settings_are_refused(tmp_path, fake_fmnist, prescreen, message):
    with pytest.raises(cotsearch.SpecError, match=message):
        load_space(write_tiny_space(tmp_path, fake_fmnist, search={"prescreen": prescreen}))


def test_the_searcher_trains_only_what_the_prescreen_admits(tmp_path, fake_fmnist, quiet_optuna):
    space = load_space(write_tiny_space(tmp_path, fake_fmnist, search={
        "prescreen": {"proxy": "macs", "pool": 40, "keep": 0.5}, "sampler": "random"}))
    draws = [c for c, _ in zip((c for c in random_candidates(space, 0) if c is not None), range(40))]
    pool = {c.spec.spec_hash(): c.cost.macs for c in draws}
    threshold = cutoff(list(pool.values()), 0.5)
    assert len(pool) == 9 and threshold == sorted(pool.values())[-5]  # the 5th most MACs of the 9 specs

    # The space's own seeded sampler, as a search opens its study. With an unseeded one, 2 runs of
    # 300 drew only admitted specs and the `screened` assertion failed by chance.
    study = optuna.create_study(direction="maximize", sampler=make_sampler(space))
    searcher = StudySearcher(space, study, str(tmp_path))
    admitted = {h for h, macs in pool.items() if macs >= threshold}
    trained = set()
    for i in range(len(admitted)):  # each call samples until it finds a spec to train
        config = TrialConfig.from_ray(searcher.suggest(f"t{i}"))
        trained.add(config.spec_hash)
        searcher.on_trial_complete(f"t{i}", {"val_top1": 0.5, "epoch": space.train.epochs})
    assert trained == admitted
    screened = [t for t in study.trials if t.user_attrs.get("reason", "").startswith("pre-screened: macs")]
    assert screened and all(t.user_attrs["state"] == "infeasible" and t.user_attrs["macs"] < threshold for t in screened)
    assert json.loads((tmp_path / "prescreen.json").read_text())["threshold"] == threshold
    # What a search prints before Tune starts: the scoring (minutes for a real proxy), or the saved cutoff.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    said = []
    Screen(space, fresh).prepare(said.append)
    assert said[0] == "pre-screen: scoring the 9 distinct specs of 40 random feasible samples with macs"
    assert said[-1].startswith(f"pre-screen: cutoff macs {threshold:.4g}: the best 50% of the pool may train (")
    said.clear()
    Screen(space, fresh).prepare(said.append)
    assert said == [f"pre-screen: cutoff macs {threshold:.4g}, as saved in {fresh / 'prescreen.json'}"]


# -- a sweep end to end, killed and resumed ----------------------------------------------------

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the driver scores proxies; on a busy machine two threads crawl


def start_sweep(space, *args):
    """`cotsearch sweep SPACE ARGS` in the background, in a process session of its own."""
    return subprocess.Popen([sys.executable, "-m", "cotsearch.cli", "sweep", str(space), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **ONE_THREAD})


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_training_a_finished_row_again(tmp_path, fake_fmnist, ray_address, monkeypatch):
    space = write_tiny_space(tmp_path, fake_fmnist, params={"stages.3.blocks": {"choice": ["cot", "conv"]}})
    out = tmp_path / "sweep"
    args = ["--all", "--seeds", "2", "--address", ray_address]  # the rows run on the module's Ray cluster
    # One row at a time until the kill: when the first row is written the next has only begun,
    # so the kill comes with rows left to train unless this test stalls for three rows' training.
    proc = start_sweep(space, *args, "--max-concurrent", "1", "--out", out)
    deadline = time.time() + 120
    while not list((out / "rows").glob("*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, mid-sweep: Ray ends its running rows
    proc.wait()
    before = {p.name: p.read_text() for p in (out / "rows").glob("*.json")}
    assert 1 <= len(before) < 4, proc.stderr.read()[-3000:]

    result = cli("sweep", space, *args, "--resume", out, env=ONE_THREAD, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"2 specs x 2 seeds; {len(before)} rows finished, {4 - len(before)} to train" in result.stderr
    trained = [line for line in result.stderr.splitlines() if " complete: val top-1 " in line]
    assert len(trained) == 4 - len(before)
    assert all((out / "rows" / name).read_text() == text for name, text in before.items())  # kept as they were

    with open(out / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {r["state"] for r in table} == {"complete"}
    assert {(r["spec_hash"], r["seed"]) for r in table} == {(h, s) for h in {r["spec_hash"] for r in table} for s in "01"}
    for r in table:
        assert r["stages.3.blocks"] in ("cot", "conv")
        assert float(r["params"]) > 0 and float(r["macs"]) > 0 and float(r["latency_ms"]) > 0
        assert all(0 <= float(r[k]) <= 1 for k in ("val_top1_epoch_1", "val_top1_epoch_2", "test_top1"))
        assert r["val_top1"] == r["val_top1_epoch_2"]
        assert all(math.isfinite(float(r[name])) for name in PROXY_NAMES)
    # Each row trains with its own seed: the same spec's two models differ.
    h = table[0]["spec_hash"]
    weights = [cotsearch.load_model(out / "trials" / f"{h}-s{s}" / "model.safetensors").state_dict() for s in (0, 1)]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert (out / "edf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "edf.png").stat().st_size > 20_000

    # The same row trained without Ray by experiments/without_ray.py (as the benchmarks' rows were
    # trained on a GPU machine that has no Ray) is the same row; in this process but for its worker.
    monkeypatch.syspath_prepend(REPO / "experiments")  # importable by name: its worker is spawned
    without_ray = importlib.import_module("without_ray")
    plan, rows_file, again_dir = tmp_path / "plan.json", tmp_path / "rows.jsonl", tmp_path / "without-ray"
    without_ray.prepare(plan, space, again_dir, archs=1, seeds=1, recipe={}, proxies=True, scaled_presets=[])
    without_ray.run(plan, rows_file, workers=1, deadline_s=math.inf, data=None)
    without_ray.collect(rows_file)
    (number, row), = read_rows(again_dir).items()
    stored = read_rows(out)[number]
    for key in ("state", "val_top1_epoch_1", "val_top1_epoch_2", "test_top1", "params", "macs", "naswot"):
        assert row[key] == stored[key], key


def test_a_failed_row_is_recorded_with_its_reason_and_not_counted_as_finished(tmp_path):
    from types import SimpleNamespace

    from rich.console import Console

    from cotsearch.bench.sweep import FINISHED
    from cotsearch.bench.sweep_runner import RowWriter

    spec = cotsearch.load_spec("cotnet_tiny")
    config = TrialConfig(id=TrialId(kind=TrialKind.SWEEP, key=spec.spec_hash(), seed=1), spec=spec,
                         cost=cotsearch.estimate_cost(spec), seed=1, sampled={"stages.3.blocks": "cot"})
    trial = SimpleNamespace(trial_id="t", config=config.ray_config(),
                            last_result=failed("TrainingDiverged: loss is nan").report())
    writer = RowWriter(tmp_path, {spec.spec_hash(): {"naswot": 1.5}}, Console(file=open(os.devnull, "w")), total=1)
    writer.on_trial_result(0, [], trial, {"epoch": 1, "val_top1": 0.4})
    writer.on_trial_complete(0, [], trial)
    row = read_rows(tmp_path)[f"{spec.spec_hash()}-s1"]
    assert (row["state"], row["error"], row["seed"], row["stages.3.blocks"]) == (
        "failed", "TrainingDiverged: loss is nan", 1, "cot")
    assert row["val_top1_epoch_1"] == 0.4 and row["naswot"] == 1.5 and row["state"] not in FINISHED


# -- the analysis, on a table whose answers are known ----------------------------------------

def write_synthetic_sweeps(tmp_path, fake_fmnist):
    """A search table and a reference table of the 9-spec space, without noise: every spec's
    top-1 is fixed (its index / 10); naswot equals it, zico is its opposite, synflow random."""
    space = load_space(write_tiny_space(tmp_path, fake_fmnist))
    rng = np.random.default_rng(0)
    truth = {}
    for kind, recipe_epochs in (("search", 2), ("reference", 5)):
        folder = tmp_path / kind
        folder.mkdir()
        fitted = space.model_copy(update={"train": space.train.model_copy(update={"epochs": recipe_epochs})})
        (folder / "space.json").write_text(fitted.model_dump_json(by_alias=True))
        rows = []
        for i, c in enumerate(enumerate_specs(space)):
            h = c.spec.spec_hash()
            truth[h] = 0.5 + i / 20
            for seed in (0, 1):
                rows.append({"spec_hash": h, "seed": seed, "state": "complete", **c.sampled,
                             "params": c.cost.params, "macs": c.cost.macs,
                             **{f"val_top1_epoch_{e}": truth[h] - 0.1 * (recipe_epochs - e) for e in range(1, recipe_epochs + 1)},
                             "val_top1": truth[h], "test_top1": truth[h], "naswot": truth[h], "zico": -truth[h],
                             "synflow": rng.normal()})
        write_table(folder, rows)
    return space, truth


def test_rank_correlations_against_worked_examples():
    assert ranking.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    assert ranking.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert ranking.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(2 * 3))  # tau-b with a tie
    assert ranking.spearman([1, 1, 2], [3, 2, 1]) == pytest.approx(-math.sqrt(3) / 2)


def test_the_analysis_of_a_table_whose_answers_are_known(tmp_path, fake_fmnist):
    space, truth = write_synthetic_sweeps(tmp_path, fake_fmnist)
    bench = table.Bench.load(tmp_path / "search", tmp_path / "reference")
    found = {label: (tau, rho, n) for label, tau, rho, n in ranking.correlations(bench)}
    assert found["naswot"] == pytest.approx((1, 1, 9)) and found["zico"] == pytest.approx((-1, -1, 9))
    assert found["search recipe, val top-1 after epoch 1 (seed 0 alone)"] == pytest.approx((1, 1, 9))
    assert found["noise ceiling: reference test top-1, seed 0 against seed 1"] == pytest.approx((1, 1, 9))
    assert abs(found["synflow"][0]) < 1
    noise, spread = table.seed_noise(bench)
    assert noise.sd == 0 and spread == pytest.approx(np.std(list(truth.values()), ddof=1)) and noise.specs == 9
    # Each value's main effect: the mean top-1 of the specs with it, over the other parameter's values.
    effects = {(p, v): (n, mean) for p, v, n, mean, _, _ in table.choice_effects(bench, list(space.params))}
    for (param, value), (n, mean) in effects.items():
        specs = [c.spec.spec_hash() for c in enumerate_specs(space) if c.sampled[param] == value]
        assert n == len(specs) == 3 and mean == pytest.approx(np.mean([truth[h] for h in specs]))

    best = max(truth.values())
    truth_of_table = bench.truth()
    # Without noise and with a budget of the whole table, every strategy ends with the best spec.
    for strategy in ("random", "tpe", "nsga2"):
        chosen = bench.truth()[simulate.simulate(bench, space, strategy, budget=9, runs=3)]
        assert chosen.shape == (3, 9) and (chosen[:, -1] == best).all(), strategy
    # A perfect proxy admits the best 3 specs: a budget of 3 finds the best; random search does not always.
    screen = Prescreen(proxy="naswot", pool=200, keep=0.25)
    assert (bench.truth()[simulate.simulate(bench, space, "tpe", 3, 5, screen)][:, -1] == best).all()
    assert (bench.truth()[simulate.simulate(bench, space, "random", 3, 5)][:, -1] < best).any()
    assert (truth_of_table[simulate.simulate(bench, space, "random", 3, 5, screen)][:, -1] == best).all()  # screened too
    # The same pre-screen before a confirmation (2 candidates, 2 seeds each) of a budget of 7:
    # the search phase trains the 3 it admits, and the best is confirmed; random sampling's 3 may miss it.
    confirm = Confirm(top=2, seeds=2)
    runs = simulate.simulate_confirmed(bench, space, "tpe", 7, 5, confirm, {}, screen=screen)
    assert {r.searched for r in runs} == {3} and all(truth_of_table[r.chosen] == best for r in runs)
    assert any(truth_of_table[r.chosen] < best for r in simulate.simulate_confirmed(bench, space, "random", 7, 5,
                                                                                     confirm, {}))

    top = {c.sampled["stages.2.blocks"] + "," + c.sampled["stages.3.blocks"]: c.spec.spec_hash()
           for c in enumerate_specs(space)}
    best_label = next(label for label, h in top.items() if truth[h] == best)
    report = analysis.analyze(tmp_path / "search", tmp_path / "reference", tmp_path / "out", runs=3,
                              named=[f"best={best_label}"], prescreen=["naswot"], command="cotsearch analyze ...")
    text = report.read_text()
    assert "| naswot | +1.000 | +1.000 | 9 |" in text and "| zico | -1.000 | -1.000 | 9 |" in text
    assert f"| best | {top[best_label]} | {best:.2%} | 1 | {best:.2%} | 1 |" in text
    assert "| tpe, pre-screened by naswot |" in text and "Made by `cotsearch analyze ...`" in text
    for png in (analysis.CURVES, analysis.SCATTER):
        assert (tmp_path / "out" / png).stat().st_size > 20_000
