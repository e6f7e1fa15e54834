"""Training and evaluation: staged training from TOML recipes, exact resume, DDP, evaluation.

    from wae.train import load_config, run_training, evaluate

    result = run_training("recipes/fashion_mnist.toml", "runs/fm", overrides=["data.subset=2000"])
    model, doc = wae.checkpoint.load_model(result["final_checkpoint"])
    evaluate(model, test_set, noise_vars=[0.01, 0.05])

``train`` is another name for ``run_training``: one run, what a seed process calls.

See :mod:`wae.train.config` for the recipe schema and the override syntax, and
:mod:`wae.train.engine` for the stage semantics, the resume guarantees and the parts of the
trainer (stages, loop, checkpointing, setup).
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
from .datasets import build_datasets, resolve_image
from .engine import StageModule, TrainHooks, TrainingError, run_training
from .eval_checkpoint import evaluate_checkpoint
from .evaluate import evaluate, format_eval
from .rundir import RunDirError

train = run_training  # the one-run service under its short name

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
    "build_datasets",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "evaluate_checkpoint",
    "fingerprint",
    "format_eval",
    "load_config",
    "resolve_image",
    "run_training",
    "train",
]
