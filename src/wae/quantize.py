"""int8 post-training static quantisation of an exported model, calibrated on images.

Two back ends, both fed calibration images (N, C, H, W) float32 in the model's input
contract (pixels in [0, 1], no normalisation: see :mod:`wae.export`):

* :func:`quantize_onnx_int8`: ONNX Runtime, QDQ format, weights int8 per output channel
  with a 7-bit range (``reduce_range``), activations uint8 per tensor, MinMax ranges. The
  result is an ONNX file any runtime reads (ONNX Runtime and OpenVINO run its int8 kernels).
  Why 7 bits: on x86 CPUs without VNNI (AVX2, plain AVX-512) ONNX Runtime multiplies uint8 by
  int8 with an instruction that saturates its 16-bit sums; full 8-bit weights then cost the
  demo's WAE 3.45 points of Fashion-MNIST top-1 (86.96 % against 90.41 %), 7-bit ones 0.07.
  With VNNI nothing saturates, and a file may be deployed on either kind of CPU.
* :func:`quantize_openvino_int8`: NNCF on the ONNX model as OpenVINO reads it (performance
  preset: symmetric int8), saved as OpenVINO IR.

A quantised model is only as good as its agreement with the float32 one on held-out images
(:func:`top1_agreement`); ``wae export --precision int8`` refuses to keep one below a floor.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import first_line
from .export import ExportError, onnx_metadata

__all__ = [
    "QuantizeError",
    "calibration_images",
    "quantize_onnx_int8",
    "quantize_openvino_int8",
    "require_nncf",
    "top1_agreement",
]


class QuantizeError(ExportError):
    """A quantisation that could not be done (bad calibration data, a quantiser failure)."""


def require_nncf() -> Any:
    """The ``nncf`` module; :class:`QuantizeError` with what to install when it is missing."""
    try:
        import nncf
    except ImportError as e:
        raise QuantizeError(
            f"NNCF is not installed ({e}); install it with pip install 'wae[openvino]' "
            f"(openvino and nncf), or quantise with ONNX Runtime (--format onnx)."
        ) from None
    return nncf


def calibration_images(dataset: Any, n: int, *, seed: int = 0) -> torch.Tensor:
    """`n` images (n, C, H, W) float32 drawn without replacement from `dataset` ((image,
    label) items, e.g. a :class:`wae.data.LabeledDataset`) by a generator seeded with `seed`;
    all of them, shuffled, when it holds fewer than `n`."""
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise QuantizeError(f"The number of calibration images must be >= 1, got {n!r}.")
    size = len(dataset)
    if size == 0:
        raise QuantizeError("The calibration dataset holds no image; give one that does.")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]
    return torch.stack([dataset[int(i)][0] for i in order]).float()


def top1_agreement(ref_logits: torch.Tensor, got_logits: torch.Tensor) -> float:
    """Fraction in [0, 1] of images (rows of (N, K) logits) whose top-1 class is the same."""
    if ref_logits.shape != got_logits.shape or ref_logits.dim() != 2:
        raise QuantizeError(
            f"Cannot compare logits of shapes {tuple(ref_logits.shape)} and "
            f"{tuple(got_logits.shape)}: both must be (N, K) for the same images."
        )
    if ref_logits.shape[0] == 0:
        raise QuantizeError("top-1 agreement needs at least one image.")
    same = ref_logits.argmax(1).cpu() == got_logits.argmax(1).cpu()
    return float(same.double().mean().item())


def quantize_onnx_int8(
    src: Path, dst: Path, calibration: torch.Tensor, *, batch_size: int = 16
) -> Path:
    """Quantise the ONNX model `src` to int8 QDQ at `dst` with ONNX Runtime; returns `dst`.

    calibration: (N, C, H, W) float32, fed `batch_size` at a time (the graph's own batch if
    it is static) to set the MinMax activation ranges. The source's metadata_props are kept
    and ``precision`` = "int8" and ``quantization`` (JSON: tool,
    format, per_channel, calibration_images) added. Written under a temporary name, then
    renamed; raises :class:`QuantizeError` (the cause's first line) on any failure."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from .checkpoint import atomic_write_bytes

    src, dst = Path(src), Path(dst)
    meta = _source_metadata(src)
    batches = list(_batches(calibration, meta, batch_size))
    with tempfile.TemporaryDirectory(prefix="wae-int8-") as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        try:
            # Shape inference and graph cleanup first, as ONNX Runtime recommends: without
            # it, per-channel quantisation misses tensors whose shapes it cannot see.
            quant_pre_process(str(src), str(pre))
            quantize_static(
                str(pre),
                str(out),
                _Reader(meta.get("input_name", "input"), batches),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,  # no saturation on CPUs without VNNI (module docstring)
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as e:
            why = first_line(e, with_type=True)
            raise QuantizeError(
                f"ONNX Runtime could not quantise {src} to int8: {why}. Export "
                f"float32 instead (--precision fp32)."
            ) from e
        proto = onnx.load(str(out))
    # ONNX Runtime 1.32 keeps metadata_props (adding its own "onnx.infer" and
    # "onnx.quant.pre_process"); copying the source's again does not rely on that.
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(
        {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    )
    props.update(
        precision="int8",
        quantization=json.dumps(_description("onnxruntime", "QDQ", sum(map(len, batches)))),
    )
    onnx.helper.set_model_props(proto, props)
    atomic_write_bytes(dst, proto.SerializeToString())
    return dst


def quantize_openvino_int8(src: Path, dst_xml: Path, calibration: torch.Tensor) -> Path:
    """Quantise the ONNX model `src` with NNCF (performance preset, every calibration image
    used: subset_size = N) and save OpenVINO IR `dst_xml` + ``.bin``; returns `dst_xml`.

    calibration: (N, C, H, W) float32. The metadata is kept (rt_info "framework") with
    ``precision`` and ``quantization`` added, as :func:`quantize_onnx_int8` does."""
    from .openvino_rt import ov_save, require_openvino

    ov, nncf = require_openvino(), require_nncf()
    meta = _source_metadata(src)
    # Batch 1 per item for a dynamic graph, so that subset_size counts images.
    items = [b.numpy() for b in _batches(calibration, meta, 1)]
    try:
        model = ov.Core().read_model(str(src))
        # NNCF draws its progress bar on stdout; stderr keeps stdout for results (--json).
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(
                model,
                nncf.Dataset(items),
                preset=nncf.QuantizationPreset.PERFORMANCE,
                subset_size=len(items),
            )
    except Exception as e:
        why = first_line(e, with_type=True)
        raise QuantizeError(
            f"NNCF could not quantise {src} to int8: {why}. Export float32 instead "
            f"(--precision fp32)."
        ) from e
    description = _description("nncf", "OpenVINO IR", sum(map(len, items)))
    return ov_save(quantized, dst_xml, {"precision": "int8", "quantization": description})


def _source_metadata(src: Path) -> dict[str, Any]:
    """The wae metadata of the ONNX file `src`; QuantizeError if it is not one."""
    try:
        return onnx_metadata(src)
    except Exception as e:
        why = first_line(e, with_type=True)
        raise QuantizeError(
            f"Cannot read {src} as an ONNX model ({why}); quantise a file written "
            f"by wae export (or wae.export.export_onnx)."
        ) from None


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over prepared batches."""

    def __init__(self, input_name: str, batches: Sequence[torch.Tensor]) -> None:
        self.input_name = input_name
        self._it: Iterator[torch.Tensor] = iter(batches)

    def get_next(self) -> dict[str, Any] | None:
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch.numpy()}


def _batches(
    calibration: torch.Tensor, meta: dict[str, Any], batch_size: int
) -> Iterator[torch.Tensor]:
    """`calibration` checked against the model's input contract, in batches of `batch_size`
    (the graph's own batch when static; a last partial batch is then dropped)."""
    shape = meta.get("input_shape")
    x = calibration
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise QuantizeError(
            f"Calibration images must be a non-empty (N, C, H, W) float32 tensor, got {got}."
        )
    if isinstance(shape, list) and len(shape) == 4 and list(x.shape[1:]) != list(shape[1:]):
        raise QuantizeError(
            f"Calibration images of shape {tuple(x.shape[1:])} do not match the model's input "
            f"{tuple(shape[1:])} (C, H, W): build them with the model's own preprocessing."
        )
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise QuantizeError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    static = isinstance(shape, list) and shape and isinstance(shape[0], int)
    step = int(shape[0]) if static else batch_size
    if static and x.shape[0] < step:
        raise QuantizeError(
            f"The model takes batches of exactly {step} images but only {x.shape[0]} "
            f"calibration images were given; give at least {step}."
        )
    x = x.detach().to("cpu", torch.float32).contiguous()
    stop = (x.shape[0] // step) * step if static else x.shape[0]
    for i in range(0, stop, step):
        yield x[i : i + step]


def _description(tool: str, fmt: str, n: int) -> dict[str, Any]:
    """The ``quantization`` metadata entry: how the int8 model was made."""
    from importlib.metadata import PackageNotFoundError, version

    dist = {"onnxruntime": "onnxruntime", "nncf": "nncf"}[tool]
    try:
        tool_version = version(dist)
    except PackageNotFoundError:
        tool_version = "unknown"
    per_channel = True  # ORT: per output channel (asked); NNCF: its default for weights
    return {
        "tool": f"{tool} {tool_version}",
        "format": fmt,
        "per_channel": per_channel,
        "weight_bits": 7 if tool == "onnxruntime" else 8,
        "weights": "int8",
        "activations": "uint8" if tool == "onnxruntime" else "int8",
        "calibration": "minmax" if tool == "onnxruntime" else "nncf default",
        "calibration_images": int(n),
    }
