"""Font identification from the TrueType faces matplotlib ships: ``"fonts"``.

A dataset where fine detail carries the class (serifs, stroke contrast, weight, slant): one
class per typeface, each item a grey ``S x S`` image (``S`` = 64 by default) of a random
letter string rendered with Pillow/FreeType. Built in seconds from files inside the
matplotlib wheel (no download); every font file is checked against a pinned SHA-256, and
every random choice comes from a seeded integer stream (:mod:`.seeded`), so the pixels are
the same on every machine with the same Pillow and FreeType (a test pins them).

**Faces** (:data:`FACES`, class names; docs/fonts.md lists files, hashes and licences): the
21 text faces of ``mpl-data/fonts/ttf``: DejaVu Sans, Sans Mono and Serif in their four
styles each (12), STIX General in four (4), and the Computer Modern text faces cmr10, cmb10,
cmss10, cmti10 and cmtt10 (5). Left out: the Display, STIXNonUni and STIXSiz* faces (no
Latin letters), cmmi10/cmsy10/cmex10 (math) and LastResort (placeholder glyphs).

**Rendering.** Item ``j`` of face ``f`` in a split comes from the stream keyed by (seed,
split, face), so adding or dropping a face leaves the others' images alone. A string of 3 to
6 letters a-z (lower case 1/2, Capitalised 1/4, UPPER CASE 1/4) and a font size (uniform in
:attr:`FontSpec.font_size_range`, 11-17 px at 64 px) are drawn until the string's ink box
fits the image; the box is placed uniformly inside the image. Paper grey is uniform in
128..255, ink uniform in 0..paper-96 (at least 96 grey levels of contrast); the coverage
``c`` (0..255, FreeType's anti-aliasing, Pillow's basic layout: no HarfBuzz) becomes
``paper - round((paper - ink) * c / 255)`` in integers. Optional uniform noise (``noise``
grey levels, off by default; numpy's PCG64 raw stream, stable across numpy versions).

**Train/test.** Every string (lower-cased) belongs to one split by its SHA-256 (a quarter of
all strings are test strings: :func:`string_split`); train items draw only train strings and
test items only test strings, so no test word, in any case, is in the training set.
Classes are balanced (counts differ by at most one). ``"val"`` is the test set, as for
Fashion-MNIST.

**Names** (recipes, ``wae eval --data``, ``wae reproduce --dataset``): ``fonts`` (=
``fonts-64``), ``fonts-<S>`` (S a multiple of 16 from 32 to 256), optionally
``:<face>+<face>+...`` for another class set, then ``,key=value`` options: ``train=N``,
``test=N``, ``sizes=A-B`` (font sizes in px), ``noise=N``, ``seed=N``; e.g.
``fonts-64:cm-roman+dejavu-serif,train=4000,sizes=10-16``.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import DataError, check_classes, check_side, fail_if
from .seeded import keyed_stream
from .sources import TensorImageSource

__all__ = [
    "DEFAULT_FACES",
    "FACES",
    "FONTS_NAME",
    "FontSpec",
    "FontSplit",
    "build_fonts",
    "default_font_dir",
    "parse_fonts_name",
    "string_split",
]

FONTS_NAME = "fonts"
#: face (class name) -> (file in matplotlib's mpl-data/fonts/ttf, SHA-256 of the file), as
#: matplotlib 3.11.2 ships them.
FACES: dict[str, tuple[str, str]] = {
    "cm-bold": ("cmb10.ttf", "074497b50c43ea57597181591f9893d38fc12a87e95104f5657fc2481f61a23a"),
    "cm-italic": ("cmti10.ttf", "f9f1f9f654308ae82f7be4441ae89b080896b34cc220bbea173c5e9adcfe3ef7"),
    "cm-roman": ("cmr10.ttf", "4dd9761b058c009db9b2145f55ee6617d093c273dd3d6c5b3e43ff6110fa9bf6"),
    "cm-sans": ("cmss10.ttf", "7df91a83d05b2e471ec638cb0b435a360a3c792b09fc42a7da67e91f2e79115a"),
    "cm-typewriter": (
        "cmtt10.ttf",
        "6211f09ae93599991afda970c24669dad1a77e253d915624fbf212f702f071d7",
    ),
    "dejavu-sans": (
        "DejaVuSans.ttf",
        "3fdf69cabf06049ea70a00b5919340e2ce1e6d02b0cc3c4b44fb6801bd1e0d22",
    ),
    "dejavu-sans-bold": (
        "DejaVuSans-Bold.ttf",
        "b184b89e3c1075f22f6b71575b6fc20d4972b3cfd3b23322ca6fd596dcaef167",
    ),
    "dejavu-sans-boldoblique": (
        "DejaVuSans-BoldOblique.ttf",
        "6edf0283160186af451cbee71e7b845f2e4cabf264bb992ce668c83c25465e6f",
    ),
    "dejavu-sans-oblique": (
        "DejaVuSans-Oblique.ttf",
        "ccdf74b350f11fd3dd5774de50e5e6346a1a5da1f5b7d5fb83590665e97a5213",
    ),
    "dejavu-sans-mono": (
        "DejaVuSansMono.ttf",
        "602ec86b8948cfcd956482fe64f94c36c867770149ef2f791d4613f443bcecb3",
    ),
    "dejavu-sans-mono-bold": (
        "DejaVuSansMono-Bold.ttf",
        "baada9a5172fe20886251aff0433fc38461912d5daf07287e7bee56620a8da96",
    ),
    "dejavu-sans-mono-boldoblique": (
        "DejaVuSansMono-BoldOblique.ttf",
        "a69081c15c76c827e0a27a5a7f5c74b6135c843499955495ffa8c20d3a98288b",
    ),
    "dejavu-sans-mono-oblique": (
        "DejaVuSansMono-Oblique.ttf",
        "28052813f7a709fc89f52d192dc995ef4f0fdc5c3d7b73a49d6849b1916d0cd0",
    ),
    "dejavu-serif": (
        "DejaVuSerif.ttf",
        "107244956e9962b9e96faccdc551825e0ae0898ae13737133e1b921a2fd35ffa",
    ),
    "dejavu-serif-bold": (
        "DejaVuSerif-Bold.ttf",
        "c3753f2ed6bc673f15846dc45addbeb3b9c872f32fb18fd53a21f1bef1ed7676",
    ),
    "dejavu-serif-bolditalic": (
        "DejaVuSerif-BoldItalic.ttf",
        "d93efec7a9d2e826768d1a2ee95b95870e15e29599a84f3484af1de1cec2e181",
    ),
    "dejavu-serif-italic": (
        "DejaVuSerif-Italic.ttf",
        "3e7994fbc54fa10ce3352a42d548fadd7d9cadb69cb1109bc9d960f6dac57f04",
    ),
    "stix-general": (
        "STIXGeneral.ttf",
        "167378031e2dddc6216d67819c9260e9a06ffc4c478e4e23cb98a6fd44b183c2",
    ),
    "stix-general-bold": (
        "STIXGeneralBol.ttf",
        "e8533dc7083fa346bda1933d60ea4a83b67d0945bceaf1b3541f82b4a0e2c6a0",
    ),
    "stix-general-bolditalic": (
        "STIXGeneralBolIta.ttf",
        "98788fd4ba48dfbb2bd026c0e20a247a8b06c7372879628b7a6bb0d5bb09736c",
    ),
    "stix-general-italic": (
        "STIXGeneralItalic.ttf",
        "6cfcb333d22b7c3c623bdfd40174f14c85c3d6731ca6166c1edc80140eae8527",
    ),
}
DEFAULT_FACES = tuple(sorted(FACES))
DEFAULT_SIZE, DEFAULT_TRAIN, DEFAULT_TEST = 64, 20_000, 5_000
DEFAULT_FONT_SIZES = (11, 17)  # px at 64x64; scaled with the image size
LETTERS, STRING_LENGTHS = "abcdefghijklmnopqrstuvwxyz", (3, 6)
PAPER_MIN, MIN_CONTRAST = 128, 96  # grey levels
_TEST_BYTE = 64  # a string is a test string when its SHA-256's first byte is below this: 1/4
_MAX_TRIES = 1000  # draws of (string, size) that may miss the image before giving up
_MAX_NOISE = 64
_MAX_GIB = 8  # uint8 pixels of one split held in memory


@dataclass(frozen=True)
class FontSpec:
    """What to build: ``image_size`` S (a multiple of 16 from 32 to 256), the ``faces``
    (sorted: label order), ``n_train``/``n_test`` images (default 20,000 / 5,000, balanced
    over the faces), ``font_sizes`` (min, max) in px (default 11-17 scaled by S / 64),
    uniform ``noise`` of +-N grey levels (default 0) and ``seed``."""

    image_size: int = DEFAULT_SIZE
    faces: tuple[str, ...] = DEFAULT_FACES
    n_train: int = DEFAULT_TRAIN
    n_test: int = DEFAULT_TEST
    font_sizes: tuple[int, int] | None = None
    noise: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        s = self.image_size
        check_side(s, "fonts image size", 32, 256, f"{FONTS_NAME}-64 or {FONTS_NAME}-128")
        faces = check_classes(tuple(self.faces), DEFAULT_FACES, "fonts faces")
        object.__setattr__(self, "faces", faces)
        for what, n in (("train", self.n_train), ("test", self.n_test)):
            fail_if(
                not _is_int(n) or not len(self.faces) <= n <= 1_000_000,
                f"The fonts {what} size must be an integer from the number of faces "
                f"({len(self.faces)}: one image each) to 1,000,000, got {n!r}.",
            )
            gib = n * s * s / 2**30
            fail_if(
                gib > _MAX_GIB,
                f"The fonts {what} split of {n} images of {s}x{s} would hold {gib:.0f} GiB in "
                f"memory (at most {_MAX_GIB}). Use fewer images or a smaller image size.",
            )
        self._check_options()

    def _check_options(self) -> None:
        fs, s = self.font_sizes, self.image_size
        if fs is not None:
            fs = tuple(fs) if isinstance(fs, (list, tuple)) else (fs,)
            fail_if(
                len(fs) != 2 or not all(_is_int(v) for v in fs) or not 4 <= fs[0] <= fs[1] <= s,
                f"fonts font sizes must be two integers 4 <= min <= max <= {s} (the image "
                f"size), got {self.font_sizes!r}; e.g. sizes=11-17.",
            )
            # The default range spelled out is the default: one spec (and name) per dataset.
            object.__setattr__(self, "font_sizes", None if fs == _scaled_sizes(s) else fs)
        fail_if(
            not _is_int(self.noise) or not 0 <= self.noise <= _MAX_NOISE,
            f"fonts noise must be an integer from 0 to {_MAX_NOISE} grey levels, got "
            f"{self.noise!r}.",
        )
        fail_if(
            not _is_int(self.seed) or self.seed < 0,
            f"The fonts seed must be a non-negative integer, got {self.seed!r}.",
        )

    @property
    def font_size_range(self) -> tuple[int, int]:
        """(min, max) font size in px, both inclusive."""
        return self.font_sizes or _scaled_sizes(self.image_size)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.faces

    @property
    def name(self) -> str:
        """The dataset name of this spec: ``fonts-<S>[:faces][,options]`` (non-defaults)."""
        base = f"{FONTS_NAME}-{self.image_size}"
        if self.faces != DEFAULT_FACES:
            base += ":" + "+".join(self.faces)
        default = FontSpec(image_size=self.image_size)
        opts = [
            f"{key}={_format(getattr(self, field))}"
            for key, field in _OPTIONS.items()
            if getattr(self, field) != getattr(default, field)
        ]
        return ",".join([base, *opts])

    def source(self, split: str) -> tuple[TensorImageSource, str]:
        """The ``split`` ("train", or "val"/"test": the test set) as a source, and its root."""
        s = build_fonts(self)["train" if split == "train" else "test"]
        return TensorImageSource(s.images, s.targets, s.classes), f"<matplotlib fonts: {self.name}>"

    def stems(self, split: str) -> list[str]:
        """File stems of the ``split``'s items for an ImageFolder: ``<n>_<string>``."""
        return [f"{i:05d}_{t}" for i, t in enumerate(build_fonts(self)[split].texts)]


@dataclass(frozen=True)
class FontSplit:
    """One split: ``images`` uint8 ``(N, 1, S, S)``, ``targets`` int64 ``(N,)``, ``texts`` the
    N strings, ``font_sizes`` int64 ``(N,)`` px, ``boxes`` int64 ``(N, 4)`` (top, left,
    height, width) of each string's ink box, ``tones`` int64 ``(N, 2)`` (paper, ink) grey
    levels."""

    images: torch.Tensor
    targets: torch.Tensor
    texts: tuple[str, ...]
    font_sizes: torch.Tensor
    boxes: torch.Tensor
    tones: torch.Tensor
    classes: tuple[str, ...]


# name option -> FontSpec field, in the order names list them
_OPTIONS = {
    "train": "n_train",
    "test": "n_test",
    "sizes": "font_sizes",
    "noise": "noise",
    "seed": "seed",
}
_NAME_RE = re.compile(rf"{FONTS_NAME}(?:-(\d+))?(?::([a-z0-9+-]+))?((?:,[^,]*)*)")


def _scaled_sizes(image_size: int) -> tuple[int, int]:
    """The default font sizes at ``image_size``: 11-17 px scaled by ``image_size / 64``."""
    lo, hi = (round(v * image_size / DEFAULT_SIZE) for v in DEFAULT_FONT_SIZES)
    return lo, hi


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _format(v: object) -> str:
    return "-".join(str(x) for x in v) if isinstance(v, tuple) else str(v)


def parse_fonts_name(name: str) -> FontSpec | None:
    """The spec a dataset name selects, or None when ``name`` is not a fonts name."""
    key = name.strip().lower().replace("_", "-")
    if not key.startswith(FONTS_NAME) or key[len(FONTS_NAME) : len(FONTS_NAME) + 1] not in (
        "",
        "-",
        ":",
        ",",
    ):
        return None
    m = _NAME_RE.fullmatch(key)
    fail_if(
        m is None,
        f"Malformed dataset name {name!r}: use {FONTS_NAME}, {FONTS_NAME}-<size> (a multiple of "
        f"16 from 32 to 256), optionally :<face>+<face>+... for the classes, then ,key=value "
        f"options ({', '.join(_OPTIONS)}), e.g. {FONTS_NAME}-64,train=40000,sizes=11-17.",
    )
    faces = tuple(m[2].split("+")) if m[2] else DEFAULT_FACES
    opts = _parse_options(name, m[3])
    return FontSpec(image_size=int(m[1] or DEFAULT_SIZE), faces=faces, **opts)


def _parse_options(name: str, text: str) -> dict[str, object]:
    """``,key=value`` options of a fonts name as FontSpec keyword arguments."""
    out: dict[str, object] = {}
    for item in text.split(",")[1:]:
        key, _, value = item.partition("=")
        fail_if(
            key not in _OPTIONS or _OPTIONS[key] in out,
            f"Unknown or repeated option {key!r} in dataset name {name!r}: fonts options are "
            f"{', '.join(_OPTIONS)}, each at most once (e.g. {FONTS_NAME},train=40000,test=5000).",
        )
        ok = re.fullmatch(r"\d+-\d+" if key == "sizes" else r"\d+", value)
        fail_if(
            ok is None,
            f"Option {key}={value!r} in dataset name {name!r} is not "
            f"{'two integers min-max, e.g. sizes=11-17' if key == 'sizes' else 'an integer'}.",
        )
        parsed = tuple(int(v) for v in value.split("-"))
        out[_OPTIONS[key]] = parsed if key == "sizes" else parsed[0]
    return out


# ------------------------------------------------------------------------------ font files


def default_font_dir() -> Path:
    """matplotlib's folder of bundled TrueType files (``mpl-data/fonts/ttf``)."""
    import matplotlib  # imported here: only this dataset needs it

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _load_face(face: str, font_dir: str | None) -> bytes:
    """The bytes of ``face``'s TrueType file in ``font_dir`` (default: matplotlib's), checked
    against its pinned SHA-256."""
    file, expected = FACES[face]
    path = Path(font_dir).expanduser() if font_dir else default_font_dir()
    path = path / file
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"The font file {path} (face {face!r}) cannot be read ({e}). Reinstall matplotlib "
            f"(pip install --force-reinstall matplotlib), or pass font_dir= a folder holding "
            f"{file} as matplotlib 3.11.2 ships it."
        ) from e
    actual = hashlib.sha256(data).hexdigest()
    fail_if(
        actual != expected,
        f"The font file {path} (face {face!r}) has SHA-256 {actual}, but the fonts dataset is "
        f"defined on the file with SHA-256 {expected} (as matplotlib 3.11.2 ships it), so its "
        f"images would not be the same as everyone else's. Install matplotlib 3.11.2 (pip "
        f"install 'matplotlib==3.11.2'), or pass font_dir= a folder holding the original "
        f"{file}.",
    )
    return data


def _fonts(data: bytes, sizes: tuple[int, int]) -> dict[int, ImageFont.FreeTypeFont]:
    """The face at every font size in ``sizes`` (inclusive), laid out without HarfBuzz."""
    basic = ImageFont.Layout.BASIC
    return {
        px: ImageFont.truetype(io.BytesIO(data), px, layout_engine=basic)
        for px in range(sizes[0], sizes[1] + 1)
    }


# -------------------------------------------------------------------------------- drawing


def string_split(text: str) -> str:
    """``"test"`` or ``"train"``: the split a string belongs to, whatever its case (a quarter
    of all strings, by the SHA-256 of the lower-cased string, are test strings)."""
    first = hashlib.sha256(text.lower().encode()).digest()[0]
    return "test" if first < _TEST_BYTE else "train"


def _draw_string(rng: Iterator[int], split: str) -> str:
    """A random string of ``split``: 3-6 letters, lower case, Capitalised or UPPER CASE."""
    lo, hi = STRING_LENGTHS
    while True:
        n = lo + next(rng) % (hi - lo + 1)
        text = "".join(LETTERS[next(rng) % len(LETTERS)] for _ in range(n))
        if string_split(text) == split:
            break
    case = next(rng) % 4  # 0, 1: lower; 2: Capitalised; 3: UPPER
    return text if case < 2 else text.capitalize() if case == 2 else text.upper()


def _layout(
    rng: Iterator[int], fonts: dict[int, ImageFont.FreeTypeFont], split: str, side: int
) -> tuple[str, int, tuple[int, int, int, int], tuple[int, int]]:
    """(string, font size, its ink box (top, left, height, width), drawing origin (x, y)):
    (string, size) drawn until the box fits the ``side x side`` image, then placed
    uniformly."""
    lo, hi = min(fonts), max(fonts)
    for _ in range(_MAX_TRIES):
        text = _draw_string(rng, split)
        px = lo + next(rng) % (hi - lo + 1)
        left, top, right, bottom = fonts[px].getbbox(text)
        w, h = right - left, bottom - top
        if w <= side and h <= side:
            y, x = next(rng) % (side - h + 1), next(rng) % (side - w + 1)
            return text, px, (y, x, h, w), (x - left, y - top)
    raise DataError(
        f"fonts: no string of {STRING_LENGTHS[0]}-{STRING_LENGTHS[1]} letters at font sizes "
        f"{lo}-{hi} px fits in {side}x{side} images ({_MAX_TRIES} tries). Use smaller font "
        f"sizes (sizes=A-B) or a larger image."
    )


def _render_face(
    data: bytes, spec: FontSpec, split: str, face: str, n: int
) -> tuple[np.ndarray, list[str], list[tuple[int, ...]]]:
    """``n`` images of ``face``: uint8 ``(n, S, S)``, their strings, and per image (font
    size, top, left, height, width, paper, ink)."""
    side, fonts = spec.image_size, _fonts(data, spec.font_size_range)
    rng = keyed_stream(FONTS_NAME, spec.seed, split, face)
    cover = np.empty((n, side, side), dtype=np.uint8)
    texts, meta = [], []
    for i in range(n):
        text, px, box, origin = _layout(rng, fonts, split, side)
        paper = PAPER_MIN + next(rng) % (256 - PAPER_MIN)
        ink = next(rng) % (paper - MIN_CONTRAST + 1)
        canvas = Image.new("L", (side, side), 0)
        ImageDraw.Draw(canvas).text(origin, text, fill=255, font=fonts[px])
        cover[i] = np.asarray(canvas)
        texts.append(text)
        meta.append((px, *box, paper, ink))
    tones = np.array([m[5:] for m in meta], dtype=np.int32).reshape(n, 2, 1, 1)
    paper, ink = tones[:, 0], tones[:, 1]
    images = paper - ((paper - ink) * cover.astype(np.int32) + 127) // 255
    if spec.noise:
        images = images + _noise(spec, split, face, images.shape)
    return np.clip(images, 0, 255).astype(np.uint8), texts, meta


def _noise(spec: FontSpec, split: str, face: str, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform integers in ``[-noise, noise]`` of ``shape``, from PCG64's raw stream (stable
    across numpy versions, unlike the Generator's methods)."""
    seed = next(keyed_stream(FONTS_NAME, "noise", spec.seed, split, face))
    raw = np.random.PCG64(seed).random_raw(int(np.prod(shape)))
    return (raw % np.uint64(2 * spec.noise + 1)).astype(np.int32).reshape(shape) - spec.noise


@lru_cache(maxsize=4)
def build_fonts(spec: FontSpec = FontSpec(), font_dir: str | None = None) -> dict[str, FontSplit]:
    """Build both splits of ``spec``: ``{"train": FontSplit, "test": FontSplit}``, from the
    font files in ``font_dir`` (default: matplotlib's), each checked against its hash.

    Cached (the train, val and test views of one run share one build): do not modify the
    tensors."""
    data = {face: _load_face(face, font_dir) for face in spec.faces}
    k, out = len(spec.faces), {}
    for split, n in (("train", spec.n_train), ("test", spec.n_test)):
        counts = [n // k + (label < n % k) for label in range(k)]
        parts = [
            _render_face(data[face], spec, split, face, c)
            for face, c in zip(spec.faces, counts, strict=True)
        ]
        meta = torch.tensor([m for _, _, ms in parts for m in ms], dtype=torch.int64)
        out[split] = FontSplit(
            images=torch.from_numpy(np.concatenate([im for im, _, _ in parts])).unsqueeze(1),
            targets=torch.repeat_interleave(torch.arange(k), torch.tensor(counts)),
            texts=tuple(t for _, ts, _ in parts for t in ts),
            font_sizes=meta[:, 0].contiguous(),
            boxes=meta[:, 1:5].contiguous(),
            tones=meta[:, 5:7].contiguous(),
            classes=spec.faces,
        )
    return out
