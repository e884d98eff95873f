"""MNIST-family IDX files (Fashion-MNIST, MNIST): gzip-compressed or raw."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from cotsearch.errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


def _read(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is truncated or not gzip") from None


def read_idx(path: Path, expect_magic: int) -> np.ndarray:
    data = _read(path)
    if len(data) < 8:
        raise DataError(f"{path}: only {len(data)} bytes; not an IDX file")
    magic = int.from_bytes(data[:4], "big")
    if magic != expect_magic:
        kind = "images" if expect_magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{path}: wrong magic number 0x{magic:08x}; expected 0x{expect_magic:08x} (IDX {kind})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    size = int(np.prod(dims))
    if len(data) - start != size:
        raise DataError(f"{path}: holds {len(data) - start} bytes of data, its header promises {size} "
                        f"({'x'.join(map(str, dims))}); the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)


def load_idx_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 1 x H x W uint8, labels N int64) of `<prefix>-images-idx3-ubyte[.gz]`."""
    def find(name: str) -> Path:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.exists():
                return candidate
        raise DataError(f"{folder}: no {name}.gz (or {name})")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"), IMAGES_MAGIC)
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"), LABELS_MAGIC).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: {prefix} has {len(images)} images of shape {images.shape[1:]} "
                        f"and {len(labels)} labels; expected as many labels as 2-D images")
    return images[:, None], labels
