"""ImageFolder trees: a folder per class (read with Pillow through torchvision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Subset
from torchvision.datasets import ImageFolder

from cotsearch.errors import DataError


def load_image(path: str) -> Image.Image:
    """torchvision's Pillow loader, with the file named when it is not a readable image."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({str(e).splitlines()[0][:100]})") from None


def image_folder(root: Path, transform) -> ImageFolder:
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected a folder per class holding images")
    try:
        dataset = ImageFolder(str(root), transform=transform, loader=load_image)
    except FileNotFoundError as e:
        # torchvision: "Couldn't find any class folder" / "Found no valid file for the classes X"
        raise DataError(f"{root}: {str(e).splitlines()[0]}") from None
    if len(dataset.classes) < 2:  # every image its one class: a run that learns nothing and scores 100%
        raise DataError(f"{root}: one class folder ({dataset.classes[0]}); expected a folder per class, two or more")
    return dataset


def folder_labels(dataset: ImageFolder | Subset) -> np.ndarray:
    if isinstance(dataset, Subset):
        return folder_labels(dataset.dataset)[np.asarray(dataset.indices)]
    return np.asarray(dataset.targets, dtype=np.int64)
