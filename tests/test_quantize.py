"""int8 and bf16 deployment: ONNX Runtime QDQ quantisation (wae.quantize), `wae export
--precision int8` (kept only if it agrees with float32 PyTorch on held-out images) and
`wae eval --precision bf16|int8`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import wae
from conftest import assert_clean_error
from wae.apps.export_checkpoint import export_checkpoint
from wae.checkpoint import save_checkpoint
from wae.data import DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES
from wae.export import ExportError, export_onnx, onnx_metadata, onnx_session, ort_run
from wae.quantize import (
    QuantizeError,
    calibration_images,
    quantize_onnx_int8,
    top1_agreement,
)

pytestmark = pytest.mark.usefixtures("one_thread")

has_fmnist = any(DEFAULT_FASHION_MNIST_DIR.glob("train-images-idx3-ubyte*"))
needs_fmnist = pytest.mark.skipif(not has_fmnist, reason="needs Fashion-MNIST")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A small_vgg_28_full (width 8) fitted for two epochs on 2000 Fashion-MNIST train images
    (~5 s; ~70 % test top-1): accurate enough that int8/bf16 errors would show."""
    from wae.data import build_dataset

    if not has_fmnist:
        pytest.skip("needs Fashion-MNIST")
    ds = build_dataset("fashion-mnist", "train", subset=2000, train_transforms=False)
    x, y = torch.stack([ds[i][0] for i in range(len(ds))]), ds.targets.clone()
    torch.manual_seed(0)
    model = wae.create_model("small_vgg_28_full", width=8)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(2):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    meta = {
        "dataset": "fashion-mnist",
        "classes": list(FASHION_MNIST_CLASSES),
        "input_size": 28,
        "in_chans": 1,
    }
    out = tmp_path_factory.mktemp("trained") / "ck"
    return save_checkpoint(out, model.eval(), meta=meta, config={"seed": 0})


# ------------------------------------------------------------------------ library


def test_quantize_onnx_int8(tmp_path: Path, randomise_stats) -> None:
    import onnx

    images = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = randomise_stats(wae.create_model("wae_small_vgg_28"), images[:8])
    src = export_onnx(model, tmp_path / "fp32.onnx", 28, in_chans=1, metadata={"k": "v"})
    dst = quantize_onnx_int8(src, tmp_path / "int8.onnx", images[:32], batch_size=8)
    assert dst == tmp_path / "int8.onnx" and dst.is_file()
    assert not list(tmp_path.glob(".int8.onnx*"))  # no temporary file left
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    before, after = onnx_metadata(src), onnx_metadata(dst)
    assert {k: after[k] for k in before} == before  # every source entry kept
    assert after["precision"] == "int8"
    q = after["quantization"]
    assert q["format"] == "QDQ" and q["per_channel"] is True and q["calibration_images"] == 32
    assert q["tool"].startswith("onnxruntime")
    with torch.no_grad():
        ref = model(images[32:])
    got = ort_run(onnx_session(dst, threads=1), images[32:])
    assert got.shape == ref.shape == (8, 10)
    spread = float(ref.max() - ref.min())
    assert (got - ref).abs().max().item() < 0.1 * spread + 1e-3  # close-ish, not equal
    assert 0.0 <= top1_agreement(ref, got) <= 1.0


def test_quantize_static_batch_and_bad_calibration(tmp_path: Path) -> None:
    model = wae.create_model("small_vgg_28_full").eval()
    src = export_onnx(model, tmp_path / "s.onnx", 28, in_chans=1, dynamic_batch=False, batch_size=4)
    dst = quantize_onnx_int8(src, tmp_path / "q.onnx", torch.rand(10, 1, 28, 28))
    assert onnx_metadata(dst)["quantization"]["calibration_images"] == 8  # whole batches of 4
    with pytest.raises(QuantizeError, match="exactly 4"):
        quantize_onnx_int8(src, tmp_path / "q2.onnx", torch.rand(3, 1, 28, 28))
    with pytest.raises(QuantizeError, match=r"do not match the model's input \(1, 28, 28\)"):
        quantize_onnx_int8(src, tmp_path / "q2.onnx", torch.rand(8, 3, 28, 28))
    assert not (tmp_path / "q2.onnx").exists()


def test_quantizer_failure_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(QuantizeError, match="Cannot read"):
        quantize_onnx_int8(bad, tmp_path / "q.onnx", torch.rand(4, 1, 28, 28))
    assert not (tmp_path / "q.onnx").exists()

    src = export_onnx(wae.create_model("small_vgg_28_full"), tmp_path / "f.onnx", 28, in_chans=1)
    import wae.quantize as quantize

    def broken(*_a, **_k):
        raise RuntimeError("quantizer exploded\n  at some C++ frame\n  and another")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("onnxruntime.quantization.quantize_static", broken)
        with pytest.raises(quantize.QuantizeError) as info:
            quantize_onnx_int8(src, tmp_path / "q.onnx", torch.rand(4, 1, 28, 28))
    msg = str(info.value)
    assert "RuntimeError: quantizer exploded" in msg and "C++" not in msg and "\n" not in msg
    assert not (tmp_path / "q.onnx").exists()


def test_calibration_images_are_seeded() -> None:
    ds = TensorDataset(torch.rand(20, 1, 4, 4), torch.arange(20) % 4)
    a, b = calibration_images(ds, 5, seed=3), calibration_images(ds, 5, seed=3)
    assert a.shape == (5, 1, 4, 4) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, calibration_images(ds, 5, seed=4))
    assert calibration_images(ds, 100).shape[0] == 20  # all of them when it holds fewer
    with pytest.raises(QuantizeError, match=">= 1"):
        calibration_images(ds, 0)


def test_top1_agreement() -> None:
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert top1_agreement(ref, ref) == 1.0
    assert top1_agreement(ref, ref.flip(0)) == 0.0
    assert top1_agreement(ref, torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]])) == 0.75
    with pytest.raises(QuantizeError, match="shapes"):
        top1_agreement(ref, ref[:2])


# ------------------------------------------------------------------------ wae export int8


@needs_fmnist
def test_export_int8_checkpoint(trained: Path, tmp_path: Path, capsys) -> None:
    from wae.cli import main

    out = tmp_path / "m8.onnx"
    argv = ["export", "--checkpoint", str(trained), "--precision", "int8", "--output", str(out)]
    argv += ["--calibration", "fashion-mnist", "--calibration-size", "64", "--check-size", "300"]
    argv += ["--min-agreement", "0.95"]  # margin for other CPUs' int8 kernels
    assert main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == str(out) and doc["format"] == "onnx" and doc["precision"] == "int8"
    assert doc["calibration_images"] == 64 and doc["calibration_split"] == "train"
    assert doc["check_images"] == 300 and doc["check_split"] == "test"
    assert doc["top1_agreement"] >= 0.95 and doc["size_mb"] > 0
    assert doc["top1_fp32"] > 55  # trained: the agreement is not that of a constant guess
    assert abs(doc["top1_int8"] - doc["top1_fp32"]) <= 2.0
    meta = onnx_metadata(out)
    assert meta["precision"] == "int8" and meta["classes"] == list(FASHION_MNIST_CLASSES)
    assert meta["quantization"]["calibration_images"] == 64
    assert not list(tmp_path.glob(".m8.onnx*"))  # the staging folder is gone
    # The text summary names the figures.
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "agrees with float32 PyTorch's on" in text and "top-1 accuracy int8" in text


@needs_fmnist
def test_export_int8_static_batch(trained: Path, tmp_path: Path) -> None:
    # 50 held-out images in batches of exactly 4: the last one is padded, then trimmed.
    doc = export_checkpoint(
        trained,
        output=tmp_path / "s.onnx",
        precision="int8",
        calibration="fashion-mnist",
        calibration_size=16,
        check_size=50,
        min_agreement=0.9,
        dynamic_batch=False,
        batch_size=4,
    )
    assert doc["check_images"] == 50 and doc["input_shape"] == [4, 1, 28, 28]
    assert onnx_metadata(tmp_path / "s.onnx")["quantization"]["calibration_images"] == 16


@needs_fmnist
@pytest.mark.skipif(
    importlib.util.find_spec("nncf") is None, reason="needs openvino and nncf (wae[openvino])"
)
def test_export_int8_openvino(trained: Path) -> None:
    from wae.openvino_rt import ov_metadata

    doc = export_checkpoint(
        trained,
        format="openvino",
        precision="int8",
        calibration="fashion-mnist",
        calibration_size=64,
        check_size=300,
        min_agreement=0.95,
    )
    xml = trained / "model_int8.xml"
    assert doc["path"] == str(xml) and xml.is_file() and xml.with_suffix(".bin").is_file()
    assert doc["format"] == "openvino" and doc["top1_agreement"] >= 0.95
    assert abs(doc["top1_int8"] - doc["top1_fp32"]) <= 2.0
    assert ov_metadata(xml)["quantization"]["tool"].startswith("nncf")
    xml.unlink()  # the fixture is shared: leave it as it was
    xml.with_suffix(".bin").unlink()


@needs_fmnist
def test_export_int8_below_floor_keeps_old_file(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wae.quantize

    out = tmp_path / "m8.onnx"
    out.write_bytes(b"an earlier export")
    monkeypatch.setattr(wae.quantize, "top1_agreement", lambda ref, got: 0.5)
    with pytest.raises(ExportError) as info:
        export_checkpoint(
            trained,
            output=out,
            precision="int8",
            calibration="fashion-mnist",
            calibration_size=16,
            check_size=50,
        )
    msg = str(info.value)
    assert "50.0% of 50 held-out fashion-mnist test images" in msg and "\n" not in msg
    assert "--calibration-size 32" in msg and "--precision fp32" in msg and "left as it" in msg
    assert out.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m8.onnx"]


@needs_fmnist
def test_export_int8_wrong_dataset(trained: Path, tmp_path: Path, run_cli) -> None:
    code, err = run_cli(
        "export", "--checkpoint", trained, "--precision", "int8", "--calibration", "cifar10",
        "--output", tmp_path / "x.onnx",
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


# ------------------------------------------------------------------------ wae eval


@needs_fmnist
def test_eval_bf16_and_int8_close_to_fp32(trained: Path, capsys) -> None:
    from wae.cli import main

    base = ["eval", "--checkpoint", str(trained), "--subset", "300", "--json"]
    results = {}
    for precision in ("fp32", "bf16", "int8"):
        extra = ["--calibration-size", "64"] if precision == "int8" else []
        assert main([*base, "--precision", precision, *extra]) == 0
        results[precision] = json.loads(capsys.readouterr().out)
    assert results["fp32"]["precision"] == "fp32" and "calibration" not in results["fp32"]
    assert results["fp32"]["top1"] > 55
    for precision in ("bf16", "int8"):
        assert results[precision]["precision"] == precision
        assert abs(results[precision]["top1"] - results["fp32"]["top1"]) <= 2.0
    cal = results["int8"]["calibration"]
    assert cal["images"] == 64 and cal["split"] == "train" and cal["format"] == "QDQ"
    # The table names the precision.
    assert main([*base[:-1], "--precision", "bf16", "--noise-var", "0.01"]) == 0
    assert "bf16" in capsys.readouterr().out


def test_eval_precision_refusals(tmp_path: Path, run_cli) -> None:
    model = wae.create_model("small_vgg_28_full", width=8)
    ck = save_checkpoint(tmp_path / "ck", model, meta={"dataset": "fashion-mnist"})
    argv = ["eval", "--checkpoint", ck]
    code, err = run_cli(*argv, "--calibration-size", "64")
    assert_clean_error(code, err, "--calibration-size sets how many images")
    code, err = run_cli(*argv, "--precision", "int8", "--device", "cuda")
    assert_clean_error(code, err, "with ONNX Runtime on the CPU")
    code, err = run_cli(*argv, "--precision", "int8", "--calibration-size", "0")
    assert_clean_error(code, err, "--calibration-size must be a positive number")
    code, err = run_cli(*argv, "--precision", "fp16")
    assert_clean_error(code, err, "invalid choice")
