"""CIFAR-10 / CIFAR-100 in the "python version" a user has on disk
(cifar-10-batches-py/, cifar-100-python/).

Those files are pickles. They are read with an unpickler that admits only the numpy array
reconstruction they need, so a file that carries code is refused instead of run."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from cotsearch.errors import DataError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in a protocol-2 pickle
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}: a CIFAR batch holds only arrays and lists")


def _load_batch(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a CIFAR python batch ({e})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR python batch (a {type(batch).__name__}, expected a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _integers(path: Path, key: str, value) -> np.ndarray:
    """An array of integers, or a one-line error: no silent casts of floats, strings or
    values out of range (np.asarray(..., dtype=uint8) would wrap 300 to 44)."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        array = np.asarray([], dtype=object)
    if array.dtype.kind not in "iu":
        raise DataError(f"{path}: '{key}' holds {array.dtype} values; expected integers")
    return array


def _images_labels(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_batch(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: no 'data' or '{label_key}' entry; expected a CIFAR python batch")
    data, labels = _integers(path, "data", batch["data"]), _integers(path, label_key, batch[label_key])
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DataError(f"{path}: pixel values in [{data.min()}, {data.max()}]; expected bytes, 0..255")
    data, labels = data.astype(np.uint8), labels.astype(np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: data has shape {data.shape} for {len(labels)} labels; expected N x 3072")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels out of range [{labels.min()}, {labels.max()}]; expected 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(folder: Path, num_classes: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (images, labels), 'test': ...} plus class names under 'classes'."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; expected the extracted CIFAR-{num_classes} 'python version'")
    if num_classes == 10:
        train = [_images_labels(folder / f"data_batch_{i}", "labels", 10) for i in range(1, 6)]
        test = _images_labels(folder / "test_batch", "labels", 10)
        meta, names_key = folder / "batches.meta", "label_names"
    else:
        train = [_images_labels(folder / "train", "fine_labels", 100)]
        test = _images_labels(folder / "test", "fine_labels", 100)
        meta, names_key = folder / "meta", "fine_label_names"
    names = [str(i) for i in range(num_classes)]
    if meta.exists():
        raw = _load_batch(meta).get(names_key, names)
        if not isinstance(raw, list) or len(raw) != num_classes or not all(isinstance(n, bytes | str) for n in raw):
            raise DataError(f"{meta}: '{names_key}' must be a list of {num_classes} names")
        names = [n.decode(errors="replace") if isinstance(n, bytes) else n for n in raw]
    images = np.concatenate([t[0] for t in train])
    labels = np.concatenate([t[1] for t in train])
    return {"train": (images, labels), "test": test, "classes": names}
