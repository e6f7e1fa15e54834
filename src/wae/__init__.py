"""wae: make any convolutional image classifier several times cheaper at inference with a
learned Wavelet-like Auto-Encoder (Chen et al., AAAI 2018, https://arxiv.org/abs/1712.07493).
"""

from ._version import __version__ as __version__  # the one place: wae/_version.py
from .autoencoder import (
    FixedNorm,
    WAEOutput,
    WaveletAutoEncoder,
    energy_loss,
    reconstruction_loss,
    transform_loss,
)
from .cost import (
    PayoffWarning,
    compare,
    count_ops,
    measure_interleaved,
    measure_latency,
    profile,
)
from .distill import distillation_loss
from .export import export_onnx
from .models import (
    BackboneError,
    PlainNet,
    ShapeError,
    SpecError,
    WAENet,
    WAENetOutput,
    classification_loss,
    create_model,
    list_models,
    model_cfg,
)
from .optimize import OptimizeError, optimize_for_inference

__all__ = [
    "BackboneError",
    "FixedNorm",
    "OptimizeError",
    "PayoffWarning",
    "PlainNet",
    "ShapeError",
    "SpecError",
    "WAENet",
    "WAENetOutput",
    "WAEOutput",
    "WaveletAutoEncoder",
    "accelerate",
    "classification_loss",
    "compare",
    "count_ops",
    "create_model",
    "distillation_loss",
    "energy_loss",
    "export_onnx",
    "list_models",
    "measure_interleaved",
    "measure_latency",
    "model_cfg",
    "optimize_for_inference",
    "profile",
    "reconstruction_loss",
    "transform_loss",
]


def __getattr__(name: str):  # PEP 562: `wae.accelerate` loads the app (and train) on first use
    if name == "accelerate":
        from .apps.accelerate_module import accelerate

        return accelerate
    raise AttributeError(f"module 'wae' has no attribute {name!r}")
