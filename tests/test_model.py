"""The built model: timm's interface and registry, training, compile, channels_last."""

import pytest
import timm
import torch

import cotsearch

from helpers import preset_model, two_blocks_model


def tiny_batch(n=8):
    return torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,))


def test_one_training_step_lowers_the_loss():
    model = preset_model("cotnet_tiny").train()
    x, y = tiny_batch(16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    before = loss_fn(model(x), y)
    before.backward()
    opt.step()
    opt.zero_grad()
    with torch.no_grad():
        after = loss_fn(model(x), y)
    assert after.item() < before.item()


def test_channels_last_matches_contiguous():
    model = preset_model("cotnet_tiny").eval()
    x, _ = tiny_batch(2)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_forward_matches_eager():
    model = two_blocks_model().eval()  # every kind of layer, quick to compile
    x, _ = tiny_batch(2)
    with torch.no_grad():
        ref = model(x)
        out = torch.compile(model)(x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_timm_interface():
    model = preset_model("se_cotnetd_50").eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (1, 2048, 2, 2)
        assert model.forward_head(feats, pre_logits=True).shape == (1, 2048)
        model.reset_classifier(5)
        assert model(x).shape == (1, 5) and model.spec.num_classes == 5
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)


def test_timm_create_model_with_overrides_and_features():
    model = timm.create_model("cotnet50", num_classes=10, drop_path_rate=0.1)
    assert isinstance(model, cotsearch.CoTNet) and model.num_classes == 10 and model.spec.drop_path_rate == 0.1
    features = timm.create_model("cotnet_tiny", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    with torch.no_grad():
        outs = features(torch.randn(1, 1, 28, 28))
    assert [o.shape[1] for o in outs] == features.feature_info.channels() == [64, 128, 256, 512]
    assert [o.shape[-1] for o in outs] == [28, 14, 7, 4]


def test_timm_loads_a_local_model_file(tmp_path):
    model = preset_model("cotnet_tiny").eval()
    path = cotsearch.save_model(model, tmp_path / "tiny.safetensors")
    loaded = timm.create_model("cotnet_tiny", pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(path), num_classes=10)).eval()
    x, _ = tiny_batch(2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_unknown_override_is_refused():
    with pytest.raises(TypeError, match="unexpected keyword"):
        preset_model("cotnet_tiny", width=3)
