"""cotsearch: configure, cost, train and search CoTNet-family vision backbones.

The layers of the package, each importing only those above it in this list:

    errors, files   user-facing errors; atomic writes
    arch            specs, YAML, presets and the torch-free plan of a network with its cost formulas
    nn              the PyTorch modules built from a plan; timm registration
    cost            analytic cost (torch-free), measured FLOPs, latency, memory checks
    data, train     data sets; the training recipe and loop, checkpoints
    export          model files, official checkpoints, BN folding, ONNX
    process         a trial process's plumbing: stop signals, the node gate, the watchdog
    search          driving a search: spaces, samplers, the searcher on Ray Tune, trials, records,
                    confirmation and its statistics
    report, bench   reading a run (the HTML report and its plots); benchmarking a space (sweeps,
                    their analysis, simulated searches)
    cli             the command line, a module per group of commands

The public API below is imported lazily: `import cotsearch` loads no torch, timm or Ray,
so validating and pricing specs starts in a fraction of a second. The presets are timm models
as soon as both cotsearch and timm are imported, in either order: `import cotsearch, timm`,
then `timm.create_model("cotnet_tiny")`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

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


def _register_with_timm() -> None:
    importlib.import_module("cotsearch.nn.timm_registry")


class _RegisterWhenTimmIsImported:
    """Registers the presets right after timm itself is imported, by whoever imports it.

    Python has no post-import hook (PEP 369 was withdrawn), and `import cotsearch` must not
    import timm (and so torch) itself; a finder ahead of the others on `sys.meta_path` that
    sees `timm` coming is the standard way to run code once a module has loaded. It hands
    timm's own spec on, its loader running the registration after timm's module has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "timm":
            return None
        sys.meta_path.remove(self)  # once; and so that the search below finds timm's own spec
        spec = importlib.util.find_spec(name)
        loader = spec and spec.loader
        if loader is not None:

            def exec_module(module):
                del loader.exec_module  # the loader's own again (a loader may serve other modules too)
                loader.exec_module(module)
                _register_with_timm()

            loader.exec_module = exec_module  # for this one call: timm's module, then the registration
        return spec


if "timm" in sys.modules:
    _register_with_timm()  # timm (with torch) is there already
else:
    sys.meta_path.insert(0, _RegisterWhenTimmIsImported())
