"""Deployment: export a model's inference path to ONNX and run it with ONNX Runtime.

What is exported is ``model.forward`` in eval mode: for :class:`~wae.WAENet` the encoder, both
branches, both heads and the score average (s_L + s_c) / 2 (``forward`` never decodes); for
:class:`~wae.PlainNet` the optional half-size resize and the classifier.

Exporter choice: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). The
new dynamo exporter needs ``onnxscript``, which is not a dependency of this package; it is
also several times slower to export (seconds per small model, which matters in CI), and it
cannot honour opset 17 for the half-resolution baseline (ONNX ``Resize`` has no anti-aliasing
before opset 18, so it silently stays at 18). The TorchScript exporter has no symbolic for
anti-aliased bilinear resizing, nor for adaptive average pooling to a size that does not
divide the input (torchvision's VGG16 at 112x112 "pools" its 3x3 map up to 7x7), so
:func:`export_onnx` swaps such modules for an exact matrix form (out = A_h @ x @ A_w^T, the
matrices read off the module itself at the size it runs at), two ``MatMul`` at any opset.

The spatial size is fixed at export time (the VGG heads flatten the feature maps anyway);
only the batch dimension can be dynamic.

Metadata (``metadata_props``, all strings, JSON where structured). The input contract, what
a caller must feed the graph:

* ``input_name`` (``"input"``), ``input_shape`` (e.g. ``["batch", 3, 224, 224]``),
  ``dtype`` (``"float32"``);
* ``layout``: ``"NCHW"``;
* ``input_size``: ``[H, W]``; ``in_chans``: C;
* ``pixel_range``: ``[0, 1]``, the pixel scale the model was trained on (0-255 images are
  divided by 255, nothing else);
* ``normalization_in_graph``: ``true``: whatever normalisation the model needs is inside the
  graph (WAENet standardises I_L and I_H with fixed statistics; the plain baselines were
  trained on unnormalised pixels), so the caller applies no mean/std. ``mean``/``std``, when
  present, are the training data's statistics, recorded for information only;
* ``input_contract``: the above as one sentence, for a person reading the file (Netron).

Then ``output_name`` (``"logits"``), ``output_shape`` (``["batch", K]``), ``model`` (the
class), ``spec`` (how wae rebuilds it), ``producer``, ``opset``, and whatever the caller
passes in ``metadata`` (``mean``, ``std``, ``classes``, ...), which overrides any of the
above (e.g. ``{"normalization_in_graph": False}`` for a model that expects normalised input).

:func:`export_module` exports any module on any example inputs (e.g. one part of a WAENet,
for per-part timing) with the same exporter and stand-ins; it records no input contract.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data.transforms import check_input_size
from .errors import WAEError, first_line
from .outputs import check_output_file
from .runtime import usable_cores

__all__ = [
    "ExportError",
    "MatrixResize",
    "check_export_options",
    "check_parity",
    "decode_metadata",
    "export_module",
    "export_onnx",
    "onnx_metadata",
    "onnx_session",
    "opset_range",
    "ort_run",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: Default parity tolerance (max abs difference of the logits, float32).
PARITY_ATOL = 1e-4


class ExportError(WAEError, RuntimeError):
    """An export that failed or whose ONNX model disagrees with PyTorch."""


# --------------------------------------------------------------------------------------------
# Export-friendly stand-ins
# --------------------------------------------------------------------------------------------


class MatrixResize(nn.Module):
    """A fixed-size, separable linear resize (or adaptive average pooling) as two products:
    (N, C, H, W) -> A_h (h, H) @ x @ A_w^T (W, w) -> (N, C, h, w).

    Built from any resize module that is linear and separable (bilinear, anti-aliased or not)
    by resizing identity images, so it reproduces that module exactly (to float rounding) at
    the one input size it was built for.
    """

    def __init__(self, resize: nn.Module, size: Sequence[int]) -> None:
        super().__init__()
        height, width = (int(s) for s in size)
        k = 8  # width of the constant axis of the probes (1 would hit a degenerate kernel)
        with torch.no_grad():
            # Probe i is basis row i, constant along the other axis: resizing it gives column
            # i of A_h times the other axis' row sums (1 for a normalised filter; the exact
            # check in _exportable catches any filter for which that does not hold).
            eye_h, eye_w = torch.eye(height), torch.eye(width)
            rows = resize(eye_h[:, None, :, None].expand(height, 1, height, k).contiguous())
            cols = resize(eye_w[:, None, None, :].expand(width, 1, k, width).contiguous())
        self.register_buffer("a_h", rows[:, 0, :, 0].t().contiguous())  # (h, H)
        self.register_buffer("a_w_t", cols[:, 0, 0, :].contiguous())  # (W, w)
        self.in_size = (height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.a_h, x), self.a_w_t)


def _needs_matrix(m: nn.Module, size: tuple[int, int]) -> bool:
    """Modules the TorchScript exporter cannot export at this input size (H, W)."""
    from .models.plain import HalfResize

    if isinstance(m, HalfResize):
        return True  # anti-aliased bilinear: no ONNX symbolic before opset 18, none at all here
    if isinstance(m, nn.AdaptiveAvgPool2d):
        # e.g. torchvision VGG16 at 112x112: a 3x3 map "pooled" up to 7x7.
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * 2
        return any(o is not None and s % o for s, o in zip(size, out, strict=True))
    return False


def _exportable(model: nn.Module, args: tuple[torch.Tensor, ...]) -> nn.Module:
    """`model` with every module the exporter cannot handle (see _needs_matrix) replaced by an
    exact MatrixResize for the size it sees on `model(*args)`.

    Only the modules on the path to a replaced one are copied (shallowly); every other module,
    and every weight, is shared with `model`, so this costs no memory for VGG16-sized nets.
    """
    from .models.plain import HalfResize

    candidates = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, (HalfResize, nn.AdaptiveAvgPool2d))
    }
    seen: dict[str, tuple[int, int]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
            size = (int(args[0].shape[-2]), int(args[0].shape[-1]))
            if seen.setdefault(name, size) != size:
                raise ExportError(f"{name!r} runs at two input sizes; cannot export it.")

        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in candidates.items()]
    try:
        with torch.no_grad():
            model(*args)
    finally:
        for h in handles:
            h.remove()
    targets = [n for n in candidates if n in seen and _needs_matrix(candidates[n], seen[n])]
    if not targets:
        return model
    root = copy.copy(model)
    root._modules = dict(model._modules)
    for name in targets:
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            child = copy.copy(parent._modules[part])
            child._modules = dict(child._modules)
            parent._modules[part] = child
            parent = child
        original = parent._modules[leaf]
        device = args[0].device
        matrix = MatrixResize(original, seen[name]).to(device)
        probe = torch.rand(1, 2, *seen[name], device=device)
        with torch.no_grad():
            err = (matrix(probe) - original(probe)).abs().max().item()
        if err > 1e-5:
            raise ExportError(f"The matrix form of {name!r} differs from it by {err:.2e}.")
        parent._modules[leaf] = matrix
    return root


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def opset_range() -> tuple[int, int]:
    """The ONNX opsets this torch's TorchScript exporter writes (7 to 23 for torch 2.9)."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MIN_OPSET), int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):  # a private module: fall back to a safe range
        return 7, 20


def _positive_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def check_export_options(
    *,
    opset: int = 17,
    batch_size: int = 1,
    in_chans: int | None = None,
    atol: float | None = None,
    check_batch: int | None = None,
) -> None:
    """Refuse settings that would write a useless model or switch the parity check off,
    before anything is traced: an opset this torch cannot write, a static batch of 0 images
    (input shape [0, C, H, W]), no channels, a tolerance that cannot fail (nan, inf, < 0), a
    parity check on no images. Raises :class:`ExportError` naming the option."""
    lo, hi = opset_range()
    bad = []
    if not (isinstance(opset, int) and not isinstance(opset, bool) and lo <= opset <= hi):
        bad.append(f"opset (--opset) must be an ONNX opset from {lo} to {hi}, got {opset!r}")
    if not _positive_int(batch_size):
        bad.append(f"batch_size (--batch-size) must be an integer >= 1, got {batch_size!r}")
    if in_chans is not None and not _positive_int(in_chans):
        bad.append(f"in_chans (--in-chans) must be an integer >= 1, got {in_chans!r}")
    if check_batch is not None and not _positive_int(check_batch):
        bad.append(
            f"check_batch (--check-batch) must be an integer >= 1, got {check_batch!r}: the "
            f"parity check needs images to compare"
        )
    if atol is not None and not (
        isinstance(atol, (int, float)) and math.isfinite(atol) and atol >= 0
    ):
        bad.append(
            f"atol (--atol) must be a finite number >= 0, got {atol!r}: with it the parity "
            f"check could never fail"
        )
    if bad:
        raise ExportError("; ".join(bad) + ".")


def _check_chans(model: nn.Module, in_chans: int) -> None:
    """The channels asked for must be those the model was built for."""
    built = getattr(model, "in_chans", None)
    if isinstance(built, int) and built != in_chans:
        raise ExportError(
            f"{type(model).__name__} was built for {built}-channel images, but in_chans="
            f"{in_chans} was asked. Pass in_chans={built} (wae export: --in-chans {built}, or "
            f"leave it out)."
        )


def _meta_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _device_of(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_size: int | Sequence[int],
    *,
    in_chans: int = 3,
    dynamic_batch: bool = True,
    opset: int = 17,
    metadata: Mapping[str, Any] | None = None,
    batch_size: int = 1,
) -> Path:
    """Export `model`'s inference path (eval mode) to an ONNX file; returns its path.

    The graph takes ``input`` (N, in_chans, H, W) float32 pixels in [0, 1] and returns
    ``logits`` (N, K); N is symbolic ("batch") when `dynamic_batch`, else `batch_size`. The
    input contract and `metadata` are stored as ``metadata_props`` (module docstring; strings
    kept, anything else JSON-encoded). The file is written atomically (temporary name + rename).
    Every argument is checked before tracing (:func:`check_export_options`; `input_size` an
    int or (H, W) from 8 to 4096; `in_chans` the model's own; `path` a writable file name).
    """
    check_export_options(opset=opset, batch_size=batch_size, in_chans=in_chans)
    h, w = check_input_size(input_size, "input_size (--input-size)")
    _check_chans(model, in_chans)
    check_output_file(path, "The ONNX file (--output)")
    # Batch 2, not 1: a tracer seeing batch 1 can mistake the batch axis for a broadcast one.
    n = 2 if dynamic_batch else batch_size
    dummy = torch.rand(n, in_chans, h, w, device=_device_of(model))
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    proto = _to_onnx(model, (dummy,), [INPUT_NAME], [OUTPUT_NAME], dynamic, opset)
    num_classes = proto.graph.output[0].type.tensor_type.shape.dim[-1].dim_value or None
    batch: str | int = "batch" if dynamic_batch else n
    props: dict[str, Any] = {
        "input_name": INPUT_NAME,
        "input_shape": [batch, in_chans, h, w],
        "dtype": "float32",
        "layout": "NCHW",
        "input_size": [h, w],
        "in_chans": in_chans,
        "pixel_range": [0, 1],
        "normalization_in_graph": True,  # wae trains every model on unnormalised pixels
        "output_name": OUTPUT_NAME,
        "output_shape": [batch, num_classes],
    }
    spec = getattr(model, "wae_spec", None)
    if spec is not None:
        props["spec"] = spec
    props.update(metadata or {})
    props.setdefault("input_contract", _contract(props))
    proto.doc_string = (
        f"{type(model).__name__} exported by wae: input '{INPUT_NAME}' {props['input_shape']} "
        f"NCHW float32 -> '{OUTPUT_NAME}' {props['output_shape']}. {props['input_contract']}"
    )
    return _save(proto, path, model, opset, props)


def export_module(
    module: nn.Module,
    args: Sequence[torch.Tensor],
    path: str | os.PathLike[str],
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int = 17,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``module(*args)`` (eval mode, shapes fixed at `args`) to an ONNX file.

    The general form of :func:`export_onnx` for any module and inputs, e.g. one part of a
    WAENet (its encoder x -> (I_L, I_H), or its heads (f_L, f_H) -> scores): the same exporter
    and stand-ins, ``model``/``producer``/``opset`` and `metadata` as ``metadata_props``, but no
    input contract (the inputs need not be images). Input names default to the exporter's.
    Written atomically; returns the path.
    """
    check_export_options(opset=opset)
    check_output_file(path, "The ONNX file")
    names = list(input_names) if input_names is not None else None
    outs = list(output_names) if output_names is not None else None
    proto = _to_onnx(module, tuple(args), names, outs, None, opset)
    return _save(proto, path, module, opset, dict(metadata or {}))


def _contract(props: Mapping[str, Any]) -> str:
    """The input contract of `props` in one sentence (see the module docstring)."""
    lo, hi = props["pixel_range"]
    shape = ", ".join(str(d) for d in props["input_shape"])
    norm = (
        "do not subtract a mean or divide by a std: the graph holds any normalisation it needs"
        if props["normalization_in_graph"]
        else "normalise it as the model expects: the graph does not"
    )
    return (
        f"Input '{props['input_name']}': {props['dtype']} {props['layout']} ({shape}), pixels "
        f"in [{lo}, {hi}]; {norm}."
    )


def _to_onnx(
    model: nn.Module,
    args: tuple[torch.Tensor, ...],
    input_names: list[str] | None,
    output_names: list[str] | None,
    dynamic_axes: dict[str, dict[int, str]] | None,
    opset: int,
) -> Any:
    """Trace `model(*args)` in eval mode with the TorchScript exporter -> onnx.ModelProto.

    The model's training flags are restored afterwards; its weights are never changed."""
    import onnx

    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    buf = io.BytesIO()
    try:
        net = _exportable(model, args).eval()
        with warnings.catch_warnings():
            # Tracer warnings are about Python values read off shapes (sizes, channel checks):
            # the spatial size is fixed by design, and batch independence is what parity
            # checks at other batch sizes verify. The deprecation notices come from the
            # TorchScript exporter's own internals, chosen on purpose (module docstring).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                net,
                args,
                buf,
                dynamo=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    except ExportError:
        raise
    except Exception as e:
        shapes = ", ".join(str(tuple(a.shape)) for a in args)
        raise ExportError(
            f"torch.onnx.export failed for {type(model).__name__} at input {shapes}, opset "
            f"{opset}: {type(e).__name__}: {e}"
        ) from e
    finally:
        for m, training in flags:
            m.training = training
    return onnx.load_from_string(buf.getvalue())


def _save(
    proto: Any, path: str | os.PathLike[str], model: nn.Module, opset: int, props: dict[str, Any]
) -> Path:
    """Store `props` (after model/producer/opset) as metadata_props; write atomically."""
    import onnx

    from ._version import __version__
    from .checkpoint import atomic_write_bytes

    builtin = {
        "model": type(model).__name__,
        "producer": f"wae {__version__} (torch {torch.__version__})",
        "opset": opset,
    }
    props = {**props, **{k: v for k, v in builtin.items() if k not in props}}
    onnx.helper.set_model_props(proto, {k: _meta_value(v) for k, v in props.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, proto.SerializeToString())
    return path


# --------------------------------------------------------------------------------------------
# Running with ONNX Runtime
# --------------------------------------------------------------------------------------------


def onnx_session(
    path: str | os.PathLike[str],
    threads: int | None = None,
    *,
    device: str | torch.device = "cpu",
    optimization: str = "all",
    optimized_model_path: str | os.PathLike[str] | None = None,
    profile_prefix: str | os.PathLike[str] | None = None,
) -> Any:
    """An onnxruntime InferenceSession with a fixed intra-op thread count.

    threads: intra-op threads (default: all usable cores). optimization: graph optimisation
    level, "all" (incl. layout transforms such as NCHWc), "extended", "basic" or "disable".
    device: "cuda[:i]" puts the CUDA execution provider first (CPU as fallback).
    profile_prefix: turn on ONNX Runtime's per-node profiling, written to a JSON file whose
    name starts with it (``session.end_profiling()`` returns that name).
    """
    import onnxruntime as ort

    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f"optimization must be one of {sorted(levels)}, got {optimization!r}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads) if threads else usable_cores()
    # Sequential execution: running the I_L and I_H branches concurrently (ORT_PARALLEL)
    # measured 2.2x slower for WAE-VGG16/ResNet-50 on 2 cores (the pools fight for them).
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = levels[optimization]
    if optimized_model_path is not None:
        so.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    device = torch.device(device)
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ExportError(
                "device is CUDA but this onnxruntime has no CUDAExecutionProvider; install "
                "onnxruntime-gpu."
            )
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    return ort.InferenceSession(str(path), sess_options=so, providers=providers)


def ort_run(session: Any, x: torch.Tensor) -> torch.Tensor:
    """Run a wae-exported session on x (N, C, H, W) -> logits (N, K) as a CPU tensor."""
    inp = session.get_inputs()[0].name
    arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return torch.from_numpy(session.run(None, {inp: arr})[0])


def onnx_metadata(path_or_session: str | os.PathLike[str] | Any) -> dict[str, Any]:
    """The metadata_props of an exported model, JSON values decoded."""
    if isinstance(path_or_session, (str, os.PathLike)):
        import onnx

        try:
            proto = onnx.load(str(path_or_session), load_external_data=False)
        except Exception as e:  # protobuf's DecodeError and friends: not an ONNX model
            raise ExportError(
                f"{path_or_session} is not a readable ONNX model "
                f"({first_line(e, with_type=True)}). Export it again with `wae export`."
            ) from None
        raw = {p.key: p.value for p in proto.metadata_props}
    else:
        raw = dict(path_or_session.get_modelmeta().custom_metadata_map)
    return decode_metadata(raw)


def decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """Metadata strings with JSON values decoded (a plain string stays as it is); the one
    reader of ONNX metadata_props and OpenVINO's rt_info "framework"."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except (ValueError, RecursionError):  # not JSON (or nested too deep): a plain string
            out[k] = v
    return out


def check_parity(
    model: nn.Module,
    session_or_path: Any,
    inputs: torch.Tensor,
    *,
    atol: float = PARITY_ATOL,
    reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
    run: Callable[[Any, torch.Tensor], torch.Tensor] = ort_run,
    runtime: str = "ONNX Runtime",
) -> float:
    """Max abs difference between ONNX Runtime's and PyTorch's logits on `inputs` (N, C, H, W).

    Raises ExportError if it exceeds `atol` (or is not finite, or the shapes differ), and
    before running anything if `atol` could never be exceeded (nan, inf, < 0) or `inputs`
    holds no image. Another runtime: `run` (session, x) -> logits and its name `runtime`
    (e.g. :func:`wae.openvino_rt.ov_run` on a compiled model, "OpenVINO").
    """
    check_export_options(atol=atol, check_batch=int(inputs.shape[0]) if inputs.dim() else 0)
    session = session_or_path
    if isinstance(session_or_path, (str, os.PathLike)):
        session = onnx_session(session_or_path, optimization="all")
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            device = _device_of(model)
            ref = (reference or model)(inputs.to(device)).float().cpu()
    finally:
        for m, training in flags:
            m.training = training
    got = run(session, inputs)
    if got.shape != ref.shape:
        raise ExportError(
            f"{runtime} returned shape {tuple(got.shape)}, PyTorch {tuple(ref.shape)}."
        )
    diff = float((got - ref).abs().max().item()) if ref.numel() else 0.0
    if not math.isfinite(diff) or diff > atol:
        raise ExportError(
            f"{runtime} and PyTorch disagree: max abs difference of the logits {diff:.3e} > "
            f"{atol:.0e} on a batch of {inputs.shape[0]}. The export is not faithful; do not "
            f"deploy it."
        )
    return diff
