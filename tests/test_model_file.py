"""Model files: one safetensors file holds weights and spec; bad files are refused."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import cotsearch
from cotsearch.export import model_file

from helpers import preset_model
from hostile import GIB, rewrite_tensors


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


def write_model_file(path, state, spec_json, version="2"):
    """A model file as save_model writes one (its digest right), from parts a test chose."""
    save_file(state, path, metadata={"cotsearch.spec": spec_json, "cotsearch.format_version": version,
                                     "cotsearch.digest": model_file.digest(spec_json, state)})


def test_weights_that_do_not_fit_the_spec_are_refused(trained_tiny, tmp_path):
    model, _ = trained_tiny
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["fc.weight"] = torch.zeros(3, 512)
    path = tmp_path / "tampered.safetensors"
    write_model_file(path, state, model.spec.model_dump_json())
    with pytest.raises(cotsearch.ModelFileError, match=r"fc.weight has shape \(3, 512\)"):
        cotsearch.load_model(path)
    del state["fc.weight"]
    write_model_file(path, state, model.spec.model_dump_json())
    with pytest.raises(cotsearch.ModelFileError, match="missing"):
        cotsearch.load_model(path)


def edit_embedded_spec(source, target, **changes):
    """The file's metadata rewritten with spec fields changed, its tensors and digest kept."""
    with safe_open(str(source), framework="pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    spec = json.loads(metadata["cotsearch.spec"])
    spec.update(changes)
    save_file(state, target, metadata={**metadata, "cotsearch.spec": json.dumps(spec)})


def test_a_spec_edited_to_a_huge_network_is_refused_before_building(trained_tiny, tmp_path, monkeypatch):
    _, path = trained_tiny
    edited = tmp_path / "huge.safetensors"
    huge = [{"depth": 64, "planes": 8192, "stride": 1, "blocks": "conv"}]
    edit_embedded_spec(path, edited, stages=huge)
    monkeypatch.setattr(cotsearch.CoTNet, "__init__", lambda *a, **k: pytest.fail("built the network"))
    with pytest.raises(cotsearch.ModelFileError, match=r"the embedded spec needs [\d,]+ parameters but the file holds"):
        cotsearch.load_model(edited)


@pytest.mark.parametrize("change", [{"act": "silu"}, {"stride_mode": "blurpool"}, {"zero_init_last": False}])
def test_a_spec_edit_that_keeps_every_shape_is_detected(trained_tiny, tmp_path, change):
    _, path = trained_tiny
    edited = tmp_path / "edited.safetensors"
    edit_embedded_spec(path, edited, **change)
    with pytest.raises(cotsearch.ModelFileError, match="changed after the file was written"):
        cotsearch.load_model(edited)


def test_weights_edited_after_saving_are_detected(trained_tiny, tmp_path):
    _, path = trained_tiny
    with safe_open(str(path), framework="pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state["fc.bias"] = state["fc.bias"] + 1
    save_file(state, tmp_path / "w.safetensors", metadata=metadata)
    with pytest.raises(cotsearch.ModelFileError, match="changed after the file was written"):
        cotsearch.load_model(tmp_path / "w.safetensors")


def test_an_unknown_format_version_is_refused(trained_tiny, tmp_path):
    model, _ = trained_tiny
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    write_model_file(tmp_path / "v9.safetensors", state, model.spec.model_dump_json(), version="9")
    with pytest.raises(cotsearch.ModelFileError, match="format_version '9'; this cotsearch reads version 2"):
        cotsearch.load_model(tmp_path / "v9.safetensors")


def test_invalid_embedded_spec_is_refused(trained_tiny, tmp_path):
    model, _ = trained_tiny
    bad = json.loads(model.spec.model_dump_json())
    bad["stages"][0]["depth"] = 0
    path = tmp_path / "bad.safetensors"
    write_model_file(path, {k: v.contiguous() for k, v in model.state_dict().items()}, json.dumps(bad))
    with pytest.raises(cotsearch.ModelFileError, match="stages.0.depth"):
        cotsearch.load_model(path)


def test_missing_file():
    with pytest.raises(cotsearch.ModelFileError, match="no such model file"):
        cotsearch.load_model("nowhere.safetensors")


# Hostile files (issues 25 and 27): each refused from its header, before any tensor is read.

def state_of(model, cast=None):
    return {k: (v.to(cast) if cast is not None and v.is_floating_point() else v).contiguous()
            for k, v in model.state_dict().items()}


@pytest.fixture
def no_tensor_read(monkeypatch):
    """load_model reads tensors through model_file.safe_open (the header through safetensors'
    own, in cotsearch.export.header): any call of it fails the test."""
    monkeypatch.setattr(model_file, "safe_open", lambda *a, **k: pytest.fail("a tensor was read"))


def test_weights_cast_to_int8_are_refused_before_any_is_read(trained_tiny, tmp_path, no_tensor_read):
    model, _ = trained_tiny
    path = tmp_path / "int8.safetensors"
    write_model_file(path, state_of(model, torch.int8), model.spec.model_dump_json())  # its digest recomputed
    with pytest.raises(cotsearch.ModelFileError,
                       match=r"tensor \S+ is stored as I8; expected F32 or F16 or BF16 \(the model holds it as torch.float32\)"):
        cotsearch.load_model(path)


def test_half_precision_weights_load_as_float32(trained_tiny, tmp_path):
    model, _ = trained_tiny
    path = tmp_path / "half.safetensors"
    state = state_of(model, torch.bfloat16)
    write_model_file(path, state, model.spec.model_dump_json())
    loaded = cotsearch.load_model(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.equal(loaded.fc.weight, state["fc.weight"].float())


def test_a_tensor_the_spec_lacks_is_refused_before_any_is_read(trained_tiny, tmp_path, no_tensor_read):
    _, path = trained_tiny
    huge = rewrite_tensors(path, tmp_path / "huge.safetensors", extra={"huge": ("F32", (GIB,))})  # 4 GiB, sparse
    with pytest.raises(cotsearch.ModelFileError, match=r"weights do not match the embedded spec \(missing \[\], unexpected \['huge'\]\)"):
        cotsearch.load_model(huge)


def test_a_tensor_grown_past_its_shape_is_refused_before_any_is_read(trained_tiny, tmp_path, no_tensor_read):
    _, path = trained_tiny
    grown = rewrite_tensors(path, tmp_path / "grown.safetensors", shapes={"fc.weight": (GIB // 512, 512)})
    with pytest.raises(cotsearch.ModelFileError, match=rf"tensor fc.weight has shape \({GIB // 512}, 512\), the spec needs \(10, 512\)"):
        cotsearch.load_model(grown)


def test_a_header_that_claims_more_than_the_file_holds_is_refused(trained_tiny, tmp_path):
    """Handled by safetensors itself on opening (before this change too)."""
    _, path = trained_tiny
    claims = rewrite_tensors(path, tmp_path / "claims.safetensors", shapes={"fc.bias": (1000,)})
    with open(claims, "r+b") as f:
        f.truncate(claims.stat().st_size - 990 * 4)  # the header promises 990 values more than follow
    with pytest.raises(cotsearch.ModelFileError, match=r"not a valid safetensors file \(.*file not fully covered"):
        cotsearch.load_model(claims)


def test_a_header_too_long_for_a_model_file_is_refused_unparsed(trained_tiny, tmp_path, monkeypatch):
    _, path = trained_tiny
    long = rewrite_tensors(path, tmp_path / "long.safetensors", metadata={"padding": " " * (9 << 20)})
    monkeypatch.setattr("cotsearch.export.header.safe_open", lambda *a, **k: pytest.fail("the header was parsed"))
    with pytest.raises(cotsearch.ModelFileError, match=r"its header claims 9,4\d\d,\d\d\d bytes; a model file's header is at most 8,388,608"):
        cotsearch.load_model(long)


def test_a_file_changed_while_it_is_read_is_refused(trained_tiny, tmp_path, monkeypatch):
    """Replaced by another model's file (same shapes, its own valid digest) between the digest
    and the reading into the model: the weights loaded must be those the digest checked."""
    _, path = trained_tiny
    other = cotsearch.save_model(preset_model("cotnet_tiny"), tmp_path / "other.safetensors")

    class ReplacedOnBuilding(cotsearch.CoTNet):
        def __init__(self, spec):
            super().__init__(spec)
            if not self.fc.weight.is_meta:  # the model the weights are read into
                other.replace(path)

    monkeypatch.setattr(model_file, "CoTNet", ReplacedOnBuilding)
    with pytest.raises(cotsearch.ModelFileError, match="the file changed while it was read"):
        cotsearch.load_model(path)
