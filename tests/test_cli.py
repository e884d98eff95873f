"""The command line, run as a user runs it (a subprocess): tables, files, exit codes."""

import json
import subprocess
import sys

import pytest
import torch
from official import fill_official

import cotsearch
from helpers import preset_model


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cotsearch.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_build_preset_writes_a_loadable_model_file(tmp_path):
    out = tmp_path / "m.safetensors"
    result = run("build", "cotnet_tiny", "-o", str(out), "--input-size", "32")
    assert result.returncode == 0, result.stderr
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
    result = run("build", str(spec))
    assert result.returncode == 0, result.stderr
    assert "cCcC"[:2] in result.stdout or "cC" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["build", "nope"], "nope: no such preset or file"),
    (["build", "missing.yaml"], "missing.yaml: no such file"),
    (["convert", "x.pth", "--preset", "cotnet500", "-o", "y.safetensors"], "--preset cotnet500: unknown preset"),
    (["convert", "x.pth", "--preset", "cotnet50", "-o", "y.safetensors"], "x.pth: no such checkpoint file"),
])
def test_user_mistakes_exit_2_with_one_line(args, message, tmp_path):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_bad_spec_file_exits_2(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("stages:\n  - {depth: 2, planes: 16, cot: {heads: 3}}\n")
    result = run("build", str(spec), "-o", str(tmp_path / "m.safetensors"))
    assert result.returncode == 2
    assert "stages.0: Value error" not in result.stderr and "cot.heads 3 must divide the width 16" in result.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_convert_official_checkpoint(tmp_path):
    ckpt = tmp_path / "official.pth"
    torch.save({"state_dict_ema": fill_official("se_cotnetd_50")}, ckpt)
    out = tmp_path / "se50.safetensors"
    result = run("convert", str(ckpt), "--preset", "se_cotnetd_50", "-o", str(out))
    assert result.returncode == 0, result.stderr
    model = cotsearch.load_model(out)
    assert model.spec.name == "se_cotnetd_50" and model.num_classes == 1000


def test_schema_is_json():
    result = run("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "BackboneSpec"
