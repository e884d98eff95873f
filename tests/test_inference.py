"""Inference: batch norms folded into convs (exactly, in float64), channels_last, and the
ONNX export command checked against onnxruntime."""


import numpy as np
import pytest
import torch
from torch import nn

import cotsearch
from cotsearch.export.fold_bn import conv_bn_pairs

from helpers import cli, cli_here, preset_model, two_blocks_model


def with_trained_like_norms(model: nn.Module) -> nn.Module:
    """Batch norms with running statistics and affine weights away from their init, so a
    wrong fold cannot pass by folding the identity."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("preset, size", [("cotnet_tiny", 28), ("resnet_tiny", 28), ("cotnet50", 64),
                                          ("se_cotnetd_50", 64), ("cotnext50_2x48d", 64)])
def test_folding_is_exact_in_float64(preset, size):
    """Block by block on the same input (a random 50-layer net amplifies even float64
    rounding by its depth), and end to end."""
    model = with_trained_like_norms(preset_model(preset).double())
    folded = cotsearch.optimize_for_inference(model)
    x = torch.randn(2, model.spec.in_chans, size, size, dtype=torch.float64)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * b.abs().max().item())  # noqa: E731
    with torch.no_grad():
        close(folded.forward_stem(x), model.forward_stem(x))
        feats = model.forward_stem(x)
        for ours, theirs in zip(folded.stages(), model.stages()):
            for block_ours, block_theirs in zip(ours, theirs):
                expected = block_theirs(feats)
                close(block_ours(feats), expected)
                feats = expected
        torch.testing.assert_close(folded(x), model(x), rtol=1e-6, atol=1e-6)
    cot_layers = sum(kind == "cot" for stage in model.spec.stages for kind in stage.block_kinds)
    # Every BN left is the one after a CoT aggregation (not a conv): nothing foldable is missed.
    assert count(folded, nn.BatchNorm2d) == cot_layers
    assert count(model, nn.BatchNorm2d) > cot_layers  # the original is untouched (a copy was folded)


def test_pairs_found_are_conv_then_bn():
    model = preset_model("se_cotnetd_50")
    pairs = dict(conv_bn_pairs(model))
    assert pairs["conv1.6"] == "bn1"  # the deep stem's last conv feeds the model's bn1
    assert pairs["layer1.0.conv1"] == "layer1.0.bn1"
    assert pairs["layer1.0.downsample.1"] == "layer1.0.downsample.2"  # ResNet-D: pool, conv, bn
    assert all(isinstance(model.get_submodule(c), nn.Conv2d) and isinstance(model.get_submodule(b), nn.BatchNorm2d)
               for c, b in pairs.items())


def test_channels_last_option():
    model = with_trained_like_norms(preset_model("cotnet_tiny"))
    fast = cotsearch.optimize_for_inference(model, channels_last=True)
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), model(x), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "two_blocks.safetensors"
    cotsearch.save_model(with_trained_like_norms(two_blocks_model()), path)  # every kind of layer, quick to export
    return path


def test_export_onnx_matches_pytorch_at_any_batch(model_file, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "tiny.onnx"
    result = cli("export-onnx", str(model_file), "-o", str(out), "--latency")
    assert result.returncode == 0, result.stderr
    assert "onnxruntime matches PyTorch" in result.stdout and "onnxruntime" in result.stdout.splitlines()[-1]
    graph = onnx.load(str(out)).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}  # standard ops only
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = cotsearch.load_model(model_file).eval()
    for batch in (1, 5):
        x = torch.randn(batch, 1, 28, 28)
        (logits,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_export_onnx_static_batch(model_file, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "static.onnx"
    result = cli_here("export-onnx", model_file, "-o", out, "--static-batch", "--batch-size", "2",
                      "--no-fold-bn", "--no-check")
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 1, 28, 28]


def test_the_library_refuses_what_the_command_checks_first(model_file, tmp_path):
    """export_onnx and convert_checkpoint check for themselves what the commands report before
    torch loads (tests/test_layout.py), for callers of the library."""
    from cotsearch.errors import CotsearchError
    from cotsearch.export.convert import convert_checkpoint
    from cotsearch.export.onnx import export_onnx

    pytest.importorskip("onnxscript")
    with pytest.raises(CotsearchError, match="cannot write: no such directory"):
        export_onnx(cotsearch.load_model(model_file), tmp_path / "no" / "dir" / "a.onnx")
    with pytest.raises(CotsearchError, match="missing.pth: no such checkpoint file"):
        convert_checkpoint(tmp_path / "missing.pth", "cotnet50")


def test_export_onnx_errors_are_one_line_and_write_nothing(model_file, tmp_path):
    missing = cli("export-onnx", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "a.onnx"))
    assert missing.returncode == 2 and "no such model file" in missing.stderr and "Traceback" not in missing.stderr
    bad_dir = cli("export-onnx", str(model_file), "-o", str(tmp_path / "no" / "dir" / "a.onnx"))
    assert bad_dir.returncode == 2 and "no such directory" in bad_dir.stderr
    assert list(tmp_path.iterdir()) == []
