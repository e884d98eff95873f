"""cotsearch: configure, cost, train and search CoTNet-family vision backbones."""

from cotsearch.cost import CostReport, estimate_cost
from cotsearch.convert import convert_checkpoint, convert_state_dict, read_checkpoint
from cotsearch.errors import CheckpointError, CotsearchError, ModelFileError, SpecError
from cotsearch.model import CoTNet, build_model
from cotsearch.inference import optimize_for_inference
from cotsearch.latency import measure_latency
from cotsearch.model_file import load_model, read_metadata, save_model
from cotsearch.spec import BackboneSpec, CoTSpec, StageSpec, StemSpec
from cotsearch.spec_io import dump_yaml, list_presets, load_spec
from cotsearch import timm_registry  # noqa: F401  (registers the presets with timm)

__version__ = "0.1.0"

__all__ = [
    "BackboneSpec", "CheckpointError", "CoTNet", "CoTSpec", "CostReport", "CotsearchError", "ModelFileError",
    "SpecError", "StageSpec", "StemSpec", "build_model", "convert_checkpoint", "convert_state_dict",
    "dump_yaml", "estimate_cost", "list_presets", "load_model", "load_spec", "measure_latency",
    "optimize_for_inference", "read_checkpoint", "read_metadata", "save_model",
]
