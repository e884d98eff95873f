"""The paper's seven models are the official ones: parameters, state_dict layout, and
outputs of converted official weights."""

import pytest
import torch

import cotsearch
from cotsearch.nn.layers import CoTLayer

from helpers import preset_model
from official import VARIANTS, fill_official, official_cot_forward, official_layouts, official_outputs

PAPER_PARAMS = {
    "cotnet50": 22_222_416, "cotnext50_2x48d": 30_046_276, "se_cotnetd_50": 23_107_784,
    "cotnet101": 38_272_048, "cotnext101_2x48d": 53_346_068, "se_cotnetd_101": 40_912_392,
    "se_cotnetd_152": 55_783_688,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_params_and_layout_match_official(variant):
    model = preset_model(variant)
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMS[variant]
    assert official_layouts()[variant]["params"] == PAPER_PARAMS[variant]
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == official_layouts()[variant]["state_dict"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_converted_weights_reproduce_official_logits(variant, tmp_path):
    # Saved as a real checkpoint would be (timm's train script: a dict with state_dict,
    # DataParallel's "module." prefixes), then read back through the converter.
    state = fill_official(variant)
    ckpt = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, ckpt)
    model = cotsearch.convert_checkpoint(ckpt, variant)
    with torch.no_grad():
        logits = model(official_outputs()["input"])
    expected = official_outputs()[f"{variant}.logits"]
    assert (logits - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("variant", ["cotnet50", "se_cotnetd_50"])
def test_class_count_comes_from_the_checkpoint(variant):
    state = fill_official(variant)
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][:10], state["fc.bias"][:10]
    model = cotsearch.convert_state_dict(state, variant)
    assert model.num_classes == 10 and model.spec.num_classes == 10
    with torch.no_grad():
        logits = model(official_outputs()["input"])
    assert (logits - official_outputs()[f"{variant}.logits"][:, :10]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("variant", ["cotnet50", "cotnext50_2x48d", "se_cotnetd_152"])
def test_non_square_input_matches_the_official_forward(variant):
    """The official outputs are square; on a non-square input the CoT layers (the only
    code that is not standard conv / pool) must still compute the official forward."""
    model = cotsearch.convert_state_dict(fill_official(variant), variant)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours = model(x)
        for layer in model.modules():
            if isinstance(layer, CoTLayer):
                layer.forward = lambda inp, layer=layer: official_cot_forward(layer, inp)
        reference = model(x)
    assert ours.shape == (2, 1000)
    assert (ours - reference).abs().max().item() <= 1e-4


def test_ema_weights_are_chosen_on_request(tmp_path):
    state = fill_official("se_cotnetd_50")
    ema = {k: v.clone() for k, v in state.items()}
    ema["fc.bias"] += 1.0
    ckpt = tmp_path / "both.pth"
    torch.save({"state_dict": state, "state_dict_ema": ema}, ckpt)
    x = official_outputs()["input"]
    with torch.no_grad():
        plain = cotsearch.convert_checkpoint(ckpt, "se_cotnetd_50")(x)
        averaged = cotsearch.convert_checkpoint(ckpt, "se_cotnetd_50", use_ema=True)(x)
    assert torch.allclose(averaged, plain + 1.0, atol=1e-5)


def test_checkpoint_that_does_not_fit_the_preset_is_refused(tmp_path):
    state = fill_official("cotnet50")
    with pytest.raises(cotsearch.CheckpointError, match="does not fit preset cotnet101"):
        cotsearch.convert_state_dict(state, "cotnet101")
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    with pytest.raises(cotsearch.CheckpointError, match="layer1.0.conv1.weight has shape"):
        cotsearch.convert_state_dict(state, "cotnet50")


def test_pickle_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    ckpt = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload()}, ckpt)
    with pytest.raises(cotsearch.CheckpointError, match="refused"):
        cotsearch.read_checkpoint(ckpt)
