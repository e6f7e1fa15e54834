"""Inference-only rewrites that make a model faster without changing what it computes.

:func:`optimize_for_inference` returns a copy of a model (any ``nn.Module``; WAENet and
PlainNet get the same treatment, so comparisons stay fair) in which

1. every BatchNorm that follows a convolution or linear layer is folded into it
   (``torch.fx.experimental.optimization.fuse``): one memory pass fewer per BN;
2. for WAENet with the learned encoder, the fixed-statistics normalisations of I_L and I_H are
   folded into the encoder's two stride-2 convolutions (they are affine and follow those convs
   with no activation between, so this is exact up to float rounding), and the two convs are
   merged into one (the 16-channel full-resolution map is read once instead of twice);
   the unused decoder is dropped;
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
import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import WAEError

__all__ = ["FusedConv2d", "SplitConv2d", "OptimizeError", "optimize_for_inference"]


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

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        return (
            type(conv) is nn.Conv2d
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and conv.weight.dtype == torch.float32
            and conv.weight.device.type == "cpu"
        )

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        unary = "relu" if self.relu else "none"
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation,
                self.groups, unary, [], None,
            )  # fmt: skip
        other = other.contiguous(memory_format=self.memory_format)
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, self.weight, self.bias, self.padding, self.stride, self.dilation,
            self.groups, "add", 1.0, unary if self.relu else None, [], None,
        )  # fmt: skip

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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.conv(x)
        fmt = _format_of(y)
        # Channel slices of a channels_last map are strided views; make each a compact map
        # once here rather than letting every consumer convert it again.
        return tuple(p.contiguous(memory_format=fmt) for p in torch.split(y, self.sizes, 1))


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


class _MergedEncoder(nn.Module):
    """WAEEncoder with its two stride-2 convolutions merged: x -> (I_L, I_H)."""

    def __init__(self, body: nn.Module, split: SplitConv2d) -> None:
        super().__init__()
        self.body = body
        self.split = split

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.split(self.body(x))
        return low, high


def _optimize_wae_encoder(model: nn.Module) -> None:
    """Fold WAENet's FixedNorms into the encoder and merge its branch convs (in place)."""
    from .autoencoder import FixedNorm, WAEEncoder, WaveletAutoEncoder
    from .models.wae_net import WAENet

    if not isinstance(model, WAENet) or not isinstance(model.wae, WaveletAutoEncoder):
        return
    enc = model.wae.encoder
    if not isinstance(enc, WAEEncoder):
        return
    for norm_name, conv in (("norm_low", enc.to_low), ("norm_high", enc.to_high)):
        norm = getattr(model, norm_name)
        if isinstance(norm, FixedNorm):
            # (y - mean) * rsqrt(var + eps), computed as FixedNorm does, in float64.
            scale = torch.rsqrt(norm.var.double() + norm.eps)
            _fold_affine_into_conv(conv, scale, -norm.mean.double() * scale)
            setattr(model, norm_name, nn.Identity())
    if enc.to_low.stride == enc.to_high.stride and enc.to_low.padding == enc.to_high.padding:
        model.wae.encoder = _MergedEncoder(enc.body, SplitConv2d([enc.to_low, enc.to_high]))
    # Inference never decodes; the decoder is dead weight in an inference copy.
    model.wae.decoder_low = None
    model.wae.decoder_high = None


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
            if len(others) == 1 and isinstance(others[0], fx.Node):
                chain.append(users[0])
                other = others[0]
                users = list(users[0].users)
        if len(users) == 1 and _is_relu(gm, users[0]):
            chain.append(users[0])
            relu = True
        fused = FusedConv2d(conv, relu=relu, add=other is not None, memory_format=memory_format)
        name = f"{node.target.replace('.', '_')}_fused"
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
    (N, C, H, W); the optimised model's outputs must then match the original's within `atol`
    (max abs), else OptimizeError. The copy has no gradients and must not be trained.
    """
    ref = None
    if check is not None:
        with torch.no_grad():
            ref = model.eval()(check)
    out = model if inplace else copy.deepcopy(model)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    device = next((p.device for p in out.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in out.parameters() if p.is_floating_point()), torch.float32)
    if fuse_mkldnn is None:
        fuse_mkldnn = device.type == "cpu" and dtype == torch.float32 and mkldnn_fusion_available()
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    _optimize_wae_encoder(out)
    for name, part in list(_traceable_parts(out)):
        new = _rewrite(part, fuse_mkldnn, fmt)
        if new is part:
            continue
        if name == "":
            out = new
        else:
            _set_submodule(out, name, new)
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    out.eval()

    if check is not None and ref is not None:
        with torch.no_grad():
            got = out(check)
        diff = float((got.float() - ref.float()).abs().max())
        if not diff <= atol:
            raise OptimizeError(
                f"optimize_for_inference changed the outputs by {diff:.2e} (> {atol:.0e})."
            )
    return out


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _format_of(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
