"""What WAE is measured against (the paper's Table 1 setting): the same backbone at full
resolution ("baseline"), on the image resized to half size ("half_res", the paper's I_R) and
inside WAE ("wae"), profiled side by side. `wae profile` is this module on the command line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..encoders import DEFAULT_ENCODER, check_encoder
from ..errors import WAEError, first_line
from ..host import is_out_of_memory
from ..models import OWN_KWARGS, PlainNet, WAENet
from ..models import payoff as _payoff
from ..models.payoff import Payoff, alternative_encoders, warn_payoff
from ..runtime import check_device
from ._common import MeasureError, check_timing
from .ops import PartsSpec
from .profiling import Comparison, compare, input_shape
from .report import format_table

__all__ = ["PAPER_BOUND", "BaselineComparison", "build_baselines", "compare_baselines"]

#: The paper's upper bound on WAE's speed-up: I_L costs 1/4, I_H (1/4 width) 1/64 -> 3.76x.
PAPER_BOUND = 1 / (1 / 4 + 1 / 64)

# The timing settings of compare(), checked up front.
_TIMING = ("threads", "min_run_time", "rounds", "warmup")

#: The three models, in the order they are built, timed and reported.
SLOTS = ("baseline", "half_res", "wae")

# Keys of a model's `wae_spec` kwargs that only one of the two builders takes (derived from
# their signatures: models.OWN_KWARGS) or that the comparison sets itself.
_OWN_KEYS = {*OWN_KWARGS, "input_size"}


class BaselineComparison(Comparison):
    """:func:`compare_baselines`' result: a :class:`Comparison` of ``"baseline"``,
    ``"half_res"`` and ``"wae"``, plus ``"backbone"``. Prints as the table followed by the
    WAE-vs-full-resolution summary; :meth:`to_report` is the ``wae profile --json`` document.
    """

    @property
    def payoff(self) -> Payoff:
        """Does WAE pay off (:mod:`wae.models.payoff`), from the MACs counted here, per image."""
        profiles, shape = self["profiles"], self["settings"]["input_shape"]
        per_image = 1 / shape[0]
        full, wae = profiles["baseline"].macs * per_image, profiles["wae"].macs * per_image
        encoder = profiles["wae"].ops.parts.get("encoder")
        name, size = self.get("encoder"), (shape[2], shape[3])
        return Payoff(
            full_macs=full,
            wae_macs=wae,
            ratio=full / wae if wae > 0 else float("inf"),
            input_size=size,
            encoder_macs=encoder.macs * per_image if encoder is not None else None,
            backbone=self.get("backbone"),
            encoder=name,
            alternatives=alternative_encoders(name, shape[1], size),
        )

    def summary(self) -> str:
        """WAE's MAC ratio and speed-up over full resolution, the paper's bound, and whether
        WAE pays off on MACs (the ratio is at least 1.5x)."""
        mr, sp = self["mac_ratio"]["wae"], self["speedup"]["wae"]
        payoff = self.payoff
        return (
            "WAE"
            + (f" ({self['encoder']} encoder)" if self.get("encoder") else "")
            + " vs full resolution: MAC ratio "
            + (f"{mr:.2f}x" if mr is not None else "-")
            + ", measured speed-up "
            + (f"{sp:.2f}x" if sp is not None else "not measured")
            + f"; the paper's bound 1 / (1/4 + 1/64) = {PAPER_BOUND:.2f}x.\n"
            + ("Pays off: yes" if payoff.pays_off else "Pays off: NO, WAE will not make it faster")
            + f" (WAE needs a MAC ratio of at least {_payoff.PAYOFF_MIN_RATIO:g}x)."
        )

    def to_report(self) -> dict[str, Any]:
        """Each model's headline figures, then the summary, the machine and the settings."""
        out = self.to_dict()
        doc: dict[str, Any] = {name: _entry(p) for name, p in out["profiles"].items()}
        doc.update(
            backbone=self.get("backbone"),
            encoder=self.get("encoder"),
            speedup=self["speedup"]["wae"],
            mac_ratio=self["mac_ratio"]["wae"],
            paper_bound=PAPER_BOUND,
            payoff=self.payoff.to_dict(),
            machine=out["machine"],
            settings=out["settings"],
        )
        return doc

    def __str__(self) -> str:
        return format_table(self) + "\n\n" + self.summary()

    __repr__ = __str__


def _entry(p: dict) -> dict:
    """One model's JSON entry: the headline figures first, then everything measured."""
    lat = p.get("latency") or {}
    return {
        "macs": p["ops"]["macs"],
        "flops": p["ops"]["flops"],
        "params": p["ops"]["params"],
        "latency_ms": lat.get("median_ms"),
        "latency_iqr_ms": lat.get("iqr_ms"),
        "memory_format": lat.get("memory_format"),
        "parts": p["ops"]["parts"],
        "latency": lat or None,
    }


def _build(
    slot: str, backbone: str, input_size: Any, kwargs: dict[str, Any], encoder: str
) -> nn.Module:
    if slot == "wae":
        # The pay-off is judged from the comparison's own counts (compare_baselines).
        net: nn.Module = WAENet.from_backbone(
            backbone, input_size=input_size, encoder=encoder, check_payoff=False, **kwargs
        )
    else:
        net = PlainNet.from_backbone(backbone, half=slot == "half_res", **kwargs)
    return net.eval()


def build_baselines(
    backbone: str,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int | Sequence[int] = 224,
    encoder: str = DEFAULT_ENCODER,
    **backbone_kwargs: Any,
) -> dict[str, nn.Module]:
    """The three models `wae profile` compares, freshly initialised, in eval mode; the WAE
    with the encoder `encoder` (:mod:`wae.encoders`)."""
    check_encoder(encoder)  # before the (possibly slow) builds
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, **backbone_kwargs)
    return {slot: _build(slot, backbone, input_size, kwargs, encoder) for slot in SLOTS}


def _around(
    model: nn.Module, input_size: Any, encoder: str | None
) -> tuple[dict[str, nn.Module], str, str]:
    """The trio around a WAENet or PlainNet built from a backbone name: (models, backbone,
    the model's own slot). The other two are built from the model's spec (a PlainNet's WAE
    with `encoder`, by default the default one)."""
    spec = getattr(model, "wae_spec", None)
    if not isinstance(model, (WAENet, PlainNet)) or not spec:
        raise WAEError(
            f"Comparing with the baselines needs to know the backbone, and this "
            f"{type(model).__name__} does not say: pass a backbone name instead "
            f"(compare_baselines('vgg16', ...)), or a model built with "
            f"WAENet.from_backbone('<name>', ...)."
        )
    slot = "wae" if isinstance(model, WAENet) else "half_res" if model.half else "baseline"
    kwargs = {k: v for k, v in spec["kwargs"].items() if k not in _OWN_KEYS}
    own = spec["kwargs"].get("encoder", DEFAULT_ENCODER) if slot == "wae" else None
    if own is not None and encoder not in (None, own):
        raise WAEError(
            f"This WAENet has the encoder {own!r}; encoder={encoder!r} cannot apply to it. "
            f"Leave encoder out, or pass the backbone's name to build the trio with it."
        )
    encoder = own or encoder or DEFAULT_ENCODER
    models = {
        s: model if s == slot else _build(s, spec["backbone"], input_size, kwargs, encoder)
        for s in SLOTS
    }
    return models, spec["backbone"], slot


@contextlib.contextmanager
def _advise_on_oom(what: str, shape: Sequence[int]) -> Iterator[None]:
    """Turn running out of memory into a WAEError that says what to make smaller."""
    try:
        yield
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        cause = e.__cause__ if e.__cause__ is not None else e
        raise WAEError(
            f"Not enough memory to profile {what} on a {'x'.join(map(str, shape))} input "
            f"({first_line(cause)}). Use a smaller input size or batch size."
        ) from e


def _check_settings(
    num_classes: int, device: str | torch.device | None, compare_kwargs: dict[str, Any]
) -> torch.device | None:
    """Every setting, checked before the (possibly slow) builds; returns the device."""
    if not (type(num_classes) is int and num_classes >= 1):
        raise MeasureError(
            f"num_classes (--num-classes) must be an integer >= 1, got {num_classes!r}."
        )
    if compare_kwargs.get("latency", True):
        check_timing(**{k: compare_kwargs.get(k) for k in _TIMING})
    return check_device(device, "device (--device)") if device is not None else None


def compare_baselines(
    model: str | nn.Module,
    input_size: int | Sequence[int] = 224,
    *,
    num_classes: int = 1000,
    in_chans: int | None = None,
    batch_size: int = 1,
    parts: PartsSpec | None = None,
    device: str | torch.device | None = None,
    encoder: str | None = None,
    **compare_kwargs: Any,
) -> BaselineComparison:
    """Profile a backbone at full resolution, at half resolution and inside WAE, interleaved.

    ``model`` is a backbone name (a torchvision name, ``"timm:<name>"``, ``"small_vgg"``), from
    which all three are built with ``num_classes`` and ``in_chans`` (default 3); or a
    WAENet/PlainNet built from one, which takes its own place in the trio while the other two
    follow its spec (``num_classes`` is then unused, ``in_chans`` defaults to the model's).
    ``encoder``: the WAE's encoder by name (:mod:`wae.encoders`; default "paper"; a given
    WAENet keeps its own).
    ``parts`` regroups the WAE's (or the given model's) cost breakdown. Models built here are
    moved to ``device``. ``compare_kwargs`` go to :func:`compare` (``latency``, ``threads``,
    ``memory_format``, ``min_run_time``, ``rounds``, ...); the reference is ``"baseline"``.
    ``print()`` the result for the table and the summary. Warns (:class:`PayoffWarning`) when
    WAE is not at least 1.5x cheaper on MACs than full resolution (``result.payoff``).
    """
    if in_chans is None:
        in_chans = 3 if isinstance(model, str) else getattr(model, "in_chans", 3)
    shape = input_shape(input_size, batch_size, in_chans)
    device = _check_settings(num_classes, device, compare_kwargs)
    if encoder is not None:
        check_encoder(encoder)
    with _advise_on_oom(model if isinstance(model, str) else type(model).__name__, shape):
        if isinstance(model, str):
            backbone, slot = model, "wae"
            models = build_baselines(
                model,
                num_classes=num_classes,
                in_chans=in_chans,
                input_size=input_size,
                encoder=encoder or DEFAULT_ENCODER,
            )
            given = None
        else:
            models, backbone, slot = _around(model, input_size, encoder)
            given = model
        if device is not None:
            for m in models.values():
                if m is not given:  # a caller's own model stays where it is
                    m.to(device)
        result = compare(
            models,
            input_size,
            batch_size=batch_size,
            in_chans=in_chans,
            parts={slot: parts} if parts is not None else None,
            device=device,
            reference="baseline",
            **compare_kwargs,
        )
    name = getattr(models["wae"].wae, "encoder_name", None)  # None: not a learned encoder
    comparison = BaselineComparison(result, backbone=backbone, encoder=name)
    warn_payoff(comparison.payoff)
    return comparison
