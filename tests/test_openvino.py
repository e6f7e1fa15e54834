"""OpenVINO: running wae's exports (wae.openvino_rt), `wae export --format openvino` (IR that
matches PyTorch at fp32) and int8 IR by NNCF (wae.quantize.quantize_openvino_int8)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import wae
from wae.checkpoint import save_checkpoint
from wae.cli import main
from wae.export import ExportError, export_onnx, onnx_session, ort_run
from wae.openvino_rt import require_openvino

pytestmark = pytest.mark.usefixtures("one_thread")

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="needs openvino (wae[openvino])"
)
needs_nncf = pytest.mark.skipif(
    importlib.util.find_spec("nncf") is None, reason="needs nncf (wae[openvino])"
)


@pytest.fixture
def onnx_file(tmp_path: Path, randomise_stats) -> tuple[Path, torch.nn.Module]:
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = randomise_stats(wae.create_model("wae_small_vgg_28"), images)
    return export_onnx(model, tmp_path / "w.onnx", 28, in_chans=1), model


def test_require_openvino_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # import fails
    with pytest.raises(ExportError, match=r"pip install 'wae\[openvino\]'") as info:
        require_openvino()
    assert "ONNX Runtime" in str(info.value) and "\n" not in str(info.value)


@needs_openvino
def test_ov_run_matches_onnx_runtime(onnx_file) -> None:
    from wae.openvino_rt import ov_compile, ov_precision, ov_run

    path, model = onnx_file
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    compiled = ov_compile(path, threads=1, precision="fp32")
    got = ov_run(compiled, x)
    assert got.dtype == torch.float32 and got.shape == (5, 10)
    assert (got - ort_run(onnx_session(path, threads=1), x)).abs().max().item() <= 1e-4
    with torch.no_grad():
        assert (got - model(x)).abs().max().item() <= 1e-4
    assert ov_precision(compiled) == "fp32"
    # bf16 asked: whatever the CPU really does (float32 on one without bf16), as a name.
    assert ov_precision(ov_compile(path, threads=1, precision="bf16")) in ("bf16", "fp32")
    with pytest.raises(ExportError, match="precision must be one of"):
        ov_compile(path, precision="fp16")
    with pytest.raises(ExportError, match="could not compile"):
        ov_compile(path.parent / "missing.onnx")


@needs_openvino
def test_cli_export_openvino(tmp_path: Path, capsys) -> None:
    import openvino as ov

    from wae.openvino_rt import ov_metadata

    model = wae.create_model("wae_small_vgg_28")
    ck = save_checkpoint(tmp_path / "ck", model, meta={"input_size": 28, "in_chans": 1})
    assert main(["export", "--checkpoint", str(ck), "--format", "openvino", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    xml = ck / "model.xml"
    assert doc["path"] == str(xml) and xml.is_file() and (ck / "model.bin").is_file()
    assert doc["format"] == "openvino" and doc["precision"] == "fp32"
    assert doc["parity_runtime"] == "OpenVINO" and doc["parity_max_abs_diff"] <= 1e-4
    assert doc["onnx_parity_max_abs_diff"] <= 1e-4 and doc["openvino_precision"] == "fp32"
    assert not list(ck.glob(".model.xml*"))  # the staging folder is gone
    meta = ov_metadata(xml)
    assert meta["precision"] == "fp32" and meta["input_shape"] == ["batch", 1, 28, 28]
    # Loading it as the docstring says.
    compiled = ov.Core().compile_model(str(xml), "CPU")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        ref = model.eval()(x)
    assert abs(compiled(x.numpy())[0] - ref.numpy()).max() < 1e-3
    # An IR needs an .xml name; checked before anything is loaded.
    code = main(["export", "--model", "wae_small_vgg_28", "--format", "openvino", "--output",
                 str(tmp_path / "m.onnx")])  # fmt: skip
    assert code == 2 and "must end in .xml" in capsys.readouterr().err


@needs_openvino
def test_export_openvino_parity_failure_keeps_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import wae.openvino_rt as rt

    out = tmp_path / "m.xml"
    out.write_text("old xml")
    out.with_suffix(".bin").write_text("old bin")
    real = rt.ov_run
    monkeypatch.setattr(rt, "ov_run", lambda c, x: real(c, x) + 1.0)  # OpenVINO "disagrees"
    code = main(["export", "--model", "small_vgg_28_full", "--format", "openvino",
                 "--output", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "OpenVINO and PyTorch disagree" in err and "Traceback" not in err
    assert out.read_text() == "old xml" and out.with_suffix(".bin").read_text() == "old bin"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]


@needs_openvino
@needs_nncf
def test_quantize_openvino_int8(onnx_file, tmp_path: Path) -> None:
    from wae.openvino_rt import ov_compile, ov_metadata, ov_precision, ov_run
    from wae.quantize import quantize_openvino_int8, top1_agreement

    path, model = onnx_file
    calib = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    xml = quantize_openvino_int8(path, tmp_path / "q.xml", calib)
    assert xml == tmp_path / "q.xml" and xml.with_suffix(".bin").is_file()
    meta = ov_metadata(xml)
    assert meta["precision"] == "int8" and meta["quantization"]["tool"].startswith("nncf")
    assert meta["quantization"]["calibration_images"] == 16
    assert meta["input_contract"].startswith("Input 'input'")  # the ONNX metadata is kept
    compiled = ov_compile(xml, threads=1, precision="int8")
    assert ov_precision(compiled) == "int8"
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
    got = ov_run(compiled, x)
    assert got.shape == ref.shape and 0.0 <= top1_agreement(ref, got) <= 1.0
