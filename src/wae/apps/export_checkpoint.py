"""Export a trained checkpoint (or an untrained registered model) to ONNX or OpenVINO IR, in
float32 or int8, and check the file before calling it done: the service behind `wae export`.

    summary = export_checkpoint("runs/fm/final")                  # -> runs/fm/final/model.onnx
    summary = export_checkpoint(model_name="wae_vgg16", output="wae_vgg16.onnx")
    summary = export_checkpoint("runs/fm/final", format="openvino")   # -> .../model.xml + .bin
    summary = export_checkpoint("runs/fm/final", precision="int8", calibration="fashion-mnist")

Checks. float32: ONNX Runtime's logits on a seeded batch within `atol` of PyTorch's (and, for
OpenVINO IR, OpenVINO's at fp32 too). int8 (ONNX QDQ by ONNX Runtime, or IR by NNCF), both
calibrated on train images preprocessed as the checkpoint's model sees them: its top-1 class
agrees with the float32 PyTorch model's on at least `min_agreement` of held-out test images.
A file that fails its check never replaces an earlier one at the output.

Loading the IR with OpenVINO (which also reads the ONNX file directly)::

    import openvino as ov
    compiled = ov.Core().compile_model("model.xml", "CPU")       # or "model.onnx"
    logits = compiled(images)[0]        # images: (N, C, H, W) float32 in [0, 1], no mean/std
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import CheckpointMeta, load_model
from ..data.transforms import check_input_size
from ..errors import WAEError
from ..export import (
    ExportError,
    check_export_options,
    check_parity,
    export_onnx,
    onnx_session,
    ort_run,
)
from ..models import create_model, is_model, list_models, model_cfg
from ..outputs import check_output_file

__all__ = ["FORMATS", "PRECISIONS", "export_checkpoint"]

FORMATS = ("onnx", "openvino")
PRECISIONS = ("fp32", "int8")
_SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}


def export_checkpoint(
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    model_name: str | None = None,
    output: str | os.PathLike[str] | None = None,
    format: str = "onnx",
    precision: str = "fp32",
    calibration: str | None = None,
    data_dir: str | None = None,
    calibration_size: int = 512,
    check_size: int = 1000,
    min_agreement: float = 0.99,
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
    `model_name` (untrained) to ONNX or OpenVINO IR (`format`) and check it; returns a summary.

    The file goes to `output` (default: <checkpoint>/model.onnx, model.xml for OpenVINO,
    model_int8.onnx / model_int8.xml at int8; <model_name>.onnx / .xml). Input (N, C, H, W):
    H = W = `input_size`, C = `in_chans`, each defaulting to the checkpoint's or model's own;
    N symbolic when `dynamic_batch`, else `batch_size`. `optimize` exports
    :func:`~wae.optimize_for_inference`'s rewrite (parity still against the original model).
    The float32 ONNX export must match PyTorch's logits within `atol` on a seeded batch of
    `check_batch` (or `batch_size`) images under ONNX Runtime, and an IR under OpenVINO too.
    `precision` "int8" (checkpoints only) needs `calibration`, a dataset as ``wae eval
    --data`` takes (in `data_dir`): `calibration_size` seeded train images calibrate it, and
    its top-1 must agree with PyTorch's on >= `min_agreement` of `check_size` test images.
    Everything is written under temporary names and renamed to `output` once checked; on
    failure ExportError is raised and an earlier file at `output` is kept. Every option and
    `output` are checked before the model is loaded. `allow_code`: your own backbone
    factories the checkpoint may be built with (see :func:`wae.checkpoint.load_model`).
    """
    t0 = time.perf_counter()
    if (checkpoint is None) == (model_name is None):
        raise WAEError("Export either a checkpoint or a registered model name (exactly one).")
    check_export_options(
        opset=opset, batch_size=batch_size, in_chans=in_chans, atol=atol, check_batch=check_batch
    )
    _check_deploy_options(
        format, precision, calibration, model_name, calibration_size, check_size, min_agreement
    )
    _check_model_options(input_size, num_classes)
    out = _output(checkpoint, model_name, output, format, precision)
    model, meta, origin = _load(checkpoint, model_name, num_classes, input_size, allow_code)
    chans, h, w = _input_shape(input_size, in_chans, model, meta)
    target, metadata = _target(model, meta, origin, optimize)
    data = None  # int8: the calibration and check images, before any export (fails fast)
    if checkpoint is not None and precision == "int8":
        data = _int8_data(checkpoint, str(calibration), data_dir, calibration_size, check_size)
    # A batch size the export did not trace with (2), so a batch baked into the graph shows.
    n = check_batch if dynamic_batch else batch_size
    x = torch.rand(n, chans, h, w, generator=torch.Generator().manual_seed(0))
    options = dict(dynamic_batch=dynamic_batch, opset=opset, batch_size=batch_size)
    size, diff, checks = _export_staged(
        model, target, out, x, atol, format, data, min_agreement, metadata=metadata, **options
    )
    return {
        "path": str(out),
        "format": format,
        "precision": precision,
        "opset": opset,
        "size_mb": round(size / 2**20, 2),
        "input_shape": ["batch" if dynamic_batch else batch_size, chans, h, w],
        "parity_max_abs_diff": diff,
        "parity_batch": n,
        "atol": atol,
        **checks,
        "seconds": round(time.perf_counter() - t0, 2),
        **origin,
    }


def _check_model_options(input_size: int | None, num_classes: int | None) -> None:
    """Refuse, before anything is loaded, an impossible input size or number of classes."""
    if input_size is not None:
        check_input_size(input_size, "input_size (--input-size)")
    if num_classes is not None and not (type(num_classes) is int and num_classes >= 1):
        raise ExportError(f"num_classes (--num-classes) must be >= 1, got {num_classes!r}.")


def _target(
    model: nn.Module, meta: dict[str, Any], origin: dict[str, Any], optimize: bool
) -> tuple[nn.Module, dict[str, Any]]:
    """(the module to export: `model`, or its optimize_for_inference rewrite; the ONNX
    metadata: the checkpoint's, less the input size and channels, plus the origin)."""
    metadata = {k: v for k, v in meta.items() if k not in ("input_size", "in_chans")}
    metadata.update(origin, precision="fp32")
    if not optimize:
        return model, metadata
    from ..optimize import optimize_for_inference

    target = optimize_for_inference(model, fuse_mkldnn=False, channels_last=False)
    metadata["optimized"] = "optimize_for_inference(fuse_mkldnn=False)"
    return target, metadata


def _export_staged(
    model: nn.Module,
    target: nn.Module,
    out: Path,
    x: torch.Tensor,
    atol: float,
    format: str,
    data: _Int8Data | None,
    min_agreement: float,
    **options: Any,
) -> tuple[int, float, dict[str, Any]]:
    """Export `target` under a temporary name, check it (float32 parity against `model` on
    `x`; OpenVINO's too for IR; the int8 agreement with `data`) and only then rename it to
    `out`. Returns (bytes written, max abs logit difference, the checks' figures)."""
    with _staging(out) as tmp:
        reference = tmp / "float32" / "model.onnx"  # its own folder: never out's name
        diff = _export_checked(model, target, reference, x, atol, **options)
        staged, checks = tmp / out.name, {"parity_runtime": "ONNX Runtime"}
        if data is not None:
            static = None if options["dynamic_batch"] else options["batch_size"]
            checks |= _int8(model, reference, staged, format, data, min_agreement, static, out)
        elif format == "openvino":
            checks = _openvino_fp32(model, reference, staged, x, atol)
            checks["onnx_parity_max_abs_diff"], diff = diff, checks.pop("parity_max_abs_diff")
        else:
            staged = reference
        return _place(staged, out), diff, checks


def _check_deploy_options(
    format: str,
    precision: str,
    calibration: str | None,
    model_name: str | None,
    calibration_size: int,
    check_size: int,
    min_agreement: float,
) -> None:
    """Refuse, before anything is loaded, a format or precision that does not exist, int8
    without calibration data (or for an untrained model), calibration data at fp32, sizes
    below one image, an agreement floor outside [0, 1], and a missing OpenVINO or NNCF."""
    if format not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}.")
    if precision not in PRECISIONS:
        raise ExportError(f"--precision must be fp32 or int8, got {precision!r}.")
    if precision == "int8" and model_name is not None:
        raise ExportError(
            "--precision int8 needs a trained checkpoint (--checkpoint): an untrained model "
            "(--model) has no data to calibrate on, and its agreement would mean nothing. "
            "Export it in fp32."
        )
    if precision == "int8" and calibration is None:
        raise ExportError(
            "--precision int8 needs --calibration DATA: the dataset (name or folder, as wae "
            "eval --data takes) whose train images set the int8 ranges and whose test images "
            "check it, e.g. --calibration fashion-mnist."
        )
    if precision != "int8" and calibration is not None:
        raise ExportError(
            f"--calibration only applies to --precision int8; at {precision} nothing is "
            f"calibrated. Add --precision int8, or drop --calibration."
        )
    for flag, v in (("--calibration-size", calibration_size), ("--check-size", check_size)):
        if not (type(v) is int and v >= 1):
            raise ExportError(f"{flag} must be a positive number of images, got {v!r}.")
    if not (isinstance(min_agreement, (int, float)) and 0 <= min_agreement <= 1):
        raise ExportError(
            f"--min-agreement must be a fraction from 0 to 1 (e.g. 0.99), got {min_agreement!r}."
        )
    if format == "openvino":
        from ..openvino_rt import require_openvino

        require_openvino()
        if precision == "int8":
            from ..quantize import require_nncf

            require_nncf()


def _output(
    checkpoint: str | os.PathLike[str] | None,
    model_name: str | None,
    output: str | os.PathLike[str] | None,
    format: str,
    precision: str,
) -> Path:
    """The output path (default by source, format and precision), checked writable."""
    suffix = _SUFFIX[format]
    stem = "model" if checkpoint is not None else str(model_name)
    stem += "_int8" if precision == "int8" else ""
    if output is not None:
        out = Path(output)
    else:
        out = (Path(checkpoint) if checkpoint is not None else Path()) / f"{stem}{suffix}"
    what = "The ONNX file (--output)" if format == "onnx" else "The OpenVINO IR (--output)"
    if format == "openvino" and out.suffix != ".xml":
        raise ExportError(
            f"{what} {out} must end in .xml: OpenVINO IR is an .xml file with its weights in "
            f"the .bin beside it (e.g. --output {out.with_suffix('.xml')})."
        )
    check_output_file(out, what)
    if format == "openvino":
        check_output_file(out.with_suffix(".bin"), "The OpenVINO weights file (.bin)")
    return out


def _load(
    checkpoint: str | os.PathLike[str] | None,
    model_name: str | None,
    num_classes: int | None,
    input_size: int | None,
    allow_code: Collection[str] = (),
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(model, metadata, origin) of the checkpoint or the registered model."""
    if checkpoint is not None:
        return _from_checkpoint(Path(checkpoint), num_classes, allow_code)
    return _from_registry(str(model_name), num_classes, input_size)


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A temporary folder next to `out` (same file system: the final renames are atomic),
    removed with whatever is left in it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".checking"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _place(staged: Path, out: Path) -> int:
    """Rename the checked file(s) to `out` (an IR: .bin and .xml); total bytes."""
    if out.suffix != ".xml":
        os.replace(staged, out)
        return out.stat().st_size
    from ..openvino_rt import replace_ir

    replace_ir(staged, out)
    return out.stat().st_size + out.with_suffix(".bin").stat().st_size


def _export_checked(
    model: nn.Module,
    target: nn.Module,
    path: Path,
    x: torch.Tensor,
    atol: float,
    **export_kwargs: Any,
) -> float:
    """Export `target` to `path` (in the staging folder: nothing of a failed check is kept)
    and check it against `model` on `x` (N, C, H, W); returns the max abs logit difference."""
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(target, path, tuple(x.shape[-2:]), in_chans=x.shape[1], **export_kwargs)
    return check_parity(model, onnx_session(path), x, atol=atol)


def _openvino_fp32(
    model: nn.Module, onnx_path: Path, xml: Path, x: torch.Tensor, atol: float
) -> dict[str, Any]:
    """Convert the checked ONNX file to IR `xml` (+ .bin) and check OpenVINO's fp32 logits
    on `x` (N, C, H, W) against PyTorch's within `atol`."""
    from ..openvino_rt import ov_compile, ov_precision, ov_run, ov_save

    ov_save(onnx_path, xml)
    compiled = ov_compile(xml, precision="fp32")
    diff = check_parity(model, compiled, x, atol=atol, run=ov_run, runtime="OpenVINO")
    return {
        "parity_max_abs_diff": diff,
        "parity_runtime": "OpenVINO",
        "openvino_precision": ov_precision(compiled),
    }


@dataclass
class _Int8Data:
    """Calibration images (n, C, H, W), the held-out test images and the dataset's name."""

    calibration: torch.Tensor
    check: Any  # a seeded, class-balanced Subset of the test split: (image, label) items
    name: str


def _int8_data(
    checkpoint: str | os.PathLike[str], data: str, data_dir: str | None, n: int, check_size: int
) -> _Int8Data:
    """`n` seeded train images (no augmentation) and `check_size` seeded, class-balanced test
    images of `data` (all when it has fewer), with the checkpoint's own preprocessing;
    refused if its classes are not the checkpoint's."""
    from torch.utils.data import Subset

    from ..checkpoint import read_checkpoint_meta
    from ..data.splits import balanced_subset
    from ..quantize import calibration_images
    from ..train.eval_checkpoint import checked_dataset

    checkpoint = Path(checkpoint)
    doc = read_checkpoint_meta(checkpoint)
    kw: dict[str, Any] = dict(data=data, data_dir=data_dir)
    train, name = checked_dataset(checkpoint, doc, split="train", **kw)
    test, _ = checked_dataset(checkpoint, doc, split="test", **kw)
    check = Subset(test, balanced_subset(test.targets, check_size, seed=0).tolist())
    return _Int8Data(calibration_images(train, n, seed=0), check, name)


def _int8(
    model: nn.Module,
    reference: Path,
    staged: Path,
    format: str,
    data: _Int8Data,
    min_agreement: float,
    static_batch: int | None,
    out: Path,
) -> dict[str, Any]:
    """Quantise `reference` (the checked float32 ONNX) to `staged` and measure it on the
    held-out images; raise unless its top-1 agrees with `model`'s on >= `min_agreement`."""
    from ..quantize import quantize_onnx_int8, quantize_openvino_int8, top1_agreement

    run: Callable[[torch.Tensor], torch.Tensor]
    if format == "onnx":
        quantize_onnx_int8(reference, staged, data.calibration)
        run = partial(ort_run, onnx_session(staged))
    else:
        from ..openvino_rt import ov_compile, ov_run

        quantize_openvino_int8(reference, staged, data.calibration)
        run = partial(ov_run, ov_compile(staged, precision="int8"))
    ref, got, labels = _logits(model, run, data.check, static_batch)
    agreement = top1_agreement(ref, got)
    figures = {
        "calibration_data": data.name,
        "calibration_split": "train",
        "calibration_images": int(data.calibration.shape[0]),
        "check_split": "test",
        "check_images": int(labels.numel()),
        "top1_agreement": agreement,
        "top1_int8": round(_accuracy(got, labels), 2),
        "top1_fp32": round(_accuracy(ref, labels), 2),
        "min_agreement": min_agreement,
    }
    if not agreement >= min_agreement:
        raise ExportError(_disagreement(figures, out))
    return figures


def _disagreement(f: dict[str, Any], out: Path) -> str:
    kept = f"; {out} was left as it was" if out.exists() else ""
    return (
        f"The int8 model's top-1 class agrees with the float32 model's on only "
        f"{f['top1_agreement']:.1%} of {f['check_images']} held-out {f['calibration_data']} "
        f"test images, below --min-agreement {f['min_agreement']:.1%} (top-1 accuracy int8 "
        f"{f['top1_int8']:.2f} % vs float32 {f['top1_fp32']:.2f} %), so it was not written"
        f"{kept}. Calibrate on more images (--calibration-size "
        f"{2 * f['calibration_images']}), or keep float32 (--precision fp32)."
    )


@torch.no_grad()
def _logits(
    model: nn.Module,
    run: Callable[[torch.Tensor], torch.Tensor],
    dataset: Any,
    static_batch: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(PyTorch logits (N, K), `run`'s logits (N, K), labels (N,)) over `dataset`. A graph
    with a static batch gets exactly that many images a call (the last batch zero-padded)."""
    from torch.utils.data import DataLoader

    batch = static_batch or 64
    refs, gots, labels = [], [], []
    for x, y in DataLoader(dataset, batch_size=batch, shuffle=False):
        k = len(x)
        padded = torch.cat([x, x.new_zeros(batch - k, *x.shape[1:])]) if static_batch else x
        refs.append(model(x).float().cpu())
        gots.append(run(padded)[:k])
        labels.append(y)
    return torch.cat(refs), torch.cat(gots), torch.cat(labels)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent of (N, K) logits against (N,) labels."""
    return 100.0 * float((logits.argmax(1) == labels).double().mean().item())


def _default_chans(model: nn.Module, meta: dict[str, Any]) -> int:
    return int(meta.get("in_chans") or getattr(model, "in_chans", 3))


def _input_shape(
    input_size: int | None, in_chans: int | None, model: nn.Module, meta: dict[str, Any]
) -> tuple[int, int, int]:
    """(C, H, W) of the export's input: the options', else the checkpoint's or model's."""
    h, w = _size(input_size, model, meta)
    return int(in_chans if in_chans is not None else _default_chans(model, meta)), h, w


def _from_checkpoint(
    directory: Path, num_classes: int | None, allow_code: Collection[str] = ()
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(model in eval mode, its metadata with input_size ((H, W)) and in_chans as
    :class:`~wae.checkpoint.CheckpointMeta` works them out, its origin)."""
    model, doc = load_model(directory, num_classes=num_classes, allow_code=allow_code)
    m = CheckpointMeta.from_doc(doc, directory)
    meta = {**m.meta, "input_size": m.input_hw, "in_chans": m.in_chans}
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
