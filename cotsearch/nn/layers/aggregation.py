"""The CoT local aggregation: each value channel summed over a kxk window, weighted by
one of a few shared attention maps.

    out[n, c, y, x] = sum_{i,j} attn[n, c % heads, i*k + j, y, x] * values[n, c, y+i-k//2, x+j-k//2]

zero outside the image. Channel c uses map c % heads (the official kernel's strided
sharing). No library has this op (the official one is a CuPy kernel, CUDA only), so it
is written here, never materialising the k*k-times larger tensor an unfold would:

- eager CPU: accumulate the k*k shifted products in place, tap by tap, each tap over
  only the rows and columns where its window lies inside the image (no padding copy),
  with a hand-written backward that does the same (autograd through the loop would
  allocate a full-size zero gradient per tap and per slice);
- CUDA: a Triton kernel (cotsearch.nn.layers.aggregation_triton), forward and backward;
- under torch.compile / torch.export / TorchScript: a pure-functional pad-and-shift form
  that inductor fuses into one loop and that exports to standard ONNX ops (TorchScript
  cannot compile the hand-written autograd function or the Triton kernels).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

from cotsearch.nn.layers import aggregation_triton


def local_aggregate(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """values (N, C, H, W), attn (N, heads, k*k, H, W) with heads dividing C -> (N, C, H, W).

    Calls `local_aggregate_impl`, which cotsearch.cost.flops swaps for a FLOP-counted custom
    op while it measures."""
    if torch.jit.is_scripting():
        return local_aggregate_functional(values, attn, kernel_size)
    return local_aggregate_impl(values, attn, kernel_size)


def local_aggregate_dispatch(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The fastest correct path for where the tensors are and what is tracing them."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return local_aggregate_functional(values, attn, kernel_size)
    # The CPU path runs its taps along W; in channels_last the innermost dimension would be
    # the few heads instead, which vectorises poorly. Every path aggregates NCHW tensors and
    # hands the result back in the caller's layout.
    channels_last = values.is_contiguous(memory_format=torch.channels_last) and not values.is_contiguous()
    values, attn = values.contiguous(), attn.contiguous()
    out = None
    if values.is_cuda and aggregation_triton.available():
        out = aggregation_triton.local_aggregate_triton(values, attn, kernel_size)
    if out is None:
        needs_grad = torch.is_grad_enabled() and (values.requires_grad or attn.requires_grad)
        out = ShiftedAggregate.apply(values, attn, kernel_size) if needs_grad else aggregate_shifted(values, attn, kernel_size)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


local_aggregate_impl = local_aggregate_dispatch


@contextlib.contextmanager
def use_aggregation(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]):
    """Run every CoT layer's aggregation through `fn` inside the block (FLOP counting,
    benchmarks of the plain unfold path)."""
    global local_aggregate_impl
    previous, local_aggregate_impl = local_aggregate_impl, fn
    try:
        yield
    finally:
        local_aggregate_impl = previous


def tap_windows(kernel_size: int, height: int, width: int):
    """For each tap t = i*k + j: (t, out_window, value_window), the (rows, cols) slices of
    the output and of the values that the tap pairs up, clipped to the image."""
    half = kernel_size // 2
    for tap in range(kernel_size * kernel_size):
        dy, dx = divmod(tap, kernel_size)
        dy, dx = dy - half, dx - half
        y0, y1 = max(0, -dy), min(height, height - dy)
        x0, x1 = max(0, -dx), min(width, width - dx)
        if y0 < y1 and x0 < x1:
            yield tap, (slice(y0, y1), slice(x0, x1)), (slice(y0 + dy, y1 + dy), slice(x0 + dx, x1 + dx))


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C/heads, heads, H, W): channel r*heads + m sits at [r, m], so
    map m broadcasts over r."""
    n, c, h, w = t.shape
    return t.reshape(n, c // heads, heads, h, w)


def aggregate_shifted(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Forward by in-place accumulation; the centre tap covers the whole image and
    initialises the output."""
    n, c, h, w = values.shape
    v, a = split_heads(values, attn.shape[1]), attn.to(values.dtype)
    centre = kernel_size * kernel_size // 2
    out = v * a[:, None, :, centre]
    for tap, (oy, ox), (vy, vx) in tap_windows(kernel_size, h, w):
        if tap != centre:
            out[..., oy, ox].addcmul_(v[..., vy, vx], a[:, None, :, tap, oy, ox])
    return out.view(n, c, h, w)


class ShiftedAggregate(torch.autograd.Function):
    """`aggregate_shifted` with its backward written out: the value gradient is the same
    accumulation run from the output side, the attention gradient one product-and-sum
    per tap, written straight into its window. Both stay differentiable (no out=), so
    double backward works."""

    @staticmethod
    def forward(ctx, values, attn, kernel_size):
        ctx.save_for_backward(values, attn)
        ctx.kernel_size = kernel_size
        return aggregate_shifted(values, attn, kernel_size)

    @staticmethod
    def backward(ctx, grad_out):
        values, attn = ctx.saved_tensors
        k = ctx.kernel_size
        n, c, h, w = values.shape
        heads, centre = attn.shape[1], k * k // 2
        g, v, a = split_heads(grad_out, heads), split_heads(values, heads), attn.to(values.dtype)
        grad_values = grad_attn = None
        if ctx.needs_input_grad[0]:
            grad_v = g * a[:, None, :, centre]
            for tap, (oy, ox), (vy, vx) in tap_windows(k, h, w):
                if tap != centre:
                    grad_v[..., vy, vx].addcmul_(g[..., oy, ox], a[:, None, :, tap, oy, ox])
            grad_values = grad_v.view(n, c, h, w)
        if ctx.needs_input_grad[1]:
            grad_a = g.new_zeros(attn.shape)
            for tap, (oy, ox), (vy, vx) in tap_windows(k, h, w):
                grad_a[:, :, tap, oy, ox] = (g[..., oy, ox] * v[..., vy, vx]).sum(1)
            grad_attn = grad_a.to(attn.dtype)
        return grad_values, grad_attn, None


def local_aggregate_functional(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Pad, then add up the k*k shifted products: no in-place writes, so compilers fuse it
    and exporters see only pad, slice, multiply and add."""
    n, c, h, w = values.shape
    pad = kernel_size // 2
    padded = split_heads(F.pad(values, (pad, pad, pad, pad)), attn.shape[1])
    attn = attn.to(values.dtype)
    out = padded[..., :h, :w] * attn[:, None, :, 0]
    for tap in range(1, kernel_size * kernel_size):
        i, j = tap // kernel_size, tap % kernel_size
        out = out + padded[..., i : i + h, j : j + w] * attn[:, None, :, tap]
    return out.reshape(n, c, h, w)


def local_aggregate_unfold(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The plain reference: unfold the values (k*k times the memory), multiply, sum."""
    n, c, h, w = values.shape
    heads = attn.shape[1]
    cols = F.unfold(values, kernel_size, padding=kernel_size // 2)
    cols = cols.view(n, c // heads, heads, kernel_size * kernel_size, h, w)
    return (cols * attn.to(values.dtype).unsqueeze(1)).sum(dim=3).view(n, c, h, w)
