"""Property-based (Hypothesis) tests of every parser that reads outside input: recipes (TOML and
a run's config.json) and ``--set`` overrides, checkpoint ``model.json``, safetensors headers,
IDX files, ImageFolder trees and ONNX metadata.

The property is the same for each: every generated input gives a valid result or a clean
:class:`wae.errors.WAEError` (non-empty message, one paragraph), never another exception.
The default run tries a few hundred inputs per parser; the ``slow`` tests at least 1,000.
Each test prints how many cases it ran (shown without capture; ``-s`` is not needed).
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import math
import struct
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from wae.checkpoint import META, WEIGHTS, load_model, save_checkpoint
from wae.data import build_dataset, read_idx
from wae.errors import WAEError
from wae.export import decode_metadata, onnx_metadata
from wae.models import create_model
from wae.models.spec import _KWARGS
from wae.quantize import _batches
from wae.train.config import load_config, parse_override
from wae.train.recipes import recipe_text
from wae.train.schema import TrainConfig, field_types

FAST_EXAMPLES = 200  # per parser in the default (CI) run
SLOW_EXAMPLES = 1000  # per parser in the slow suite

_COMMON = dict(
    deadline=None,  # a shared, noisy machine: time is not part of the property
    database=None,  # nothing written into the source tree
    print_blob=True,  # a failure prints the line that reproduces it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------------------------
# The harness: run a check over a strategy, count the outcomes, print the count
# --------------------------------------------------------------------------------------------


def _clean(e: WAEError) -> str:
    msg = str(e)
    assert msg.strip(), f"{type(e).__name__} with an empty message"
    assert "Traceback" not in msg, msg
    return type(e).__name__


def _fuzz(
    name: str, strategy: st.SearchStrategy, check: Callable[[Any], Any], n: int, capsys
) -> Counter:
    """Run `check` on `n` inputs drawn from `strategy`: each must return or raise a WAEError.
    Returns (and prints) the count of outcomes."""
    counts: Counter = Counter()

    # CI's run is the same every time (derandomize); the slow suite explores anew each run.
    @settings(**_COMMON, max_examples=n, derandomize=n < SLOW_EXAMPLES)
    @given(strategy)
    def prop(x: Any) -> None:
        counts["cases"] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check(x)
        except WAEError as e:
            counts[_clean(e)] += 1
        else:
            counts["valid"] += 1

    prop()
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "cases")
    with capsys.disabled():
        print(f"\n[fuzz] {name}: {counts['cases']} cases ({detail})")
    assert counts["cases"] >= n
    return counts


def _parametrized(test):
    """The test at the default count, and a `slow` copy at SLOW_EXAMPLES."""
    return pytest.mark.parametrize(
        "n", [FAST_EXAMPLES, pytest.param(SLOW_EXAMPLES, marks=pytest.mark.slow, id="slow")]
    )(test)


# --------------------------------------------------------------------------------------------
# Shared strategies
# --------------------------------------------------------------------------------------------

_WORDS = [
    "auto", "adam", "sgd", "adamw", "cosine", "step", "plateau", "constant", "wae",
    "full", "half", "fp32", "bf16", "fp16", "cpu", "cuda", "cuda:0", "mps", "test", "val",
    "train", "", "none", "null", "fashion-mnist", "cifar10", "fonts", "sum", "mean", "both",
    "low", "fused", "average", "wae_small_vgg_28", "small_vgg_28_full", "resnet18",
    "timm:resnet18", "small_vgg", "pkg.mod:fn", "../etc", "/tmp", "1", "-1", "nan", "on",
    "off", "val_top1", "val_loss", "classification", "transform", "distillation",
]  # fmt: skip
_WORD = st.sampled_from(_WORDS) | st.text(max_size=12)
_NUMBER = (
    st.integers(-3, 300)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, 2, 2**32, -(2**63), 2**64, 0.5, 1e-3, 1e308, -0.0])
)
_SCALAR = st.booleans() | _NUMBER | _WORD | st.none()
# Plain JSON data (what json.loads can return).
_JSON = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_WORD, inner, max_size=4),
    max_leaves=12,
)
# TOML values: JSON data without null, plus TOML's dates and times.
_TOML_SCALAR = (
    st.booleans()
    | _NUMBER
    | _WORD
    | st.dates()
    | st.times()
    | st.datetimes(min_value=datetime.datetime(1, 1, 2))
)
_TOML = st.recursive(
    _TOML_SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_WORD, inner, max_size=4),
    max_leaves=10,
)


def _mutated_bytes(good: bytes) -> st.SearchStrategy[bytes]:
    """`good` truncated, with bytes overwritten, inserted or appended; or random bytes."""

    @st.composite
    def mutate(draw):
        data = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["cut", "flip", "insert", "append", "overwrite"]))
            pos = draw(st.integers(0, max(len(data), 1)))
            if op == "cut":
                del data[pos:]
            elif op == "flip" and data:
                data[pos % len(data)] ^= draw(st.integers(1, 255))
            elif op == "insert":
                data[pos:pos] = draw(st.binary(max_size=16))
            elif op == "append":
                data += draw(st.binary(max_size=64))
            else:
                chunk = draw(st.binary(min_size=1, max_size=8))
                data[pos : pos + len(chunk)] = chunk
        return bytes(data)

    return mutate() | st.binary(max_size=256) | st.just(good)


def _deep(n: int) -> str:
    return "[" * n + "]" * n


_JSON_TEXT = (
    _JSON.map(json.dumps)
    | st.text(max_size=60)
    | st.integers(500, 100_000).map(_deep)
    | st.integers(500, 100_000).map(lambda n: "[" * n)
)


# --------------------------------------------------------------------------------------------
# Recipes (TOML, a run's config.json) and --set overrides
# --------------------------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    return json.dumps(key)  # a TOML basic string is a JSON string (ASCII escapes)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _to_toml(doc: dict[str, Any]) -> str:
    """A TOML document: scalars and inline values at the top, tables, arrays of tables."""
    lines, tables = [], []
    for k, v in doc.items():
        if v is None:
            continue
        if isinstance(v, dict) and v and all(x is not None for x in v.values()):
            tables.append(f"[{_toml_key(k)}]")
            tables += [f"{_toml_key(a)} = {_toml_value(b)}" for a, b in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                tables.append(f"[[{_toml_key(k)}]]")
                tables += [f"{_toml_key(a)} = {_toml_value(b)}" for a, b in item.items()]
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    return "\n".join(lines + tables) + "\n"


def _strip_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_strip_none(x) for x in v if x is not None]
    return v


_BASE_RECIPE = recipe_text("fashion_mnist")


def _schema_paths(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    out = []
    for name, tp in field_types(cls).items():
        path = f"{prefix}{name}"
        out.append(path)
        if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
            out += _schema_paths(tp, f"{path}.")
    return out


_STAGE_KEYS = [p.removeprefix("stages.") for p in _schema_paths()]  # noqa: F841 (see below)
_KEYS = (
    [p for p in _schema_paths() if p != "stages"]
    + [
        f"stages.{s}.{k}"
        for s in ("1", "2", "3", "4", "0", "wae", "joint", "nope")
        for k in (
            "lr",
            "epochs",
            "losses",
            "schedule.name",
            "schedule.warmup_epochs",
            "betas",
            "name",
        )
    ]
    + ["model.kwargs.width", "model.kwargs.head", "stages.1.losses.transform", "x.y", "stages"]
)


@st.composite
def _recipe_doc(draw) -> dict[str, Any]:
    """The fashion_mnist recipe with a few keys set to arbitrary values (some unknown)."""
    import tomllib

    doc = tomllib.loads(_BASE_RECIPE)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(_KEYS) | _WORD.map(lambda w: w or "k")).split(".")
        value = draw(_TOML)
        node: Any = doc
        for part in path[:-1]:
            if isinstance(node, list):
                node = node[int(part) - 1] if part.isdigit() and 0 < int(part) <= len(node) else {}
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
        if isinstance(node, dict):
            node[path[-1]] = value
        if draw(st.booleans()) and isinstance(doc.get("stages"), list) and doc["stages"]:
            del doc["stages"][draw(st.integers(0, len(doc["stages"]) - 1))]
    return doc


def _recipe_line_edits(text: str) -> st.SearchStrategy[str]:
    """Line-level edits of a recipe: lines deleted, duplicated or given a random value."""

    @st.composite
    def edit(draw):
        lines = text.splitlines()
        for _ in range(draw(st.integers(1, 5))):
            i = draw(st.integers(0, len(lines) - 1))
            op = draw(st.sampled_from(["delete", "dup", "value", "garbage"]))
            if op == "delete":
                del lines[i]
            elif op == "dup":
                lines.insert(i, lines[i])
            elif op == "value" and "=" in lines[i]:
                lines[i] = lines[i].split("=")[0] + "= " + _toml_value(draw(_TOML))
            else:
                lines.insert(i, draw(st.text(max_size=30)))
            if not lines:
                lines = [""]
        return "\n".join(lines)

    return edit()


_RECIPE_INPUT = st.one_of(
    _recipe_doc().map(lambda d: ("toml", _to_toml(_strip_none(d)))),
    _recipe_line_edits(_BASE_RECIPE).map(lambda t: ("toml", t)),
    st.text(max_size=200).map(lambda t: ("toml", t)),
    _recipe_doc().map(lambda d: ("json", json.dumps({"config": d}, default=str))),
    _JSON_TEXT.map(lambda t: ("json", t)),
)


@_parametrized
def test_fuzz_recipes(n, capsys, tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipes")

    def check(item: tuple[str, str]) -> None:
        kind, text = item
        path = folder / f"recipe.{kind}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        load_config(path)

    _fuzz("recipes (TOML / config.json)", _RECIPE_INPUT, check, n, capsys)


_OVERRIDE_VALUE = _TOML.map(_toml_value) | _JSON.map(json.dumps) | _WORD | st.text(max_size=20)
_OVERRIDE = st.one_of(
    st.tuples(st.sampled_from(_KEYS) | _WORD, _OVERRIDE_VALUE).map("=".join),
    st.text(max_size=40),
    st.sampled_from(["=", "a=", "=1", "stages..lr=1", ".=.", "stages.1=1", "stages.wae=x"]),
)


@_parametrized
def test_fuzz_overrides(n, capsys):
    import tomllib

    base = tomllib.loads(_BASE_RECIPE)

    def check(overrides: list[str]) -> None:
        for text in overrides:
            parse_override(text)
        load_config(base, overrides)

    _fuzz("--set overrides", st.lists(_OVERRIDE, min_size=1, max_size=4), check, n, capsys)


# --------------------------------------------------------------------------------------------
# Checkpoints: model.json and safetensors headers
# --------------------------------------------------------------------------------------------


def _tiny_checkpoint(folder: Path) -> Path:
    model = create_model("small_vgg_28_full", num_classes=2, width=1)
    return save_checkpoint(folder, model, meta={"input_size": 28, "in_chans": 1})


_NAMES = st.sampled_from(
    ["small_vgg_28_full", "small_vgg_28_half", "wae_small_vgg_28", "pruned_net", "small_vgg",
     "resnet18", "timm:resnet18", "pkg.mod:fn", "os:system", "../x", "nope"]
) | _WORD  # fmt: skip
_KW_VALUE = (
    st.integers(-2, 40)
    | st.sampled_from([True, False, None, 0.5, 1024, 4, 8, 28, "auto", "linear", "paper"])
    | st.lists(st.integers(0, 30), max_size=3)
    | _JSON
)
_KWARGS_ST = st.dictionaries(
    st.sampled_from([*_KWARGS, "base", "shapes"]) | _WORD, _KW_VALUE, max_size=4
)


@st.composite
def _model_json(draw) -> str:
    builder = draw(st.sampled_from(["registry", "wae_net", "plain"]) | _JSON)
    spec: Any = {"builder": builder, "kwargs": {"num_classes": 2, "width": 1}}
    key = {"registry": "name"}.get(builder, "backbone") if isinstance(builder, str) else "name"
    spec[key] = draw(_NAMES)
    if draw(st.booleans()):
        spec["kwargs"] = draw(_KWARGS_ST)
    if draw(st.integers(0, 5)) == 0:
        spec = draw(_JSON)
    meta: Any = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "input_size": st.integers(-1, 2000) | _JSON,
                "in_chans": st.integers(-1, 5) | _JSON,
                "classes": st.lists(_WORD, max_size=3) | _JSON,
                "dataset": _JSON,
            },
        )
        | _JSON
    )
    doc: Any = {"format_version": draw(st.sampled_from([1, 1.0, True, 2, "1", None])),
                "spec": spec, "meta": meta, "config": draw(_JSON)}  # fmt: skip
    for k in draw(st.lists(st.sampled_from(list(doc)), max_size=2)):
        doc.pop(k, None)
    if draw(st.integers(0, 6)) == 0:
        doc = draw(_JSON)
    return json.dumps(doc)


@_parametrized
def test_fuzz_model_json(n, capsys, tmp_path_factory, one_thread):
    folder = _tiny_checkpoint(tmp_path_factory.mktemp("ck") / "ck")

    def check(text: str) -> None:
        (folder / META).write_text(text, encoding="utf-8", errors="surrogatepass")
        load_model(folder)

    strategy = _model_json() | _JSON_TEXT | st.text(max_size=80)
    _fuzz("checkpoint model.json", strategy, check, n, capsys)


_ST_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "U16",
              "U32", "U64", "F8_E4M3", "F8_E5M2", "C64", "F4", "X", ""]  # fmt: skip


@st.composite
def _safetensors_file(draw, names: list[str], good: bytes) -> bytes:
    """A safetensors file: 8-byte header length, a JSON header, data; any of them wrong."""
    if draw(st.integers(0, 3)) == 0:
        return draw(_mutated_bytes(good))
    header: dict[str, Any] = {}
    offset = 0
    for name in draw(st.lists(st.sampled_from(names) | _WORD, max_size=4, unique=True)):
        dtype = draw(st.sampled_from(_ST_DTYPES))
        shape = draw(st.lists(st.integers(0, 4) | st.integers(-1, 2**40), max_size=4))
        size = draw(st.integers(0, 64))
        offsets = draw(st.just([offset, offset + size]) | st.lists(_NUMBER, max_size=3))
        entry: Any = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        if draw(st.integers(0, 6)) == 0:
            entry = draw(_JSON)
        header[name] = entry
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(_WORD, _WORD, max_size=2) | _JSON)
    text = json.dumps(header).encode()
    if draw(st.integers(0, 5)) == 0:
        text = draw(_JSON_TEXT).encode("utf-8", "surrogatepass") + b" " * draw(st.integers(0, 9))
    length = draw(st.just(len(text)) | st.integers(0, 2**64 - 1))
    data = draw(st.binary(min_size=offset, max_size=offset) | st.binary(max_size=96))
    return struct.pack("<Q", length) + text + data


@_parametrized
def test_fuzz_safetensors(n, capsys, tmp_path_factory, one_thread):
    folder = _tiny_checkpoint(tmp_path_factory.mktemp("st") / "ck")
    good = (folder / WEIGHTS).read_bytes()
    names = list(create_model("small_vgg_28_full", num_classes=2, width=1).state_dict())

    def check(data: bytes) -> None:
        (folder / WEIGHTS).write_bytes(data)
        load_model(folder)

    _fuzz("safetensors headers", _safetensors_file(names, good), check, n, capsys)


# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------


@st.composite
def _idx_file(draw) -> bytes:
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]) | st.integers(0, 255))
    dims = draw(st.lists(st.integers(0, 6) | st.integers(0, 2**32 - 1), max_size=5))
    ndim = draw(st.just(len(dims)) | st.integers(0, 255))
    itemsize = {0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(code, 1)
    size = math.prod(dims) * itemsize
    body = draw(st.binary(min_size=size, max_size=size) if size <= 512 else st.binary(max_size=64))
    data = bytes([0, 0, code, ndim % 256]) + struct.pack(f">{len(dims)}I", *dims) + body
    data = draw(st.just(data) | _mutated_bytes(data))
    return gzip.compress(data) if draw(st.booleans()) else data


@_parametrized
def test_fuzz_idx(n, capsys, tmp_path_factory):
    path = tmp_path_factory.mktemp("idx") / "images-idx3-ubyte"
    gz = _idx_file().flatmap(lambda d: st.just(d) | _mutated_bytes(d))

    def check(data: bytes) -> None:
        path.write_bytes(data)
        arr = read_idx(path)
        assert arr.flags.writeable and arr.dtype.isnative

    _fuzz("IDX files", gz | st.binary(max_size=64), check, n, capsys)


# --------------------------------------------------------------------------------------------
# ImageFolder trees
# --------------------------------------------------------------------------------------------

_MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK", "YCbCr", "LAB", "HSV"]
_FORMATS = ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM"]


@st.composite
def _image_bytes(draw) -> bytes:
    mode, fmt = draw(st.sampled_from(_MODES)), draw(st.sampled_from(_FORMATS))
    w, h = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    im = Image.new(mode, (w, h))
    try:
        im.putdata(list(rng.integers(0, 255, w * h * len(im.getbands())).reshape(w * h, -1)
                        .tolist()) if len(im.getbands()) > 1 else rng.integers(0, 255, w * h)
                   .tolist())  # fmt: skip
    except (TypeError, ValueError):
        pass
    buf = io.BytesIO()
    try:
        im.save(buf, fmt)
    except (OSError, ValueError, KeyError):
        return draw(st.binary(max_size=64))
    return buf.getvalue()


_CONTENT = st.one_of(
    _image_bytes(),
    _image_bytes().flatmap(_mutated_bytes),
    st.binary(max_size=64),
    st.just(b""),
    st.just(None),  # a symlink to nothing
)
_FILE_NAMES = st.sampled_from(
    ["a.png", "b.jpg", "c.JPEG", "d.bmp", "e.gif", "f.tif", "g.webp", "h.ppm", "notes.txt",
     "README", ".DS_Store", "img.png.txt", ".hidden.png", "x.PNG", "ü.png"]
)  # fmt: skip
_DIR_NAMES = st.sampled_from(
    ["train", "val", "test", "valid", "validation", "Train", "cat", "dog", "a", "b", ".hidden",
     "__pycache__", "1", "ü", "x.png"]
)  # fmt: skip
_FILES = st.dictionaries(_FILE_NAMES, _CONTENT, max_size=4)
_CLASS = st.fixed_dictionaries({"files": _FILES, "dirs": st.just({})})
_LEVEL2 = st.fixed_dictionaries(
    {"files": _FILES, "dirs": st.dictionaries(_DIR_NAMES, _CLASS, max_size=3)}
)
_TREE = st.fixed_dictionaries(
    {"files": st.dictionaries(_FILE_NAMES, _CONTENT, max_size=2),
     "dirs": st.dictionaries(_DIR_NAMES, _LEVEL2 | _CLASS, max_size=4)}
)  # fmt: skip


def _write_tree(root: Path, tree: dict[str, Any]) -> int:
    root.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, content in tree["files"].items():
        if content is None:
            (root / name).symlink_to(root / "missing-target")
        else:
            (root / name).write_bytes(content)
        n += 1
    for name, sub in tree["dirs"].items():
        n += _write_tree(root / name, sub)
    return n


_FOLDER_INPUT = st.tuples(
    _TREE,
    st.sampled_from(["train", "val", "test"]),
    st.sampled_from([None, 1, 3]),
    st.booleans(),
    st.integers(0, 3),
)


@_parametrized
def test_fuzz_image_folders(n, capsys, one_thread):
    def check(item: tuple[Any, ...]) -> None:
        tree, split, in_chans, skip_bad, seed = item
        with tempfile.TemporaryDirectory(prefix="wae-fuzz-") as tmp:
            root = Path(tmp) / "data"
            _write_tree(root, tree)
            ds = build_dataset(
                root, split, input_size=16, in_chans=in_chans, seed=seed, skip_bad=skip_bad
            )
            ds.verify()
            for i in range(len(ds)):
                x, y = ds[i]
                assert x.shape == (ds.in_chans, 16, 16) and 0 <= y < ds.num_classes
                assert torch.isfinite(x).all() and 0 <= x.min() and x.max() <= 1

    _fuzz("ImageFolder trees", _FOLDER_INPUT, check, n, capsys)


# --------------------------------------------------------------------------------------------
# ONNX metadata
# --------------------------------------------------------------------------------------------


def _onnx_model(props: dict[str, str]) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, 4, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y])
    model = helper.make_model(graph)
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()


_META_KEYS = st.sampled_from(
    ["input_shape", "input_name", "input_size", "in_chans", "classes", "spec", "opset",
     "quantization", "mean", "std"]
) | st.text(max_size=10)  # fmt: skip
_META_VALUES = (
    st.lists(st.integers(-2, 6) | st.sampled_from(["batch", None, 1.5]), max_size=5).map(json.dumps)
    | _JSON_TEXT
)
_PROPS = st.dictionaries(_META_KEYS, _META_VALUES, max_size=5)
_ONNX_FILE = _PROPS.map(_onnx_model).flatmap(lambda b: st.just(b) | _mutated_bytes(b))


@_parametrized
def test_fuzz_onnx_metadata(n, capsys, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"

    def check(item: tuple[bytes, int, int]) -> None:
        data, n_images, batch_size = item
        path.write_bytes(data)
        meta = onnx_metadata(path)
        assert isinstance(meta, dict)
        # What wae does with it: quantisation reads the input contract to batch calibration.
        shape = meta.get("input_shape")
        chw = shape[1:] if isinstance(shape, list) and len(shape) == 4 else [1, 4, 4]
        if not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 9 for s in chw):
            chw = [1, 4, 4]
        list(_batches(torch.zeros(n_images, *chw), meta, batch_size))

    items = st.tuples(_ONNX_FILE, st.integers(1, 5), st.integers(-1, 4) | st.just(True))
    _fuzz("ONNX metadata", items, check, n, capsys)


@_parametrized
def test_fuzz_decode_metadata(n, capsys):
    """The one decoder of ONNX metadata_props and OpenVINO's rt_info (plain strings)."""

    def check(props: dict[str, str]) -> None:
        out = decode_metadata(props)
        assert out.keys() == props.keys()

    _fuzz("ONNX metadata values", st.dictionaries(_META_KEYS, _META_VALUES, max_size=6), check,
          n, capsys)  # fmt: skip


def test_fuzz_helpers_are_sane(capsys):
    """The fuzz harness itself: a WAEError passes the property, any other exception fails it,
    and the TOML writer the recipe strategy relies on writes what tomllib reads back."""
    import tomllib

    def strict(x: int) -> None:
        if x % 2:
            raise WAEError(f"odd: {x}")

    counts = _fuzz("harness", st.integers(0, 100), strict, 20, capsys)
    assert counts["cases"] >= 20 and counts["WAEError"] + counts["valid"] == counts["cases"]

    def broken(x: int) -> None:
        raise KeyError(x)

    with pytest.raises(KeyError):
        _fuzz("harness", st.integers(0, 100), broken, 5, capsys)
    doc = {"a": {"b": 1, "c": [1.5, "x"]}, "d": True}
    assert tomllib.loads(_to_toml(doc)) == doc
    assert _toml_value(float("nan")) == "nan"
