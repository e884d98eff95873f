"""Model files: one safetensors file holds weights and spec; bad files are refused."""

import json

import pytest
import torch
from safetensors.torch import save_file

import cotsearch
from helpers import preset_model


@pytest.fixture
def trained_tiny(tmp_path):
    model = preset_model("cotnet_tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # not the initialisation
    model.eval()
    return model, cotsearch.save_model(model, tmp_path / "tiny.safetensors", extra={"classes": ["a"] * 10})


def test_round_trip_gives_identical_outputs(trained_tiny):
    model, path = trained_tiny
    loaded = cotsearch.load_model(path)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.spec == model.spec and loaded.extra == {"classes": ["a"] * 10}
    spec, extra = cotsearch.read_metadata(path)
    assert spec == model.spec and extra["classes"][0] == "a"


def test_file_holds_no_pickle(trained_tiny):
    _, path = trained_tiny
    data = path.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert json.loads(header["__metadata__"]["cotsearch.spec"])["name"] == "cotnet_tiny"
    assert b"\x80\x04\x95" not in data and b"torch._utils" not in data  # no pickle protocol stream


def test_truncated_file_is_refused(trained_tiny, tmp_path):
    _, path = trained_tiny
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(cotsearch.ModelFileError, match="not a valid safetensors file"):
        cotsearch.load_model(cut)


def test_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(cotsearch.ModelFileError, match="holds no cotsearch spec"):
        cotsearch.load_model(path)


def test_weights_that_do_not_fit_the_spec_are_refused(trained_tiny, tmp_path):
    model, _ = trained_tiny
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["fc.weight"] = torch.zeros(3, 512)
    path = tmp_path / "tampered.safetensors"
    save_file(state, path, metadata={"cotsearch.spec": model.spec.model_dump_json(), "cotsearch.format_version": "1"})
    with pytest.raises(cotsearch.ModelFileError, match=r"fc.weight has shape \(3, 512\)"):
        cotsearch.load_model(path)
    del state["fc.weight"]
    save_file(state, path, metadata={"cotsearch.spec": model.spec.model_dump_json(), "cotsearch.format_version": "1"})
    with pytest.raises(cotsearch.ModelFileError, match="missing"):
        cotsearch.load_model(path)


def test_invalid_embedded_spec_is_refused(trained_tiny, tmp_path):
    model, _ = trained_tiny
    bad = json.loads(model.spec.model_dump_json())
    bad["stages"][0]["depth"] = 0
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path,
              metadata={"cotsearch.spec": json.dumps(bad), "cotsearch.format_version": "1"})
    with pytest.raises(cotsearch.ModelFileError, match="stages.0.depth"):
        cotsearch.load_model(path)


def test_missing_file():
    with pytest.raises(cotsearch.ModelFileError, match="no such model file"):
        cotsearch.load_model("nowhere.safetensors")
