"""`cotsearch convert`, `export-onnx`: model files in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cotsearch.cli.app import (
    app,
    check_model_output,
    console,
)
from cotsearch.errors import CheckpointError, CotsearchError, ModelFileError
from cotsearch.files import check_writable, opens_with, require_file, require_folder


@app.command()
def convert(
    checkpoint: Annotated[Path, typer.Argument(help="an official CoTNet checkpoint (.pth / .pth.tar)")],
    preset: Annotated[str, typer.Option(help="the preset it was trained as, e.g. cotnet50")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the model file to write (.safetensors)")],
    ema: Annotated[bool, typer.Option(help="prefer the checkpoint's state_dict_ema")] = False,
):
    """Convert an official JDAI-CV/CoTNet checkpoint into a cotsearch model file."""
    from cotsearch.arch.load import list_presets

    if preset not in list_presets():
        raise CotsearchError(f"--preset {preset}: unknown preset; presets: {', '.join(list_presets())}")
    require_file(checkpoint, "checkpoint file", CheckpointError)  # before torch is imported, as the preset is
    check_model_output(output)
    from cotsearch.export.convert import convert_checkpoint
    from cotsearch.export.model_file import save_model
    from cotsearch.nn.model import num_params

    model = convert_checkpoint(checkpoint, preset, use_ema=ema)
    save_model(model, output, extra={"source": str(checkpoint)})
    console.print(f"wrote {output}: {preset}, {model.num_classes} classes, "
                  f"{num_params(model):,} params")



@app.command("export-onnx")
def export_onnx(
    model_file: Annotated[Path, typer.Argument(help="a cotsearch model file (.safetensors)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the ONNX file to write")],
    batch_size: Annotated[int, typer.Option(min=1, help="batch size of the example input (and of the check)")] = 1,
    input_size: Annotated[Optional[int], typer.Option(min=8, help="square input size (default: the spec's)")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--static-batch",
                                                help="accept any batch size, or exactly --batch-size")] = True,
    fold_bn: Annotated[bool, typer.Option(help="fold batch norms into the convs before exporting")] = True,
    check: Annotated[bool, typer.Option(help="compare onnxruntime's logits with PyTorch's (rtol 1e-4)")] = True,
    latency: Annotated[bool, typer.Option(help="also time onnxruntime and PyTorch on this machine's CPU")] = False,
):
    """Export a model file to ONNX (standard ops only), checked against onnxruntime."""
    # The two common mistakes, reported before torch is imported (seconds) by the checks the
    # library makes for its own callers.
    require_file(model_file, "model file", ModelFileError)
    require_folder(output)
    # PyTorch's exporter writes ir_version (protobuf field 1), then producer_name "pytorch" (field 2).
    check_writable(output, "-o", lambda onnx: opens_with(onnx, b"\x12\x07pytorch", 16),
                   "an ONNX file from PyTorch's exporter")
    import torch

    from cotsearch.cost.latency import resolve_device, time_callable
    from cotsearch.export.model_file import load_model
    from cotsearch.export.onnx import check_onnx, example_input, onnx_session
    from cotsearch.export.onnx import export_onnx as export

    model = load_model(model_file).eval()
    with console.status(f"exporting {model_file} to ONNX"):
        export(model, output, batch_size, input_size, dynamic_batch, fold_bn)
    console.print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, batch {'dynamic' if dynamic_batch else batch_size})")
    x = example_input(model, batch_size, input_size)
    if not (check or latency):
        return
    session = onnx_session(output, torch.get_num_threads())
    if check:
        result = check_onnx(model, session, x)
        if not result.matches:
            raise CotsearchError(f"{output}: onnxruntime differs from PyTorch: max relative difference "
                                 f"{result.max_rel_diff:.2g} (allowed 1e-4)")
        console.print(f"onnxruntime matches PyTorch: max abs difference {result.max_abs_diff:.2g}, "
                      f"max relative {result.max_rel_diff:.2g}")
    if latency:
        cpu, feed = resolve_device("cpu"), {"image": x.numpy()}
        with torch.inference_mode():
            ort_s = time_callable(lambda: session.run(None, feed), cpu, what="onnxruntime")[0]
            torch_s = time_callable(lambda: model(x), cpu, what="PyTorch")[0]
        console.print(f"latency, batch {batch_size}, {torch.get_num_threads()} threads: onnxruntime "
                      f"{ort_s * 1e3:.2f} ms, PyTorch eager {torch_s * 1e3:.2f} ms ({ort_s / torch_s:.2f}x)")
