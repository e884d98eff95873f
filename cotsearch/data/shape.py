"""A data source's name parsed and its image shape found without loading it (and without
torch), so that a search fixes each trial's spec for the data before pricing it, and a
missing data set is reported before any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from cotsearch.arch.spec import BackboneSpec
from cotsearch.arch.yaml_io import format_validation_error
from cotsearch.errors import DataError, SpecError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SOURCES = "fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR or folder:DIR"
KINDS = {"fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "mnist": "mnist",
         "cifar10": "cifar10", "cifar100": "cifar100", "folder": "folder"}


@dataclass(frozen=True)
class DataSource:
    kind: str  # fashion-mnist, mnist, cifar10, cifar100 or folder
    folder: Path
    name: str  # as the user wrote it, for messages and records


def parse_source(source: str) -> DataSource:
    """`kind[:DIR]` checked: a known kind, and a folder that exists."""
    kind, _, arg = source.partition(":")
    kind = KINDS.get(kind.lower())
    if kind is None:
        raise DataError(f"--data {source}: unknown data set; expected {SOURCES}")
    if not arg and kind != "fashion-mnist":
        need = {"mnist": "the four IDX files (train-images-idx3-ubyte.gz, ...) from the MNIST site",
                "folder": "a folder per class (or DIR/train and DIR/val)"}.get(kind, "the extracted 'python version' of the data set")
        raise DataError(f"{kind} needs a folder: {kind}:DIR with {need}")
    folder = Path(arg) if arg else FASHION_MNIST_DIR
    if not folder.is_dir():
        hint = " (install it with: apt-get install dataset-fashion-mnist)" if folder == FASHION_MNIST_DIR else ""
        raise DataError(f"{folder}: no such folder; expected the {kind} data set there{hint}")
    return DataSource(kind, folder, kind if not arg else source)


def train_root(folder: Path) -> Path:
    """An image folder's training tree: DIR/train when it exists, else DIR itself."""
    return folder / "train" if (folder / "train").is_dir() else folder


@dataclass(frozen=True)
class DataShape:
    """What a network needs to know of its data: image channels, classes, image size."""

    in_chans: int
    num_classes: int
    input_size: int

    def apply(self, spec: BackboneSpec) -> BackboneSpec:
        """The spec with this data's channels, classes and image size (validated again: a
        stride pattern valid at 224 px may not be at 28)."""
        data = spec.model_dump(mode="json")
        data.update(in_chans=self.in_chans, num_classes=self.num_classes, input_size=self.input_size)
        try:
            return BackboneSpec.model_validate(data)
        except ValidationError as e:
            raise SpecError(format_validation_error(e, f"{spec.name or 'spec'} on {self}", BackboneSpec)) from None

    def __str__(self) -> str:
        return f"{self.in_chans}x{self.input_size}x{self.input_size} images, {self.num_classes} classes"


def data_shape(source: str, input_size: int = 224) -> DataShape:
    """The shape of `source`'s images; `input_size` is the size image folders are resized to."""
    src = parse_source(source)
    if src.kind in ("fashion-mnist", "mnist"):
        return DataShape(1, 10, 28)
    if src.kind in ("cifar10", "cifar100"):
        return DataShape(3, 10 if src.kind == "cifar10" else 100, 32)
    # torchvision's ImageFolder makes a class of every sub-folder
    classes = [d for d in train_root(src.folder).iterdir() if d.is_dir()]
    if not classes:
        raise DataError(f"{train_root(src.folder)}: no class folders; expected a folder per class")
    return DataShape(3, len(classes), input_size)
