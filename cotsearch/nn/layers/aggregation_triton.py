"""The CoT aggregation as Triton kernels for CUDA (forward, value gradient, attention
gradient), used automatically for CUDA tensors when Triton is installed.

Same definition as cotsearch.nn.layers.aggregation: out[n, c, p] = sum_t attn[n, c % heads, t, p]
* values[n, c, p + offset_t], zero outside the image. Loads may be fp32, bf16 or fp16
(values and attention can differ under autocast); every sum is accumulated in fp32 (fp64 for fp64
inputs) and the results are stored in their input's dtype. Tests run these kernels on the CPU through
Triton's interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import os
import warnings

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the PyTorch path is used
    triton = None


_state = {"disabled": os.environ.get("COTSEARCH_TRITON", "1") == "0", "proven": False}


def available() -> bool:
    """Triton is installed, not switched off (COTSEARCH_TRITON=0), and has not failed to
    build its kernels here."""
    return triton is not None and not _state["disabled"]


BLOCK = 256  # pixels per program
ATTN_TILE = 2048  # taps x pixels accumulated per program of the attention gradient (registers)

if triton is not None:

    @triton.jit
    def _window_kernel(x, attn, out, C, HEADS, H, W, K: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
                       TRANSPOSED: tl.constexpr):
        """forward:         out[n, c, p] = sum_t attn[n, m, t, p] * x[n, c, p + offset_t]
        value gradient:  out[n, c, p] = sum_t attn[n, m, t, p - offset_t] * x[n, c, p - offset_t]
        (TRANSPOSED, x = the output gradient), with m = c % HEADS."""
        nc = tl.program_id(0)  # n * C + c
        n, c = nc // C, nc % C
        m = c % HEADS
        hw = H * W
        pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = pix < hw
        y, x_pos = pix // W, pix % W
        x_base = x + nc.to(tl.int64) * hw
        a_base = attn + ((n * HEADS + m).to(tl.int64) * K * K) * hw
        sign = -1 if TRANSPOSED else 1
        acc = tl.zeros([BLOCK], dtype=ACC)
        for t in tl.static_range(K * K):
            yy, xx = y + sign * (t // K - K // 2), x_pos + sign * (t % K - K // 2)
            valid = inside & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            q = yy * W + xx
            v = tl.load(x_base + q, mask=valid, other=0.0).to(ACC)
            if TRANSPOSED:
                a = tl.load(a_base + t * hw + q, mask=valid, other=0.0).to(ACC)
            else:
                a = tl.load(a_base + t * hw + pix, mask=inside, other=0.0).to(ACC)
            acc += v * a
        tl.store(out + nc.to(tl.int64) * hw + pix, acc.to(out.dtype.element_ty), mask=inside)

    @triton.jit
    def _grad_attn_kernel(grad, values, grad_attn, C, HEADS, H, W, K: tl.constexpr, TAPS: tl.constexpr,
                          BLOCK: tl.constexpr, ACC: tl.constexpr):
        # grad_attn[n, m, t, p] = sum_r grad[n, r*HEADS + m, p] * values[n, r*HEADS + m, p + offset_t]
        nm = tl.program_id(0)  # n * HEADS + m
        n, m = nm // HEADS, nm % HEADS
        hw = H * W
        pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = pix < hw
        y, x = pix // W, pix % W
        taps = tl.arange(0, TAPS)  # K*K rounded up to a power of two
        yy = y[None, :] + (taps // K - K // 2)[:, None]
        xx = x[None, :] + (taps % K - K // 2)[:, None]
        valid = (taps < K * K)[:, None] & inside[None, :] & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        acc = tl.zeros([TAPS, BLOCK], dtype=ACC)
        for r in range(0, C // HEADS):
            channel = (n * C + r * HEADS + m).to(tl.int64) * hw
            g = tl.load(grad + channel + pix, mask=inside, other=0.0).to(ACC)
            v = tl.load(values + channel + yy * W + xx, mask=valid, other=0.0).to(ACC)
            acc += g[None, :] * v
        out = grad_attn + (nm.to(tl.int64) * K * K) * hw + taps[:, None] * hw + pix[None, :]
        tl.store(out, acc.to(grad_attn.dtype.element_ty), mask=(taps < K * K)[:, None] & inside[None, :])


def accumulator(t: torch.Tensor):
    """fp32 sums for fp32 / bf16 / fp16 (fp64 only for fp64, which tests use)."""
    return tl.float64 if t.dtype == torch.float64 else tl.float32


def _launch_shape(rows: int, hw: int, block: int = BLOCK) -> tuple[int, int]:
    return rows, triton.cdiv(hw, block)


def triton_forward(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    n, c, h, w = values.shape
    out = torch.empty_like(values)
    _window_kernel[_launch_shape(n * c, h * w)](values, attn, out, c, attn.shape[1], h, w, K=kernel_size, BLOCK=BLOCK,
                                                 ACC=accumulator(values), TRANSPOSED=False)
    return out


class TritonAggregate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, attn, kernel_size):
        values, attn = values.contiguous(), attn.contiguous()
        ctx.save_for_backward(values, attn)
        ctx.kernel_size = kernel_size
        return triton_forward(values, attn, kernel_size)

    @staticmethod
    def backward(ctx, grad_out):
        values, attn = ctx.saved_tensors
        k = ctx.kernel_size
        n, c, h, w = values.shape
        heads = attn.shape[1]
        grad_out = grad_out.contiguous()
        grad_values = grad_attn = None
        if ctx.needs_input_grad[0]:
            grad_values = torch.empty_like(values)
            _window_kernel[_launch_shape(n * c, h * w)](grad_out, attn, grad_values, c, heads, h, w, K=k, BLOCK=BLOCK,
                                                        ACC=accumulator(values), TRANSPOSED=True)
        if ctx.needs_input_grad[1]:
            grad_attn = torch.empty_like(attn)
            taps = triton.next_power_of_2(k * k)
            block = max(16, ATTN_TILE // taps)
            _grad_attn_kernel[_launch_shape(n * heads, h * w, block)](
                grad_out, values, grad_attn, c, heads, h, w, K=k, TAPS=taps, BLOCK=block, ACC=accumulator(values))
        return grad_values, grad_attn, None


def local_aggregate_triton(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor | None:
    """values (N, C, H, W), attn (N, heads, k*k, H, W) -> (N, C, H, W), in values' dtype.

    None if the very first launch fails (no working compiler or driver for Triton): that is
    warned about once and the PyTorch path is used from then on. Later errors propagate."""
    if _state["proven"]:
        return TritonAggregate.apply(values, attn, kernel_size)
    try:
        out = TritonAggregate.apply(values, attn, kernel_size)
    except Exception as e:  # noqa: BLE001 - any build or launch failure means: no Triton here
        _state["disabled"] = True
        warnings.warn(f"Triton kernels unavailable ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                      "using the PyTorch aggregation", stacklevel=3)
        return None
    _state["proven"] = True
    return out
