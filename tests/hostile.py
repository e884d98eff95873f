"""Hostile files for the tests, cheap to make however much they claim: model files whose
header lists tensors it does not hold (sparse files: a hole costs no disk) and gzip streams that
expand far past what their header says (gzip members of zeros, concatenated)."""

from __future__ import annotations

import gzip
import json
import math

GIB = 1 << 30
ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I8": 1}


def rewrite_tensors(source, target, shapes=None, extra=None, metadata=None):
    """`source` with the tensors of `shapes` given new shapes, the tensors of `extra` (name:
    (dtype, shape)) added at the end and the metadata updated, laid out as safetensors lays a
    file out. Only the unchanged tensors' bytes are written; the rest is a hole."""
    raw = source.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header, data = json.loads(raw[8 : 8 + n]), raw[8 + n :]
    new = {"__metadata__": {**header.pop("__metadata__"), **(metadata or {})}}
    entries = sorted(header.items(), key=lambda item: item[1]["data_offsets"][0])
    entries += [(key, {"dtype": dtype, "shape": list(shape)}) for key, (dtype, shape) in (extra or {}).items()]
    kept, at = [], 0
    for key, info in entries:
        shape = list((shapes or {}).get(key, info["shape"]))
        size = math.prod(shape) * ITEMSIZE[info["dtype"]]
        new[key] = {"dtype": info["dtype"], "shape": shape, "data_offsets": [at, at + size]}
        if "data_offsets" in info and shape == info["shape"]:
            kept.append((at, data[info["data_offsets"][0] : info["data_offsets"][1]]))
        at += size
    blob = json.dumps(new).encode()
    blob += b" " * (-len(blob) % 8)
    with open(target, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for offset, chunk in kept:
            f.seek(8 + len(blob) + offset)
            f.write(chunk)
        f.truncate(8 + len(blob) + at)
    return target


def gzip_bomb(path, images: int, expands_to: int):
    """An IDX images file whose header promises `images` 28 x 28 images and whose gzip stream
    expands to `expands_to` bytes: gzip members of 16 MiB of zeros, concatenated."""
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (images, 28, 28))
    member = gzip.compress(bytes(16 << 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(gzip.compress(header + bytes(images * 28 * 28)))
        for _ in range(expands_to // (16 << 20)):
            f.write(member)
    return path
