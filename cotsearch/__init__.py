"""cotsearch: configure, cost, train and search CoTNet-family vision backbones.

The layers of the package, each importing only those above it in this list:

    errors, files   user-facing errors; atomic writes and safetensors headers
    arch            specs, YAML, presets and the torch-free plan of a network with its cost formulas
    nn              the PyTorch modules built from a plan; timm registration
    cost            analytic cost (torch-free), measured FLOPs, latency, memory checks
    data, train     data sets; the training recipe and loop, checkpoints
    export          model files, official checkpoints, BN folding, ONNX
    search          spaces, the Optuna searcher on Ray Tune, trials, records
    cli             the command line

The public API below is imported lazily: `import cotsearch` loads no torch, timm or Ray,
so validating and pricing specs starts in a fraction of a second. Importing `cotsearch.nn`
(or using `build_model`, `load_model`, ...) registers the presets with timm.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it
_API = {
    "BackboneSpec": "cotsearch.arch.spec", "CoTSpec": "cotsearch.arch.spec", "StageSpec": "cotsearch.arch.spec",
    "StemSpec": "cotsearch.arch.spec",
    "NetworkPlan": "cotsearch.arch.plan", "plan_network": "cotsearch.arch.plan",
    "list_presets": "cotsearch.arch.load", "load_spec": "cotsearch.arch.load",
    "CostReport": "cotsearch.cost.analytic", "estimate_cost": "cotsearch.cost.analytic",
    "CheckpointError": "cotsearch.errors", "CotsearchError": "cotsearch.errors", "DataError": "cotsearch.errors",
    "ModelFileError": "cotsearch.errors", "SpecError": "cotsearch.errors",
    "CoTNet": "cotsearch.nn.model", "build_model": "cotsearch.nn.model",
    "measure_latency": "cotsearch.cost.latency",
    "TrainConfig": "cotsearch.train.config", "load_data": "cotsearch.data.load",
    "load_model": "cotsearch.export.model_file", "read_metadata": "cotsearch.export.model_file",
    "save_model": "cotsearch.export.model_file",
    "convert_checkpoint": "cotsearch.export.convert", "convert_state_dict": "cotsearch.export.convert",
    "read_checkpoint": "cotsearch.export.convert",
    "optimize_for_inference": "cotsearch.export.fold_bn",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'cotsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
