"""The command line: exit codes and one-line errors as a user meets them (a subprocess); tables and
files in this process."""

import json
import os
import subprocess
import sys
import warnings

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


# Outputs (issues 25 and 27): an -o that is a folder, something other than a plain file, or a
# file cotsearch did not write is refused before any work, and nothing is written.

COMMANDS = {
    "build": (["build", "cotnet_tiny"], "a cotsearch model file"),
    "train": (["train", "resnet_tiny", "--epochs", "1"], "a cotsearch model file"),
    "convert": (["convert", "ckpt.pth", "--preset", "cotnet_tiny"], "a cotsearch model file"),
    "export-onnx": (["export-onnx", "model.safetensors"], "an ONNX file from PyTorch's exporter"),
    "report": (["report", "run"], "a cotsearch report"),
}
TARGETS = {"folder": "is a directory; expected a file path", "notes.txt": "exists and is not {kind}; it is not overwritten",
           "fifo": "is not a plain file; expected a file path"}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_that_is_not_ours_is_refused_before_any_work(tmp_path, monkeypatch, command, target):
    monkeypatch.chdir(tmp_path)
    for name in ("ckpt.pth", "model.safetensors", "notes.txt"):
        (tmp_path / name).write_text("the user's")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    args, kind = COMMANDS[command]
    result = cli_here(*args, "-o", target)
    assert isinstance(result.exception, cotsearch.CotsearchError), result.output
    assert str(result.exception) == f"-o {target}: {TARGETS[target].format(kind=kind)}" + (
        " (move it away or choose another path)" if target == "notes.txt" else "")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and (tmp_path / "notes.txt").read_text() == "the user's"


def test_export_overwrites_only_what_cotsearch_wrote(tmp_path):
    """Before, `export -o` replaced any file: a spec a person wrote, or their own weights."""
    from cotsearch.arch.load import PRESETS, is_written_spec

    hand_written = (PRESETS / "resnet_tiny.yaml").read_text()  # a valid spec, as a person writes one
    (tmp_path / "mine.yaml").write_text(hand_written)
    (tmp_path / "mine.safetensors").write_text("the user's")
    (tmp_path / "dumped.yaml").write_text(cotsearch.load_spec("resnet_tiny").to_yaml())
    assert not is_written_spec(tmp_path / "mine.yaml") and is_written_spec(tmp_path / "dumped.yaml")
    for name, kind in (("mine.yaml", "a spec file cotsearch wrote"), ("mine.safetensors", "a cotsearch model file")):
        result = cli_here("export", tmp_path / "run", "-o", tmp_path / name)
        assert str(result.exception).startswith(f"-o {tmp_path / name}: exists and is not {kind}; it is not overwritten")
    assert (tmp_path / "mine.yaml").read_text() == hand_written and (tmp_path / "mine.safetensors").read_text() == "the user's"
    assert cli_here("build", "resnet_tiny", "-o", tmp_path / "own.safetensors").exit_code == 0
    for ours in ("dumped.yaml", "own.safetensors"):  # past the check, to the run directory
        result = cli_here("export", tmp_path / "run", "-o", tmp_path / ours)
        assert str(result.exception).startswith(f"{tmp_path / 'run'}: not a cotsearch run directory")


def test_build_onto_a_folder_exits_2_with_one_line(tmp_path):
    result = cli("build", "cotnet_tiny", "-o", tmp_path)
    assert result.returncode == 2 and result.stderr == f"error: -o {tmp_path}: is a directory; expected a file path\n"


@pytest.mark.slow
def test_build_replaces_its_own_file_and_makes_missing_folders_with_any_name(tmp_path):
    """A path with spaces and non-ASCII characters, in the C locale (handled before this change)."""
    out = tmp_path / "new folder ü" / "modèle 1.safetensors"
    result = cli("build", "resnet_tiny", "-o", out, env={"LC_ALL": "C", "LANG": "C"})
    assert result.returncode == 0 and "wrote" in result.stdout and "ü" in result.stdout, result.stderr
    assert cotsearch.load_model(out).spec == cotsearch.load_spec("resnet_tiny")
    result = cli_here("build", "cotnet_tiny", "-o", out)  # replaces the model file the first wrote
    assert result.exit_code == 0, result.output
    assert cotsearch.load_model(out).spec == cotsearch.load_spec("cotnet_tiny")


def test_export_onnx_refuses_weights_cast_to_int8(tmp_path):
    """It used to export them and then report onnxruntime's "max relative nan"."""
    from safetensors.torch import save_file

    from cotsearch.export import model_file

    model = preset_model("cotnet_tiny")
    state = {k: (v.to(torch.int8) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    spec_json = model.spec.model_dump_json()
    save_file(state, tmp_path / "int8.safetensors", metadata={
        "cotsearch.spec": spec_json, "cotsearch.format_version": "2", "cotsearch.digest": model_file.digest(spec_json, state)})
    result = cli_here("export-onnx", tmp_path / "int8.safetensors", "-o", tmp_path / "m.onnx")
    assert isinstance(result.exception, cotsearch.ModelFileError) and "is stored as I8; expected F32" in str(result.exception)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("content, message", [
    (b"hello world\nthis is text\n", "not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle)"),
    (b"", "empty file; expected a PyTorch checkpoint"),
    ("half a zip", "a zip archive without its end; the checkpoint is truncated or damaged"),  # one line before too
    ("half a pickle", "cannot read as a PyTorch checkpoint (RuntimeError: unexpected EOF, expected"),  # one line before too
    ("a pickle of 5", "cannot read as a PyTorch checkpoint (RuntimeError: Invalid magic number; corrupt file?)"),
])
def test_convert_of_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, content, message):
    """Text and empty files raised KeyError and IndexError from torch's readers; a pickle of
    another protocol printed torch's warning about it beside the error."""
    path = tmp_path / "ckpt.pth"
    if content in ("half a zip", "half a pickle"):
        torch.save({"fc.weight": torch.zeros(100, 10)}, path, _use_new_zipfile_serialization=content == "half a zip")
        content = path.read_bytes()[: path.stat().st_size // 2]
    elif content == "a pickle of 5":
        import pickle

        content = pickle.dumps(5)
    path.write_bytes(content)
    with pytest.raises(cotsearch.CheckpointError) as err, warnings.catch_warnings():
        warnings.simplefilter("error")
        cotsearch.read_checkpoint(path)
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value), str(err.value)


def just_started_run(tmp_path, data_dir):
    """A run directory as a search leaves it at its start: its space and an empty study."""
    import optuna

    from cotsearch.search.records import STUDY_NAME, study_storage
    from cotsearch.search.space import load_space

    from helpers import write_space

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    space = load_space(str(write_space(tmp_path, data_dir, trials=3)))
    (run_dir / "space.json").write_text(space.model_dump_json(by_alias=True))
    optuna.create_study(storage=study_storage(run_dir), study_name=STUDY_NAME, direction="maximize")
    return run_dir


@pytest.mark.slow
def test_a_report_writes_nothing_beside_a_page_it_cannot_write(tmp_path, fake_fmnist):
    from cotsearch.report.report import write_report

    run_dir = just_started_run(tmp_path, fake_fmnist)
    shared = tmp_path / "shared"
    (shared / "report.html").mkdir(parents=True)
    result = cli("report", run_dir, "-o", shared / "report.html")  # before any work
    assert result.returncode == 2 and "report.html: is a directory; expected a file path" in result.stderr
    (shared / "report.html").rmdir()
    (shared / "pareto.png").write_bytes(b"the user's figure")
    with pytest.raises(cotsearch.CotsearchError, match=r"pareto.png: exists and is not a figure of a cotsearch report"):
        write_report(run_dir, shared / "report.html")
    assert [p.name for p in shared.iterdir()] == ["pareto.png"]  # neither the page nor a figure
    (shared / "pareto.png").unlink()
    for _ in range(2):  # the second replaces the page and the figures the first wrote
        write_report(run_dir, shared / "report.html")
    assert sorted(p.name for p in shared.iterdir()) == sorted(
        ["report.html", "pareto.png", "best_so_far.png", "learning_curves.png", "importances.png", "choices.png"])


def test_an_out_folder_of_other_files_is_not_a_run_and_is_never_touched(tmp_path):
    from cotsearch.search.rundir import prepare_run_dir
    from cotsearch.search.space import load_space

    from helpers import SPACES

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    space = load_space(SPACES / "cot_stages.yaml")
    with pytest.raises(cotsearch.CotsearchError, match=rf"^--out {folder}: holds other files and no run \(no space.json\)"):
        prepare_run_dir(space, folder, resume=False)
    with pytest.raises(cotsearch.CotsearchError, match=rf"^--resume {folder}: not a cotsearch run directory \(no space.json\)$"):
        prepare_run_dir(space, folder, resume=True)
    assert [p.name for p in folder.iterdir()] == ["holiday.jpg"] and (folder / "holiday.jpg").read_bytes() == b"precious"
