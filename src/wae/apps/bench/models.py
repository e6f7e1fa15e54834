"""What a benchmark compares: the full / half-resolution / WAE trio of one backbone."""

from __future__ import annotations

from typing import Any

from torch import nn

from ...encoders import DEFAULT_ENCODER, check_encoder
from ...errors import WAEError

__all__ = ["MODELS", "QUICK_BACKBONE", "BenchError", "build_models"]

MODELS = ("full", "half", "wae")
#: The --quick family: the 28x28 SmallVGG models (registered names small_vgg_28_full, ...).
QUICK_BACKBONE = "small_vgg_28"


class BenchError(WAEError, ValueError):
    """A benchmark that cannot be set up as asked."""


def build_models(
    backbone: str,
    *,
    input_size: int | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    encoder: str = DEFAULT_ENCODER,
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The full / half / wae trio (fresh weights, eval mode) and their input description;
    the WAE with the encoder `encoder` (:mod:`wae.encoders`).

    A backbone with registered models (``vgg16`` -> vgg16_full, vgg16_half, wae_vgg16;
    ``resnet50``; ``small_vgg_28``; ``small_vgg_32``) uses them; any other name goes through
    PlainNet / WAENet.from_backbone. Returns (models, {"input_size", "in_chans", ...}).
    """
    from ...models import PlainNet, WAENet, create_model, is_model, model_cfg

    check_encoder(encoder)
    names = {"full": f"{backbone}_full", "half": f"{backbone}_half", "wae": f"wae_{backbone}"}
    kw: dict[str, Any] = {}
    if num_classes is not None:
        kw["num_classes"] = num_classes
    if all(is_model(n) for n in names.values()):
        cfg = model_cfg(names["wae"])
        size = int(input_size if input_size is not None else cfg["input_size"])
        chans = int(in_chans if in_chans is not None else cfg["in_chans"])
        if chans != cfg["in_chans"]:
            kw["in_chans"] = chans
        models = {
            "full": create_model(names["full"], **kw),
            "half": create_model(names["half"], **kw),
            "wae": create_model(names["wae"], input_size=size, encoder=encoder, **kw),
        }
        k = num_classes if num_classes is not None else cfg["num_classes"]
    else:
        size = int(input_size if input_size is not None else 224)
        chans = int(in_chans if in_chans is not None else 3)
        k = num_classes if num_classes is not None else 1000
        common = dict(num_classes=k, in_chans=chans)
        try:
            models = {
                "full": PlainNet.from_backbone(backbone, **common),
                "half": PlainNet.from_backbone(backbone, half=True, **common),
                "wae": WAENet.from_backbone(backbone, input_size=size, encoder=encoder, **common),
            }
        except WAEError:
            raise
        except Exception as e:
            raise BenchError(f"Could not build the models for backbone {backbone!r}: {e}") from e
    return {n: m.eval() for n, m in models.items()}, {
        "input_size": size,
        "in_chans": chans,
        "num_classes": k,
        "encoder": encoder,
    }
