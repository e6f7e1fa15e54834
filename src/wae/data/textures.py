"""Texture patches from the real photographs scikit-image bundles: ``"skimage-textures"``.

A second real dataset, one where detail matters: one class per source photo, each item a
grey ``P x P`` patch of it (``P`` = 64 by default). Built deterministically in a few seconds
from files inside the scikit-image wheel (no download), identical on every machine: every
photo is checked against a pinned SHA-256 before use, and every step after it is integer or
correctly rounded arithmetic (no float reductions whose order could differ).

Names (for recipes and the CLI): ``skimage-textures`` (P = 64, per-patch normalised, the
default classes), ``skimage-textures-<P>`` (P a multiple of 16 from 32 to 128), either with
``-raw`` (no per-patch normalisation), and any of these with ``:<photo>+<photo>+...`` for
another class set, e.g. ``skimage-textures-128-raw:brick+grass+gravel``. ``"val"`` is the test
set, as for Fashion-MNIST.

**Photos.** Candidates are the bundled PNG photographs with a licence stated in scikit-image's
documentation (the ``Notes`` of each ``skimage.data`` function). JPEG photos (``retina``,
``rocket``, ``hubble_deep_field``) are left out because their pixels depend on the JPEG
decoder; ``moon`` and ``page`` because scikit-image states no licence for them; ``cat`` is
``chelsea``; the rest are synthetic or tiny. Colour photos are converted to grey (ITU-R 601,
integer arithmetic) so colour is no cue. The default classes (:data:`DEFAULT_CLASSES`) are ten:
three pure textures (brick, grass, gravel), two microscopy textures (cell, immunohistochemistry)
and five photographs whose patches hold textured detail (astronaut, camera, chelsea's fur,
coffee's wood and porcelain, coins); ``clock`` (motion-blurred, much flat wall) and ``text``
(172 px high) are available but not used by default. A photo must hold one train and one test
block (below): at P >= 112 ``coins`` and at P = 128 also ``chelsea`` do not, so larger patches
need a class list without them.

========================  ============  ====================================================
photo                     size          licence (as scikit-image states it)
========================  ============  ====================================================
astronaut                 512x512 RGB   public domain (NASA; no known copyright restrictions)
brick                     512x512       CC0 (CC0Textures "Bricks25")
camera                    512x512       CC0 (photographer Lav Varshney)
cell                      660x550       CC0 (Müller et al., Optics Express 2018)
chelsea                   300x451 RGB   CC0 (photographer Stefan van der Walt)
clock                     300x400       public domain (photographer Stefan van der Walt)
coffee                    400x600 RGB   CC0 (photographer Rachel Michetti)
coins                     303x384       no known copyright restrictions (Brooklyn Museum)
grass                     512x512       CC0 (DeviantArt "Grass-01", linolafett)
gravel                    512x512       CC0 (CC0Textures "Gravel04")
immunohistochemistry      512x512 RGB   no known copyright restrictions (CMMI)
text                      172x448       public domain (Wikipedia "Corner.png")
========================  ============  ====================================================

**Split.** Each photo is cut into blocks of ``B = 2P`` (a centred crop to whole blocks) and
the blocks alternate like a checkerboard: ``(row + col)`` even for train, odd for test. Every
train patch lies inside one train block and every test patch inside one test block, so no test
pixel is in any train patch; no gap is needed. A checkerboard rather than a left/right cut:
both splits then sample the whole photo, so test patches show the same kinds of content as
train patches (a cut would test on a different part of a non-stationary photo: astronaut's
right third is not its left two thirds).

**Size.** The photos' area bounds the test set: at P = 64, 280 test patches (half the
blocks, four patches each), so two standard errors of a difference of two accuracies near
85 % are about 6 points; smaller gaps between methods cannot be decided on it. Overlapping
test windows would inflate the count without adding independent evidence, so there are none.

**Patches.** Test: the fixed, non-overlapping ``P``-grid of every test block (4 per block).
Train: ``train_per_class`` windows at positions drawn by a seeded SplitMix64 generator (a
uniform train block, then a uniform offset in ``[0, B - P]``), the same for every class count;
they realise the paper's random crop, and the data layer adds the horizontal flip at load time
(no zero-padded crop: no test patch has a black border). Per-patch normalisation (default)
maps each patch to mean 128 and standard deviation 40 grey levels (clipped to 0..255; flat
patches' deviation floored at one grey level), so a patch's brightness and contrast do not
give its photo away: see :func:`wae.data.cues.trivial_cue_accuracy`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .errors import DataError, check_classes, check_side, fail_if
from .seeded import keyed_stream
from .sources import TensorImageSource

__all__ = [
    "DEFAULT_CLASSES",
    "PHOTOS",
    "TEXTURES_NAME",
    "TextureSpec",
    "TextureSplit",
    "build_textures",
    "parse_textures_name",
]

TEXTURES_NAME = "skimage-textures"
#: photo -> SHA-256 of its grey uint8 pixels (C order), as scikit-image 0.26 bundles them.
PHOTOS: dict[str, str] = {
    "astronaut": "7e0f16d04383c5bcf8763ba8b5c69de112deeb5bb6ea36125aaf18dbef912171",
    "brick": "664a145c5253f0d66db1a12776785f0ea35a44cc7447ffc933f6d6118dc58643",
    "camera": "5cb24482a53416f99052258be2b1ee38cd31c559a70c8a8b321cba231b332e21",
    "cell": "dc464a59c68346fbe7a36fb75421d02a5e29780874b92efd3c920a319bfcb3b0",
    "chelsea": "cd822d0a5b86379f987b3120f75a6e7c7be64e292b25a23bd858af5c9db1fed6",
    "clock": "ad313afa739ea86c00ce55d190f1fa284c1982e9bc70eb4c9b21ac29c5c7a85c",
    "coffee": "f43ff5f6e89892ad7fa2d2ef1d9d69e3451991705e4430da74322d26cc07d83b",
    "coins": "e080cc03805f1fa70516c3cb84883d4633bda2a1b51841da7c22f3d14c072451",
    "grass": "b18dae4c68bf850a7a7b28a29d1846c76be890665117b57fd125fe29c4d4ede6",
    "gravel": "3d51ad45f789cd8b98534b7af6bce774e499ead45421135afd757358c7230009",
    "immunohistochemistry": "fd48ca0459de8527d943851e5c3d2318e3f7dc501bdd06a102a75301c1dbd107",
    "text": "6705caed21e6281799a52591c27498da5526cace39f2b6af3141b2ff11e2e517",
}
DEFAULT_CLASSES = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "immunohistochemistry",
)
DEFAULT_PATCH = 64
_NORM_MEAN, _NORM_STD = 128, 40  # grey levels of a normalised patch: +-3.2 std fit in 0..255


@dataclass(frozen=True)
class TextureSpec:
    """What to build: patch side ``patch``, the photos ``classes`` (sorted: label order),
    ``train_per_class`` train windows per photo (default: 2048 at P = 64, scaled by
    ``(64 / P)**2`` so the train set stays ~80 MB), per-patch ``normalize`` and ``seed``."""

    patch: int = DEFAULT_PATCH
    classes: tuple[str, ...] = DEFAULT_CLASSES
    train_per_class: int | None = None
    normalize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_side(
            self.patch,
            "skimage-textures patch size",
            32,
            128,
            f"{TEXTURES_NAME}-64 or {TEXTURES_NAME}-96",
        )
        classes = check_classes(tuple(self.classes), tuple(PHOTOS), "skimage-textures classes")
        object.__setattr__(self, "classes", classes)
        n = self.train_per_class
        fail_if(
            n is not None and (not isinstance(n, int) or n < 1),
            f"train_per_class must be a positive integer, got {n!r}.",
        )

    @property
    def n_train(self) -> int:
        return self.train_per_class or round(2048 * (DEFAULT_PATCH / self.patch) ** 2)

    @property
    def name(self) -> str:
        """The dataset name of this spec (the same for every ``train_per_class`` and seed)."""
        base = f"{TEXTURES_NAME}-{self.patch}" + ("" if self.normalize else "-raw")
        return base if self.classes == DEFAULT_CLASSES else f"{base}:{'+'.join(self.classes)}"

    @property
    def image_size(self) -> int:
        return self.patch

    def source(self, split: str) -> tuple[TensorImageSource, str]:
        """The ``split`` ("train", or "val"/"test": the test set) as a source, and its root."""
        s = build_textures(self)["train" if split == "train" else "test"]
        return TensorImageSource(s.images, s.targets, s.classes), f"<skimage.data: {self.name}>"

    def stems(self, split: str) -> list[str]:
        """File stems of the ``split``'s items for an ImageFolder: ``<n>_y<top>_x<left>``."""
        positions = build_textures(self)[split].positions.tolist()
        return [f"{i:05d}_y{top}_x{left}" for i, (top, left) in enumerate(positions)]


@dataclass(frozen=True)
class TextureSplit:
    """One split: ``images`` uint8 ``(N, 1, P, P)``, ``targets`` int64 ``(N,)``, ``positions``
    int64 ``(N, 2)`` (top, left) of each patch in its photo's own pixel coordinates."""

    images: torch.Tensor
    targets: torch.Tensor
    positions: torch.Tensor
    classes: tuple[str, ...]


_NAME_RE = re.compile(rf"{TEXTURES_NAME}(?:-(\d+))?(-raw)?(?::([a-z0-9+]+))?")


def parse_textures_name(name: str) -> TextureSpec | None:
    """The spec a dataset name selects, or None when ``name`` is not a skimage-textures name."""
    key = name.strip().lower().replace("_", "-")
    if not key.startswith(TEXTURES_NAME):
        return None
    m = _NAME_RE.fullmatch(key)
    fail_if(
        m is None,
        f"Malformed dataset name {name!r}: use {TEXTURES_NAME}, {TEXTURES_NAME}-<patch> (a "
        f"multiple of 16 from 32 to 128), either with -raw (no per-patch normalisation), and "
        f"optionally :<photo>+<photo>+... for the classes.",
    )
    classes = tuple(m[3].split("+")) if m[3] else DEFAULT_CLASSES
    return TextureSpec(patch=int(m[1] or DEFAULT_PATCH), classes=classes, normalize=m[2] is None)


# --------------------------------------------------------------------------------- building


def _load_photo(name: str) -> np.ndarray:
    """The bundled photo as grey uint8 ``(H, W)``, checked against its pinned hash."""
    import skimage.data  # imported here: only this dataset needs scikit-image

    try:
        rgb = np.asarray(getattr(skimage.data, name)())
    except (OSError, ModuleNotFoundError, ValueError) as e:
        raise DataError(
            f"scikit-image's bundled photo {name!r} cannot be read ({e}). Reinstall "
            f"scikit-image (pip install --force-reinstall scikit-image)."
        ) from e
    if rgb.ndim == 3:  # ITU-R 601 luma in integers: exact on every machine
        c = rgb[..., :3].astype(np.int64)
        rgb = (299 * c[..., 0] + 587 * c[..., 1] + 114 * c[..., 2] + 500) // 1000
    grey = np.ascontiguousarray(rgb, dtype=np.uint8)
    digest = hashlib.sha256(grey.tobytes()).hexdigest()
    fail_if(
        digest != PHOTOS[name],
        f"scikit-image's photo {name!r} (shape {grey.shape}, sha256 {digest[:16]}...) differs "
        f"from the one skimage-textures is defined on (scikit-image 0.26), so the dataset would "
        f"not be the same as everyone else's. Install scikit-image 0.26.",
    )
    return grey


def _blocks(shape: tuple[int, int], b: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(train, test) block corners (top, left) of a centred crop of ``shape`` to whole
    ``b x b`` blocks; checkerboard: ``(row + col)`` even is train."""
    (h, w), (nr, nc) = shape, (shape[0] // b, shape[1] // b)
    y0, x0 = (h - nr * b) // 2, (w - nc * b) // 2
    corners = [(r, c, y0 + r * b, x0 + c * b) for r in range(nr) for c in range(nc)]
    train = [(y, x) for r, c, y, x in corners if (r + c) % 2 == 0]
    test = [(y, x) for r, c, y, x in corners if (r + c) % 2 == 1]
    return train, test


def _positions(name: str, shape: tuple[int, int], spec: TextureSpec) -> tuple[list, list]:
    """(train, test) patch corners of photo ``name``: seeded windows in train blocks, the
    ``P``-grid of test blocks."""
    p, b = spec.patch, 2 * spec.patch
    train_blocks, test_blocks = _blocks(shape, b)
    fail_if(
        not train_blocks or not test_blocks,
        f"Photo {name!r} ({shape[0]}x{shape[1]}) is too small for patches of {p} px: it needs "
        f"one train and one test block of {b}x{b}. Use a smaller patch, or name the classes "
        f"without it ({TEXTURES_NAME}-{p}:<photo>+<photo>+...).",
    )
    test = [(y + i, x + j) for y, x in test_blocks for i in (0, p) for j in (0, p)]
    # One stream per (seed, photo, patch): adding or dropping a class leaves the others alone.
    rng = keyed_stream(spec.seed, name, p)
    train = []
    for _ in range(spec.n_train):
        y, x = train_blocks[next(rng) % len(train_blocks)]
        train.append((y + next(rng) % (b - p + 1), x + next(rng) % (b - p + 1)))
    return train, test


def _normalize(patches: np.ndarray) -> np.ndarray:
    """Each uint8 patch ``(N, P, P)`` to mean 128, std 40 grey levels, in exact arithmetic:
    integer sums, then one correctly rounded float64 operation at a time."""
    n = patches.shape[1] * patches.shape[2]
    x = patches.reshape(len(patches), n).astype(np.int64)
    s = x.sum(1, keepdims=True)
    var_n2 = n * (x * x).sum(1, keepdims=True) - s * s  # n**2 * variance, exactly
    scale = np.maximum(np.sqrt(var_n2.astype(np.float64)), float(n))  # n * std, >= 1 level
    y = np.rint((x * n - s).astype(np.float64) * _NORM_STD / scale + _NORM_MEAN)
    return np.clip(y, 0, 255).astype(np.uint8).reshape(patches.shape)


def _cut(photo: np.ndarray, corners: list, p: int, normalize: bool) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(photo, (p, p))
    ys, xs = np.array(corners, dtype=np.int64).reshape(-1, 2).T
    patches = np.ascontiguousarray(windows[ys, xs])
    return _normalize(patches) if normalize else patches


@lru_cache(maxsize=4)
def build_textures(spec: TextureSpec = TextureSpec()) -> dict[str, TextureSplit]:
    """Build both splits of ``spec``: ``{"train": TextureSplit, "test": TextureSplit}``.

    Cached (the train, val and test views of one run share one build): do not modify the
    tensors."""
    parts: dict[str, list[tuple[np.ndarray, list, int]]] = {"train": [], "test": []}
    for label, name in enumerate(spec.classes):
        photo = _load_photo(name)
        train, test = _positions(name, photo.shape, spec)
        for split, corners in (("train", train), ("test", test)):
            parts[split].append((_cut(photo, corners, spec.patch, spec.normalize), corners, label))
    out = {}
    for split, items in parts.items():
        images = np.concatenate([im for im, _, _ in items])
        out[split] = TextureSplit(
            images=torch.from_numpy(images).unsqueeze(1),
            targets=torch.cat([torch.full((len(c),), y, dtype=torch.int64) for _, c, y in items]),
            positions=torch.tensor([pos for _, c, _ in items for pos in c], dtype=torch.int64),
            classes=spec.classes,
        )
    return out
