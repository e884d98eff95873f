"""Train / validation / test splits of a data set, and their batches.

Small sets (IDX, CIFAR) live in memory as uint8 tensors and are batched, augmented and
normalised on the fly, so loading never limits training. ImageFolder trees stream from disk
through torchvision's ImageFolder and timm's transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from cotsearch.data.shape import DataShape
from cotsearch.errors import DataError

SPLIT_SEED = 0  # the validation split and train subsets are the same for every run


class ImageSplit(Protocol):
    labels: np.ndarray

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, shuffle: bool, seed: int, augment: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def stratified_subset(labels: np.ndarray, n: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rest) index arrays: n samples with every class in its share of `labels`."""
    rng = np.random.default_rng(seed)
    n = min(n, len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * n / len(labels)).astype(int)
    remainder = n - quota.sum()
    quota[np.argsort(-(counts * n / len(labels) - quota), kind="stable")[:remainder]] += 1  # largest remainders
    chosen = []
    for cls, k in zip(classes, quota):
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.permutation(members)[:k])
    chosen = np.sort(np.concatenate(chosen))
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    return chosen, rest


def shift_and_flip(x: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to `pad` px (zero padding, i.e. random-crop-with-padding)
    and horizontal flip, for a whole uint8 batch at once. Written here because timm's and
    torchvision's transforms work image by image on PIL images, which would make the data,
    not the model, the bottleneck on a 2-core machine."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    if flip:
        mirror = torch.rand(n, generator=gen) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(3), out)
    return out


@dataclass
class TensorSplit:
    """Images (N, C, H, W uint8) and labels in memory."""

    images: torch.Tensor
    labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 2
    flip: bool = True

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, shuffle: bool, seed: int, augment: bool):
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=gen) if shuffle else torch.arange(len(self))
        labels = torch.from_numpy(self.labels)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1) * 255
        std = torch.tensor(self.std).view(1, -1, 1, 1) * 255
        for start in range(0, len(self), batch_size):
            idx = order[start : start + batch_size]
            x = self.images[idx]
            if augment:
                x = shift_and_flip(x, self.pad, self.flip, gen)
            yield (x.float() - mean) / std, labels[idx]

    def subset(self, indices: np.ndarray) -> TensorSplit:
        return TensorSplit(self.images[torch.from_numpy(indices)], self.labels[indices], self.mean, self.std, self.pad, self.flip)


@dataclass
class StreamSplit:
    """A torchvision dataset read from disk, with separate train / eval transforms."""

    train_set: torch.utils.data.Dataset
    eval_set: torch.utils.data.Dataset
    labels: np.ndarray
    workers: int = 2

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, shuffle: bool, seed: int, augment: bool):
        loader = torch.utils.data.DataLoader(
            self.train_set if augment else self.eval_set, batch_size=batch_size, shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed), num_workers=self.workers,
            persistent_workers=False, drop_last=False,
        )
        try:
            yield from loader
        except DataError as e:
            # A worker's error comes back with its traceback in the message; keep the last line.
            raise DataError(str(e).strip().splitlines()[-1].removeprefix("cotsearch.errors.DataError: ")) from None


@dataclass
class DataSplits:
    name: str
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    num_classes: int
    in_chans: int
    input_size: int
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def shape(self) -> DataShape:
        return DataShape(self.in_chans, self.num_classes, self.input_size)

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test, "
                f"{self.num_classes} classes, {self.in_chans}x{self.input_size}x{self.input_size}")

    def metadata(self) -> dict:
        """What a trained model file records about its data."""
        return {"data": self.name, "classes": self.classes, "mean": list(self.mean), "std": list(self.std),
                "input_size": self.input_size, "in_chans": self.in_chans}
