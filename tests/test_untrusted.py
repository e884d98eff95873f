"""Untrusted files cost no more than their checked claims: hostile model files and a gzip
bomb, refused by the commands in one line, with the peak memory of each refusal measured
against the same command refusing a file it reads nothing of (the interpreter's and the
imports' own memory), which it may not raise by more than MAX_RISE_MB. The hostile files
claim a GiB or more (see tests/hostile.py: they cost the test no disk)."""

import json
import subprocess
import sys

import pytest

import cotsearch

from helpers import two_blocks_model
from hostile import GIB, gzip_bomb, rewrite_tensors

MAX_RISE_MB = 100


@pytest.fixture
def hostile_models(tmp_path):
    """Model files that claim a GiB or more, each refused before it is read: (file, its refusal)."""
    model = cotsearch.save_model(two_blocks_model(), tmp_path / "two blocks.safetensors")
    extra = rewrite_tensors(model, tmp_path / "extra.safetensors", extra={"huge": ("F32", (GIB // 4,))})
    grown = rewrite_tensors(model, tmp_path / "grown.safetensors", shapes={"fc.weight": (GIB // 4 // 32, 32)})
    long = rewrite_tensors(model, tmp_path / "long header.safetensors", metadata={"padding": " " * (50 << 20)})
    return {
        "a tensor the spec does not have": (extra, "unexpected ['huge']"),
        "a tensor of the spec grown": (grown, f"tensor fc.weight has shape ({GIB // 4 // 32}, 32), the spec needs (10, 32)"),
        "a 50 MB header": (long, f"its header claims {int.from_bytes(long.read_bytes()[:8], 'little'):,} bytes"),
    }


# Runs commands one after another in one process (main() as the console script runs it) and
# reads the process's peak memory after each: it only grows, so each reading bounds every
# command before it.
PROBE = """
import contextlib, io, json, resource, sys
from cotsearch.cli import main

out = []
for args in json.loads(sys.argv[1]):
    sys.argv, stderr = ["cotsearch", *args], io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            main()
        except SystemExit as e:
            code = e.code
    out.append([code, stderr.getvalue(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024])
print(json.dumps(out))
"""


def run_in_one_process(commands: list[list], cwd) -> list[tuple[int, str, float]]:
    """(exit code, stderr, peak memory in MB so far) of each command."""
    commands = [[str(a) for a in args] for args in commands]
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands)], capture_output=True, text=True,
                            cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [tuple(reading) for reading in json.loads(result.stdout.splitlines()[-1])]


@pytest.mark.slow
def test_refusals_of_hostile_files_cost_no_more_than_their_headers(hostile_models, tmp_path):
    """export-onnx of model files that claim a GiB or more (the issue's: a valid spec and one
    huge tensor), and train on a gzip bomb (a header of 2,000 images, a stream of a GiB). Each
    command's baseline: the same command refusing a file it reads nothing of (a safetensors
    file without a cotsearch spec; a data folder without the file), run just before."""
    import torch
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    (tmp_path / "empty").mkdir()
    bomb = gzip_bomb(tmp_path / "bomb" / "train-images-idx3-ubyte.gz", images=2000, expands_to=GIB)
    onnx = tmp_path / "a.onnx"
    commands = {
        "export-onnx": [["export-onnx", path, "-o", onnx] for path in (foreign, *(p for p, _ in hostile_models.values()))],
        "train": [["train", "cotnet_tiny", "--data", f"fashion-mnist:{folder}"] for folder in (tmp_path / "empty", bomb.parent)],
    }
    readings = run_in_one_process([args for group in commands.values() for args in group], tmp_path)
    expected = ["holds no cotsearch spec", *(message for _, message in hostile_models.values()),
                "no train-images-idx3-ubyte.gz", f"{bomb}: holds more data than the 1,568,000 bytes its header promises"]
    for (code, stderr, _), message in zip(readings, expected, strict=True):
        assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr[-2000:]
    baselines = [readings[start][2] for start in (0, len(commands["export-onnx"]))]
    for (_, stderr, peak), baseline in zip(readings, [b for b, group in zip(baselines, commands.values()) for _ in group]):
        assert peak - baseline < MAX_RISE_MB, (stderr, peak, baseline)
    assert not onnx.exists()
