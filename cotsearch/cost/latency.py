"""Latency of a model on a device: warm-up, then torch.utils.benchmark's adaptive autorange
(CUDA-synchronised on GPU), which keeps measuring while the IQR is more than `max_rel_iqr`
of the median, up to `max_run_time`. A measurement still that noisy is taken once more; if
it stays noisy it is flagged and warned about rather than reported as clean."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from cotsearch.arch.spec import BackboneSpec
from cotsearch.errors import CotsearchError
from cotsearch.nn.model import build_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Latency:
    median_ms: float
    iqr_ms: float
    runs: int
    noisy: bool
    device: str
    batch_size: int
    input_size: tuple[int, int]
    dtype: str
    channels_last: bool
    compiled: bool


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise CotsearchError(f"device {device!r}: unknown; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CotsearchError(f"device {device}: no CUDA device is available here (use cpu)")
    return device


def benchmark_timer() -> type:
    """torch.utils.benchmark's Timer, imported when first needed: the import loads
    cpp_extension, which warns about CUDA_HOME on CPU-only machines, so that logger is
    quietened first (here, not as a side effect of importing cotsearch)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer

    return Timer


def time_callable(fn: Callable[[], object], device: torch.device, min_run_time: float = 0.5,
                  max_rel_iqr: float = 0.1, retries: int = 1, what: str = "model",
                  max_run_time: float = 5.0) -> tuple[float, float, int, bool]:
    """(median s, IQR s, runs, noisy) of fn(), measured after two warm-up calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        fn()
        sync()

    for _ in range(2):
        step()
    timer = benchmark_timer()(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    for _ in range(retries + 1):
        m = timer.adaptive_autorange(threshold=max_rel_iqr, min_run_time=min_run_time, max_run_time=max_run_time)
        noisy = m.iqr > max_rel_iqr * m.median
        if not noisy:
            break
    if noisy:
        warnings.warn(f"latency of {what} is noisy: IQR {m.iqr * 1e3:.2f} ms is {m.iqr / m.median:.0%} of the "
                      f"median {m.median * 1e3:.2f} ms after {retries + 1} tries; is the machine busy?", stacklevel=3)
    return m.median, m.iqr, len(m.times), noisy


def prepare(model_or_spec: torch.nn.Module | BackboneSpec, device, dtype, channels_last: bool):
    model = model_or_spec if isinstance(model_or_spec, torch.nn.Module) else build_model(model_or_spec)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return model.eval().to(device=device, dtype=dtype, memory_format=memory_format), memory_format


def measure_latency(
    model_or_spec: torch.nn.Module | BackboneSpec,
    device: str | torch.device | None = "cpu",
    batch_size: int = 1,
    input_size: int | tuple[int, int] | None = None,
    dtype: str | torch.dtype = torch.float32,
    channels_last: bool = False,
    compile: bool = False,
    min_run_time: float = 0.5,
    max_rel_iqr: float = 0.1,
) -> Latency:
    """Inference latency of one batch (eval mode, no autograd). Any timm model works too:
    its input shape comes from its pretrained_cfg."""
    device = resolve_device(device)
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    model, memory_format = prepare(model_or_spec, device, dtype, channels_last)
    in_chans, default_h, default_w = model.pretrained_cfg["input_size"]
    size = input_size or (default_h, default_w)
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(batch_size, in_chans, h, w, device=device, dtype=dtype).to(memory_format=memory_format)
    run = torch.compile(model) if compile else model
    name = getattr(model, "spec", None) and model.spec.name or type(model).__name__
    with torch.inference_mode():
        median, iqr, runs, noisy = time_callable(lambda: run(x), device, min_run_time, max_rel_iqr, what=name)
    return Latency(median * 1e3, iqr * 1e3, runs, noisy, str(device), batch_size, (h, w),
                   str(dtype).removeprefix("torch."), channels_last, compile)
