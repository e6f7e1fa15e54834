"""The skimage-textures dataset (wae.data.textures): pinned build, disjoint splits, names,
ImageFolder export, the trivial-cue baseline. CPU, no downloads; no training."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("skimage")

from wae.data import DataError, build_dataset  # noqa: E402
from wae.data.generated import write_image_folder  # noqa: E402
from wae.data.textures import (  # noqa: E402
    DEFAULT_CLASSES,
    TextureSpec,
    _load_photo,
    build_textures,
    parse_textures_name,
)

# sha256 of images, targets and positions of the default build (skimage-textures-64, seed 0):
# the dataset must be byte-identical on every machine. Changing the build changes these.
PINNED = {
    "train": "ef6f8485fa031d4340f0e8f1ab133118f6c1ebc0773cf5920a0ee55216416f94",
    "test": "1a1dd84ef1f5500a45b6d620ae3663d496832c11e7f002d375f55bcbbef8337c",
}
SMALL = "skimage-textures-128:brick+grass"  # 1024 train + 16 test patches: a quick build


def _digest(split) -> str:
    h = hashlib.sha256(split.images.numpy().tobytes())
    for t in (split.targets, split.positions):
        h.update(t.numpy().astype("<i8").tobytes())
    return h.hexdigest()


def test_default_build_is_pinned() -> None:
    splits = build_textures(TextureSpec())
    assert {k: _digest(s) for k, s in splits.items()} == PINNED
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (10 * 2048, 1, 64, 64) and train.images.dtype == torch.uint8
    assert train.classes == DEFAULT_CLASSES == tuple(sorted(DEFAULT_CLASSES))
    assert torch.bincount(train.targets).tolist() == [2048] * 10
    # 4 test patches per test block; the smaller photos hold fewer blocks.
    assert torch.bincount(test.targets).tolist() == [32, 32, 32, 40, 12, 24, 12, 32, 32, 32]


def test_no_test_pixel_is_in_any_train_patch() -> None:
    splits, p = build_textures(TextureSpec()), 64
    for label, name in enumerate(DEFAULT_CLASSES):
        h, w = _load_photo(name).shape
        covered = np.zeros((h + 1, w + 1), dtype=np.int64)  # test pixels, as an integral image
        test_pos = splits["test"].positions[splits["test"].targets == label].numpy()
        for y, x in test_pos:
            assert covered[y + 1 : y + p + 1, x + 1 : x + p + 1].sum() == 0  # a grid: no overlap
            covered[y + 1 : y + p + 1, x + 1 : x + p + 1] = 1
        covered = covered.cumsum(0).cumsum(1)
        ys, xs = splits["train"].positions[splits["train"].targets == label].numpy().T
        assert ys.min() >= 0 and xs.min() >= 0 and ys.max() + p <= h and xs.max() + p <= w
        inside = (
            covered[ys + p, xs + p] - covered[ys, xs + p] - covered[ys + p, xs] + covered[ys, xs]
        )
        assert not inside.any(), f"{name}: a train patch holds test pixels"


def test_patches_are_the_photo_at_their_positions() -> None:
    spec = parse_textures_name(SMALL.replace("128", "128-raw"))
    assert spec is not None and not spec.normalize and spec.classes == ("brick", "grass")
    for split in build_textures(spec).values():
        for i in (0, len(split.images) // 2, len(split.images) - 1):
            (y, x), name = split.positions[i].tolist(), spec.classes[int(split.targets[i])]
            crop = _load_photo(name)[y : y + 128, x : x + 128]
            np.testing.assert_array_equal(split.images[i, 0].numpy(), crop)
    normed = build_textures(parse_textures_name(SMALL))["test"].images.double()
    assert abs(normed.mean() - 128) < 2 and abs(normed.std() - 40) < 4  # per-patch 128 +- 40


def test_build_dataset_serves_the_splits() -> None:
    test = build_dataset("skimage-textures", "test")
    val = build_dataset("Skimage_Textures-64", "val")  # "val" is the test set, as for FMNIST
    assert test.info.name == val.info.name == "skimage-textures-64"
    assert (test.input_size, test.in_chans, test.num_classes, len(test)) == (64, 1, 10, 280)
    x, y = val[5]
    assert torch.equal(x, test[5][0]) and y == test[5][1]
    assert x.shape == (1, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    half = build_dataset("skimage-textures", "train", input_size=32)  # the I_R input
    assert half[0][0].shape == (1, 32, 32) and len(half) == 20480
    assert abs(half.mean[0] - 0.5) < 0.01  # per-patch normalised: mean 128 / 255


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("skimage-textures-65", "multiple of 16"),
        ("skimage-textures-256", "multiple of 16"),
        ("skimage-textures-64-grey", "Malformed"),
        ("skimage-textures:brick+moon", "unknown: \\['moon'\\]"),
        ("skimage-textures:brick", "two or more"),
        ("skimage-textures-128:brick+coins", "'coins' .* too small"),
    ],
)
def test_bad_names_are_refused(name: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        build_dataset(name, "train")


def test_image_folder_round_trip(tmp_path) -> None:
    out = write_image_folder(SMALL, tmp_path / "tex")
    splits = build_textures(parse_textures_name(SMALL))
    for split, s in splits.items():
        ds = build_dataset(out, split, in_chans=1, input_size=128)
        assert ds.classes == list(s.classes) and len(ds) == len(s.images)
        path, label = ds.source.samples[-1]
        assert label == int(s.targets[-1])
        np.testing.assert_array_equal(np.asarray(Image.open(path)), s.images[-1, 0].numpy())
    with pytest.raises(DataError, match="not an empty directory"):
        write_image_folder(SMALL, out)
    with pytest.raises(DataError, match="not a generated dataset"):
        write_image_folder("fashion-mnist", tmp_path / "other")
