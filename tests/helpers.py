"""What the tests share: models built from presets, random valid specs (Hypothesis), fake
data sets on disk, and running the command line on a small search space. Paths are resolved from this file, so the tests
run from any working directory."""

from __future__ import annotations

import contextlib
import csv
import faulthandler
import gzip
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import yaml
from hypothesis import strategies as st

import cotsearch
from cotsearch.arch.spec import StemSpec

TESTS = Path(__file__).parent
REPO = TESTS.parent
SPACES = REPO / "spaces"


def preset_model(name: str, **overrides):
    """A preset's network (the builder takes specs; names are resolved here, at the edge)."""
    return cotsearch.build_model(cotsearch.load_spec(name), **overrides)


# The smallest network holding every kind of layer a compiler or an exporter meets: a strided
# CoT layer with a projection shortcut, then a conv block behind an identity shortcut, SE in
# both. Compiling cotnet_tiny (six CoT blocks) took 76 s against this one's 43 s with a cold
# inductor cache here, and exporting it to ONNX about three times as long.
TWO_BLOCKS = {"name": "two_blocks", "in_chans": 1, "num_classes": 10, "input_size": 28, "se_ratio": 0.25,
              "stem": {"type": "small", "width": 16},
              "stages": [{"depth": 2, "planes": 8, "stride": 2, "blocks": ["cot", "conv"]}]}


def two_blocks_model():
    return cotsearch.build_model(cotsearch.BackboneSpec.model_validate(TWO_BLOCKS))


def model_for(name: str, data, seed: int = 0):
    """A preset fitted to a data set's channels, classes and image size, seeded."""
    from cotsearch.train.loop import init_model

    return init_model(data.shape.apply(cotsearch.load_spec(name)), seed=seed)


def cot_layer(dim: int, kernel_size: int = 3, heads: int | None = None, key_groups: int | None = None, groups: int = 1):
    """A CoT (groups 1) or CoXt layer with the spec's defaults: width // 8 heads, 4 * groups key groups."""
    from cotsearch.arch.plan import CoTPlan
    from cotsearch.nn.layers import CoTLayer, CoXtLayer

    plan = CoTPlan(dim, kernel_size, heads or dim // 8, key_groups or 4 * groups, groups=groups)
    return (CoTLayer if groups == 1 else CoXtLayer)(plan)


def cli(*args, env=None, timeout=600, cwd=REPO) -> subprocess.CompletedProcess:
    """`cotsearch ARGS` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "cotsearch.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)


def cli_here(*args):
    """`cotsearch ARGS` in this process (typer's test runner): what a command computes and
    prints, without an interpreter start; `cli` tests how it exits, as a user runs it."""
    from typer.testing import CliRunner

    from cotsearch.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def write_idx(folder, prefix, images, labels, gz=True, images_magic=0x803):
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    img = images_magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, h, w)) + images.tobytes()
    lab = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
    for name, data in ((f"{prefix}-images-idx3-ubyte", img), (f"{prefix}-labels-idx1-ubyte", lab)):
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def fake_images(n, classes=10, size=28, seed=0):
    """Images whose class is visible: class k has a bright bar at row 2k."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 60, (n, size, size), dtype=np.uint8)
    for i, k in enumerate(labels):
        images[i, (2 * k) % size] = 250
    return images, labels


def write_cifar(folder, n_per_batch=20, evil=False):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n_per_batch)), b"batch_label": b"x"}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(names, protocol=2))
    if evil:
        class Payload:
            def __reduce__(self):
                return (print, ("never",))
        (folder / "test_batch").write_bytes(pickle.dumps({b"data": Payload()}))


# cotnet_tiny at half its width: every kind of block and choice of the real space, at a
# quarter of the MACs, so the searches of the tests spend their time on the search itself.
HALF_TINY = {"name": "half_tiny", "in_chans": 1, "num_classes": 10, "input_size": 28,
             "stem": {"type": "small", "width": 16},
             "stages": [{"depth": 1, "planes": 8, "stride": 1, "blocks": "cot"},
                        {"depth": 2, "planes": 16, "stride": 2, "blocks": "cot"},
                        {"depth": 2, "planes": 32, "stride": 2, "blocks": "cot"},
                        {"depth": 1, "planes": 64, "stride": 2, "blocks": "cot"}]}
MAX_MACS = 7.75e6  # 14 of the small space's 18 specs fit: searches of up to 6 trials find new ones

SPACE = {
    "name": "small",
    "base": HALF_TINY,
    "params": {"stages.1.blocks": {"choice": ["cot", "conv", ["cot", "conv"]]},
               "stages.2.blocks": {"choice": ["cot", "conv", "se_conv"]},
               "se_ratio": {"choice": [0.0, 0.25]}},
    "budgets": {"max_macs": MAX_MACS},
    "train": {"epochs": 1, "val_size": 100, "batch_size": 50},
    "search": {"seed": 0, "cpus_per_trial": 1, "scheduler": "asha", "grace_period": 1, "confirm": None},
}


def write_space(tmp_path, data_dir, trials=3, train=None, search=None, base=None, budgets=None) -> Path:
    """A small space over HALF_TINY on an IDX folder; the other arguments override its parts."""
    space = {**SPACE, "base": base or SPACE["base"], "budgets": SPACE["budgets"] if budgets is None else budgets,
             "train": {**SPACE["train"], "data": f"fashion-mnist:{data_dir}", **(train or {})},
             "search": {**SPACE["search"], "trials": trials, **(search or {})}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def cli_train(folder, *extra):
    """`cotsearch train` of cotnet_tiny for 3 short epochs on a fake IDX folder, as a command line."""
    return [sys.executable, "-m", "cotsearch.cli", "train", "cotnet_tiny", "--data", f"fashion-mnist:{folder}",
            "--epochs", "3", "--batch-size", "50", "--train-limit", "150", "--val-size", "100", "--device", "cpu",
            "--json", *extra]


def tune(*args, env=None, timeout=600):
    return cli("tune", *args, env=env, timeout=timeout)


def search_here(space_file, run_dir, address, resume=False):
    """The search `cotsearch tune SPACE --out RUN_DIR --address ADDRESS` (or `--resume RUN_DIR`) runs, in this process:
    the same driver on the same Ray cluster, without the interpreter start and imports (seconds)
    that the tests of the command line itself pay. Returns (outcome, what it printed)."""
    from cotsearch.search.runner import run_search
    from cotsearch.search.space import load_space

    with in_this_process() as console:
        outcome = run_search(load_space(str(space_file)), run_dir, resume=resume, address=address, console=console)
    return outcome, console.file.getvalue()


@contextlib.contextmanager
def in_this_process(limit_s: int = 600):
    """For a driver run in the test's process: a console that keeps what it prints, the
    environment variables it sets kept from the commands later tests start, and the time
    limit a subprocess would have (a hang dumps every thread's stack and ends the run)."""
    from rich.console import Console

    faulthandler.dump_traceback_later(limit_s, exit=True)
    try:
        with mock.patch.dict(os.environ):
            yield Console(file=io.StringIO(), width=200)
    finally:
        faulthandler.cancel_dump_traceback_later()


def rows(run_dir):
    with open(run_dir / "trials.csv") as f:
        return list(csv.DictReader(f))


# Random valid specs at 32 px: the property tests' input.
INPUT_SIZE = 32


@st.composite
def valid_specs(draw):
    stem = {"type": draw(st.sampled_from(["classic", "deep", "small"])), "width": draw(st.sampled_from([8, 16]))}
    stride_mode = draw(st.sampled_from(["avgpool", "blurpool"]))
    size = -(-INPUT_SIZE // StemSpec.model_validate(stem).stride)  # the feature map entering the next stage
    stages = []
    for i in range(draw(st.integers(1, 4))):
        card = draw(st.sampled_from([1, 2]))
        planes = draw(st.sampled_from([16, 32]))
        width = planes * card
        stages.append({
            "depth": draw(st.integers(1, 2)),
            "planes": planes,
            # A blur pool cannot stride a 1 px map (the spec refuses it): stride 1 there.
            "stride": draw(st.sampled_from([1, 2] if size > 1 or stride_mode == "avgpool" else [1])),
            "cardinality": card,
            "blocks": draw(st.one_of(st.sampled_from(["cot", "conv", "se_conv"]),
                                     st.lists(st.sampled_from(["cot", "conv", "se_conv"]), min_size=1, max_size=3))),
            "cot": {
                "kernel_size": draw(st.sampled_from([3, 5])),
                "heads": draw(st.sampled_from([None, card, 2 * card, width // 4])),
                "key_groups": draw(st.sampled_from([None, 1, 2, card])),
                "attn_reduction": draw(st.sampled_from([1, 2, 4])),
            },
        })
        size = -(-size // stages[-1]["stride"])
    return {
        "in_chans": draw(st.sampled_from([1, 3])),
        "num_classes": draw(st.sampled_from([0, 1, 7])),
        "input_size": INPUT_SIZE,
        "stem": stem,
        "stages": stages,
        "shortcut": draw(st.sampled_from(["conv", "avgpool"])),
        "stride_mode": stride_mode,
        "se_ratio": draw(st.sampled_from([0.0, 0.25])),
        "act": draw(st.sampled_from(["relu", "silu", "gelu"])),
    }
