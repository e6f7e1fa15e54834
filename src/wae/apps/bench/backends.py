"""The backends `wae bench` times: one model made ready to run on one backend.

They live in the service layer, :mod:`wae.cost.backends`, where the deploy-speed columns of
`wae accelerate`, `wae demo` and `wae reproduce` use them too; their names stay importable
from here.
"""

from __future__ import annotations

from ...cost.backends import (
    ALL_BACKENDS,
    CALIBRATION_IMAGES,
    PRECISIONS,
    PYTORCH_TUNED,
    RUNTIME,
    BackboneCache,
    BackendUnavailable,
    Prepared,
    Runner,
    measure_grouped,
    prepare_backend,
)

__all__ = [
    "ALL_BACKENDS",
    "CALIBRATION_IMAGES",
    "PRECISIONS",
    "PYTORCH_TUNED",
    "RUNTIME",
    "BackboneCache",
    "BackendUnavailable",
    "Prepared",
    "Runner",
    "measure_grouped",
    "prepare_backend",
]
