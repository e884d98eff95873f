"""The model file: one safetensors file with the weights and, in its metadata, the spec
(JSON) and anything else a user of the model needs (class names, normalisation). The file
alone rebuilds the model; nothing in it is ever unpickled.

A file is untrusted until checked, and the checks cost no more than its header: the tensor
list is compared with the embedded spec's network before any tensor is read, the digest is
computed tensor by tensor, and only then is the model built and loaded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
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
from cotsearch.export.header import DIGEST_KEY, EXTRA_KEY, SPEC_KEY, VERSION_KEY, TensorInfo, read_header
from cotsearch.files import atomic_write_bytes
from cotsearch.nn.model import CoTNet, compare_state_dict

FORMAT_VERSION = "2"  # 2: with the digest
# The floating types a weight may be stored in (load_state_dict casts them to the model's
# float32); another buffer (BatchNorm's int64 num_batches_tracked) is stored as it is held.
FLOAT_DTYPES = ("F32", "F16", "BF16")
OTHER_DTYPES = {torch.int64: "I64", torch.int32: "I32", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
# Tensors are read through a memory map whose pages stay resident (and count as the process's
# memory) until the file is closed: it is closed and opened again after this many bytes.
READ_BYTES = 32 << 20


def _update(h: Any, key: str, t: torch.Tensor) -> None:
    t = t.contiguous()
    h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy())


def digest(spec_json: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the spec and every tensor (name, dtype, shape, bytes): an edit to either
    after saving, even one that keeps every shape (an activation, a stride), changes it."""
    h = hashlib.sha256(spec_json.encode())
    for key in sorted(tensors):
        _update(h, key, tensors[key])
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


def read_metadata(path: str | Path) -> tuple[BackboneSpec, dict[str, Any]]:
    """The spec and the extra metadata of a model file, without building the model."""
    return _parse_metadata(path, read_header(path)[1])


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


def _check_tensor_list(path, spec: BackboneSpec, tensors: dict[str, TensorInfo]) -> None:
    """The header's tensors are exactly the spec's network's: names, shapes and dtypes. Its
    parameter count is checked first, from the cost model, so that a spec edited to a huge
    network is refused before even its shapes are built (on the meta device: no memory)."""
    held = sum(info.numel for info in tensors.values())
    needed = estimate_cost(spec).params
    if needed > held:
        raise ModelFileError(f"{path}: the embedded spec needs {needed:,} parameters but the file holds {held:,} "
                             "values; the spec was changed after saving")
    with torch.device("meta"):
        network = CoTNet(spec)
        mismatch = compare_state_dict(network, {k: torch.empty(info.shape) for k, info in tensors.items()})
    if mismatch and mismatch.bad_shape:
        key, given, needed = mismatch.bad_shape
        raise ModelFileError(f"{path}: tensor {key} has shape {given}, the spec needs {needed}")
    if mismatch:
        raise ModelFileError(f"{path}: weights do not match the embedded spec "
                             f"(missing {sorted(mismatch.missing)[:3]}, unexpected {sorted(mismatch.unexpected)[:3]})")
    for key, held_as in network.state_dict().items():
        allowed = FLOAT_DTYPES if held_as.dtype.is_floating_point else (OTHER_DTYPES[held_as.dtype],)
        if tensors[key].dtype not in allowed:
            raise ModelFileError(f"{path}: tensor {key} is stored as {tensors[key].dtype}; expected "
                                 f"{' or '.join(allowed)} (the model holds it as {held_as.dtype})")


def _read_digest(path, spec_json: str, keys: list[str],
                 each: Callable[[dict[str, torch.Tensor]], None] = lambda tensors: None) -> str:
    """The digest of the file's tensors, read a few at a time (each batch handed to `each`)."""
    h = hashlib.sha256(spec_json.encode())
    for tensors in _read_in_batches(path, keys):
        for key, t in tensors.items():
            _update(h, key, t)
        each(tensors)
    return h.hexdigest()


def _read_in_batches(path, keys: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    done = 0
    while done < len(keys):
        batch, size = {}, 0
        try:
            with safe_open(str(path), framework="pt") as f:
                while done < len(keys) and size < READ_BYTES:
                    batch[keys[done]] = f.get_tensor(keys[done])
                    size += batch[keys[done]].nbytes
                    done += 1
        except OSError as e:
            raise ModelFileError(f"{path}: cannot read: {e.strerror}") from None
        except SafetensorError as e:  # its header was read and checked a moment ago
            reason = str(e).splitlines()[0][:120]
            raise ModelFileError(f"{path}: the file changed while it was read ({reason})") from None
        yield batch


def load_model(path: str | Path, device: str | torch.device = "cpu") -> CoTNet:
    """Rebuild the model of a model file and load its weights (eval mode). The embedded spec
    is checked against the file before anything is built: the file's tensors must be exactly
    the spec's (names, shapes, floating dtypes), and the digest written at save time must
    match; a refused file costs no more memory than its header."""
    path = Path(path)
    tensors, metadata = read_header(path)
    spec, extra = _parse_metadata(path, metadata)
    _check_tensor_list(path, spec, tensors)
    keys, saved = sorted(tensors), metadata.get(DIGEST_KEY)
    if saved != _read_digest(path, metadata[SPEC_KEY], keys):
        raise ModelFileError(f"{path}: the spec or the weights were changed after the file was written "
                             "(its digest does not match); re-export the model")
    model = CoTNet(spec)
    # Read again, into the model: the weights loaded must be the ones the digest was computed on.
    if saved != _read_digest(path, metadata[SPEC_KEY], keys, lambda batch: model.load_state_dict(batch, strict=False)):
        raise ModelFileError(f"{path}: the file changed while it was read")
    model.extra = extra
    return model.to(device).eval()
