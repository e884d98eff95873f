"""The command line: exit codes and one-line errors as a user meets them (a subprocess); tables and
files in this process."""

import json
import os
import subprocess
import sys

import pytest
import torch

import cotsearch

from helpers import cli, cli_here, preset_model
from official import fill_official


def test_build_preset_writes_a_loadable_model_file(tmp_path):
    out = tmp_path / "m.safetensors"
    result = cli_here("build", "cotnet_tiny", "-o", out, "--input-size", "32")
    assert result.exit_code == 0, result.output
    assert "params: 535,096" in result.stdout and "4x4" in result.stdout
    assert cotsearch.load_model(out).spec == cotsearch.load_spec("cotnet_tiny")


def test_build_every_preset_in_process():
    from typer.testing import CliRunner

    from cotsearch.cli import app

    runner = CliRunner()
    for name in cotsearch.list_presets():
        result = runner.invoke(app, ["build", name])
        assert result.exit_code == 0, (name, result.output)
        params = sum(p.numel() for p in preset_model(name).parameters())
        assert f"params: {params:,}" in result.output


def test_build_hand_written_spec(tmp_path):
    spec = tmp_path / "mine.yaml"
    spec.write_text(
        "name: mine\nin_chans: 3\nnum_classes: 100\ninput_size: 32\nstem: {type: small, width: 24}\n"
        "stages:\n  - {depth: 2, planes: 16, blocks: [conv, cot], cot: {kernel_size: 5, heads: 4}}\n"
        "  - {depth: 2, planes: 32, stride: 2, cardinality: 2, blocks: cot}\nse_ratio: 0.25\nact: silu\n"
    )
    result = cli_here("build", spec)
    assert result.exit_code == 0, result.output
    assert "cC (c=conv C=cot)" in result.stdout and "cot x2" in result.stdout  # the pattern, then one kind
    assert "16x16" in result.stdout  # the strided stage's output


@pytest.mark.parametrize("args, message", [
    (["build", "nope"], "nope: no such preset or file"),
    (["build", "missing.yaml"], "missing.yaml: no such file"),
    (["convert", "x.pth", "--preset", "cotnet500", "-o", "y.safetensors"], "--preset cotnet500: unknown preset"),
    (["convert", "x.pth", "--preset", "cotnet50", "-o", "y.safetensors"], "x.pth: no such checkpoint file"),
    (["train", "cotnet_tiny", "--device", "cpuu"], "--device: String should match pattern"),
    (["train", "cotnet_tiny", "-o", "/dev/null/m.safetensors"], "-o /dev/null/m.safetensors: cannot be written"),
    (["train", "cotnet_tiny", "-o", "."], "-o .: is a directory"),
])
def test_user_mistakes_exit_2_with_one_line(args, message, tmp_path):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_bad_spec_file_exits_2(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("stages:\n  - {depth: 2, planes: 16, cot: {heads: 3}}\n")
    result = cli("build", str(spec), "-o", str(tmp_path / "m.safetensors"))
    assert result.returncode == 2
    assert "stages.0: Value error" not in result.stderr and "cot.heads 3 must divide the width 16" in result.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_convert_official_checkpoint(tmp_path):
    ckpt = tmp_path / "official.pth"
    torch.save({"state_dict_ema": fill_official("se_cotnetd_50")}, ckpt)
    out = tmp_path / "se50.safetensors"
    result = cli_here("convert", ckpt, "--preset", "se_cotnetd_50", "-o", out)
    assert result.exit_code == 0, result.output
    model = cotsearch.load_model(out)
    assert model.spec.name == "se_cotnetd_50" and model.num_classes == 1000


def test_schema_is_json():
    result = cli("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "BackboneSpec"


def test_a_closed_pipe_ends_the_output_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # `cotsearch presets | head -0`: the reader is gone before the first line
    result = subprocess.run([sys.executable, "-m", "cotsearch.cli", "presets"], stdout=write_end,
                            stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert result.returncode == 1 and result.stderr == ""


def test_written_files_follow_the_umask(tmp_path):
    from cotsearch.files import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600


def test_export_refuses_a_file_type_it_does_not_write(tmp_path):
    result = cli("export", tmp_path, "-o", tmp_path / "x.onnx")
    assert result.returncode == 2 and "expected a .safetensors model file or a .yaml spec" in result.stderr
    assert not (tmp_path / "x.onnx").exists()
