"""Data sets for training and search: `load_data("fashion-mnist")`, `"mnist:DIR"`,
`"cifar10:DIR"`, `"cifar100:DIR"`, `"folder:DIR"`.

Each gives train / validation / test splits; the validation split is carved from the
training set with a fixed seed (a search never sees the test set), `train_limit` keeps a
stratified subset of the rest for cheap proxies, and the normalisation statistics are the
training split's own (ImageNet's for image folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from cotsearch.data.cifar import load_cifar
from cotsearch.data.folder import folder_labels, image_folder
from cotsearch.data.idx import load_idx_split
from cotsearch.data.shape import parse_source, train_root
from cotsearch.data.splits import DataSplits, StreamSplit, TensorSplit, stratified_subset
from cotsearch.errors import DataError

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).tolist())


def _in_memory(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
               classes: list[str], val_size: int, train_limit: int | None, pad: int, flip: bool) -> DataSplits:
    images, labels = train
    num_classes = len(classes)
    for split, lab in (("train", labels), ("test", test[1])):
        if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
            raise DataError(f"{name}: {split} labels out of range [{lab.min()}, {lab.max()}]; expected 0..{num_classes - 1}")
    if len(labels) <= val_size:
        raise DataError(f"{name}: only {len(labels)} training images; need more than the {val_size} held out for validation")
    val_idx, train_idx = stratified_subset(labels, val_size)
    all_train = TensorSplit(torch.from_numpy(np.array(images)), labels, (0.0,), (1.0,), pad, flip)
    train_split = all_train.subset(train_idx)
    mean, std = _channel_stats(train_split.images)
    all_train.mean = train_split.mean = mean
    all_train.std = train_split.std = std
    if train_limit is not None:
        keep, _ = stratified_subset(train_split.labels, train_limit)
        train_split = train_split.subset(keep)
    test_split = TensorSplit(torch.from_numpy(np.array(test[0])), test[1], mean, std, pad, flip)
    return DataSplits(name, train_split, all_train.subset(val_idx), test_split, num_classes, images.shape[1],
                      images.shape[-1], classes, mean, std)


def _folder(root: Path, val_size: int, train_limit: int | None, input_size: int, workers: int) -> DataSplits:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform

    train_tf = create_transform(input_size, is_training=True)
    eval_tf = create_transform(input_size, is_training=False)
    train_dir = train_root(root)
    train_aug, train_eval = image_folder(train_dir, train_tf), image_folder(train_dir, eval_tf)
    labels = folder_labels(train_aug)
    test_root = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    val_idx, rest = stratified_subset(labels, val_size)
    if test_root is None:  # one tree: carve the test split too, with the same fixed seed
        test_pos, rest_pos = stratified_subset(labels[rest], val_size, seed=1)
        test_idx, rest = rest[test_pos], rest[rest_pos]
        test = StreamSplit(Subset(train_eval, test_idx), Subset(train_eval, test_idx), labels[test_idx], workers)
    else:
        test_set = image_folder(test_root, eval_tf)
        if test_set.classes != train_aug.classes:
            raise DataError(f"{test_root}: its class folders differ from {train_dir}'s")
        test = StreamSplit(test_set, test_set, folder_labels(test_set), workers)
    if train_limit is not None:
        keep, _ = stratified_subset(labels[rest], train_limit)
        rest = rest[keep]
    train = StreamSplit(Subset(train_aug, rest), Subset(train_eval, rest), labels[rest], workers)
    val = StreamSplit(Subset(train_eval, val_idx), Subset(train_eval, val_idx), labels[val_idx], workers)
    return DataSplits(f"folder:{root}", train, val, test, len(train_aug.classes), 3, input_size,
                      list(train_aug.classes), IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)


def load_data(source: str, train_limit: int | None = None, val_size: int | None = None,
              input_size: int = 224, workers: int = 2) -> DataSplits:
    """Load `source` (see cotsearch.data.shape.SOURCES). `val_size`: images held out from training for
    validation (default 5000, or a tenth of an image folder); `input_size` and `workers`
    apply to image folders only."""
    if train_limit is not None and train_limit < 1:
        raise DataError(f"--train-limit must be at least 1, got {train_limit}")
    src = parse_source(source)
    if src.kind in ("fashion-mnist", "mnist"):
        train, test = load_idx_split(src.folder, "train"), load_idx_split(src.folder, "t10k")
        classes = FASHION_CLASSES if src.kind != "mnist" else [str(i) for i in range(10)]
        return _in_memory(src.name, train, test, classes, val_size or 5000, train_limit, pad=2, flip=src.kind != "mnist")
    if src.kind in ("cifar10", "cifar100"):
        data = load_cifar(src.folder, 10 if src.kind == "cifar10" else 100)
        return _in_memory(src.name, data["train"], data["test"], data["classes"], val_size or 5000, train_limit,
                          pad=4, flip=True)
    n = len(folder_labels(image_folder(train_root(src.folder), None)))
    return _folder(src.folder, val_size or max(1, n // 10), train_limit, input_size, workers)
