"""The CoT aggregation: every path (in-place shifted with its hand-written backward, the
functional form that compile and export see, the Triton kernels) against the plain
unfold reference, forward and gradients; which path runs where."""

import os
import subprocess
import sys

import pytest
import torch

from cotsearch.nn.layers import aggregation
from cotsearch.nn.layers.aggregation import (
    ShiftedAggregate,
    aggregate_shifted,
    local_aggregate,
    local_aggregate_functional,
    local_aggregate_unfold,
)

from helpers import cot_layer

SHAPES = [  # (n, c, h, w, heads, kernel_size): odd sizes, maps smaller than the window, 1x1
    (2, 8, 5, 7, 2, 3), (1, 8, 4, 3, 4, 5), (2, 4, 1, 1, 1, 3), (1, 6, 2, 9, 3, 7), (1, 16, 6, 6, 16, 3),
]
PATHS = {
    "shifted": lambda v, a, k: ShiftedAggregate.apply(v, a, k),
    "functional": local_aggregate_functional,
    "dispatch": local_aggregate,
}


def inputs(n, c, h, w, heads, k, dtype=torch.float32):
    gen = torch.Generator().manual_seed(n * 1000 + c * 100 + h * 10 + w + k)
    values = torch.randn(n, c, h, w, generator=gen, dtype=dtype).requires_grad_()
    attn = torch.randn(n, heads, k * k, h, w, generator=gen, dtype=dtype).requires_grad_()
    return values, attn


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_paths_match_unfold_forward_and_gradients(path, shape):
    values, attn = inputs(*shape)
    k = shape[-1]
    ours, ref = PATHS[path](values, attn, k), local_aggregate_unfold(values, attn, k)
    torch.testing.assert_close(ours, ref)
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ours, (values, attn), grad), torch.autograd.grad(ref, (values, attn), grad)):
        torch.testing.assert_close(a, b)


def test_inference_forward_matches_unfold():
    for shape in SHAPES:
        values, attn = inputs(*shape)
        with torch.no_grad():
            torch.testing.assert_close(aggregate_shifted(values, attn, shape[-1]),
                                       local_aggregate_unfold(values, attn, shape[-1]))


@pytest.mark.parametrize("shape", [(1, 4, 4, 5, 2, 3), (1, 2, 3, 2, 1, 5)])
def test_hand_written_backward_passes_gradcheck_and_gradgradcheck(shape):
    values, attn = inputs(*shape, dtype=torch.float64)
    fn = lambda v, a: ShiftedAggregate.apply(v, a, shape[-1])  # noqa: E731
    assert torch.autograd.gradcheck(fn, (values, attn))
    assert torch.autograd.gradgradcheck(fn, (values, attn))


def test_attention_in_float32_with_half_values_under_autocast():
    values, attn = inputs(2, 8, 5, 5, 2, 3)
    half = values.detach().bfloat16().requires_grad_()
    out = ShiftedAggregate.apply(half, attn, 3)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert half.grad.dtype == torch.bfloat16 and attn.grad.dtype == torch.float32
    torch.testing.assert_close(out.float(), local_aggregate_unfold(half.float(), attn, 3), atol=0.05, rtol=0.02)


def test_maps_are_shared_strided_not_interleaved():
    """Channel c uses map c % heads: with heads=2, channels 0 and 2 share map 0."""
    values = torch.ones(1, 4, 3, 3)
    attn = torch.zeros(1, 2, 9, 3, 3)
    attn[:, 0, 4] = 1.0  # the centre tap of map 0
    assert local_aggregate(values, attn, 3)[0, :, 1, 1].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_dispatch_uses_the_hand_written_backward_only_when_a_gradient_is_needed():
    values, attn = inputs(1, 8, 4, 4, 2, 3)
    assert type(local_aggregate(values, attn, 3).grad_fn).__name__ == "ShiftedAggregateBackward"
    with torch.no_grad():
        assert local_aggregate(values, attn, 3).grad_fn is None


def test_no_tensor_k_squared_times_the_values_is_allocated():
    """No single op of the lean path's forward + backward allocates more than the biggest
    input (the attention maps); the unfold reference allocates k*k times the values."""
    values, attn = inputs(2, 32, 24, 24, 4, 7)

    def largest_allocation(fn):
        with torch.profiler.profile(profile_memory=True) as prof:
            fn(values, attn, 7).sum().backward()
        return max(e.self_cpu_memory_usage for e in prof.events())

    size = lambda t: t.numel() * t.element_size()  # noqa: E731
    assert largest_allocation(PATHS["shifted"]) <= size(attn)
    assert largest_allocation(local_aggregate_unfold) >= 49 * size(values)


def test_use_aggregation_swaps_and_restores_the_path():
    seen = []

    def spy(values, attn, kernel_size):
        seen.append(kernel_size)
        return local_aggregate_unfold(values, attn, kernel_size)

    values, attn = inputs(1, 4, 3, 3, 2, 3)
    with aggregation.use_aggregation(spy):
        local_aggregate(values, attn, 3)
    local_aggregate(values, attn, 3)
    assert seen == [3]


TRITON_CHECK = """
import torch
from cotsearch.nn.layers.aggregation import local_aggregate_unfold
from cotsearch.nn.layers.aggregation_triton import local_aggregate_triton
for n, c, h, w, heads, k in {shapes}:
    for dtype in (torch.float64, torch.float32):
        gen = torch.Generator().manual_seed(c + k)
        v = torch.randn(n, c, h, w, dtype=dtype, generator=gen).requires_grad_()
        a = torch.randn(n, heads, k * k, h, w, dtype=dtype, generator=gen).requires_grad_()
        ours, ref = local_aggregate_triton(v, a, k), local_aggregate_unfold(v, a, k)
        torch.testing.assert_close(ours, ref)
        g = torch.randn_like(ref)
        for x, y in zip(torch.autograd.grad(ours, (v, a), g), torch.autograd.grad(ref, (v, a), g)):
            torch.testing.assert_close(x, y)
    vb = v.detach().to(torch.bfloat16)
    out = local_aggregate_triton(vb, a.detach().float(), k)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), local_aggregate_unfold(vb.float(), a.detach().float(), k), atol=0.02, rtol=0.02)
print("ok")
"""


def test_triton_kernels_match_unfold_in_the_interpreter():
    """The CUDA kernels, run on the CPU by Triton's interpreter: forward, both gradients,
    fp64 / fp32, and bf16 values accumulated in fp32."""
    pytest.importorskip("triton")
    # 17x17 = 289 pixels: more than one program along the pixels in every kernel.
    code = TRITON_CHECK.format(shapes=[(1, 4, 5, 7, 2, 3), (1, 6, 3, 4, 3, 5), (2, 2, 1, 1, 1, 3), (1, 2, 17, 17, 1, 3)])
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


@pytest.mark.slow
def test_compiled_training_uses_the_functional_form_and_matches_eager(monkeypatch):
    """Under torch.compile the layer traces the pure-functional aggregation (inductor fuses
    it; the in-place eager path would not trace as well), forward and backward equal eager.
    Dynamo and AOT autograd trace forward and backward here; inductor's code generation is
    left out (it costs a minute on 2 cores) and runs in test_model's compiled forward."""
    traced = []
    functional = aggregation.local_aggregate_functional
    monkeypatch.setattr(aggregation, "local_aggregate_functional", lambda *a: traced.append(1) or functional(*a))
    torch.manual_seed(0)
    layer = cot_layer(16).train()
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    compiled = torch.compile(layer, backend="aot_eager")
    out = compiled(x)
    got = torch.autograd.grad(out.sum(), [x, *layer.parameters()])
    assert traced
    ref = layer(x)
    expected = torch.autograd.grad(ref.sum(), [x, *layer.parameters()])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(got, expected):  # atol: some biases feed a BN, their true gradient is 0 (noise ~1e-4)
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_a_failing_first_triton_launch_falls_back_once_with_a_warning(monkeypatch):
    pytest.importorskip("triton")
    from cotsearch.nn.layers import aggregation_triton

    monkeypatch.setattr(aggregation_triton, "_state", {"disabled": False, "proven": False})

    def broken(*args):
        raise RuntimeError("no CUDA driver for Triton\nlong details")

    monkeypatch.setattr(aggregation_triton.TritonAggregate, "apply", broken)
    values, attn = inputs(1, 4, 3, 3, 2, 3)
    assert aggregation_triton.available()
    expected = r"Triton kernels unavailable \(RuntimeError: no CUDA driver for Triton\); using the PyTorch"
    with pytest.warns(UserWarning, match=expected):
        assert aggregation_triton.local_aggregate_triton(values, attn, 3) is None
    assert not aggregation_triton.available()


def test_triton_can_be_switched_off_by_environment():
    pytest.importorskip("triton")
    code = "from cotsearch.nn.layers import aggregation_triton as t; print(t.available())"
    env = dict(os.environ, COTSEARCH_TRITON="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr[-2000:]
