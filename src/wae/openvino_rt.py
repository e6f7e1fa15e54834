"""Running wae's models with OpenVINO (the optional extra ``wae[openvino]``).

OpenVINO reads the ONNX file :func:`wae.export.export_onnx` writes as it is, or the IR
(``model.xml`` + ``model.bin``) that ``wae export --format openvino`` writes::

    import openvino as ov
    compiled = ov.Core().compile_model("model.xml", "CPU")   # or "model.onnx"
    logits = compiled(images)[0]                               # (N, C, H, W) float32 in [0, 1]

Precision: OpenVINO's own default on CPUs with AMX/AVX512-BF16 is bf16, silently; here the
precision is always explicit (``INFERENCE_PRECISION_HINT`` f32 unless bf16 is asked), and
:func:`ov_precision` reads back what the plugin actually chose (a CPU without bf16 support
reports f32 even when bf16 was asked). The quantised layers of an int8 IR (NNCF) run in int8
whatever the hint; the hint sets the precision of the rest.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import first_line
from .export import ExportError, decode_metadata
from .runtime import usable_cores

__all__ = [
    "PRECISIONS",
    "ov_compile",
    "ov_metadata",
    "ov_precision",
    "ov_run",
    "ov_save",
    "replace_ir",
    "require_openvino",
]

#: Precision name -> the INFERENCE_PRECISION_HINT it compiles with. An int8 model (QDQ ONNX
#: or an NNCF IR) carries its int8 layers itself; its float layers stay at f32.
PRECISIONS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}
# OpenVINO element type names -> wae's precision names.
_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8"}


def require_openvino() -> Any:
    """The ``openvino`` module; :class:`ExportError` with what to install when it is missing."""
    try:
        import openvino
    except ImportError as e:
        raise ExportError(
            f"OpenVINO is not installed ({e}); install it with pip install 'wae[openvino]' "
            f"(openvino and nncf), or use ONNX Runtime (the default of wae export and wae "
            f"bench)."
        ) from None
    return openvino


def ov_compile(
    model: str | os.PathLike[str] | Any,
    *,
    threads: int | None = None,
    precision: str = "fp32",
    device: str = "CPU",
) -> Any:
    """Compile `model` (an ONNX path, an IR ``.xml`` path or an ``ov.Model``) for `device`.

    precision: "fp32" or "int8" (INFERENCE_PRECISION_HINT f32: an int8 model's quantised
    layers run in int8 anyway) or "bf16". threads: INFERENCE_NUM_THREADS (default: all usable
    cores). One stream, latency hint: one request at a time, as wae's benchmarks time it.
    """
    ov = require_openvino()
    if precision not in PRECISIONS:
        raise ExportError(
            f"precision must be one of {', '.join(PRECISIONS)} for OpenVINO, got {precision!r}."
        )
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ExportError(f"threads must be an integer >= 1, got {threads!r}.")
    core = ov.Core()
    try:
        if isinstance(model, (str, os.PathLike)):
            model = core.read_model(str(model))
        config = {
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
            "INFERENCE_NUM_THREADS": int(threads or usable_cores()),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        return core.compile_model(model, device, config)
    except Exception as e:  # OpenVINO raises bare RuntimeErrors with multi-line C++ traces
        why = first_line(e, with_type=True)
        raise ExportError(
            f"OpenVINO could not compile the model for {device} at {precision}: {why}"
        ) from e


def ov_precision(compiled: Any) -> str:
    """The precision `compiled` actually runs at: "int8" when its runtime graph executes
    int8 layers (an NNCF IR or a QDQ ONNX), else the plugin's float precision ("fp32",
    "bf16", "fp16"), which may differ from the hint asked for."""
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "runtimePrecision" in info and info["runtimePrecision"].astype(str) in ("i8", "u8"):
            if op.get_type_name() not in ("Input", "Parameter", "Reorder", "Output", "Result"):
                return "int8"
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = hint.to_string() if hasattr(hint, "to_string") else str(hint)
    return _NAMES.get(name, name)


def ov_run(compiled: Any, x: torch.Tensor) -> torch.Tensor:
    """Run `compiled` on x (N, C, H, W) float32 -> logits (N, K) as a CPU float32 tensor."""
    arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
    out = compiled(arr)[compiled.outputs[0]]
    return torch.from_numpy(out.copy()).float()


def ov_save(
    model: str | os.PathLike[str] | Any,
    dst_xml: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save `model` (an ONNX path or an ``ov.Model``) as OpenVINO IR `dst_xml` + its ``.bin``.

    Weights stay float32 (``compress_to_fp16=False``: OpenVINO's default would halve them to
    fp16 and move the logits). The ONNX file's metadata_props, which OpenVINO keeps under
    rt_info "framework", stay there, updated with `metadata`. Both files are written in a
    temporary folder next to `dst_xml`, then renamed over it (.bin first, then .xml)."""
    ov = require_openvino()
    dst = Path(dst_xml)
    if isinstance(model, (str, os.PathLike)):
        model = ov.Core().read_model(str(model))
    for key, value in (metadata or {}).items():
        model.set_rt_info(
            value if isinstance(value, str) else json.dumps(value), ["framework", key]
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.") as tmp:
        xml = Path(tmp) / dst.name
        try:
            ov.save_model(model, str(xml), compress_to_fp16=False)
        except Exception as e:
            why = first_line(e, with_type=True)
            raise ExportError(f"OpenVINO could not save {dst}: {why}") from e
        replace_ir(xml, dst)
    return dst


def replace_ir(src_xml: Path, dst_xml: Path) -> None:
    """Rename the IR `src_xml` and its .bin over `dst_xml`: the .bin first, so that the .xml
    found at `dst_xml` never points at weights from another save."""
    os.replace(src_xml.with_suffix(".bin"), dst_xml.with_suffix(".bin"))
    os.replace(src_xml, dst_xml)


def ov_metadata(model: str | os.PathLike[str] | Any) -> dict[str, Any]:
    """The wae metadata of an IR (or ONNX) path or ``ov.Model``: rt_info "framework", JSON
    values decoded (the same keys as :func:`wae.export.onnx_metadata`)."""
    ov = require_openvino()
    if isinstance(model, (str, os.PathLike)):
        model = ov.Core().read_model(str(model))
    if not model.has_rt_info(["framework"]):
        return {}
    framework = model.get_rt_info()["framework"]
    framework = framework.astype(dict) if hasattr(framework, "astype") else framework
    return decode_metadata(
        {k: v.astype(str) if hasattr(v, "astype") else str(v) for k, v in framework.items()}
    )
