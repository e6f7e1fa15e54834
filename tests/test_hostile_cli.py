"""Hostile input to `wae export / bench / eval / profile / models / recipes / train` and the
library functions behind them: every bad option is refused before the work starts with
exit 2 and one paragraph naming it (a WAEError from Python), and nothing already written
(the tiny run, an earlier export or result) changes.

Two tables: CLI cases (argv with {ckpt}, {run} and {tmp} placeholders) and API cases (a
callable and the WAEError subclass it must raise). Every case is rejected before any model
is trained, timed or exported, so each takes well under a second.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

import wae
from conftest import TINY, assert_clean_error, tree_digest
from wae.data import DataError, build_dataset, write_idx
from wae.errors import WAEError
from wae.export import ExportError, check_parity, export_onnx
from wae.train import ConfigError, evaluate, load_config

pytestmark = pytest.mark.usefixtures("one_thread")

CKPT = ["--checkpoint", "{ckpt}"]
QUICK = ["bench", "--quick", "--output-dir", "{tmp}/bench"]
PROFILE = ["profile", "--backbone", "small_vgg", "--input-size", "28", "--in-chans", "1"]
TRAIN = ["train", "-c", "fashion_mnist", "-o", "{tmp}/t", "--set", *TINY]


def case(name: str, *values: object) -> object:
    """One row of a table: `values` under the test id `name`."""
    return pytest.param(*values, id=name)


# (id, argv, what the message must name). Paths under /proc cannot be written even by root.
CLI_CASES = [
    # export: the parity check cannot be switched off, the model cannot be empty
    case("export-check-batch-0", ["export", *CKPT, "--check-batch", "0"], "--check-batch"),
    case("export-atol-nan", ["export", *CKPT, "--atol", "nan"], "--atol"),
    case("export-atol-inf", ["export", *CKPT, "--atol", "inf"], "--atol"),
    case("export-atol-negative", ["export", *CKPT, "--atol", "-1"], "--atol"),
    case(
        "export-static-batch-0",
        ["export", *CKPT, "--no-dynamic-batch", "--batch-size", "0"],
        "--batch-size",
    ),
    case("export-input-size-0", ["export", *CKPT, "--input-size", "0"], "--input-size"),
    case(
        "export-input-size-huge", ["export", *CKPT, "--input-size", "100000"], "smaller input size"
    ),
    case("export-opset-3", ["export", *CKPT, "--opset", "3"], "--opset"),
    case("export-in-chans-0", ["export", *CKPT, "--in-chans", "0"], "--in-chans"),
    case("export-in-chans-mismatch", ["export", *CKPT, "--in-chans", "3"], "pass in_chans=1"),
    case(
        "export-num-classes-0",
        ["export", "--model", "wae_small_vgg_28", "--num-classes", "0", "--output", "{tmp}/m.onnx"],
        "--num-classes",
    ),
    case("export-output-is-dir", ["export", *CKPT, "--output", "{tmp}"], "is a directory"),
    case(
        "export-output-unwritable",
        ["export", *CKPT, "--output", "/proc/m.onnx"],
        "cannot be written",
    ),
    case(
        "export-earlier-file-kept",
        ["export", *CKPT, "--output", "{tmp}/old.onnx", "--atol", "nan"],
        "--atol",
    ),
    case(
        "export-unknown-model",
        ["export", "--model", "wae_nope", "--output", "{tmp}/m.onnx"],
        "Unknown model",
    ),
    # eval: no accuracy row for impossible noise, no result lost to a bad path
    case("eval-noise-inf", ["eval", *CKPT, "--noise-var", "inf"], "--noise-var"),
    case("eval-noise-nan", ["eval", *CKPT, "--noise-var", "0.01", "nan"], "--noise-var"),
    case("eval-noise-negative", ["eval", *CKPT, "--noise-var", "-0.1"], "--noise-var"),
    case("eval-device-banana", ["eval", *CKPT, "--device", "banana"], "--device"),
    case(
        "eval-output-unwritable", ["eval", *CKPT, "--output", "/proc/r.json"], "cannot be written"
    ),
    case("eval-output-is-dir", ["eval", *CKPT, "--output", "{tmp}"], "is a directory"),
    case(
        "eval-output-kept",
        ["eval", *CKPT, "--output", "{tmp}/r.json", "--batch-size", "0"],
        "--batch-size",
    ),
    case("eval-subset-0", ["eval", *CKPT, "--subset", "0"], "--subset"),
    case("eval-split-bad", ["eval", *CKPT, "--split", "banana"], "--split"),
    case("eval-workers-negative", ["eval", *CKPT, "--num-workers", "-1"], "--num-workers"),
    case("eval-head-bad", ["eval", *CKPT, "--head", "middle"], "--head"),
    case("eval-batch-not-int", ["eval", *CKPT, "--batch-size", "many"], "--batch-size"),
    case("eval-no-checkpoint", ["eval", "--checkpoint", "{tmp}/nope"], "not a wae checkpoint"),
    case("eval-idx-wrong-size", ["eval", *CKPT, "--data-dir", "{tmp}/idx32"], "32x32"),
    case(
        "eval-no-data-real-hint",
        ["eval", *CKPT, "--data-dir", "{tmp}/cfgdir"],
        "data.download=true",
    ),
    case("eval-seed-huge", ["eval", *CKPT, "--seed", str(2**70)], "--seed"),
    # bench: no timings of empty batches, no benchmark lost to a bad --output-dir
    case("bench-batch-0", [*QUICK, "--batch-size", "0"], "--batch-size"),
    case("bench-batch-0-parts", [*QUICK, "--parts", "--batch-size", "1", "0"], "--batch-size"),
    case("bench-threads-word", [*QUICK, "--threads", "banana"], "--threads"),
    case("bench-threads-0", [*QUICK, "--threads", "0"], "--threads"),
    case("bench-input-size-0", [*QUICK, "--input-size", "0"], "--input-size"),
    case("bench-min-run-time-0", [*QUICK, "--min-run-time", "0"], "--min-run-time"),
    case("bench-min-run-time-nan", [*QUICK, "--min-run-time", "nan"], "--min-run-time"),
    case("bench-rounds-0", [*QUICK, "--rounds", "0"], "--rounds"),
    case("bench-warmup-negative", [*QUICK, "--warmup", "-1"], "--warmup"),
    case("bench-device-banana", [*QUICK, "--device", "banana"], "--device"),
    case("bench-num-classes-0", [*QUICK, "--num-classes", "0"], "--num-classes"),
    case(
        "bench-output-dir-is-file",
        ["bench", "--quick", "--output-dir", "{run}/config.json"],
        "is a file",
    ),
    case("bench-results-kept", [*QUICK, "--name", "quick", "--rounds", "0"], "--rounds"),
    # profile
    case("profile-input-size-0", ["profile", "--input-size", "0", "--no-latency"], "--input-size"),
    case("profile-batch-0", [*PROFILE, "--batch-size", "0", "--no-latency"], "--batch-size"),
    case("profile-threads-0", [*PROFILE, "--threads", "0"], "--threads"),
    case("profile-threads-word", [*PROFILE, "--threads", "two"], "--threads"),
    case("profile-in-chans-0", ["profile", "--in-chans", "0", "--no-latency"], "--in-chans"),
    case(
        "profile-num-classes-0", [*PROFILE, "--num-classes", "0", "--no-latency"], "--num-classes"
    ),
    case("profile-device-banana", [*PROFILE, "--device", "banana", "--no-latency"], "--device"),
    case("profile-min-run-time-0", [*PROFILE, "--min-run-time", "0"], "--min-run-time"),
    case("profile-rounds-0", [*PROFILE, "--rounds", "0"], "--rounds"),
    case(
        "profile-vit-backbone",
        ["profile", "--backbone", "timm:vit_tiny_patch16_224", "--no-latency"],
        "transformer",
    ),
    # models / recipes
    case("models-no-match", ["models", "nope_*"], "No registered model"),
    case("recipes-unknown", ["recipes", "nope"], "No recipe named"),
    # train: every config value checked before the data is read
    case("train-config-is-dir", ["train", "-c", "{tmp}/cfgdir", "-o", "{tmp}/t"], "is a directory"),
    case("train-model-unknown", [*TRAIN, "model.name=wae_nope"], "model.name"),
    case("train-width-0", [*TRAIN, "model.kwargs.width=0"], "'width'"),
    case("train-width-negative", [*TRAIN, "model.kwargs.width=-8"], "'width'"),
    case("train-width-word", [*TRAIN, "model.kwargs.width=wide"], "'width'"),
    case(
        "train-kwarg-unknown",
        [*TRAIN, "model.kwargs.checkpoint_path=/etc/passwd"],
        "checkpoint_path",
    ),
    case(
        "train-device-banana", [*TRAIN[:5], "--device", "banana", "--set", *TINY], "runtime.device"
    ),
    case("train-threads-0", [*TRAIN, "runtime.threads=0"], "runtime.threads"),
    case("train-threads-word", [*TRAIN, "runtime.threads=many"], "runtime.threads"),
    case("train-lr-nan", [*TRAIN, "stages.1.lr=nan"], "stages.1.lr"),
    case("train-lr-0", [*TRAIN, "stages.2.lr=0"], "stages.2.lr"),
    case("train-epochs-negative", [*TRAIN, "stages.1.epochs=-1"], "stages.1.epochs"),
    case("train-batch-0", [*TRAIN, "stages.3.batch_size=0"], "stages.3.batch_size"),
    case("train-seed-negative", [*TRAIN, "seed=-1"], "seed"),
    case("train-input-size-huge", [*TRAIN, "data.input_size=100000"], "data.input_size"),
    case("train-eval-split-bad", [*TRAIN, "eval.split=banana"], "eval.split"),
    case("train-threshold-negative", [*TRAIN, "stages.2.schedule.threshold=-1"], "threshold"),
    case(
        "train-output-is-file",
        ["train", "-c", "fashion_mnist", "-o", "{run}/config.json", "--set", *TINY],
        "is a file",
    ),
]


def _fill(argv: list[str], **places: Path) -> list[str]:
    return [a.format(**places) for a in argv]


@pytest.fixture
def scene(tmp_path: Path, tiny_run: Path) -> dict[str, Path]:
    """What the cases point at: the tiny run (read-only), its final checkpoint, and a scratch
    folder holding files written earlier (an export, a result, a benchmark), a directory, and
    Fashion-MNIST-named IDX files of 32x32 images."""
    (tmp_path / "old.onnx").write_bytes(b"an earlier export")
    (tmp_path / "r.json").write_text('{"top1": 91.0}\n')
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "quick.md").write_text("| an earlier benchmark |\n")
    (tmp_path / "bench" / "quick.json").write_text('{"speedup": 2.5}\n')
    (tmp_path / "cfgdir").mkdir()
    idx = tmp_path / "idx32"
    idx.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(idx / f"{prefix}-images-idx3-ubyte", np.zeros((10, 32, 32), np.uint8))
        write_idx(idx / f"{prefix}-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))
    return {"tmp": tmp_path, "run": tiny_run, "ckpt": tiny_run / "final"}


@pytest.mark.parametrize(("argv", "expect"), CLI_CASES)
def test_cli_refuses(argv: list[str], expect: str, scene: dict[str, Path], run_cli) -> None:
    before = {key: tree_digest(scene[key]) for key in ("run", "tmp")}
    code, err = run_cli(*_fill(argv, **scene))
    assert_clean_error(code, err, expect)
    assert {key: tree_digest(scene[key]) for key in ("run", "tmp")} == before


# ---------------------------------------------------------------------------- data, end to end


def _png(path: Path, value: int = 128, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)


def test_cli_bad_image_names_the_real_switch(tmp_path: Path, run_cli) -> None:
    """A training image that cannot be read: exit 2, the file named, and the advice is the
    switch that exists (data.skip_bad), not a --skip-bad flag."""
    root = tmp_path / "imgs"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            for i in range(3):
                _png(root / split / cls / f"{i}.png", 40 * i)
    (root / "train" / "a" / "bad.png").write_bytes(b"not a png")
    sizes = [f"stages.{k}.batch_size=2" for k in (1, 2, 3)]
    argv = ["train", "-c", "fashion_mnist", "-o", tmp_path / "t", "--set", *TINY, *sizes]
    code, err = run_cli(*argv, f"data.dataset={root}", "data.subset=none", "eval.split=")
    assert_clean_error(code, err, "bad.png")
    assert "data.skip_bad=true" in err and "--skip-bad" not in err


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    """A 16-bit grey PNG (PIL mode I;16) maps 0..65535 onto [0, 1], as an 8-bit one maps
    0..255: PIL's own convert() would clip everything above 255 to white."""
    levels = {"a": 0, "b": 257 * 64, "c": 257 * 128, "d": 65535}  # class -> uniform level
    for cls, level in levels.items():
        (tmp_path / "val" / cls).mkdir(parents=True)
        Image.fromarray(np.full((16, 16), level, np.uint16)).save(tmp_path / "val" / cls / "w.png")
    assert Image.open(tmp_path / "val" / "a" / "w.png").mode.startswith("I;16")
    ds = build_dataset(str(tmp_path), "val", input_size=16, in_chans=1)
    got = [ds[i][0] for i in range(4)]
    assert all(x.shape == (1, 16, 16) and x.dtype == torch.float32 for x in got)
    means = torch.stack([x.mean() for x in got])
    assert torch.allclose(means, torch.tensor([0.0, 64 / 255, 128 / 255, 1.0]), atol=1e-6)
    assert all(float(x.max() - x.min()) < 1e-6 for x in got)  # uniform stays uniform


# ---------------------------------------------------------------------------------- the API


def _tiny_wae():
    return wae.create_model("wae_small_vgg_28", width=8).eval()


def _export(tmp: Path, **kw):
    return lambda: export_onnx(
        _tiny_wae(), tmp / "m.onnx", **{"input_size": 28, "in_chans": 1, **kw}
    )


def _checkpoint_export(ckpt: Path, tmp: Path, **kw):
    from wae.apps.export_checkpoint import export_checkpoint

    return lambda: export_checkpoint(ckpt, output=tmp / "m.onnx", **kw)


def _parity(tmp: Path, x: torch.Tensor, atol: float):
    def run() -> None:
        model = _tiny_wae()
        path = export_onnx(model, tmp.parent / "p.onnx", 28, in_chans=1)  # a good export
        check_parity(model, path, x, atol=atol)

    return run


def _evaluate(ckpt: Path, **kw):
    from wae.train import evaluate_checkpoint

    return lambda: evaluate_checkpoint(ckpt, **kw)


def _bench(**kw):
    from wae.apps.bench import run_bench

    settings = dict(batch_sizes=[1], threads=[1], backends=["eager"], min_run_time=0.01)
    return lambda: run_bench(["small_vgg_28"], **{**settings, "rounds": 1, "warmup": 0, **kw})


def _profile(**kw):
    from wae.cost import compare_baselines

    return lambda: compare_baselines("small_vgg", **{"input_size": 28, "in_chans": 1, **kw})


def _images() -> TensorDataset:
    return TensorDataset(torch.rand(4, 1, 28, 28), torch.arange(4))


def _idx(tmp: Path, shape: tuple[int, ...]):
    for prefix in ("train", "t10k"):
        write_idx(tmp / f"{prefix}-images-idx3-ubyte", np.zeros(shape, np.uint8))
        write_idx(tmp / f"{prefix}-labels-idx1-ubyte", np.arange(shape[0], dtype=np.uint8) % 10)
    return lambda: build_dataset("fashion-mnist", "train", data_dir=tmp)


def _bad_folder(tmp: Path):
    for cls in ("a", "b"):
        _png(tmp / cls / "0.png")
    (tmp / "a" / "1.png").write_bytes(b"\x89PNG truncated")
    return lambda: [build_dataset(str(tmp), "train", input_size=8)[i] for i in range(4)]


# (id, factory(ckpt, tmp) -> callable, the WAEError subclass, what the message must name)
API_CASES = [
    case(
        "export_onnx-4d-input-size",
        lambda c, t: _export(t, input_size=(1, 3, 64, 64)),
        WAEError,
        "input_size",
    ),
    case("export_onnx-input-size-0", lambda c, t: _export(t, input_size=0), WAEError, "input_size"),
    case("export_onnx-wrong-chans", lambda c, t: _export(t, in_chans=3), ExportError, "in_chans=1"),
    case(
        "export_onnx-static-batch-0",
        lambda c, t: _export(t, dynamic_batch=False, batch_size=0),
        ExportError,
        "batch_size",
    ),
    case("export_onnx-opset-99", lambda c, t: _export(t, opset=99), ExportError, "opset"),
    case(
        "export_onnx-path-is-dir",
        lambda c, t: lambda: export_onnx(_tiny_wae(), t, 28, in_chans=1),
        WAEError,
        "directory",
    ),
    case(
        "check_parity-atol-nan",
        lambda c, t: _parity(t, torch.rand(2, 1, 28, 28), math.nan),
        ExportError,
        "atol",
    ),
    case(
        "check_parity-empty-batch",
        lambda c, t: _parity(t, torch.rand(0, 1, 28, 28), 1e-4),
        ExportError,
        "check_batch",
    ),
    case(
        "export_checkpoint-check-batch-0",
        lambda c, t: _checkpoint_export(c, t, check_batch=0),
        ExportError,
        "check_batch",
    ),
    case(
        "export_checkpoint-atol-inf",
        lambda c, t: _checkpoint_export(c, t, atol=math.inf),
        ExportError,
        "atol",
    ),
    case(
        "evaluate_checkpoint-noise-inf",
        lambda c, t: _evaluate(c, noise_vars=[math.inf]),
        DataError,
        "noise",
    ),
    case(
        "evaluate_checkpoint-device", lambda c, t: _evaluate(c, device="gpu0"), WAEError, "device"
    ),
    case("run_bench-batch-0", lambda c, t: _bench(batch_sizes=[0]), WAEError, "batch"),
    case("run_bench-input-size-0", lambda c, t: _bench(input_size=0), WAEError, "input_size"),
    case(
        "compare_baselines-input-size-0",
        lambda c, t: _profile(input_size=0),
        WAEError,
        "input_size",
    ),
    case("compare_baselines-threads-0", lambda c, t: _profile(threads=0), WAEError, "threads"),
    case(
        "measure_latency-rounds",
        lambda c, t: (
            lambda: wae.measure_latency(
                _tiny_wae(), torch.rand(1, 1, 28, 28), min_run_time=math.nan
            )
        ),
        WAEError,
        "min_run_time",
    ),
    case(
        "load_config-threads-0",
        lambda c, t: lambda: load_config("fashion_mnist", ["runtime.threads=0"]),
        ConfigError,
        "runtime.threads",
    ),
    case(
        "load_config-device",
        lambda c, t: lambda: load_config("fashion_mnist", ["runtime.device=gpu"]),
        ConfigError,
        "runtime.device",
    ),
    case(
        "load_config-kwargs-path",
        lambda c, t: lambda: load_config("fashion_mnist", ["model.kwargs.pretrained=true"]),
        ConfigError,
        "pretrained",
    ),
    case(
        "evaluate-noise-negative",
        lambda c, t: lambda: evaluate(_tiny_wae(), _images(), [0.01, -1.0]),
        DataError,
        "noise",
    ),
    case("build_dataset-idx-32x32", lambda c, t: _idx(t, (10, 32, 32)), DataError, "28x28"),
    case(
        "build_dataset-input-size-0",
        lambda c, t: lambda: build_dataset(str(t), "train", input_size=0),
        DataError,
        "input_size",
    ),
    case("build_dataset-bad-image", lambda c, t: _bad_folder(t), DataError, "data.skip_bad"),
]


@pytest.mark.parametrize(("factory", "error", "expect"), API_CASES)
def test_api_refuses(factory, error, expect: str, tmp_path: Path, tiny_run: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_run / "final", ckpt)
    before = tree_digest(ckpt)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(error) as info:
        factory(ckpt, work)()
    text = str(info.value)
    assert isinstance(info.value, WAEError)
    assert expect.lower() in text.lower() and "\n\n" not in text, text
    assert "--skip-bad" not in text
    assert tree_digest(ckpt) == before
    assert not list(work.glob("*.onnx"))  # nothing half-exported left behind
