"""Operation counts: MACs, FLOPs and parameters of one forward pass, grouped into parts.

FLOPs are whatever :class:`torch.utils.flop_counter.FlopCounterMode` reports (2 per
multiply-accumulate, convolutions and matrix products only); MACs = FLOPs / 2. See
:mod:`wae.cost` for the conventions.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..macs import counted_forward
from ._common import ExampleInput, as_tuple, shapes

__all__ = ["OTHER", "OpCount", "PartCount", "PartsSpec", "count_ops"]

#: Label of the bucket that collects everything not assigned to a named part.
OTHER = "other"

#: Display label -> top-level child-name prefixes, e.g. ``{"I_L network": ["low_net"]}``.
PartsSpec = Mapping[str, Sequence[str]]


@dataclass
class PartCount:
    """Cost of one group of top-level child modules."""

    flops: int
    macs: float
    params: int
    children: list[str] = field(default_factory=list)  # child-module names in this group


@dataclass
class OpCount:
    """Operation and parameter counts of one forward pass (see module docstring).

    ``flops`` is FlopCounterMode's total (2 per multiply-accumulate); ``macs = flops / 2``.
    ``by_child`` / ``params_by_child`` are keyed by top-level child name (children that ran no
    counted op appear with 0). FLOPs of ops called directly in the root module's ``forward`` and
    parameters registered directly on the root belong to no child; they land in
    ``parts["other"]``. ``sum(p.flops for p in parts.values()) == flops`` always.
    """

    flops: int
    macs: float
    params: int
    input_shapes: list[list[int]]
    by_op: dict[str, int]
    by_child: dict[str, int]
    params_by_child: dict[str, int]
    parts: dict[str, PartCount]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _child_of(name: str) -> str | None:
    """Top-level child of a dotted parameter name, or None for a root-level parameter."""
    head, sep, _ = name.partition(".")
    return head if sep else None


def _assign_parts(children: Sequence[str], parts: PartsSpec | None) -> dict[str, str]:
    """Map each child name to a part label (longest matching prefix wins)."""
    if parts is None:
        return {c: c for c in children}
    prefixes: dict[str, str] = {}
    for label, plist in parts.items():
        if isinstance(plist, str):  # a bare string would silently be split into characters
            raise TypeError(f"parts[{label!r}] must be a list of prefixes, not a string")
        for p in plist:
            if p in prefixes and prefixes[p] != label:
                raise ValueError(f"prefix {p!r} is listed under {prefixes[p]!r} and {label!r}")
            prefixes[p] = label
    assignment: dict[str, str] = {}
    used: set[str] = set()
    for c in children:
        matches = [p for p in prefixes if c.startswith(p)]
        if matches:
            best = max(matches, key=len)  # so "layer10" is not swallowed by "layer1"
            assignment[c] = prefixes[best]
            used.add(best)
        else:
            assignment[c] = OTHER
    unused = [p for p in prefixes if p not in used]
    if unused:
        # Usually a typo or a renamed child: its cost would silently land in "other".
        warnings.warn(
            f"parts prefixes match no child module: {unused}; children are {list(children)}",
            stacklevel=3,
        )
    return assignment


def _params_by_child(model: nn.Module, children: Sequence[str]) -> tuple[dict[str, int], int]:
    """Parameters per top-level child, and those registered on the root itself."""
    by_child = dict.fromkeys(children, 0)
    root = 0
    for pname, p in model.named_parameters():  # de-duplicates shared parameters
        child = _child_of(pname)
        if child is None:
            root += p.numel()
        else:
            by_child[child] += p.numel()
    return by_child, root


def _group(
    labels: Sequence[str],
    assignment: Mapping[str, str],
    flops_by_child: Mapping[str, int],
    params_by_child: Mapping[str, int],
    root: PartCount,
) -> dict[str, PartCount]:
    """Sum the children into their parts; ``root``'s work and parameters go to "other"."""
    grouped = {label: PartCount(flops=0, macs=0.0, params=0) for label in labels if label != OTHER}
    grouped[OTHER] = root
    for c, label in assignment.items():
        part = grouped[label]
        part.flops += flops_by_child[c]
        part.params += params_by_child[c]
        part.children.append(c)
    for part in grouped.values():
        part.macs = part.flops / 2
    return grouped


def count_ops(
    model: nn.Module, example_input: ExampleInput, *, parts: PartsSpec | None = None
) -> OpCount:
    """Count FLOPs/MACs and parameters of ``model(*example_input)`` with FlopCounterMode.

    Runs one forward pass in eval mode under ``torch.no_grad`` (training flags are restored).
    Works with models and inputs on the ``meta`` device, which counts without computing.

    ``parts`` maps a display label to a list of top-level child-name prefixes, e.g.
    ``{"encoder": ["wae", "norm_low", "norm_high"], "I_L network": ["low_net"]}``. Each child
    goes to the label of its longest matching prefix; unmatched children, ops called directly in
    the root's ``forward`` and root-level parameters go to ``"other"`` (a label named "other" is
    merged with it). Without ``parts`` there is one part per child, plus ``"other"``.
    """
    inputs = as_tuple(example_input)
    counter = counted_forward(model, inputs)
    counts = counter.get_flop_counts()
    total = int(counter.get_total_flops())

    by_op: dict[str, int] = defaultdict(int)
    for op, n in counts.get("Global", {}).items():
        by_op[str(op)] += int(n)

    # FlopCounterMode's module tracker names the root after its class and children by FQN, so
    # depth-1 children are the keys "<RootClass>.<child>".
    root_name = type(model).__name__
    children = [name for name, _ in model.named_children()]
    by_child = {c: int(sum(counts.get(f"{root_name}.{c}", {}).values())) for c in children}
    params_by_child, root_params = _params_by_child(model, children)

    assignment = _assign_parts(children, parts)
    # Whatever the children do not account for ran at root level; keeps sum(parts) == total.
    root = PartCount(flops=total - sum(by_child.values()), macs=0.0, params=root_params)
    labels = list(parts) if parts is not None else children
    return OpCount(
        flops=total,
        macs=total / 2,
        params=int(sum(params_by_child.values()) + root_params),
        input_shapes=shapes(inputs),
        by_op=dict(by_op),
        by_child=by_child,
        params_by_child=params_by_child,
        parts=_group(labels, assignment, by_child, params_by_child, root),
    )
