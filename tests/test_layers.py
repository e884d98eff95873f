"""CoT / CoXt / SE-conv layers: the layers against a port of the official forward, dtypes,
layouts, ONNX. The aggregation itself: test_aggregation.py."""

import pytest
import torch

from cotsearch.arch.plan import SEConvPlan
from cotsearch.nn.layers import SEConv

from helpers import cot_layer
from official import official_cot_forward


@pytest.mark.parametrize("layer", [cot_layer(64, 3), cot_layer(96, 3, groups=2), cot_layer(32, 5, heads=2, key_groups=2)])
def test_layers_compute_the_official_forward_on_non_square_input(layer):
    layer.eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.2)  # non-trivial weights everywhere (BN, GroupNorm included)
        x = torch.randn(2, layer.dim, 6, 11)
        torch.testing.assert_close(layer(x), official_cot_forward(layer, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [cot_layer(32, 3), cot_layer(48, 3, groups=2)])
def test_training_forward_and_gradients_match_the_official_forward(layer):
    """With a gradient the layer takes other paths (embedding without the concatenation,
    the hand-written aggregation backward): same outputs, same gradients, eval and train."""
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.2)
    for training in (False, True):
        layer.train(training)
        x = torch.randn(2, layer.dim, 5, 7, requires_grad=True)
        ours = layer(x)
        x_ref = x.detach().clone().requires_grad_()
        ref = official_cot_forward(layer, x_ref)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        grad = torch.randn_like(ref)
        params = [p for p in layer.parameters()]
        got = torch.autograd.grad(ours, [x, *params], grad)
        expected = torch.autograd.grad(ref, [x_ref, *params], grad)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cot_layer_runs_in_half_precision(dtype):
    layer = cot_layer(32).eval()
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        ref = layer(x)
        half = layer.to(dtype)(x.to(dtype))
    assert half.dtype == dtype
    torch.testing.assert_close(half.float(), ref, atol=0.1, rtol=0.05)


def test_cot_layer_under_autocast_backward():
    layer = cot_layer(32).train()
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in layer.parameters())


@pytest.mark.parametrize("layer", [cot_layer(32), cot_layer(32, groups=2), SEConv(SEConvPlan(32))])
def test_channels_last_gives_same_output(layer):
    layer.eval()
    x = torch.randn(2, 32, 7, 9)
    with torch.no_grad():
        ref = layer(x)
        out = layer.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_se_conv_gate():
    layer = SEConv(SEConvPlan(64, stride=2)).eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        feats = layer.act0(layer.bn0(layer.conv(x)))
        gate = torch.sigmoid(layer.fc2(layer.act1(layer.bn1(layer.fc1(feats.mean((2, 3), keepdim=True))))))
        torch.testing.assert_close(layer(x), feats * gate)
    assert layer(x).shape == (2, 64, 4, 4)
    assert layer.fc1.out_channels == 32  # max(64 // 4, 32), as the official SplitAttnConv2d


def test_cot_layer_exports_to_onnx_and_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    layer = cot_layer(32, groups=2).eval()
    x = torch.randn(1, 32, 6, 10)
    path = tmp_path / "cot.onnx"
    torch.onnx.export(layer, (x,), str(path), input_names=["x"], output_names=["y"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), layer(x), atol=1e-4, rtol=1e-4)
