"""Tests for the fixed CDF 9/7 DWT used by the Wavelet+CNN baseline (checked against PyWavelets)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import pywt
import torch
from torch.utils.flop_counter import FlopCounterMode

from wae.wavelet import DWT2, IDWT2, WaveletDecomposer

WAVELET = "bior4.4"
MODE = "periodization"


def pywt_bands(x: torch.Tensor, wavelet: str = WAVELET) -> np.ndarray:
    """pywt.dwt2 of (N, C, H, W) as (N, 4, C, h, w) in the order cA, cH, cV, cD."""
    cA, (cH, cV, cD) = pywt.dwt2(x.double().numpy(), wavelet, mode=MODE)
    return np.stack([cA, cH, cV, cD], axis=1)


def torch_bands(cA: torch.Tensor, details: torch.Tensor) -> np.ndarray:
    n, c, h, w = cA.shape
    return torch.cat([cA[:, None], details.reshape(n, 3, c, h, w)], 1).double().numpy()


def photo() -> torch.Tensor:
    """skimage's 512x512 'astronaut' photo as (1, 3, H, W) in [0, 1], float64."""
    skdata = pytest.importorskip("skimage.data")
    img = torch.from_numpy(skdata.astronaut()).permute(2, 0, 1)[None]
    return img.double() / 255.0


@pytest.mark.parametrize("wavelet", [WAVELET, "haar", "db4"])
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 1, 16, 24), (2, 5, 8, 6)])
def test_matches_pywt_float64(shape: tuple[int, ...], wavelet: str) -> None:
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cA, details = DWT2(wavelet)(x)
    n, c, h, w = shape
    assert cA.shape == (n, c, h // 2, w // 2) and details.shape == (n, 3 * c, h // 2, w // 2)
    assert cA.dtype == torch.float64
    np.testing.assert_allclose(torch_bands(cA, details), pywt_bands(x, wavelet), rtol=0, atol=1e-5)


def test_matches_pywt_on_photo() -> None:
    x = photo()
    bands = pywt_bands(x)
    np.testing.assert_allclose(torch_bands(*DWT2()(x)), bands, rtol=0, atol=1e-5)
    # float32: stated tolerance 1e-4 (observed ~5e-7 on this photo, values in [0, 1]).
    np.testing.assert_allclose(torch_bands(*DWT2()(x.float())), bands, rtol=0, atol=1e-4)


def test_float32_random() -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cA, details = DWT2()(x)
    assert cA.dtype == torch.float32
    np.testing.assert_allclose(torch_bands(cA, details), pywt_bands(x), rtol=0, atol=1e-4)


def test_band_order_is_band_major() -> None:
    """details[:, b*C + c] is band b (cH, cV, cD) of channel c."""
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    _, details = DWT2()(x)
    _, (cH, cV, cD) = pywt.dwt2(x.numpy(), WAVELET, mode=MODE)
    np.testing.assert_allclose(details.numpy(), np.concatenate([cH, cV, cD], 1), atol=1e-10)


def test_idwt_matches_pywt_idwt2() -> None:
    x = torch.randn(2, 3, 20, 28, dtype=torch.float64)
    cA, details = DWT2()(x)
    n, c, h, w = cA.shape
    d = details.reshape(n, 3, c, h, w)
    ref = pywt.idwt2((cA.numpy(), tuple(d[:, i].numpy() for i in range(3))), WAVELET, mode=MODE)
    # Also on arbitrary coefficients (not just a DWT2 output), where the inverse is linear.
    coeffs = torch.randn(n, 4 * c, h, w, dtype=torch.float64)
    a2, d2 = coeffs[:, :c], coeffs[:, c:]
    b2 = d2.reshape(n, 3, c, h, w)
    ref2 = pywt.idwt2((a2.numpy(), tuple(b2[:, i].numpy() for i in range(3))), WAVELET, mode=MODE)
    idwt = IDWT2()
    np.testing.assert_allclose(idwt(cA, details).numpy(), ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(idwt(a2, d2).numpy(), ref2, rtol=0, atol=1e-10)


@pytest.mark.parametrize("wavelet", [WAVELET, "haar", "sym8"])
def test_perfect_reconstruction_float32(wavelet: str) -> None:
    x = photo().float()
    rec = IDWT2(wavelet)(*DWT2(wavelet)(x))
    assert rec.dtype == torch.float32
    assert (rec - x).abs().max().item() < 1e-4


@pytest.mark.parametrize("hw", [(15, 15), (9, 16), (16, 7), (1, 1), (3, 2), (33, 65)])
def test_odd_and_tiny_sizes(hw: tuple[int, int]) -> None:
    """Odd sides repeat the last row/column (as pywt does); IDWT2(size=...) crops back."""
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    cA, details = DWT2()(x)
    h, w = (hw[0] + 1) // 2, (hw[1] + 1) // 2
    assert cA.shape == (2, 3, h, w) and details.shape == (2, 9, h, w)
    np.testing.assert_allclose(torch_bands(cA, details), pywt_bands(x), rtol=0, atol=1e-5)
    assert IDWT2()(cA, details).shape[-2:] == (2 * h, 2 * w)
    rec = IDWT2()(cA, details, size=hw)
    torch.testing.assert_close(rec, x, rtol=0, atol=1e-10)
    rec32 = IDWT2()(cA.float(), details.float(), size=hw)
    torch.testing.assert_close(rec32.double(), x, rtol=0, atol=1e-4)


def test_gradient_flows() -> None:
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    cA, details = DWT2()(x)
    (cA.square().sum() + details.square().sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    cA2 = cA.detach().requires_grad_()
    IDWT2()(cA2, details.detach()).sum().backward()
    assert cA2.grad is not None and cA2.grad.abs().sum() > 0


def test_filters_are_buffers_not_parameters() -> None:
    for m in (DWT2(), IDWT2(), WaveletDecomposer(3)):
        assert list(m.parameters()) == []
        assert len(list(m.buffers())) >= 2
        assert m.state_dict() == {}  # taps follow from the wavelet name, not saved
    taps = DWT2().rows[:, 0, 0].flip(-1).numpy()
    w = pywt.Wavelet(WAVELET)
    np.testing.assert_array_equal(taps, np.array([w.dec_lo, w.dec_hi]))


def test_follows_input_dtype_and_module_device() -> None:
    m = DWT2().to("meta")
    cA, details = m(torch.empty(2, 3, 8, 8, device="meta", dtype=torch.bfloat16))
    assert cA.device.type == "meta" and cA.dtype == torch.bfloat16
    assert details.shape == (2, 9, 4, 4)


def test_decomposer() -> None:
    enc = WaveletDecomposer(in_chans=3)
    assert (enc.low_chans, enc.high_chans) == (3, 9)
    x = torch.randn(2, 3, 32, 32)
    low, high = enc(x)
    low2, high2 = enc.encode(x)
    assert low.shape == (2, 3, 16, 16) and high.shape == (2, 9, 16, 16)
    torch.testing.assert_close(low, low2)
    torch.testing.assert_close(high, high2)
    torch.testing.assert_close(enc.decode(low, high), x, rtol=0, atol=1e-4)


def test_flop_counter_sees_convolutions() -> None:
    x = torch.randn(1, 3, 32, 32)
    with FlopCounterMode(display=False) as fc:
        IDWT2()(*DWT2()(x))
    # Separable 10-tap filters: 20 MACs = 40 FLOPs per input pixel for the forward.
    assert fc.get_total_flops() > 40 * x.numel()


def _export(model: torch.nn.Module, args: tuple, path, names: list[str]) -> set[str]:
    """Legacy (TorchScript) exporter: needs no onnxscript; returns the op types used."""
    onnx = pytest.importorskip("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notice
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, input_names=names)
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_onnx_export_matches(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    plain_ops = {"Conv", "ConvTranspose", "Slice", "Concat", "Reshape", "Transpose", "Gather"}
    plain_ops |= {"Constant", "Cast", "Unsqueeze"}
    x = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    enc = WaveletDecomposer(3).eval()
    low, high = enc(x)

    ops = _export(enc, (x,), tmp_path / "dwt.onnx", ["x"])
    assert ops <= plain_ops, ops
    out = ort.InferenceSession(str(tmp_path / "dwt.onnx")).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(out[0], low.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(out[1], high.numpy(), rtol=0, atol=1e-5)

    ops = _export(IDWT2().eval(), (low, high), tmp_path / "idwt.onnx", ["low", "high"])
    assert ops <= plain_ops, ops
    feeds = {"low": low.numpy(), "high": high.numpy()}
    (rec,) = ort.InferenceSession(str(tmp_path / "idwt.onnx")).run(None, feeds)
    np.testing.assert_allclose(rec, IDWT2()(low, high).numpy(), rtol=0, atol=1e-5)
