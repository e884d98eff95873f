"""MNIST-family IDX files (Fashion-MNIST, MNIST): gzip-compressed or raw.

The header says how many bytes of data follow; nothing more is ever read or decompressed
(a gzip stream is decompressed a chunk at a time into an array of that size), so a file
that expands to more than its header claims is refused at the cost of its claim."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cotsearch.errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
GZIP_MAGIC = b"\x1f\x8b"
# Deflate expands at most 1032:1, so a gzip file of n bytes holds at most this many times n:
# a header that promises more is refused before an array of its size is made.
MAX_GZIP_RATIO = 1032
CHUNK = 1 << 20


def read_idx(path: Path, expect_magic: int) -> np.ndarray:
    kind = "images" if expect_magic == IMAGES_MAGIC else "labels"
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw) if compressed else raw as f:
                return _read(path, f, expect_magic, kind, compressed)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({e}); the file is truncated, corrupt or not gzip") from None


def _read(path: Path, f: BinaryIO, expect_magic: int, kind: str, compressed: bool) -> np.ndarray:
    head = f.read(4)
    if len(head) < 4:
        raise DataError(f"{path}: only {len(head)} bytes; not an IDX file")
    magic = int.from_bytes(head, "big")
    if magic != expect_magic:
        raise DataError(f"{path}: wrong magic number 0x{magic:08x}; expected 0x{expect_magic:08x} (IDX {kind})")
    ndim = magic & 0xFF
    header = f.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise DataError(f"{path}: its header ends after {4 + len(header)} bytes; "
                        f"an IDX {kind} header has {4 + 4 * ndim}")
    dims = [int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    size, shape = math.prod(dims), "x".join(map(str, dims))
    file_size = path.stat().st_size
    if size > (MAX_GZIP_RATIO * file_size if compressed else file_size):
        raise DataError(f"{path}: its header promises {size:,} bytes of data ({shape}), more than a "
                        f"{'gzip ' if compressed else ''}file of {file_size:,} bytes can hold; "
                        "the file is truncated or corrupt")
    data = np.empty(size, dtype=np.uint8)
    view, got = memoryview(data), 0
    while got < size and (n := f.readinto(view[got : got + CHUNK])):
        got += n
    if got < size:
        raise DataError(f"{path}: holds {got:,} bytes of data, its header promises {size:,} ({shape}); "
                        "the file is truncated or corrupt")
    if f.read(1):
        raise DataError(f"{path}: holds more data than the {size:,} bytes its header promises ({shape}); "
                        "the file is corrupt")
    return data.reshape(dims)


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
