"""Tests for wae.data: IDX parsing, datasets, transforms and loaders (CPU, no downloads)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv_datasets

from wae import data
from wae.data import (
    FASHION_MNIST_CLASSES,
    DataError,
    DataWarning,
    balanced_subset,
    build_dataset,
    build_loader,
    build_transform,
    load_fashion_mnist,
    read_idx,
    stratified_split,
    train_val_split,
    write_idx,
)

REAL_FMNIST = data.DEFAULT_FASHION_MNIST_DIR
has_real_fmnist = (REAL_FMNIST / "train-images-idx3-ubyte.gz").is_file() or (
    REAL_FMNIST / "train-images-idx3-ubyte"
).is_file()


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    # A developer's WAE_DATA_DIR must not change what the tests see.
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


# ------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / f"x-idx3{suffix}"
    write_idx(path, arr)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 1  # writable, native-endian copy


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_matches_torchvision(tmp_path, dtype):
    # Our reader exists for gzip and clear errors (see wae/data/idx.py); on plain files it must
    # read exactly what torchvision's IDX parser reads.
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    arr = (np.arange(2 * 3 * 4) * 37 - 300).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, arr)
    ours, theirs = read_idx(path), read_sn3_pascalvincent_tensor(str(path)).numpy()
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_idx_header_layout(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([3, 1, 4], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


def test_idx_truncated_names_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((5, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated.*\(5, 4, 4\)"):
        read_idx(path)


def test_idx_trailing_bytes(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    write_idx(path, np.zeros(5, np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="longer than its header"):
        read_idx(path)


def test_idx_truncated_gzip_names_file(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 255, (20, 8, 8), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*truncated or corrupt"):
        read_idx(path)


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x42\x01abcd", b"PK\x03\x04zipfile"])
def test_idx_bad_magic(tmp_path, content):
    path = tmp_path / "junk-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match="junk-idx1-ubyte is not an IDX file"):
        read_idx(path)


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "h-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2]))
    with pytest.raises(DataError, match="truncated inside its header"):
        read_idx(path)


def test_idx_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")


# ------------------------------------------------------------------- Fashion-MNIST (synthetic)


def make_fmnist(root: Path, n_train: int = 50, n_test: int = 20, gz: bool = True) -> Path:
    """Write a tiny Fashion-MNIST lookalike (labels cycle through 0..9) into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            root / f"{prefix}-images-idx3-ubyte{ext}",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n, dtype=np.uint8) % 10)
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_fmnist_synthetic(tmp_path, gz):
    root = make_fmnist(tmp_path / "fm", gz=gz)
    x, y = load_fashion_mnist("train", data_dir=root)
    assert x.shape == (50, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    ds = build_dataset("fashion-mnist", "test", data_dir=root)
    assert len(ds) == 20 and ds.num_classes == 10 and ds.classes == list(FASHION_MNIST_CLASSES)
    assert (ds.in_chans, ds.input_size, ds.mean, ds.std) == (1, 28, (0.2860,), (0.3530,))
    img, label = ds[3]
    assert img.shape == (1, 28, 28) and img.dtype == torch.float32 and label == 3
    # Eval at native size is exactly the stored pixels on the [0, 1] scale.
    xt, _ = load_fashion_mnist("test", data_dir=root)
    torch.testing.assert_close(img[0], xt[3].float() / 255)


def test_fmnist_env_var_and_layouts(tmp_path, monkeypatch):
    # $WAE_DATA_DIR may point at a parent holding fashion-mnist/ or torchvision's layout.
    make_fmnist(tmp_path / "a" / "fashion-mnist")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "a"))
    assert len(build_dataset("fmnist", "train")) == 50
    make_fmnist(tmp_path / "b" / "FashionMNIST" / "raw", n_train=30)
    assert len(build_dataset("Fashion_MNIST", "train", data_dir=tmp_path / "b")) == 30


def test_fmnist_missing(tmp_path):
    with pytest.raises(DataError) as e:
        build_dataset("fashion-mnist", "train", data_dir=tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "WAE_DATA_DIR" in msg and "data.download=true" in msg and "--download" not in msg


def test_fmnist_truncated_file_via_build(tmp_path):
    root = make_fmnist(tmp_path, gz=False)
    f = root / "t10k-labels-idx1-ubyte"
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is truncated"):
        build_dataset("fashion-mnist", "val", data_dir=root)


def test_fmnist_grey_to_rgb_warns(tmp_path):
    root = make_fmnist(tmp_path)
    with pytest.warns(DataWarning, match="grey to RGB"):
        ds = build_dataset("fashion-mnist", "train", data_dir=root, in_chans=3, input_size=32)
    img, _ = ds[0]
    assert img.shape == (3, 32, 32)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    assert ds.mean == (0.2860,) * 3


@pytest.mark.skipif(not has_real_fmnist, reason=f"Fashion-MNIST not installed in {REAL_FMNIST}")
def test_real_fashion_mnist():
    for split, n in (("train", 60000), ("test", 10000)):
        x, y = load_fashion_mnist(split)
        assert x.shape == (n, 28, 28) and x.dtype == torch.uint8
        assert y.shape == (n,) and y.dtype == torch.int64
        assert int(y.min()) == 0 and int(y.max()) == 9
        assert torch.equal(torch.bincount(y), torch.full((10,), n // 10))
    ds = build_dataset("fashion-mnist", "train")
    assert len(ds) == 60000 and ds.num_classes == 10
    img, label = ds[0]
    assert img.shape == (1, 28, 28) and img.dtype == torch.float32 and 0 <= label < 10
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    # Subsets: balanced and seeded.
    a = build_dataset("fashion-mnist", "train", subset=1000, seed=1)
    b = build_dataset("fashion-mnist", "train", subset=1000, seed=1)
    c = build_dataset("fashion-mnist", "train", subset=1000, seed=2)
    assert torch.equal(torch.bincount(a.targets, minlength=10), torch.full((10,), 100))
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)


# ----------------------------------------------------------------------- subsets and splits


def test_balanced_subset_even_and_deterministic():
    targets = torch.arange(1000) % 10
    idx = balanced_subset(targets, 53, seed=0)
    assert len(idx) == 53 and len(set(idx.tolist())) == 53
    counts = torch.bincount(targets[idx], minlength=10)
    assert int(counts.max() - counts.min()) <= 1
    assert torch.equal(idx, balanced_subset(targets, 53, seed=0))
    assert not torch.equal(idx, balanced_subset(targets, 53, seed=1))


def test_balanced_subset_small_class_and_limits():
    targets = torch.tensor([0] * 100 + [1] * 3 + [2] * 50)
    counts = torch.bincount(targets[balanced_subset(targets, 30, seed=0)])
    assert counts.tolist() == [14, 3, 13] or counts.tolist() == [13, 3, 14]
    assert len(balanced_subset(targets, 10_000)) == len(targets)
    with pytest.raises(DataError, match="positive"):
        balanced_subset(targets, 0)


def test_stratified_split():
    targets = torch.arange(200) % 4
    tr, va = stratified_split(targets, 0.2, seed=3)
    assert len(tr) == 160 and len(va) == 40
    assert set(tr.tolist()).isdisjoint(va.tolist()) and len(set(tr.tolist() + va.tolist())) == 200
    assert torch.bincount(targets[va]).tolist() == [10, 10, 10, 10]
    tr2, va2 = stratified_split(targets, 0.2, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)


def test_train_val_split_transforms(tmp_path):
    ds = build_dataset("fashion-mnist", "train", data_dir=make_fmnist(tmp_path, n_train=100))
    tr, va = train_val_split(ds, 0.2, seed=0)
    assert len(tr) == 80 and len(va) == 20 and va.info.split == "val"
    assert tr.transform.train and not va.transform.train
    assert set(tr.indices.tolist()).isdisjoint(va.indices.tolist())
    assert va.num_classes == 10


# ---------------------------------------------------------------------------- ImageFolder


def save_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 3, ext: str = ".png"):
    for c in classes:
        for i in range(per_class):
            save_image(root / c / f"{i}{ext}")
    return root


def test_folder_basic(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=10)
    ds = build_dataset(str(root), "train", input_size=24, train_transforms=False)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2 and ds.in_chans == 3
    assert ds.mean == data.IMAGENET_MEAN and len(ds) == 18  # 10% per class held out
    img, label = ds[0]
    assert img.shape == (3, 24, 24) and img.dtype == torch.float32 and label in (0, 1)
    val = build_dataset(str(root), "val", input_size=24)
    assert len(val) == 2 and set(val.targets.tolist()) == {0, 1}
    test = build_dataset(str(root), "test", input_size=24)
    assert torch.equal(test.indices, val.indices)


def test_folder_split_layout(tmp_path):
    make_folder(tmp_path / "train", per_class=4)
    make_folder(tmp_path / "val", per_class=2)
    assert len(build_dataset(str(tmp_path), "train", input_size=16)) == 8
    assert len(build_dataset(str(tmp_path), "val", input_size=16)) == 4
    assert len(build_dataset(str(tmp_path), "test", input_size=16)) == 4  # val serves as test
    only_train = tmp_path / "other"
    make_folder(only_train / "train")
    with pytest.raises(DataError, match="none for split 'val'"):
        build_dataset(str(only_train), "val")


def test_folder_missing_dir(tmp_path):
    with pytest.raises(DataError, match=r"Image folder .*nope does not exist"):
        build_dataset(str(tmp_path / "nope"), "train")


def test_unknown_name():
    with pytest.raises(DataError, match="Unknown dataset 'imagenet-xyz'"):
        build_dataset("imagenet-xyz", "train")


def test_folder_empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        build_dataset(str(tmp_path / "empty"), "train")


def test_folder_no_class_folders(tmp_path):
    save_image(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="holds 1 images directly but no class sub-folders"):
        build_dataset(str(tmp_path / "flat"), "train")


def test_folder_class_folders_without_images(tmp_path):
    (tmp_path / "r" / "cat").mkdir(parents=True)
    (tmp_path / "r" / "cat" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="no usable images"):
        build_dataset(str(tmp_path / "r"), "train")


def test_folder_hidden_dirs_ignored(tmp_path):
    root = make_folder(tmp_path / "r")
    save_image(root / ".ipynb_checkpoints" / "x.png")
    ds = build_dataset(str(root), "train", input_size=16)
    assert ds.classes == ["cat", "dog"]


def corrupt_folder(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = make_folder(tmp_path / "r", per_class=4, ext=".jpg")
    garbage = root / "cat" / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    truncated = save_image(root / "dog" / "cut.jpg", size=(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:400])
    (root / "train").mkdir()  # use an explicit split layout so every file is in "train"
    for p in list(root.iterdir()):
        if p.name != "train":
            p.rename(root / "train" / p.name)
    return root, root / "train/cat/garbage.png", root / "train/dog/cut.jpg"


def test_folder_corrupt_image_raises_naming_file(tmp_path):
    root, garbage, truncated = corrupt_folder(tmp_path)
    ds = build_dataset(str(root), "train", input_size=16)
    paths = [p for p, _ in ds.source.samples]
    with pytest.raises(DataError, match=r"Cannot read image .*garbage\.png.*skip_bad"):
        ds[paths.index(str(garbage))]
    with pytest.raises(DataError, match=r"Cannot read image .*cut\.jpg"):
        ds[paths.index(str(truncated))]
    with pytest.raises(DataError, match=r"2 unreadable image\(s\).*garbage\.png"):
        ds.verify()


def test_folder_skip_bad(tmp_path):
    root, garbage, truncated = corrupt_folder(tmp_path)
    ds = build_dataset(str(root), "train", input_size=16, skip_bad=True)
    paths = [p for p, _ in ds.source.samples]
    i = paths.index(str(garbage))
    with pytest.warns(DataWarning, match=r"Skipping bad image.*garbage\.png"):
        img, label = ds[i]
    assert img.shape == (3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known-bad file is skipped without a second warning
        ds[i]
    # Every item of a full pass comes back, each from a readable file.
    with pytest.warns(DataWarning, match="cut.jpg"):
        items = [ds[k] for k in range(len(ds))]
    assert len(items) == len(ds) == 10


def test_folder_verify_skip_bad_drops(tmp_path):
    root, garbage, truncated = corrupt_folder(tmp_path)
    ds = build_dataset(str(root), "train", input_size=16, skip_bad=True)
    with pytest.warns(DataWarning, match="Dropping 2 unreadable"):
        bad = ds.verify()
    assert sorted(bad) == sorted([str(garbage), str(truncated)])
    assert len(ds) == 8 and len(ds.targets) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(ds[k][0].shape == (3, 16, 16) for k in range(len(ds)))


def test_folder_grey_image_for_colour_model(tmp_path, recwarn):
    root = tmp_path / "r"
    save_image(root / "a" / "grey1.png", mode="L")
    save_image(root / "a" / "grey2.png", mode="L")
    save_image(root / "b" / "rgb.png")
    (root / "train").mkdir()
    for p in ("a", "b"):
        (root / p).rename(root / "train" / p)
    ds = build_dataset(str(root), "train", input_size=16, in_chans=3)
    imgs = [ds[k][0] for k in range(len(ds))]
    assert all(im.shape == (3, 16, 16) for im in imgs)
    colour = [w for w in recwarn if issubclass(w.category, DataWarning)]
    assert len(colour) == 1 and "greyscale" in str(colour[0].message)
    assert "in_chans=3" in str(colour[0].message)


def test_folder_rgb_image_for_grey_model(tmp_path):
    root = make_folder(tmp_path / "train", per_class=2).parent
    ds = build_dataset(str(root), "train", input_size=16, in_chans=1)
    with pytest.warns(DataWarning, match="is colour .* in_chans=1"):
        img, _ = ds[0]
    assert img.shape == (1, 16, 16)
    assert len(ds.mean) == 1 and len(ds.std) == 1


# ------------------------------------------------------------------------------ transforms


@pytest.mark.parametrize("size", [16, 32, 64, 224])
@pytest.mark.parametrize("train", [True, False])
def test_transform_shapes(size, train):
    t = build_transform(size, train, in_chans=3)
    assert t.resize == round(size * 256 / 224)
    for image in (
        torch.randint(0, 256, (3, 50, 80), dtype=torch.uint8),
        Image.new("RGB", (90, 40)),
        Image.new("L", (30, 30)),
        Image.new("RGBA", (33, 47)),
    ):
        out = t(image)
        assert out.shape == (3, size, size) and out.dtype == torch.float32
        assert type(out) is torch.Tensor and 0 <= float(out.min()) and float(out.max()) <= 1


def test_transform_small_image_rule():
    x = torch.randint(1, 256, (1, 28, 28), dtype=torch.uint8)
    ev = build_transform(28, False, in_chans=1, native_size=28, crop_padding=2)
    assert ev.resize is None
    torch.testing.assert_close(ev(x), x.float() / 255)
    tr = build_transform(28, True, in_chans=1, native_size=28, crop_padding=2)
    assert "RandomCrop(28, padding=2)" in repr(tr) and "Resize" not in repr(tr)
    torch.manual_seed(0)
    outs = [tr(x) for _ in range(50)]
    assert all(o.shape == (1, 28, 28) for o in outs)
    # Crops of a zero-padded image: some outputs have a black border row/column.
    assert any(bool((o == 0).any()) for o in outs)
    # A different input size leaves the small-image rule for the resize rule.
    assert build_transform(32, True, in_chans=1, native_size=28).resize == 37


def test_transform_rejects_bad_args():
    with pytest.raises(DataError, match="in_chans"):
        build_transform(32, True, in_chans=2)
    with pytest.raises(DataError, match="input_size"):
        build_transform(4, True)


# --------------------------------------------------------------------------------- loaders


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loader_determinism(tmp_path):
    ds = build_dataset("fashion-mnist", "train", data_dir=make_fmnist(tmp_path, n_train=40))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = _epoch(build_loader(ds, 8, shuffle=True, seed=5))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    torch.manual_seed(999)  # and does not influence the batches
    b = _epoch(build_loader(ds, 8, shuffle=True, seed=5))
    c = _epoch(build_loader(ds, 8, shuffle=True, seed=6))
    assert len(a) == 5 and a[0][0].shape == (8, 1, 28, 28) and a[0][1].dtype == torch.int64
    assert all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True))
    # Two epochs of one loader differ (new order and augmentation), but reproducibly.
    la, lb = build_loader(ds, 8, True, 5), build_loader(ds, 8, True, 5)
    a1, a2, b1, b2 = _epoch(la), _epoch(la), _epoch(lb), _epoch(lb)
    assert not torch.equal(a1[0][0], a2[0][0]) and torch.equal(a2[0][0], b2[0][0])
    assert torch.equal(a1[0][0], b1[0][0])


def test_loader_determinism_with_workers(tmp_path):
    ds = build_dataset("fashion-mnist", "train", data_dir=make_fmnist(tmp_path, n_train=32))
    a = _epoch(build_loader(ds, 8, True, 1, num_workers=2))
    b = _epoch(build_loader(ds, 8, True, 1, num_workers=2))
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b, strict=True))


def test_loader_distributed_needs_process_group(tmp_path):
    ds = build_dataset("fashion-mnist", "test", data_dir=make_fmnist(tmp_path))
    with pytest.raises(DataError, match="not initialised"):
        build_loader(ds, 4, True, 0, distributed=True)


# ------------------------------------------------------------------------------------ CIFAR


def make_fake_cifar10(root: Path, per_batch: int = 4) -> Path:
    """CIFAR-10's python-pickle layout with tiny batches (integrity check patched out)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            "data": rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8),
            "labels": [i % 10 for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(data.CIFAR10_CLASSES)}))
    return root


def test_cifar10_from_files(tmp_path, monkeypatch):
    # Real CIFAR files are md5-checked; these fakes cannot pass, so the check is patched out.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    root = make_fake_cifar10(tmp_path)
    ds = build_dataset("cifar10", "train", data_dir=root, train_transforms=False)
    assert len(ds) == 20 and ds.classes == list(data.CIFAR10_CLASSES) and ds.in_chans == 3
    assert ds.input_size == 32 and len(ds.mean) == 3 and ds.verify() == []
    img, label = ds[1]
    assert img.shape == (3, 32, 32) and label == 1
    raw = tv_datasets.CIFAR10(str(root), train=True).data[1]  # (H, W, C) uint8
    torch.testing.assert_close(img, torch.from_numpy(raw).permute(2, 0, 1).float() / 255)
    # The extracted folder itself is accepted as data_dir; RGB -> grey warns.
    with pytest.warns(DataWarning, match="RGB to grey"):
        grey = build_dataset("cifar10", "test", data_dir=root / "cifar-10-batches-py", in_chans=1)
    assert len(grey) == 4 and grey[0][0].shape == (1, 32, 32) and len(grey.mean) == 1
    assert "RandomCrop" not in repr(grey.transform)
    train = build_dataset("cifar10", "train", data_dir=root)
    assert "RandomCrop(32, padding=4)" in repr(train.transform)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "CIFAR-10"])
def test_cifar_missing(tmp_path, name):
    with pytest.raises(DataError, match=r"No usable CIFAR-10+ files .*data\.download=true"):
        build_dataset(name, "train", data_dir=tmp_path)


def test_bad_split(tmp_path):
    with pytest.raises(DataError, match="split must be"):
        build_dataset("fashion-mnist", "dev", data_dir=tmp_path)  # type: ignore[arg-type]


def test_idx_gzip_detected_by_content(tmp_path):
    # The gzip detection relies on content, so a .gz name holding plain IDX also works.
    path = tmp_path / "plain-idx1-ubyte.gz"
    write_idx(tmp_path / "p", np.arange(4, dtype=np.uint8))
    path.write_bytes((tmp_path / "p").read_bytes())
    assert read_idx(path).tolist() == [0, 1, 2, 3]
