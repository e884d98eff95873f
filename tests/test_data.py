"""Data loaders on files the tests write: IDX, CIFAR pickles, ImageFolder PNGs, and the
clear error of each bad case."""

import gzip
import pickle

import numpy as np
import pytest
from PIL import Image

from cotsearch.data.load import load_data
from cotsearch.data.splits import stratified_subset
from cotsearch.errors import DataError

from helpers import fake_images, write_cifar, write_idx
from hostile import GIB, gzip_bomb


@pytest.fixture
def idx_dir(tmp_path):
    folder = tmp_path / "fmnist"
    write_idx(folder, "train", *fake_images(300))
    write_idx(folder, "t10k", *fake_images(50, seed=1), gz=False)
    return folder


def test_idx_splits_and_stats(idx_dir):
    data = load_data(f"fashion-mnist:{idx_dir}", val_size=50)
    assert (len(data.train), len(data.val), len(data.test)) == (250, 50, 50)
    assert data.in_chans == 1 and data.input_size == 28 and data.num_classes == 10
    assert np.bincount(data.val.labels).tolist() == [5] * 10  # stratified
    x, y = next(data.train.batches(64, shuffle=True, seed=0, augment=False))
    assert x.shape == (64, 1, 28, 28) and y.dtype.is_floating_point is False
    all_train = np.concatenate([b[0].numpy() for b in data.train.batches(1000, False, 0, False)])
    assert abs(all_train.mean()) < 1e-4 and abs(all_train.std() - 1) < 1e-3  # normalised with its own stats


def test_validation_split_is_fixed_and_disjoint(idx_dir):
    a = load_data(f"fashion-mnist:{idx_dir}", val_size=50)
    b = load_data(f"fashion-mnist:{idx_dir}", val_size=50, train_limit=100)
    val_a = {bytes(img.numpy()) for img in a.val.images}
    assert val_a == {bytes(img.numpy()) for img in b.val.images}
    assert not val_a & {bytes(img.numpy()) for img in a.train.images}
    assert len(b.train) == 100 and np.bincount(b.train.labels).tolist() == [10] * 10


def test_augmented_batches_keep_shape_and_vary_with_seed(idx_dir):
    data = load_data(f"fashion-mnist:{idx_dir}", val_size=50)
    a = next(data.train.batches(32, False, seed=1, augment=True))[0]
    b = next(data.train.batches(32, False, seed=2, augment=True))[0]
    plain = next(data.train.batches(32, False, seed=1, augment=False))[0]
    assert a.shape == plain.shape and not a.equal(b) and not a.equal(plain)
    assert a.equal(next(data.train.batches(32, False, seed=1, augment=True))[0])


def test_stratified_subset_exact_size():
    labels = np.array([0] * 7 + [1] * 3 + [2] * 1)
    chosen, rest = stratified_subset(labels, 5)
    assert len(chosen) == 5 and len(rest) == 6 and not set(chosen) & set(rest)
    # shares 7/11, 3/11, 1/11 of 5 are 3.18, 1.36, 0.45: floors [3, 1, 0], the one left to the largest remainder
    assert np.bincount(labels[chosen], minlength=3).tolist() == [3, 1, 1]


def test_cifar10_python_pickles(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_data(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", val_size=20)
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    assert data.in_chans == 3 and data.input_size == 32 and data.classes[3] == "class3"
    assert len(data.mean) == 3


def test_cifar_pickle_with_code_is_refused(tmp_path):
    write_cifar(tmp_path / "c", evil=True)
    with pytest.raises(DataError, match="refused builtins.print"):
        load_data(f"cifar10:{tmp_path / 'c'}", val_size=20)


def write_folder(root, classes=("cat", "dog"), n=6, size=20):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_image_folder_png(tmp_path):
    write_folder(tmp_path / "train")
    write_folder(tmp_path / "val", n=2)
    data = load_data(f"folder:{tmp_path}", input_size=32, val_size=2, workers=0)
    assert data.classes == ["cat", "dog"] and len(data.test) == 4 and len(data.val) == 2 and len(data.train) == 10
    x, y = next(data.train.batches(4, shuffle=True, seed=0, augment=True))
    assert x.shape == (4, 3, 32, 32)
    x, y = next(data.test.batches(4, shuffle=False, seed=0, augment=False))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 0, 1, 1]


def test_single_image_folder_carves_val_and_test(tmp_path):
    write_folder(tmp_path / "all", n=10)
    data = load_data(f"folder:{tmp_path / 'all'}", input_size=16, workers=0)
    assert len(data.val) == 2 and len(data.test) == 2 and len(data.train) == 16


@pytest.mark.parametrize("case, message", [
    ("missing folder", "no such folder"),
    ("truncated file", "truncated"),
    ("wrong magic", "wrong magic number 0x00000999; expected 0x00000803"),
    ("labels out of range", "labels out of range [0, 12]; expected 0..9"),
    ("empty class folder", "Found no valid file for the classes empty"),
    ("unknown data set", "unknown data set"),
    ("missing labels file", "no t10k-labels-idx1-ubyte.gz"),
])
def test_bad_data_gives_one_clear_line(tmp_path, case, message):
    folder = tmp_path / "d"
    source = f"fashion-mnist:{folder}"
    if case == "truncated file":
        write_idx(folder, "train", *fake_images(100))
        write_idx(folder, "t10k", *fake_images(20))
        path = folder / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    elif case == "wrong magic":
        write_idx(folder, "train", *fake_images(100), images_magic=0x999)
    elif case == "labels out of range":
        images, labels = fake_images(100)
        labels[5] = 12
        write_idx(folder, "train", images, labels)
        write_idx(folder, "t10k", *fake_images(20))
    elif case == "empty class folder":
        write_folder(folder)
        (folder / "empty").mkdir()
        source = f"folder:{folder}"
    elif case == "unknown data set":
        source = "imagenet21k"
    elif case == "missing labels file":
        write_idx(folder, "train", *fake_images(100))
        write_idx(folder, "t10k", *fake_images(20))
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_data(source, val_size=10)
    assert message in str(err.value) and "\n" not in str(err.value)


def rewrite_batch(path, **changes):
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    batch.update({k.encode(): v for k, v in changes.items()})
    path.write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("changes, message", [
    ({"data": np.full((20, 3072), 300, dtype=np.int64)}, r"pixel values in \[300, 300\]; expected bytes, 0..255"),
    ({"labels": ["cat"] * 20}, "'labels' holds <U3 values; expected integers"),
    ({"labels": [1.5] * 20}, "'labels' holds float64 values; expected integers"),
])
def test_malformed_cifar_content_gives_one_line(tmp_path, changes, message):
    write_cifar(tmp_path / "c")
    rewrite_batch(tmp_path / "c" / "data_batch_2", **changes)
    with pytest.raises(DataError, match=message):
        load_data(f"cifar10:{tmp_path / 'c'}", val_size=20)


def test_cifar_label_names_must_be_a_list_of_names(tmp_path):
    write_cifar(tmp_path / "c")
    (tmp_path / "c" / "batches.meta").write_bytes(pickle.dumps({b"label_names": b"cat"}, protocol=2))
    with pytest.raises(DataError, match="'label_names' must be a list of 10 names"):
        load_data(f"cifar10:{tmp_path / 'c'}", val_size=20)


def test_a_corrupt_image_is_named_in_one_line(tmp_path):
    write_folder(tmp_path / "train")
    write_folder(tmp_path / "val", n=2)
    bad = tmp_path / "train" / "dog" / "3.png"
    bad.write_bytes(bad.read_bytes()[:40])  # a PNG cut off after its header
    data = load_data(f"folder:{tmp_path}", input_size=32, val_size=2, workers=1)
    with pytest.raises(DataError, match=rf"^{bad}: not a readable image") as caught:
        for _ in data.train.batches(4, shuffle=False, seed=0, augment=False):
            pass
    assert "\n" not in str(caught.value)


# Hostile and damaged IDX files (issues 25 and 27): each refused in one line naming the file,
# having decompressed no more than its header promises.

IMAGES = "train-images-idx3-ubyte"


def idx_images(images: int, data: bytes | None = None, dims=(28, 28)) -> bytes:
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (images, *dims))
    return header + (bytes(images * dims[0] * dims[1]) if data is None else data)


# Each refused in one line before this change too, if in other words (a header cut short read
# as "holds -6 bytes of data, its header promises 0 (100x0x0)"), but a gzip stream was
# decompressed whole before its length was compared (see the bomb below).
@pytest.mark.parametrize("name, content, message", [
    (f"{IMAGES}.gz", gzip.compress(idx_images(100) + b"more"), "holds more data than the 78,400 bytes its header promises"),
    (IMAGES, idx_images(100) + b"more", "holds more data than the 78,400 bytes its header promises"),
    (f"{IMAGES}.gz", gzip.compress(idx_images(100, fake_images(100)[0].tobytes()))[:30_000],
     "cannot read (Compressed file ended before the end-of-stream marker was reached)"),  # handled before too
    (IMAGES, idx_images(100)[:-10], "holds 78,390 bytes of data, its header promises 78,400"),  # handled before too
    (IMAGES, idx_images(100)[:10], "its header ends after 10 bytes; an IDX images header has 16"),
    (f"{IMAGES}.gz", gzip.compress(idx_images(2**31, b"")),
     "its header promises 1,683,627,180,032 bytes of data (2147483648x28x28), more than a gzip file of"),
])
def test_an_idx_file_that_does_not_hold_what_its_header_says_is_one_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError) as err:
        load_data(f"fashion-mnist:{tmp_path}", val_size=10)
    assert str(err.value).startswith(f"{tmp_path / name}: ") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_a_corrupt_gzip_stream_is_one_line(tmp_path):
    content = bytearray(gzip.compress(idx_images(100)))
    content[10] = 0x07  # the first deflate block: a reserved block type (zlib.error)
    (tmp_path / f"{IMAGES}.gz").write_bytes(bytes(content))
    with pytest.raises(DataError, match=rf"^{tmp_path / IMAGES}.gz: cannot read \(Error -3 while decompressing data: "
                                        "invalid block type\\); the file is truncated, corrupt or not gzip$"):
        load_data(f"fashion-mnist:{tmp_path}", val_size=10)


def test_a_gzip_bomb_is_refused_after_what_its_header_promises(tmp_path, monkeypatch):
    """2,000 images in its header, a GiB in its stream: no more than the header's 1,568,000
    bytes and one are ever decompressed (the peak memory: tests/test_untrusted.py)."""
    bomb = gzip_bomb(tmp_path / f"{IMAGES}.gz", images=2000, expands_to=GIB)
    decompressed = []
    read = gzip.GzipFile.read  # what readinto reads through too

    def counted(self, size=-1):
        decompressed.append(len(data := read(self, size)))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counted)
    with pytest.raises(DataError, match=rf"^{bomb}: holds more data than the 1,568,000 bytes its header promises"):
        load_data(f"fashion-mnist:{tmp_path}", val_size=10)
    assert sum(decompressed) == 16 + 2000 * 28 * 28 + 1  # the header, its data and one byte more


def test_a_folder_of_one_class_is_refused(tmp_path):
    write_folder(tmp_path, classes=("cat",))
    with pytest.raises(DataError, match=rf"^{tmp_path}: one class folder \(cat\); expected a folder per class, two or more$"):
        load_data(f"folder:{tmp_path}", input_size=16, workers=0)


def test_non_image_files_are_skipped_and_1x1_images_train(tmp_path):
    """Both handled before this change: torchvision keeps only files with an image's extension,
    and timm's transforms resize any image, 1 x 1 pixels too."""
    write_folder(tmp_path / "data", n=6, size=1)
    (tmp_path / "data" / "README.txt").write_text("not a class")
    (tmp_path / "data" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "data" / "dog" / ".DS_Store").write_bytes(b"\0\1")
    data = load_data(f"folder:{tmp_path / 'data'}", input_size=16, val_size=2, workers=0)
    assert data.classes == ["cat", "dog"] and len(data.train) + len(data.val) + len(data.test) == 12
    x, _ = next(data.train.batches(4, shuffle=False, seed=0, augment=True))
    assert x.shape == (4, 3, 16, 16)


def test_paths_with_spaces_and_non_ascii_characters(tmp_path):
    """Handled before this change too."""
    folder = tmp_path / "my data" / "Fashion-MNIST données ü"
    write_idx(folder, "train", *fake_images(100))
    write_idx(folder, "t10k", *fake_images(20, seed=1))
    assert len(load_data(f"fashion-mnist:{folder}", val_size=10).train) == 90
    write_folder(tmp_path / "images ü")
    assert load_data(f"folder:{tmp_path / 'images ü'}", input_size=16, val_size=2, workers=0).classes == ["cat", "dog"]
