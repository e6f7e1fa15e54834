"""Training and evaluation: staged training from TOML recipes, exact resume, DDP, evaluation.

    from wae.train import load_config, run_training, evaluate

    result = run_training("recipes/fashion_mnist.toml", "runs/fm", overrides=["data.subset=2000"])
    model, doc = wae.checkpoint.load_model(result["final_checkpoint"])
    evaluate(model, test_set, noise_vars=[0.01, 0.05])

See :mod:`wae.train.config` for the recipe schema and the override syntax, and
:mod:`wae.train.engine` for the stage semantics and the resume guarantees.
"""

from .config import (
    ConfigError,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RuntimeConfig,
    ScheduleConfig,
    StageConfig,
    TrainConfig,
    config_diff,
    config_from_dict,
    config_to_dict,
    fingerprint,
    load_config,
)
from .engine import StageModule, TrainHooks, TrainingError, run_training
from .evaluate import evaluate, format_eval
from .rundir import RunDirError

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "RunDirError",
    "RuntimeConfig",
    "ScheduleConfig",
    "StageConfig",
    "StageModule",
    "TrainConfig",
    "TrainHooks",
    "TrainingError",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "fingerprint",
    "format_eval",
    "load_config",
    "run_training",
]
