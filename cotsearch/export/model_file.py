"""The model file: one safetensors file with the weights and, in its metadata, the spec
(JSON) and anything else a user of the model needs (class names, normalisation). The file
alone rebuilds the model; nothing in it is ever unpickled."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors

from cotsearch.arch.spec import BackboneSpec
from cotsearch.arch.yaml_io import format_validation_error
from cotsearch.cost.analytic import estimate_cost
from cotsearch.errors import ModelFileError
from cotsearch.files import atomic_write_bytes, require_file
from cotsearch.nn.model import CoTNet, compare_state_dict

SPEC_KEY = "cotsearch.spec"
EXTRA_KEY = "cotsearch.extra"
VERSION_KEY = "cotsearch.format_version"
DIGEST_KEY = "cotsearch.digest"
FORMAT_VERSION = "2"  # 2: with the digest


def digest(spec_json: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the spec and every tensor (name, dtype, shape, bytes): an edit to either
    after saving, even one that keeps every shape (an activation, a stride), changes it."""
    h = hashlib.sha256(spec_json.encode())
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_model(model: CoTNet, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write weights and spec (plus `extra`, any JSON-able dict) atomically to `path`."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    spec_json = model.spec.model_dump_json()
    metadata = {
        "format": "pt",
        VERSION_KEY: FORMAT_VERSION,
        SPEC_KEY: spec_json,
        DIGEST_KEY: digest(spec_json, tensors),
        EXTRA_KEY: json.dumps(extra or {}),
    }
    atomic_write_bytes(path, save_safetensors(tensors, metadata=metadata))
    return Path(path)


def _read(path: str | Path, with_tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    require_file(path, "model file", ModelFileError)
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file; expected a model file (.safetensors)")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()} if with_tensors else {}
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {e.strerror}") from None
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as e:
        raise ModelFileError(f"{path}: not a valid safetensors file ({str(e).splitlines()[0][:120]})") from None
    return tensors, metadata


def read_metadata(path: str | Path) -> tuple[BackboneSpec, dict[str, Any]]:
    """The spec and the extra metadata of a model file, without building the model."""
    return _parse_metadata(path, _read(path, with_tensors=False)[1])


def _parse_metadata(path, metadata: dict[str, str]) -> tuple[BackboneSpec, dict[str, Any]]:
    version = metadata.get(VERSION_KEY)
    if SPEC_KEY in metadata and version != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model file format_version {version!r}; this cotsearch reads version {FORMAT_VERSION}")
    if SPEC_KEY not in metadata:
        raise ModelFileError(f"{path}: holds no cotsearch spec; it is not a cotsearch model file "
                             "(official checkpoints go through `cotsearch convert`)")
    try:
        spec = BackboneSpec.model_validate_json(metadata[SPEC_KEY])
        extra = json.loads(metadata.get(EXTRA_KEY, "{}"))
    except ValidationError as e:
        raise ModelFileError(format_validation_error(e, f"{path}: embedded spec", BackboneSpec)) from None
    except ValueError:
        raise ModelFileError(f"{path}: the metadata is not valid JSON") from None
    return spec, extra


def load_model(path: str | Path, device: str | torch.device = "cpu") -> CoTNet:
    """Rebuild the model of a model file and load its weights (eval mode). The embedded spec
    is checked against the file before anything is built: its parameter count must fit in
    the tensors the file holds, and the digest written at save time must match."""
    tensors, metadata = _read(path)
    spec, extra = _parse_metadata(path, metadata)
    held = sum(t.numel() for t in tensors.values())
    needed = estimate_cost(spec).params
    if needed > held:
        raise ModelFileError(f"{path}: the embedded spec needs {needed:,} parameters but the file holds {held:,} "
                             "values; the spec was changed after saving")
    if metadata.get(DIGEST_KEY) != digest(metadata[SPEC_KEY], tensors):
        raise ModelFileError(f"{path}: the spec or the weights were changed after the file was written "
                             "(its digest does not match); re-export the model")
    model = CoTNet(spec)
    mismatch = compare_state_dict(model, tensors)
    if mismatch and mismatch.bad_shape:
        key, given, needed = mismatch.bad_shape
        raise ModelFileError(f"{path}: tensor {key} has shape {given}, the spec needs {needed}")
    if mismatch:
        raise ModelFileError(f"{path}: weights do not match the embedded spec "
                             f"(missing {sorted(mismatch.missing)[:3]}, unexpected {sorted(mismatch.unexpected)[:3]})")
    model.load_state_dict(tensors)
    model.extra = extra
    return model.to(device).eval()
