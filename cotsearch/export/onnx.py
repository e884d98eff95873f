"""ONNX export of a cotsearch model: batch norms folded, standard ai.onnx ops only, written
atomically (cotsearch.files); and a check that onnxruntime computes the same logits as PyTorch."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from cotsearch.errors import CotsearchError
from cotsearch.export.fold_bn import optimize_for_inference
from cotsearch.files import atomic_write_bytes, require_folder
from cotsearch.nn.model import CoTNet

STANDARD_DOMAINS = ("", "ai.onnx")


def require(module: str, extra: str = "onnx"):
    try:
        return __import__(module)
    except ImportError:
        raise CotsearchError(f"{module} is not installed: pip install 'cotsearch[{extra}]'") from None


def example_input(model: CoTNet, batch_size: int = 1, input_size: int | None = None) -> torch.Tensor:
    size = input_size or model.spec.input_size
    return torch.randn(batch_size, model.spec.in_chans, size, size, generator=torch.Generator().manual_seed(0))


def export_onnx(model: CoTNet, path: str | Path, batch_size: int = 1, input_size: int | None = None,
                dynamic_batch: bool = True, fold_bn: bool = True, opset: int | None = None) -> Path:
    """Export `model` (eval) to `path`: input "image" (N, C, H, W), output "logits".
    With dynamic_batch the file accepts any batch size."""
    require("onnx")
    require("onnxscript")
    path = Path(path)
    require_folder(path)
    model = optimize_for_inference(model) if fold_bn else model.eval()
    x = example_input(model, batch_size, input_size)
    dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
    # The exporter narrates every step on stdout / logging; keep only failures.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(model, (x,), input_names=["image"], output_names=["logits"],
                                    dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True)
    graph = program.model_proto.graph
    nonstandard = sorted({f"{n.domain}::{n.op_type}" for n in graph.node if n.domain not in STANDARD_DOMAINS})
    if nonstandard:
        raise CotsearchError(f"{path}: the export used non-standard ops {', '.join(nonstandard)}")
    try:
        atomic_write_bytes(path, program.model_proto.SerializeToString())
    except OSError as e:
        raise CotsearchError(f"{path}: cannot write: {e.strerror}") from None
    return path


@dataclass
class OnnxCheck:
    max_abs_diff: float
    max_rel_diff: float
    matches: bool


def onnx_session(path: str | Path, threads: int | None = None):
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Idle worker threads would otherwise spin and take the cores from whatever runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(model: CoTNet, session, x: torch.Tensor, rtol: float = 1e-4) -> OnnxCheck:
    """Run `x` through an onnxruntime session (see onnx_session) and PyTorch; matches when
    |ort - torch| <= rtol * (|torch| + max|torch|*1e-2) elementwise, i.e. rtol relative, with
    logits near zero judged against the logits' scale."""
    (ort_out,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = model.eval()(x)
    diff = (torch.from_numpy(ort_out) - ref).abs()
    scale = ref.abs() + ref.abs().max() * 1e-2
    return OnnxCheck(diff.max().item(), (diff / scale).max().item(), bool((diff <= rtol * scale).all()))
