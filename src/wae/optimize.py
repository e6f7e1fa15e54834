"""Inference-only rewrites that make a model faster without changing what it computes.

:func:`optimize_for_inference` returns a copy of a model (any ``nn.Module``; WAENet and
PlainNet get the same treatment, so comparisons stay fair) in which

1. every BatchNorm that follows a convolution or linear layer is folded into it
   (``torch.fx.experimental.optimization.fuse``): one memory pass fewer per BN;
2. for WAENet with a learned encoder (any of :mod:`wae.encoders`: a body and two head convs),
   the fixed-statistics normalisations of I_L and I_H are folded into the encoder's two head
   convolutions (they are affine and follow those convs with no activation between, so this
   is exact up to float rounding), and the two convs are merged into one (the body's map is
   read once instead of twice); the unused decoder is dropped;
3. on CPU (float32, oneDNN available) every Conv2d becomes a :class:`FusedConv2d`: one oneDNN
   primitive with its ReLU and/or residual add fused as post-ops, so element-wise ops cost no
   extra memory pass, and it skips nn.Conv2d's per-call overhead;
4. parameters (and, at the first convolution, the input) are put in channels_last, so no
   layout conversion happens between layers.

Why these: on a CPU at batch 1, much of a ResNet's time is not its MACs but element-wise
passes over activations (BN, ReLU, residual add) and per-op overhead; the quarter-width I_H
branch is almost only that. The rewrites keep the model's outputs within float rounding
(typically < 1e-5 max abs on the logits); pass ``check=`` to have that verified.

Steps 1, 2 and 4 use only standard modules, so the result still exports to ONNX
(``fuse_mkldnn=False``); step 3 uses oneDNN-specific ops (``torch.ops.mkldnn``) and is for
eager PyTorch on CPU.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .autoencoder import FixedNorm, SplitEncoder, WaveletAutoEncoder
from .errors import WAEError
from .models.heads import LinearHead
from .models.wae_net import WAENet

__all__ = [
    "FusedConv2d",
    "OptimizeError",
    "SplitConv2d",
    "WAEInference",
    "optimize_for_inference",
]


class OptimizeError(WAEError, RuntimeError):
    """The optimised model's outputs differ from the original's by more than allowed."""


# --------------------------------------------------------------------------------------------
# Fused modules
# --------------------------------------------------------------------------------------------


def mkldnn_fusion_available() -> bool:
    """Whether this PyTorch build has the oneDNN fused convolution ops (CPU)."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(
        torch.ops.mkldnn, "_convolution_pointwise"
    )


class FusedConv2d(nn.Module):
    """conv(x) [+ other] [-> ReLU] as one oneDNN primitive (CPU, float32).

    forward(x (N, C_in, H, W), other (N, C_out, h, w) or None) -> (N, C_out, h, w), in
    `memory_format`. Same arithmetic as Conv2d followed by the add and ReLU.
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        *,
        relu: bool = False,
        add: bool = False,
        memory_format: torch.memory_format = torch.channels_last,
    ) -> None:
        super().__init__()
        w = conv.weight.detach().contiguous(memory_format=memory_format)
        self.weight = nn.Parameter(w, requires_grad=False)
        b = conv.bias.detach().clone() if conv.bias is not None else None
        self.bias = nn.Parameter(b, requires_grad=False) if b is not None else None
        self.padding = list(_pair(conv.padding))
        self.stride = list(_pair(conv.stride))
        self.dilation = list(_pair(conv.dilation))
        self.groups = conv.groups
        self.out_channels = conv.out_channels
        self.relu = relu
        self.add = add
        self.memory_format = memory_format
        self._packed: dict[tuple[Any, ...], torch.Tensor] = {}

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        return (
            type(conv) is nn.Conv2d
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and conv.weight.dtype == torch.float32
            and conv.weight.device.type == "cpu"
        )

    def __getstate__(self) -> dict[str, Any]:
        # Packed weights are opaque oneDNN tensors: not copyable, and cheap to rebuild.
        state = self.__dict__.copy()
        state["_packed"] = {}
        return state

    def _packed_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The weight reordered once into the blocked layout oneDNN's kernel wants for this
        input shape; without it every call reorders it again (up to 1 ms for a 4 MB weight,
        and it does not shrink at half resolution)."""
        key = (tuple(x.shape), x.dtype, self.weight.data_ptr())
        packed = self._packed.get(key)
        if packed is None:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight, self.padding, self.stride, self.dilation, self.groups, list(x.shape)
            )
            self._packed = {key: packed}  # keep one: shapes rarely change between calls
        return packed

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        if x.dtype != self.weight.dtype or x.device.type != "cpu":
            return self._reference(x, other)
        w = self._packed_weight(x)
        unary = "relu" if self.relu else "none"
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, w, self.bias, self.padding, self.stride, self.dilation, self.groups,
                unary, [], None,
            )  # fmt: skip
        other = other.contiguous(memory_format=self.memory_format)
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, w, self.bias, self.padding, self.stride, self.dilation, self.groups,
            "add", 1.0, unary if self.relu else None, [], None,
        )  # fmt: skip

    def _reference(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        """The same computation with standard ops (other dtypes / devices)."""
        w = self.weight.to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        y = F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)
        if other is not None:
            y = y + other
        return F.relu(y) if self.relu else y

    def extra_repr(self) -> str:
        c_out, c_in_g = self.weight.shape[:2]
        post = "+".join(p for p, on in (("add", self.add), ("relu", self.relu)) if on) or "none"
        return (
            f"{c_in_g * self.groups}, {c_out}, kernel_size={tuple(self.weight.shape[2:])}, "
            f"stride={tuple(self.stride)}, padding={tuple(self.padding)}, post_ops={post}"
        )


class SplitConv2d(nn.Module):
    """Several convolutions of the same input merged into one, outputs split back:
    x (N, C, H, W) -> tuple of (N, C_i, h, w), one per original conv, in order."""

    def __init__(self, convs: list[nn.Conv2d]) -> None:
        super().__init__()
        first = convs[0]
        self.conv = nn.Conv2d(
            first.in_channels,
            sum(c.out_channels for c in convs),
            first.kernel_size,
            first.stride,
            first.padding,
            first.dilation,
            first.groups,
            bias=True,
            padding_mode=first.padding_mode,
        ).to(first.weight)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([c.weight for c in convs]))
            biases = [
                c.bias if c.bias is not None else torch.zeros_like(c.weight[:, 0, 0, 0])
                for c in convs
            ]
            self.conv.bias.copy_(torch.cat(biases))
        self.sizes = [c.out_channels for c in convs]
        self.memory_format = torch.contiguous_format  # set by optimize_for_inference

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.conv(x)
        # Channel slices of a channels_last map are strided views; make each a compact map
        # once here rather than letting every consumer convert it again. (Slicing with
        # Python ints, not torch.split, so torch.fx can trace through this.)
        out = []
        start = 0
        for size in self.sizes:
            out.append(y[:, start : start + size].contiguous(memory_format=self.memory_format))
            start += size
        return tuple(out)


# --------------------------------------------------------------------------------------------
# WAENet-specific rewrites
# --------------------------------------------------------------------------------------------


def _fold_affine_into_conv(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """conv <- scale * conv(x) + shift, per output channel (in place)."""
    with torch.no_grad():
        conv.weight.mul_(scale.view(-1, 1, 1, 1).to(conv.weight))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        new_bias = bias.to(scale) * scale + shift
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias.to(conv.weight))
        else:
            conv.bias.copy_(new_bias)


class _Encoder(nn.Module):
    """A learned encoder with its normalisations folded in and its two head convs merged:
    x (N, C, H, W) -> (normalised I_L, normalised I_H), each (N, C, H/2, W/2)."""

    def __init__(self, body: nn.Module, split: SplitConv2d) -> None:
        super().__init__()
        self.body = body
        self.split = split

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.split(self.body(x))
        return low, high


class _NormedDecomposer(nn.Module):
    """Any other decomposer followed by its normalisations: x -> (I_L, I_H) normalised."""

    def __init__(self, wae_net: WAENet) -> None:
        super().__init__()
        self.wae = wae_net.wae
        self.norm_low = wae_net.norm_low
        self.norm_high = wae_net.norm_high if wae_net.norm_high is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # WAENet's own decomposition, not a copy of it; this module holds the decomposer and
        # norms alone so that the branches stay separate parts.
        parts = WAENet.run_decomposer(self.wae, x)
        return self.norm_low(parts.low), self.norm_high(parts.high)


class _AveragedHeads(nn.Module):
    """(f_L, f_H) -> WAENet.combine_heads(s_L, s_c): the prediction WAENet.forward makes."""

    def __init__(self, head_low: nn.Module, head_fused: nn.Module | None) -> None:
        super().__init__()
        self.head_low = head_low
        self.head_fused = head_fused

    def forward(self, f_low: torch.Tensor, f_high: torch.Tensor | None) -> torch.Tensor:
        return WAENet.combine_heads(
            *WAENet.run_heads(self.head_low, self.head_fused, (f_low, f_high))
        )


class _MergedLinearHead(nn.Module):
    """Two linear heads and their average (WAENet.combine_heads, head="average") folded into
    one linear layer (exact: nothing non-linear between them, dropout is off at inference):
    (W_L p_L + b_L + W_c [p_L; p_H] + b_c) / 2 = [(W_L + W_c,L) / 2, W_c,H / 2] [p_L; p_H] + ...
    f_L (N, C_L, h, w), f_H (N, C_H, h, w) -> (N, K); the weights are read once, not twice."""

    def __init__(self, head_low: nn.Module, head_fused: nn.Module) -> None:
        super().__init__()
        w_l, b_l = head_low.fc.weight.double(), head_low.fc.bias.double()
        w_c, b_c = head_fused.fc.weight.double(), head_fused.fc.bias.double()
        c_low = w_l.shape[1]
        w = torch.cat([(w_l + w_c[:, :c_low]) / 2, w_c[:, c_low:] / 2], 1)
        self.fc = nn.Linear(w.shape[1], w.shape[0]).to(head_low.fc.weight)
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_((b_l + b_c) / 2)

    def forward(self, f_low: torch.Tensor, f_high: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([f_low.mean((2, 3)), f_high.mean((2, 3))], 1))


class WAEInference(nn.Module):
    """WAENet's inference path as four parts:
    x (N, C, H, W) -> encoder -> (I_L, I_H) -> low_net / high_net -> head -> (N, K),
    the same as WAENet.forward ((s_L + s_c) / 2). optimize_for_inference builds it with its
    static parts folded; :meth:`from_wae_net` builds it with nothing folded."""

    cost_parts = {
        "encoder": ["encoder"],
        "I_L network": ["low_net"],
        "I_H network": ["high_net"],
        "heads": ["head"],
    }

    def __init__(
        self, encoder: nn.Module, low_net: nn.Module, high_net: nn.Module | None, head: nn.Module
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.low_net = low_net
        self.high_net = high_net
        self.head = head

    @classmethod
    def from_wae_net(cls, net: WAENet) -> WAEInference:
        """`net`'s inference path split into the four parts, nothing rewritten: the parts are
        `net`'s own modules (shared, not copied) behind WAENet's decompose and heads."""
        heads = _AveragedHeads(net.head_low, net.head_fused)
        return cls(_NormedDecomposer(net), net.low_net, net.high_net, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.encoder(x)
        f_low = self.low_net(low)
        f_high = self.high_net(high) if self.high_net is not None else None
        return self.head(f_low, f_high)


def _wae_inference(model: nn.Module) -> nn.Module:
    """A WAENet (already a private copy) as a WAEInference with its norms folded into the
    encoder and linear heads merged where it can; anything else unchanged."""
    if not isinstance(model, WAENet):
        return model
    out = WAEInference.from_wae_net(model)
    enc = model.wae.encoder if isinstance(model.wae, WaveletAutoEncoder) else None
    norms = (model.norm_low, model.norm_high)
    if (
        isinstance(enc, SplitEncoder)
        and (enc.to_low.stride, enc.to_low.padding) == (enc.to_high.stride, enc.to_high.padding)
        and all(n is None or isinstance(n, FixedNorm) for n in norms)
    ):
        for norm, conv in zip(norms, (enc.to_low, enc.to_high), strict=True):
            if norm is not None:
                # FixedNorm is (y - mean) * rsqrt(var + eps) per channel: fold it, in float64.
                scale = torch.rsqrt(norm.var.double() + norm.eps)
                _fold_affine_into_conv(conv, scale, -norm.mean.double() * scale)
        out.encoder = _Encoder(enc.body, SplitConv2d([enc.to_low, enc.to_high]))
    lin = isinstance(model.head_low, LinearHead) and isinstance(model.head_fused, LinearHead)
    if lin and model.high_net is not None:
        out.head = _MergedLinearHead(model.head_low, model.head_fused)
    return out


# --------------------------------------------------------------------------------------------
# Graph rewrites
# --------------------------------------------------------------------------------------------

_RELU_FUNCS = {F.relu, torch.relu, torch.relu_}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}


def _is_relu(gm: fx.GraphModule, n: fx.Node) -> bool:
    if n.op == "call_module":
        return type(gm.get_submodule(n.target)) is nn.ReLU
    if n.op == "call_function":
        return n.target in _RELU_FUNCS
    return n.op == "call_method" and n.target in ("relu", "relu_")


def _is_add(n: fx.Node) -> bool:
    if n.kwargs:  # alpha=... or out=...
        return False
    if n.op == "call_function":
        return n.target in _ADD_FUNCS and len(n.args) == 2
    return n.op == "call_method" and n.target in ("add", "add_") and len(n.args) == 2


def _fuse_convs(gm: fx.GraphModule, memory_format: torch.memory_format) -> int:
    """Replace conv [-> add] [-> relu] chains by FusedConv2d modules; returns how many."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        conv = gm.get_submodule(node.target)
        if not FusedConv2d.supports(conv):
            continue
        chain, other, relu = [node], None, False
        users = list(node.users)
        if len(users) == 1 and _is_add(users[0]):
            others = [a for a in users[0].args if a is not node]
            # An in-place add must write into the conv output (x = conv(...); x += identity),
            # not into the other operand, which later code might read.
            inplace = users[0].target in (operator.iadd, "add_")
            if (
                len(others) == 1
                and isinstance(others[0], fx.Node)
                and not (inplace and users[0].args[0] is not node)
            ):
                chain.append(users[0])
                other = others[0]
                users = list(users[0].users)
        if len(users) == 1 and _is_relu(gm, users[0]):
            chain.append(users[0])
            relu = True
        fused = FusedConv2d(conv, relu=relu, add=other is not None, memory_format=memory_format)
        name = f"{node.target}_fused"  # next to the conv it replaces, same parent
        gm.add_submodule(name, fused)
        with gm.graph.inserting_after(chain[-1]):
            args = (node.args[0],) if other is None else (node.args[0], other)
            new = gm.graph.call_module(name, args)
        chain[-1].replace_all_uses_with(new)
        # Each node of the chain was used only by the next one, so erase from the end.
        for n in reversed(chain):
            gm.graph.erase_node(n)
        count += 1
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return count


def _traceable_parts(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Top-most submodules torch.fx can trace (a module that cannot be traced is split into
    its children). Yields (qualified name, module); "" is the module itself."""
    try:
        fx.symbolic_trace(module)
    except Exception:
        for name, child in module.named_children():
            yield from _traceable_parts(child, f"{prefix}{name}.")
        return
    yield prefix.rstrip("."), module


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def _rewrite(module: nn.Module, fuse_mkldnn: bool, memory_format: torch.memory_format) -> nn.Module:
    """BN folding (and oneDNN fusion) of one traceable module; returns the replacement."""
    from torch.fx.experimental.optimization import fuse as fold_bn

    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    has_conv = any(isinstance(m, nn.Conv2d) for m in module.modules())
    if not has_bn and not (fuse_mkldnn and has_conv):
        return module
    gm = fold_bn(module, inplace=True) if has_bn else fx.symbolic_trace(module)
    if fuse_mkldnn and has_conv:
        _fuse_convs(gm, memory_format)
    return gm


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def optimize_for_inference(
    model: nn.Module,
    *,
    channels_last: bool = True,
    fuse_mkldnn: bool | None = None,
    inplace: bool = False,
    check: torch.Tensor | None = None,
    atol: float = 1e-5,
) -> nn.Module:
    """An inference-only copy of `model` (eval mode) that computes the same outputs faster.

    Rewrites (module docstring): BN folding, WAENet's norm folding and merged encoder convs,
    oneDNN conv+add+ReLU fusion (`fuse_mkldnn`; default: on when the model is float32 on CPU
    and this build has the ops), channels_last parameters. `check`: an input batch
    (N, C, H, W); the optimised model's outputs must then match the original's within
    `atol` x max(1, largest |output|) (max abs), else OptimizeError. The copy has no
    gradients and must not be trained.
    """
    ref = _reference(model, check, atol)
    out = model if inplace else copy.deepcopy(model)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    device = next((p.device for p in out.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in out.parameters() if p.is_floating_point()), torch.float32)
    if fuse_mkldnn is None:
        fuse_mkldnn = device.type == "cpu" and dtype == torch.float32 and mkldnn_fusion_available()
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    out = _rewrite_parts(_wae_inference(out), fuse_mkldnn, fmt)
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    out.eval()
    if check is not None and ref is not None:
        _check_outputs(out, check, ref, atol)
    return out


def _reference(model: nn.Module, check: torch.Tensor | None, atol: float) -> torch.Tensor | None:
    """`model`'s outputs on `check` (None without one), its train/eval flags left as they
    were; `atol` and `check` are refused first if they cannot make a meaningful check."""
    # Checked first: an infinite tolerance would switch the check off, a NaN one make its
    # message meaningless.
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not math.isfinite(atol):
        raise OptimizeError(f"atol must be a finite number, got {atol!r}.")
    if check is not None and not (isinstance(check, torch.Tensor) and check.dim() == 4):
        got = tuple(check.shape) if isinstance(check, torch.Tensor) else type(check).__name__
        raise OptimizeError(f"check must be an image batch (N, C, H, W), got {got}.")
    if check is None:
        return None
    flags = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            return model.eval()(check)
    finally:
        for m, training in flags:
            m.training = training


def _rewrite_parts(out: nn.Module, fuse_mkldnn: bool, fmt: torch.memory_format) -> nn.Module:
    """Every traceable part of `out` rewritten (folded, fused); returns the new root."""
    for m in out.modules():
        if isinstance(m, SplitConv2d):
            m.memory_format = fmt  # read while tracing, so set it first
    # Our wrappers (WAENet/WAEInference/PlainNet, which declare cost_parts) keep their parts
    # as separate modules, so per-part profiling still works; any other model is rewritten
    # as a whole, so patterns across its children (conv1 -> bn1 -> relu) are found.
    roots = list(out.named_children()) if hasattr(out, "cost_parts") else [("", out)]
    for root_name, root in roots:
        prefix = f"{root_name}." if root_name else ""
        for name, part in list(_traceable_parts(root, prefix)):
            new = _rewrite(part, fuse_mkldnn, fmt)
            if new is part:
                continue
            if name == "":
                out = new
            else:
                _set_submodule(out, name, new)
    return out


def _check_outputs(out: nn.Module, check: torch.Tensor, ref: torch.Tensor, atol: float) -> None:
    """Raise OptimizeError unless `out`'s outputs on `check` are within the bound of `ref`."""
    with torch.no_grad():
        got = out(check)
    diff = float((got.float() - ref.float()).abs().max())
    # float32 rounding grows with the outputs' size (a random ResNet-50 has logits ~36,
    # and merely running it channels_last moves them by ~1.4e-5), so the bound scales
    # with the largest output once that exceeds 1.
    bound = atol * max(1.0, float(ref.float().abs().max()))
    if not diff <= bound:
        raise OptimizeError(
            f"optimize_for_inference changed the outputs by {diff:.2e} (> {bound:.1e}: "
            f"{atol:.0e} x max(1, largest output))."
        )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))
