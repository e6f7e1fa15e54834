"""The methods of the paper's comparison, as training configs derived from the two recipes.

Every method is built from the WAE recipe and the baseline recipe (the packaged
``fashion_mnist`` and ``fashion_mnist_baseline``, or ``textures`` and ``textures_baseline`` for
skimage-textures: :func:`default_recipes`), read at run time:

* the WAE recipe gives the data, the evaluation, the runtime, the seed, the backbone width and
  its three stages (WAE alone, classifier on the frozen WAE, joint fine-tuning);
* the baseline recipe gives only its single classification stage (optimiser, lr, schedule) for
  the plain networks, so data and backbone are identical for every method by construction.

The budget ("same budget" for every method): each classifier is trained for the WAE's total
classifier epochs, E_c = epochs(stage 2) + epochs(stage 3). The WAE additionally has its
stage 1 (auto-encoder alone, no classifier); the pruned network is fine-tuned for stage 3's
epochs, as the paper's pruning peers fine-tune a trained network.

Beyond the paper, two rows learn from the trained full network by knowledge distillation, as
`wae accelerate` does (its stage template's losses and temperature): the WAE's three stages
and the half-size network, each started from and taught by the full run's network. One more
is the WAE row with the light encoder (:mod:`wae.encoders`), everything else the same. Three
more try what the paper leaves open, each the distilled WAE with one change: the encoder
unfrozen in stage 2 (trained with the classifier, the transform loss kept at stage 3's
weight), an I_H branch at half the backbone's width instead of a quarter, and the teacher's
last feature map distilled into the I_L network's as well as its logits
(:func:`wae.distill.feature_distillation_loss`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...data.fonts import parse_fonts_name
from ...data.textures import parse_textures_name
from ...errors import WAEError
from ...models import WAE_ONLY_KWARGS, is_model, model_cfg
from ...train.config import TrainConfig, config_to_dict, load_config
from ...train.recipes import list_recipes
from ..accelerate import kd_settings

__all__ = [
    "BEYOND_KEYS",
    "FEATURE_KD_WEIGHT",
    "METHODS",
    "METHOD_KEYS",
    "TAUGHT_KEYS",
    "WAE_KD_VARIANTS",
    "Derivation",
    "Method",
    "ReproduceError",
    "classifier_epochs",
    "derive_configs",
    "budget_text",
    "plain_names",
    "default_recipes",
    "recipe_source",
    "select_methods",
    "short_hash",
    "split_stages",
]


class ReproduceError(WAEError, ValueError):
    """The reproduction cannot be set up as asked (recipes, budget, run directories)."""


@dataclass(frozen=True)
class Method:
    """One row of the comparison.

    key: run-directory name and results key; label: how the report names it; paper: the
    paper's name for the row; trained: "engine" (its own run), "derived" (a checkpoint of
    another method's run, e.g. WAE's stage 2); beyond: a row the paper does not have.
    """

    key: str
    label: str
    paper: str
    trained: str = "engine"
    needs: tuple[str, ...] = ()  # methods whose checkpoints this one starts from
    beyond: bool = False
    taught: bool = False  # started from and taught by the trained full network


_BEYOND = "beyond the paper"
METHODS: tuple[Method, ...] = (
    Method("full", "Full resolution", "VGG16 (224)"),
    Method("half", "I_R (half-size input)", "VGG16 (112), I_R"),
    Method("wavelet", "Wavelet+CNN", "Wavelet+CNN"),
    Method("ca", "cA alone", "cA"),
    Method("encoder", "Decomposition+CNN", "Decomposition+CNN"),
    Method("wae_noft", "WAE w/o stage 3", "WAE w/o FT", trained="derived", needs=("wae",)),
    Method("wae", "WAE", "WAE (ours)"),
    Method("il", "I_L alone", "I_L", needs=("wae",)),
    Method("taylor", "Taylor pruning", "Taylor-1 / Taylor-2", needs=("full", "wae")),
    Method("wae_kd", "WAE + distillation", _BEYOND, needs=("full",), beyond=True, taught=True),
    Method("half_kd", "I_R + distillation", _BEYOND, needs=("full",), beyond=True, taught=True),
    Method("wae_light", "WAE, light encoder", _BEYOND, beyond=True),
    Method(
        "wae_kd_unfrozen",
        "WAE + distillation, encoder unfrozen in stage 2",
        _BEYOND,
        needs=("full",),
        beyond=True,
        taught=True,
    ),
    Method(
        "wae_kd_wide",
        "WAE + distillation, I_H branch at 1/2 width",
        _BEYOND,
        needs=("full",),
        beyond=True,
        taught=True,
    ),
    Method(
        "wae_kd_feat",
        "WAE + distillation of logits and features",
        _BEYOND,
        needs=("full",),
        beyond=True,
        taught=True,
    ),
)
METHOD_KEYS = tuple(m.key for m in METHODS)
BEYOND_KEYS = tuple(m.key for m in METHODS if m.beyond)
TAUGHT_KEYS = tuple(m.key for m in METHODS if m.taught)
# The distilled WAE's variants (what the paper leaves open): key -> what changes.
WAE_KD_VARIANTS = {"wae_kd_unfrozen": "unfrozen", "wae_kd_wide": "wide", "wae_kd_feat": "feat"}
#: The feature-distillation weight of the wae_kd_feat row (untuned; the loss is a relative
#: error, ~1 where the student starts, so this weights it like the soft targets).
FEATURE_KD_WEIGHT = 1.0
#: The unfrozen row's stage-2 gradient-norm clip: at the classifier's SGD lr (0.05) the encoder
#: otherwise blows up within a few steps (fonts: the energy loss overflowed at step 9).
UNFROZEN_GRAD_CLIP = 2.0


def select_methods(keys: Sequence[str] | None) -> tuple[str, ...]:
    """The rows to run for ``--methods`` (None: all), with the rows they start from added,
    in :data:`METHODS` order; a clear :class:`ReproduceError` for an unknown key."""
    if keys is None:
        return METHOD_KEYS
    bad = [k for k in keys if k not in METHOD_KEYS]
    if bad or not keys:
        raise ReproduceError(
            f"--methods takes row keys from {', '.join(METHOD_KEYS)}; got "
            f"{', '.join(map(repr, bad)) if bad else 'none'}. E.g. --methods full half_kd wae_kd."
        )
    by_key = {m.key: m for m in METHODS}
    chosen, todo = set(), list(keys)
    while todo:
        k = todo.pop()
        if k not in chosen:
            chosen.add(k)
            todo += list(by_key[k].needs)
    return tuple(k for k in METHOD_KEYS if k in chosen)


def short_hash(obj: Any) -> str:
    """A 10-hex-digit hash of JSON-able data (names init checkpoints by what made them)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


# --------------------------------------------------------------------------------------------
# Recipes -> per-method configs
# --------------------------------------------------------------------------------------------


def split_stages(wae_dict: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """The WAE recipe's (transform-only, classifier, joint) stages; a clear error otherwise."""
    stages = wae_dict["stages"]
    ok = len(stages) == 3
    if ok:
        s1, s2, s3 = stages
        ok = (
            s1["losses"].get("classification", 0) == 0
            and s2["losses"].get("classification", 0) > 0
            and s2["losses"].get("transform", 0) == 0
            and s3["losses"].get("classification", 0) > 0
        )
    if not ok:
        raise ReproduceError(
            "The WAE recipe must have the paper's three stages in order: the WAE alone "
            "(transform loss only), the classifier (classification loss only), then joint "
            "fine-tuning (classification + transform). See recipes/fashion_mnist.toml."
        )
    return copy.deepcopy(stages[0]), copy.deepcopy(stages[1]), copy.deepcopy(stages[2])


def classifier_epochs(wae_dict: Mapping[str, Any]) -> int:
    """E_c: the WAE's classifier epochs (stage 2 + stage 3), every classifier's budget."""
    _, s2, s3 = split_stages(wae_dict)
    return int(s2["epochs"]) + int(s3["epochs"])


def plain_names(wae_model: str) -> tuple[str, str]:
    """The registered full- and half-resolution baselines of a WAE model name:
    ``wae_small_vgg_28`` -> (``small_vgg_28_full``, ``small_vgg_28_half``)."""
    base = wae_model.removeprefix("wae_")
    full, half = f"{base}_full", f"{base}_half"
    if not (is_model(full) and is_model(half)):
        raise ReproduceError(
            f"No registered plain baselines {full!r} / {half!r} for the WAE model "
            f"{wae_model!r}: the comparison needs the same backbone at full and half "
            f"resolution. Use a recipe whose model has them (e.g. wae_small_vgg_28)."
        )
    return full, half


def _with_epochs(stage: dict, epochs: int, quick: bool) -> dict:
    stage = copy.deepcopy(stage)
    stage["epochs"] = 1 if quick else int(epochs)
    sch = stage.setdefault("schedule", {})
    if sch.get("warmup_epochs", 0) >= stage["epochs"]:
        sch["warmup_epochs"] = 0  # a warm-up as long as the stage would be refused
    return stage


def _classifier_stage(s2: dict, epochs: int, quick: bool, freeze: Sequence[str]) -> dict:
    st = _with_epochs(s2, epochs, quick)
    st["freeze"] = list(freeze)
    st["calibrate_norms"] = True
    st["losses"] = {"classification": 1.0}
    return st


@dataclass(frozen=True)
class Derivation:
    """The two recipes, checked once and split into what the methods share; each method's
    config is then one call (:meth:`configs`, :meth:`il`, :meth:`taylor`, :meth:`wae_kd`,
    :meth:`half_kd`).

    Build it with :meth:`of`. ``w``: the WAE recipe as a dict; ``stages``: its three stages;
    ``base_stage``: the baseline recipe's stage at the classifier budget E_c.
    """

    w: dict[str, Any]
    stages: tuple[dict, dict, dict]
    base_stage: dict[str, Any]
    e_c: int
    full_name: str
    half_name: str
    seed: int
    quick: bool

    @classmethod
    def of(
        cls, wae_cfg: TrainConfig, base_cfg: TrainConfig, *, seed: int, quick: bool = False
    ) -> Derivation:
        """Check the recipes (the paper's three stages, one baseline stage, no per-method
        keys set) and split them; a clear :class:`ReproduceError` otherwise."""
        w = config_to_dict(wae_cfg)
        b = config_to_dict(base_cfg)
        s1, s2, s3 = split_stages(w)
        if len(b["stages"]) != 1 or b["stages"][0]["losses"].get("transform", 0) > 0:
            raise ReproduceError(
                "The baseline recipe must have one classification stage (see "
                "recipes/fashion_mnist_baseline.toml)."
            )
        e_c = int(s2["epochs"]) + int(s3["epochs"])
        for k in ("decomposer", "use_high", "encoder"):
            if k in w["model"]["kwargs"]:
                raise ReproduceError(
                    f"The WAE recipe sets model.kwargs.{k}; the reproduction sets it per "
                    f"method. Remove it from the recipe."
                )
        full_name, half_name = plain_names(w["model"]["name"])
        base_stage = _with_epochs(b["stages"][0], e_c, quick)
        return cls(w, (s1, s2, s3), base_stage, e_c, full_name, half_name, seed, quick)

    def _cfg(
        self,
        name: str,
        model: dict,
        stages: list[dict],
        data: dict | None = None,
        teacher: dict | None = None,
    ) -> dict:
        """One method's resolved config: validated now, so a recipe change that breaks a
        method fails before any training."""
        w = self.w
        raw: dict[str, Any] = {
            "name": f"reproduce-{name}",
            "seed": self.seed,
            "model": model,
            "data": copy.deepcopy(data or w["data"]),
            "eval": copy.deepcopy(w["eval"]),
            "runtime": copy.deepcopy(w["runtime"]),
            "stages": stages,
        }
        if teacher is not None:
            raw["teacher"] = teacher
        return config_to_dict(load_config(raw))

    def _wae_model(self, **kwargs: Any) -> dict[str, Any]:
        return {"name": self.w["model"]["name"], "kwargs": {**self.w["model"]["kwargs"], **kwargs}}

    def _plain_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.w["model"]["kwargs"].items() if k not in WAE_ONLY_KWARGS}

    def _classifier(self, freeze: Sequence[str] = ()) -> list[dict]:
        return [_classifier_stage(self.stages[1], self.e_c, self.quick, freeze)]

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every method whose config needs no other run: full, half, wavelet, ca, encoder, wae,
        wae_light."""
        plain_kw = self._plain_kwargs()
        return {
            "full": self._cfg(
                "full", {"name": self.full_name, "kwargs": plain_kw}, [self.base_stage]
            ),
            "half": self._cfg(
                "half",
                {"name": self.half_name, "kwargs": plain_kw},
                [copy.deepcopy(self.base_stage)],
            ),
            "wavelet": self._cfg(
                "wavelet", self._wae_model(decomposer="wavelet"), self._classifier()
            ),
            "ca": self._cfg(
                "ca", self._wae_model(decomposer="wavelet", use_high=False), self._classifier()
            ),
            # Decomposition+CNN: the encoder learns with the classifier (nothing frozen).
            "encoder": self._cfg(
                "encoder", self._wae_model(decomposer="encoder"), self._classifier()
            ),
            "wae": self._cfg("wae", self._wae_model(), self._wae_stages()),
            # Beyond the paper: the WAE row with the light encoder, nothing else changed.
            "wae_light": self._cfg(
                "wae_light", self._wae_model(encoder="light"), self._wae_stages()
            ),
        }

    def _wae_stages(self) -> list[dict]:
        return [_with_epochs(s, s["epochs"], self.quick) for s in self.stages]

    def il(self, init: str) -> dict[str, Any]:
        """I_L alone: the WAE network without I_H, its WAE frozen, started from `init` (the
        checkpoint holding the WAE's stage-1 weights)."""
        model = {**self._wae_model(use_high=False), "init": init}
        return self._cfg("il", model, self._classifier(["wae"]))

    def taylor(self, model: Mapping[str, Any]) -> dict[str, Any]:
        """The pruned network (``{"name", "kwargs", "init"}``), fine-tuned for stage 3's epochs."""
        s3 = self.stages[2]
        st = _with_epochs(s3, s3["epochs"], self.quick)
        st.update(name="finetune", losses={"classification": 1.0}, freeze=[], calibrate_norms=False)
        data = copy.deepcopy(self.w["data"])
        # The pruned builder has no registered input size: state the full model's.
        mc = model_cfg(self.full_name)
        data["input_size"] = data.get("input_size") or mc["input_size"]
        data["in_chans"] = data.get("in_chans") or mc["in_chans"]
        spec = {"name": model["name"], "kwargs": dict(model["kwargs"]), "init": model["init"]}
        return self._cfg("taylor", spec, [st], data)

    def wae_kd(self, teacher: str, variant: str = "") -> dict[str, Any]:
        """WAE + distillation (beyond the paper): the WAE's three stages, its I_L network and
        s_L head started from the trained full network in `teacher`, which teaches stages 2
        and 3 with `wae accelerate`'s losses (stage 3 keeps its transform weight).

        ``variant`` (:data:`WAE_KD_VARIANTS`) changes one thing: "unfrozen" trains the
        encoder in stage 2 (with stage 3's transform weight), "wide" builds the I_H branch
        at 1/2 width, "feat" adds the feature-distillation loss to stages 2 and 3."""
        losses, table = kd_settings()
        stages = self._wae_stages()
        for st in stages[1:]:
            kept = {k: w for k, w in st["losses"].items() if k == "transform"}
            st["losses"] = {**losses, **kept}
            if variant == "feat":
                st["losses"]["feature_distillation"] = FEATURE_KD_WEIGHT
        if variant == "unfrozen":
            s2, s3 = stages[1], stages[2]
            s2["freeze"] = []
            s2["losses"]["transform"] = s3["losses"].get("transform", 0.0)
            s2.update(lam=s3["lam"], reduction=s3["reduction"], grad_clip=UNFROZEN_GRAD_CLIP)
        kwargs = {"high_divisor": 2} if variant == "wide" else {}
        model = {**self._wae_model(**kwargs), "init": teacher}
        key = next((k for k, v in WAE_KD_VARIANTS.items() if v == variant), "wae_kd")
        return self._cfg(key, model, stages, teacher={**table, "checkpoint": teacher})

    def taught(self, teacher: str) -> dict[str, dict[str, Any]]:
        """Every row started from and taught by the full network in `teacher`."""
        out = {"wae_kd": self.wae_kd(teacher), "half_kd": self.half_kd(teacher)}
        for key, variant in WAE_KD_VARIANTS.items():
            out[key] = self.wae_kd(teacher, variant)
        return out

    def half_kd(self, teacher: str) -> dict[str, Any]:
        """I_R + distillation (beyond the paper): the half-size network at the budget E_c,
        started from (its whole net) and taught by the trained full network in `teacher`."""
        losses, table = kd_settings()
        st = copy.deepcopy(self.base_stage)
        st["losses"] = dict(losses)
        model = {"name": self.half_name, "kwargs": self._plain_kwargs(), "init": teacher}
        return self._cfg("half_kd", model, [st], teacher={**table, "checkpoint": teacher})


def derive_configs(
    wae_cfg: TrainConfig,
    base_cfg: TrainConfig,
    *,
    seed: int,
    quick: bool = False,
    il_init: str | None = None,
    taylor_model: Mapping[str, Any] | None = None,
    kd_teacher: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Plain config dicts (ready for ``run_training``) of every engine-trained method.

    ``il_init`` is the checkpoint holding the WAE's stage-1 weights for I_L alone;
    ``taylor_model`` is ``{"name", "kwargs", "init"}`` of the pruned network; ``kd_teacher``
    the trained full network that starts and teaches the distillation rows. A method whose
    input is not given yet is left out. ``quick`` sets every stage to one epoch.
    """
    d = Derivation.of(wae_cfg, base_cfg, seed=seed, quick=quick)
    out = d.configs()
    if il_init is not None:
        out["il"] = d.il(il_init)
    if taylor_model is not None:
        out["taylor"] = d.taylor(taylor_model)
    if kd_teacher is not None:
        out.update(d.taught(kd_teacher))
    return out


def budget_text(key: str, cfg: Mapping[str, Any] | None) -> str:
    """How a method was trained, in words (the report's budget list)."""
    if key == "wae_noft":
        return "the WAE run's stage-2 checkpoint (stages 1 + 2, no fine-tuning)"
    if cfg is None:
        return ""
    parts = [
        f"{s['name'] or 'stage'} {s['epochs']} ep ({s['optimizer']} lr {s['lr']:g}, "
        f"{s['schedule']['name']}" + (f", frozen {s['freeze']}" if s["freeze"] else "") + ")"
        for s in cfg["stages"]
    ]
    pre = {
        "il": "WAE from the WAE run's stage 1, frozen; ",
        "taylor": "Taylor-pruned from the trained full network, then fine-tuned: ",
        "wae_kd": "I_L network and s_L head from the trained full network, which teaches the "
        "classifying stages" + _kd_text(cfg),
        "half_kd": "started from and taught by the trained full network" + _kd_text(cfg),
        "wae_light": "as WAE, with the light encoder: ",
        "wae_kd_unfrozen": "as WAE + distillation, the encoder unfrozen in stage 2" + _kd_text(cfg),
        "wae_kd_wide": "as WAE + distillation, the I_H branch at 1/2 width" + _kd_text(cfg),
        "wae_kd_feat": "as WAE + distillation, the teacher's features distilled too"
        + _kd_text(cfg),
    }.get(key, "")
    return pre + " + ".join(parts)


def _kd_text(cfg: Mapping[str, Any]) -> str:
    """A config's distillation in words, e.g. ' (classification 0.3 + distillation 0.7,
    T = 4): '; empty without a distillation loss."""
    st = next((s for s in cfg["stages"] if s["losses"].get("distillation")), None)
    if st is None:
        return ""
    losses = " + ".join(f"{k} {w:g}" for k, w in st["losses"].items() if k != "transform")
    return f" ({losses}, T = {cfg['teacher']['temperature']:g}): "


def default_recipes(dataset: str) -> tuple[str, str]:
    """The packaged (WAE, baseline) recipes for `dataset`: ``textures`` for a
    skimage-textures name, ``fonts`` for a fonts name, else ``fashion_mnist`` (which another
    dataset adapts with --set)."""
    if parse_textures_name(dataset) is not None:
        return "textures.toml", "textures_baseline.toml"
    if parse_fonts_name(dataset) is not None:
        return "fonts.toml", "fonts_baseline.toml"
    return "fashion_mnist.toml", "fashion_mnist_baseline.toml"


def recipe_source(path: str | Path | None, default_name: str) -> str | Path:
    """The recipe to load: `path` if given, else the packaged recipe `default_name` (by
    name, which :func:`~wae.train.load_config` resolves; an ordinary install has it too)."""
    if path is not None:
        return Path(path)
    name = default_name.removesuffix(".toml")
    if name not in list_recipes():
        raise ReproduceError(
            f"The packaged recipe {name!r} is missing from this installation of wae; pass the "
            f"recipe with --recipe / --baseline-recipe."
        )
    return name
