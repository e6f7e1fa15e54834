"""Model families and the registry (`create_model`, `list_models`)."""

from ..autoencoder import ShapeError
from ._backbone import BackboneError, build_classifier, build_features
from ._registry import create_model, is_model, list_models, model_cfg, register_model
from ._slim import quarter_width
from .heads import ClassifierHead, LinearHead, MLPHead
from .named import ARCHS, OWN_KWARGS, WAE_ONLY_KWARGS, build_named, named_kind
from .plain import HalfResize, PlainNet
from .pruned import pruned_net
from .small_vgg import SmallVGG
from .spec import SpecError
from .wae_net import WAENet, WAENetOutput, classification_loss

__all__ = [
    "ARCHS",
    "OWN_KWARGS",
    "WAE_ONLY_KWARGS",
    "BackboneError",
    "ClassifierHead",
    "HalfResize",
    "LinearHead",
    "MLPHead",
    "PlainNet",
    "ShapeError",
    "SmallVGG",
    "SpecError",
    "WAENet",
    "WAENetOutput",
    "build_classifier",
    "build_features",
    "build_named",
    "classification_loss",
    "create_model",
    "is_model",
    "list_models",
    "model_cfg",
    "named_kind",
    "pruned_net",
    "quarter_width",
    "register_model",
]
