"""ONNX export: ONNX Runtime reproduces PyTorch's logits (within 1e-4) on real images and at
dynamic batch sizes, metadata is recorded, and `wae export` fails loudly when it should."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import wae
from conftest import assert_clean_error
from wae.cli import main
from wae.export import (
    ExportError,
    MatrixResize,
    check_parity,
    export_module,
    export_onnx,
    onnx_metadata,
    onnx_session,
    ort_run,
)
from wae.models import WAENet
from wae.models.plain import HalfResize
from wae.optimize import WAEInference

ATOL = 1e-4


def _fashion_mnist(n: int, input_size: int = 28, in_chans: int = 1) -> torch.Tensor:
    from wae.data import DataError, build_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # grey -> RGB conversion for the 32x32 model
            ds = build_dataset(
                "fashion-mnist", "test", subset=n, input_size=input_size, in_chans=in_chans
            )
    except (DataError, FileNotFoundError, OSError) as e:
        pytest.skip(f"Fashion-MNIST is not available: {e}")
    return torch.stack([ds[i][0] for i in range(len(ds))])


SMALL = {
    "wae_small_vgg_28": (lambda: wae.create_model("wae_small_vgg_28"), 28, 1),
    "small_vgg_28_full": (lambda: wae.create_model("small_vgg_28_full"), 28, 1),
    "small_vgg_28_half": (lambda: wae.create_model("small_vgg_28_half"), 28, 1),
    "wae_small_vgg_32": (lambda: wae.create_model("wae_small_vgg_32"), 32, 3),
    "wavelet_small_vgg_28": (
        lambda: WAENet.from_backbone(
            "small_vgg", num_classes=10, in_chans=1, input_size=28, decomposer="wavelet", width=32
        ),
        28,
        1,
    ),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_parity_on_fashion_mnist(name: str, tmp_path: Path, randomise_stats) -> None:
    build, size, chans = SMALL[name]
    images = _fashion_mnist(6, size, chans)
    model = randomise_stats(build(), images)
    path = export_onnx(model, tmp_path / f"{name}.onnx", size, in_chans=chans)
    session = onnx_session(path, threads=1)
    for batch in (1, 5):  # neither is the traced batch (2): the batch axis is really dynamic
        diff = check_parity(model, session, images[:batch], atol=ATOL)
        assert diff <= ATOL


def test_metadata_and_static_batch(tmp_path: Path) -> None:
    model = wae.create_model("wae_small_vgg_28")
    classes = [f"c{i}" for i in range(10)]
    meta = {"classes": classes, "mean": [0.286], "std": [0.353], "note": "hello"}
    path = export_onnx(model, tmp_path / "m.onnx", 28, in_chans=1, metadata=meta)
    got = onnx_metadata(path)
    assert got["input_name"] == "input" and got["output_name"] == "logits"
    assert got["input_shape"] == ["batch", 1, 28, 28]
    assert got["output_shape"] == ["batch", 10]
    assert got["classes"] == classes and got["mean"] == [0.286] and got["std"] == [0.353]
    assert got["note"] == "hello" and got["model"] == "WAENet" and got["opset"] == 17
    assert got["spec"]["name"] == "wae_small_vgg_28"
    assert onnx_metadata(onnx_session(path))["classes"] == classes  # same via the session

    static = export_onnx(model, tmp_path / "s.onnx", 28, in_chans=1, dynamic_batch=False)
    sess = onnx_session(static, threads=1)
    assert [d for d in sess.get_inputs()[0].shape] == [1, 1, 28, 28]
    assert check_parity(model, sess, torch.rand(1, 1, 28, 28)) <= ATOL


#: The input contract's metadata keys; the README names them, so a rename must show here.
CONTRACT = {
    "input_name": "input",
    "dtype": "float32",
    "layout": "NCHW",
    "pixel_range": [0, 1],
    "normalization_in_graph": True,
}


@pytest.mark.parametrize("name", ["wae_small_vgg_28", "small_vgg_28_half", "wae_small_vgg_32"])
def test_metadata_input_contract(name: str, tmp_path: Path) -> None:
    model = wae.create_model(name)
    chans = model.in_chans if isinstance(model, WAENet) else 1
    got = onnx_metadata(export_onnx(model, tmp_path / "m.onnx", (32, 28), in_chans=chans))
    assert {k: got[k] for k in CONTRACT} == CONTRACT
    assert got["input_size"] == [32, 28] and got["in_chans"] == chans
    assert got["input_shape"] == ["batch", chans, 32, 28]
    sentence = got["input_contract"]
    assert "NCHW" in sentence and "[0, 1]" in sentence and "do not subtract a mean" in sentence

    # A caller can state another contract; the sentence follows it.
    meta = {"normalization_in_graph": False}
    got = onnx_metadata(
        export_onnx(model, tmp_path / "n.onnx", (32, 28), in_chans=chans, metadata=meta)
    )
    assert got["normalization_in_graph"] is False and "the graph does not" in got["input_contract"]


def test_export_module_with_two_inputs(tmp_path: Path) -> None:
    """A part of WAENet (its heads: (f_L, f_H) -> scores) exports like a whole model."""
    model = wae.create_model("wae_small_vgg_28").eval()
    with torch.no_grad():
        feats = model.forward_features(torch.rand(3, 1, 28, 28))
        ref = model.combine_heads(*model.forward_head(feats))
    heads = WAEInference.from_wae_net(model).head
    path = export_module(heads, feats, tmp_path / "heads.onnx", input_names=["f_low", "f_high"])
    sess = onnx_session(path, threads=1)
    out = sess.run(None, {"f_low": feats[0].numpy(), "f_high": feats[1].numpy()})[0]
    assert (torch.from_numpy(out) - ref).abs().max() <= ATOL
    meta = onnx_metadata(path)
    assert meta["opset"] == 17 and "pixel_range" not in meta


def test_matrix_resize_is_exact() -> None:
    for size in [(28, 28), (7, 9), (224, 224)]:
        x = torch.rand(2, 3, *size)
        assert torch.allclose(MatrixResize(HalfResize(), size)(x), HalfResize()(x), atol=1e-6)
    pool = nn.AdaptiveAvgPool2d(7)  # VGG16 at 112x112: a 3x3 map "pooled" to 7x7
    x = torch.rand(2, 4, 3, 3)
    assert torch.allclose(MatrixResize(pool, (3, 3))(x), pool(x), atol=1e-6)


def test_export_does_not_touch_the_model(tmp_path: Path) -> None:
    model = wae.create_model("small_vgg_28_half").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "h.onnx", 28, in_chans=1, opset=13)
    assert model.training and isinstance(model.resize, HalfResize)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_parity_failure_is_loud(tmp_path: Path) -> None:
    model = wae.create_model("small_vgg_28_full").eval()
    path = export_onnx(model, tmp_path / "f.onnx", 28, in_chans=1)
    other = wae.create_model("small_vgg_28_full").eval()  # different weights
    with pytest.raises(ExportError, match="disagree"):
        check_parity(other, path, torch.rand(2, 1, 28, 28), atol=1e-6)
    out = ort_run(onnx_session(path), torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)


def test_cli_export_model_and_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "untrained.onnx"
    assert main(["export", "--model", "wae_small_vgg_28", "--output", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == str(out) and out.is_file()
    assert doc["parity_max_abs_diff"] <= ATOL and doc["input_shape"] == ["batch", 1, 28, 28]
    assert onnx_metadata(out)["weights"].startswith("untrained")

    from wae.checkpoint import save_checkpoint

    ckpt = tmp_path / "ckpt"
    model = wae.create_model("wae_small_vgg_28")
    classes = [f"class {i}" for i in range(10)]
    meta = {"classes": classes, "mean": [0.286], "std": [0.353], "input_size": 28, "in_chans": 1}
    save_checkpoint(ckpt, model, meta=meta)
    argv = ["export", "--checkpoint", str(ckpt), "--format", "onnx", "--opset", "17"]
    assert main([*argv, "--optimize"]) == 0
    assert "max abs logit difference" in capsys.readouterr().out
    got = onnx_metadata(ckpt / "model.onnx")
    assert got["classes"] == classes and got["mean"] == [0.286] and got["std"] == [0.353]
    assert got["input_shape"] == ["batch", 1, 28, 28]
    assert got["model"] == "WAEInference"  # --optimize exported the folded rewrite

    # A failing parity check exits 2 with a message and leaves no file behind. (The ONNX file
    # is made to come from other weights: a negative --atol is now refused up front.)
    import wae.apps.export_checkpoint as service

    other = wae.create_model("small_vgg_28_full").eval()  # different weights: ORT disagrees
    real = service.export_onnx
    monkeypatch.setattr(service, "export_onnx", lambda _m, *a, **k: real(other, *a, **k))
    bad = tmp_path / "bad.onnx"
    argv = ["export", "--model", "small_vgg_28_full", "--output", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "disagree" in err and "Traceback" not in err and not bad.exists()
    assert not list(tmp_path.glob(".bad.onnx*"))  # nor a temporary file


def test_cli_export_unknown_model(capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "--model", "wae_nope"]) == 2
    assert "Unknown model 'wae_nope'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wae_vgg16", "wae_resnet50", "vgg16_half", "resnet50_half"])
def test_parity_imagenet_size(name: str, tmp_path: Path) -> None:
    model = wae.create_model(name).eval()
    images = torch.rand(5, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    if isinstance(model, WAENet):
        model.calibrate_norms([images])
    path = export_onnx(model, tmp_path / f"{name}.onnx", 224)
    session = onnx_session(path)
    for batch in (1, 5):
        assert check_parity(model, session, images[:batch], atol=ATOL) <= ATOL


def test_export_int8_option_refusals(tmp_path: Path, run_cli) -> None:
    """Refused before any model is loaded: exit 2 and one paragraph."""
    from wae.checkpoint import save_checkpoint

    ck = save_checkpoint(tmp_path / "ck", wae.create_model("small_vgg_28_full", width=8))
    base = ["export", "--checkpoint", ck]
    cases = [
        (["--precision", "int8"], "needs --calibration DATA"),
        (["--calibration", "fashion-mnist"], "--calibration only applies to --precision int8"),
        (["--precision", "int8", "--calibration", "x", "--min-agreement", "1.5"], "fraction"),
        (["--precision", "int8", "--calibration", "x", "--min-agreement", "nan"], "fraction"),
        (["--precision", "int8", "--calibration", "x", "--calibration-size", "0"], "positive"),
        (["--precision", "int8", "--calibration", "x", "--check-size", "-3"], "--check-size"),
    ]
    for extra, expect in cases:
        code, err = run_cli(*base, *extra)
        assert_clean_error(code, err, expect)
    code, err = run_cli(
        "export", "--model", "small_vgg_28_full", "--precision", "int8", "--calibration", "x"
    )
    assert_clean_error(code, err, "needs a trained checkpoint")
    code, err = run_cli(*base, "--format", "tflite")
    assert_clean_error(code, err, "invalid choice")
    assert sorted(p.name for p in ck.iterdir()) == ["model.json", "model.safetensors"]
