"""Export a trained checkpoint (or an untrained registered model) to ONNX, then check that ONNX
Runtime reproduces PyTorch's logits before calling it done: the service behind `wae export`.

    summary = export_checkpoint("runs/fm/final")                  # -> runs/fm/final/model.onnx
    summary = export_checkpoint(model_name="wae_vgg16", output="wae_vgg16.onnx")
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_model
from .data.transforms import check_input_size
from .errors import WAEError
from .export import ExportError, check_export_options, check_parity, export_onnx, onnx_session
from .models import create_model, is_model, list_models, model_cfg
from .outputs import check_output_file

__all__ = ["export_checkpoint"]


def export_checkpoint(
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    model_name: str | None = None,
    output: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
    in_chans: int | None = None,
    opset: int = 17,
    dynamic_batch: bool = True,
    batch_size: int = 1,
    optimize: bool = False,
    check_batch: int = 3,
    atol: float = 1e-4,
    allow_code: Collection[str] = (),
) -> dict[str, Any]:
    """Export `checkpoint` (a `wae train` checkpoint directory) or the registered model
    `model_name` (untrained) to ONNX and check it; returns a summary dict.

    The file goes to `output` (default: <checkpoint>/model.onnx, or <model_name>.onnx). Input
    (N, C, H, W): H = W = `input_size`, C = `in_chans`, each defaulting to the checkpoint's or
    model's own; N symbolic when `dynamic_batch`, else `batch_size`. `optimize` exports
    :func:`~wae.optimize_for_inference`'s rewrite (parity still against the original model).
    The file is written under a temporary name and only renamed to `output` once ONNX Runtime's
    logits on a seeded batch of `check_batch` (or `batch_size`) images are within `atol` of
    PyTorch's; otherwise ExportError is raised and an earlier file at `output` is kept.
    Every option and `output` are checked before the model is loaded. `allow_code`: your own
    backbone factories the checkpoint may be built with (see :func:`wae.checkpoint.load_model`).
    """
    t0 = time.perf_counter()
    if (checkpoint is None) == (model_name is None):
        raise WAEError("Export either a checkpoint or a registered model name (exactly one).")
    check_export_options(
        opset=opset, batch_size=batch_size, in_chans=in_chans, atol=atol, check_batch=check_batch
    )
    if input_size is not None:
        check_input_size(input_size, "input_size (--input-size)")
    if num_classes is not None and not (type(num_classes) is int and num_classes >= 1):
        raise ExportError(f"num_classes (--num-classes) must be >= 1, got {num_classes!r}.")
    out, (model, meta, origin) = _load(
        checkpoint, model_name, output, num_classes, input_size, allow_code
    )
    h, w = _size(input_size, model, meta)
    chans = int(in_chans if in_chans is not None else _default_chans(model, meta))
    metadata = {k: v for k, v in meta.items() if k not in ("input_size", "in_chans")}
    metadata.update(origin)
    target = model
    if optimize:
        from .optimize import optimize_for_inference

        target = optimize_for_inference(model, fuse_mkldnn=False, channels_last=False)
        metadata["optimized"] = "optimize_for_inference(fuse_mkldnn=False)"
    # A batch size the export did not trace with (2), so a batch baked into the graph shows.
    n = check_batch if dynamic_batch else batch_size
    x = torch.rand(n, chans, h, w, generator=torch.Generator().manual_seed(0))
    options = dict(dynamic_batch=dynamic_batch, opset=opset, batch_size=batch_size)
    diff = _export_checked(model, target, out, x, atol, metadata=metadata, **options)
    return {
        "path": str(out),
        "format": "onnx",
        "opset": opset,
        "size_mb": round(out.stat().st_size / 2**20, 2),
        "input_shape": ["batch" if dynamic_batch else batch_size, chans, h, w],
        "parity_max_abs_diff": diff,
        "parity_batch": n,
        "atol": atol,
        "seconds": round(time.perf_counter() - t0, 2),
        **origin,
    }


def _load(
    checkpoint: str | os.PathLike[str] | None,
    model_name: str | None,
    output: str | os.PathLike[str] | None,
    num_classes: int | None,
    input_size: int | None,
    allow_code: Collection[str] = (),
) -> tuple[Path, tuple[nn.Module, dict[str, Any], dict[str, Any]]]:
    """(the output path, checked before anything is loaded; (model, metadata, origin))."""
    if checkpoint is not None:
        out = Path(output) if output is not None else Path(checkpoint) / "model.onnx"
        check_output_file(out, "The ONNX file (--output)")
        return out, _from_checkpoint(Path(checkpoint), num_classes, allow_code)
    out = Path(output) if output is not None else Path(f"{model_name}.onnx")
    check_output_file(out, "The ONNX file (--output)")
    return out, _from_registry(str(model_name), num_classes, input_size)


def _export_checked(
    model: nn.Module,
    target: nn.Module,
    out: Path,
    x: torch.Tensor,
    atol: float,
    **export_kwargs: Any,
) -> float:
    """Export `target` next to `out` under a temporary name, check it against `model` on `x`
    (N, C, H, W), then rename it to `out`; returns the max abs logit difference. An
    unfaithful (or failed) export is deleted and never replaces an earlier file at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".checking")
    os.close(fd)
    tmp = Path(name)
    try:
        export_onnx(target, tmp, tuple(x.shape[-2:]), in_chans=x.shape[1], **export_kwargs)
        diff = check_parity(model, onnx_session(tmp), x, atol=atol)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; removed on any failure
    return diff


def _default_chans(model: nn.Module, meta: dict[str, Any]) -> int:
    return int(meta.get("in_chans") or getattr(model, "in_chans", 3))


def _from_checkpoint(
    directory: Path, num_classes: int | None, allow_code: Collection[str] = ()
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(model in eval mode, its metadata with input_size/in_chans filled in, its origin)."""
    model, doc = load_model(directory, num_classes=num_classes, allow_code=allow_code)
    meta = dict(doc.get("meta") or {})
    spec = doc.get("spec", {})
    defaults: dict[str, Any] = {}
    if spec.get("builder") == "registry" and is_model(spec.get("name", "")):
        defaults = model_cfg(spec["name"])
    for key in ("input_size", "in_chans"):
        if meta.get(key) is None:
            meta[key] = spec.get("kwargs", {}).get(key, defaults.get(key))
    return model, meta, {"weights": f"checkpoint {directory}"}


def _from_registry(
    name: str, num_classes: int | None, input_size: int | None
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    if not is_model(name):
        raise WAEError(f"Unknown model {name!r}. Registered models: {', '.join(list_models())}.")
    cfg = model_cfg(name)
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if input_size is not None and name.startswith("wae_"):
        kwargs["input_size"] = input_size  # the VGG heads are sized for it
    model = create_model(name, **kwargs).eval()
    meta = {"input_size": cfg["input_size"], "in_chans": cfg["in_chans"]}
    return model, meta, {"weights": "untrained (random initialisation)", "model_name": name}


def _size(input_size: int | None, model: nn.Module, meta: dict[str, Any]) -> tuple[int, int]:
    size = input_size if input_size is not None else meta.get("input_size")
    size = size if size is not None else getattr(model, "input_size", None)
    if size is None:
        raise WAEError("The input size is not recorded in the checkpoint: pass --input-size.")
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    return int(size), int(size)
