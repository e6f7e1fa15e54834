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

Metadata (``metadata_props``, all strings, JSON where structured): ``input_name``,
``input_shape`` (e.g. ``["batch", 3, 224, 224]``), ``output_name``, ``output_shape``,
``layout``, ``dtype``, ``model``, ``spec`` (how wae rebuilds it), ``producer``, ``opset``,
and whatever the caller passes in ``metadata`` (``mean``, ``std``, ``classes``, ...).
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

from .errors import WAEError

__all__ = [
    "ExportError",
    "MatrixResize",
    "check_parity",
    "export_onnx",
    "onnx_metadata",
    "onnx_session",
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


def _exportable(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """`model` with every module the exporter cannot handle (see _needs_matrix) replaced by an
    exact MatrixResize for the size it sees on `example`.

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
            model(example)
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
        device = example.device
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


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


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

    The graph takes ``input`` (N, in_chans, H, W) float32 and returns ``logits`` (N, K); N is
    symbolic ("batch") when `dynamic_batch`, else `batch_size`. `metadata` entries are stored
    as ``metadata_props`` (strings kept, anything else JSON-encoded), after the built-in ones
    listed in the module docstring. The file is written atomically (temporary name + rename).
    """
    import onnx

    h, w = _pair(input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = _device_of(model)
    # Batch 2, not 1: a tracer seeing batch 1 can mistake the batch axis for a broadcast one.
    n = 2 if dynamic_batch else int(batch_size)
    dummy = torch.rand(n, in_chans, h, w, device=device)
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    buf = io.BytesIO()
    try:
        net = _exportable(model, dummy).eval()
        with warnings.catch_warnings():
            # Tracer warnings are about Python values read off shapes (sizes, channel checks):
            # the spatial size is fixed by design, and batch independence is what parity
            # checks at other batch sizes verify. The deprecation notices come from the
            # TorchScript exporter's own internals, chosen on purpose (module docstring).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                net,
                (dummy,),
                buf,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=(
                    {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
                ),
                opset_version=opset,
                do_constant_folding=True,
            )
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(
            f"torch.onnx.export failed for {type(model).__name__} at input "
            f"({n}, {in_chans}, {h}, {w}), opset {opset}: {type(e).__name__}: {e}"
        ) from e
    finally:
        for m, training in flags:
            m.training = training

    proto = onnx.load_from_string(buf.getvalue())
    num_classes = proto.graph.output[0].type.tensor_type.shape.dim[-1].dim_value or None
    batch: str | int = "batch" if dynamic_batch else n
    from . import __version__

    props: dict[str, Any] = {
        "input_name": INPUT_NAME,
        "input_shape": [batch, in_chans, h, w],
        "output_name": OUTPUT_NAME,
        "output_shape": [batch, num_classes],
        "layout": "NCHW",
        "dtype": "float32",
        "model": type(model).__name__,
        "producer": f"wae {__version__} (torch {torch.__version__})",
        "opset": opset,
    }
    spec = getattr(model, "wae_spec", None)
    if spec is not None:
        props["spec"] = spec
    props.update(metadata or {})
    onnx.helper.set_model_props(proto, {k: _meta_value(v) for k, v in props.items()})
    proto.doc_string = (
        f"{type(model).__name__} exported by wae: input '{INPUT_NAME}' {props['input_shape']} "
        f"NCHW float32 -> '{OUTPUT_NAME}' {props['output_shape']}."
    )
    from .checkpoint import atomic_write_bytes

    atomic_write_bytes(path, proto.SerializeToString())
    return path


# --------------------------------------------------------------------------------------------
# Running with ONNX Runtime
# --------------------------------------------------------------------------------------------


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def onnx_session(
    path: str | os.PathLike[str],
    threads: int | None = None,
    *,
    device: str | torch.device = "cpu",
    optimization: str = "all",
    optimized_model_path: str | os.PathLike[str] | None = None,
) -> Any:
    """An onnxruntime InferenceSession with a fixed intra-op thread count.

    threads: intra-op threads (default: all usable cores). optimization: graph optimisation
    level, "all" (incl. layout transforms such as NCHWc), "extended", "basic" or "disable".
    device: "cuda[:i]" puts the CUDA execution provider first (CPU as fallback).
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
    so.intra_op_num_threads = int(threads) if threads else _usable_cores()
    # Sequential execution: running the I_L and I_H branches concurrently (ORT_PARALLEL)
    # measured 2.2x slower for WAE-VGG16/ResNet-50 on 2 cores (the pools fight for them).
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = levels[optimization]
    if optimized_model_path is not None:
        so.optimized_model_filepath = str(optimized_model_path)
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

        proto = onnx.load(str(path_or_session), load_external_data=False)
        raw = {p.key: p.value for p in proto.metadata_props}
    else:
        raw = dict(path_or_session.get_modelmeta().custom_metadata_map)
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def check_parity(
    model: nn.Module,
    session_or_path: Any,
    inputs: torch.Tensor,
    *,
    atol: float = PARITY_ATOL,
    reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Max abs difference between ONNX Runtime's and PyTorch's logits on `inputs` (N, C, H, W).

    Raises ExportError if it exceeds `atol` (or is not finite, or the shapes differ).
    """
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
    got = ort_run(session, inputs)
    if got.shape != ref.shape:
        raise ExportError(
            f"ONNX Runtime returned shape {tuple(got.shape)}, PyTorch {tuple(ref.shape)}."
        )
    diff = float((got - ref).abs().max().item()) if ref.numel() else 0.0
    if not math.isfinite(diff) or diff > atol:
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree: max abs difference of the logits {diff:.3e} > "
            f"{atol:.0e} on a batch of {inputs.shape[0]}. The export is not faithful; do not "
            f"deploy it."
        )
    return diff
