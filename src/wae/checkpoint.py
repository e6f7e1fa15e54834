"""Checkpoints that load without unpickling anything.

A checkpoint is a directory:
- `model.safetensors`: the weights (parameters and buffers, from `state_dict`);
- `model.json`: how to rebuild the architecture (`spec`: a registered model name and its
  keyword arguments, or a backbone name for WAENet/PlainNet.from_backbone), plus metadata
  (classes, input size, channels, mean/std) and the resolved config of the run;
- optionally `train_state.safetensors` + `train_state.json`: optimizer, scheduler, RNG and
  loop counters, so `--resume` continues exactly.
Files are written to a temporary name in the same directory and renamed into place, so a
crash mid-write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import WAEError, first_line
from .models.spec import MAX_SIZE, SpecError, is_factory_name, validate_spec

__all__ = [
    "META",
    "WEIGHTS",
    "CheckpointError",
    "CheckpointMeta",
    "atomic_save_tensors",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_checkpoint",
    "check_num_classes",
    "load_model",
    "model_spec",
    "read_checkpoint_meta",
    "read_meta",
    "save_checkpoint",
]

WEIGHTS = "model.safetensors"
META = "model.json"
FORMAT_VERSION = 1


class CheckpointError(WAEError, ValueError):
    """A checkpoint that is missing, corrupt, or does not fit what it is loaded into."""


def _umask() -> int:
    """The process umask. Read from /proc where it exists: setting the umask to read it back
    (the portable way) changes it for every thread of the process for a moment."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _normal_mode(tmp: str | os.PathLike) -> None:
    """Give a mkstemp file (always 0600) the mode `open()` would: 0666 minus the umask."""
    os.chmod(tmp, 0o666 & ~_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory + rename.

    The file gets the permissions an ordinary write would give it (0666 minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _normal_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """`obj` as indented, key-sorted JSON, written as :func:`atomic_write_bytes` does."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_save_tensors(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], meta: dict[str, str]
) -> None:
    """Save `tensors` as safetensors (with header `meta`) to `path` atomically, normal mode."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # safetensors refuses shared or non-contiguous storage: give it plain copies.
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, tmp, meta)
        _normal_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def model_spec(model: nn.Module) -> dict[str, Any]:
    """How `model` was built, as recorded by `create_model` / `from_backbone`, checked to be
    one a checkpoint can hold and load back (:func:`validate_spec`)."""
    spec = getattr(model, "wae_spec", None)
    if spec is None:
        raise CheckpointError(
            f"{type(model).__name__} carries no build spec, so a checkpoint could not rebuild "
            f"it. Build models with wae.create_model(name, ...) or WAENet.from_backbone(<name>)"
            f" (a backbone given by name, not as a module)."
        )
    try:
        return validate_spec(spec, f"The build spec of this {type(model).__name__}")
    except SpecError as e:
        raise CheckpointError(
            f"{e} A checkpoint of it could not be loaded back, so none is written: build the "
            f"model with arguments a checkpoint can hold."
        ) from None


def save_checkpoint(
    directory: str | os.PathLike,
    model: nn.Module,
    *,
    meta: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Save `model` (weights + spec + metadata + resolved config) into `directory`."""
    directory = Path(directory)
    spec = model_spec(model)  # first: a spec no checkpoint can hold leaves nothing behind
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "format_version": FORMAT_VERSION,
        "spec": spec,
        "meta": dict(meta or {}),
        "config": dict(config or {}),
    }
    atomic_save_tensors(directory / WEIGHTS, model.state_dict(), {"format": "pt"})
    atomic_write_json(directory / META, doc)  # last: its presence marks a complete checkpoint
    return directory


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's model.json document, format-checked; the weights are not read.

    :func:`read_checkpoint_meta`'s document as a plain dict (spec, meta, config), for
    readers that pass it on or copy from it.
    """
    return read_checkpoint_meta(directory).doc


def read_checkpoint_meta(directory: str | os.PathLike) -> CheckpointMeta:
    """The one reader of checkpoint metadata: the model.json in `directory`, format-checked
    and validated (:class:`CheckpointMeta`); the weights are not read.

    Everything that needs a checkpoint's spec, meta (dataset, classes, input size, stage
    fingerprint) or config goes through here.
    """
    directory = Path(directory)
    if not (directory / META).is_file() or not (directory / WEIGHTS).is_file():
        raise CheckpointError(
            f"{directory} is not a wae checkpoint: it needs {META} and {WEIGHTS}. Point "
            f"--checkpoint at a directory written by `wae train` (e.g. runs/<name>/final)."
        )
    try:
        doc = json.loads((directory / META).read_text())
    except Exception as e:
        raise CheckpointError(f"Could not read the checkpoint in {directory}: {e}") from e
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory / META} is not a wae checkpoint of format {FORMAT_VERSION} (its "
            f"format_version is {version!r}). Use a checkpoint written by this version of wae."
        )
    return CheckpointMeta.from_doc(doc, directory / META)


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's metadata (its model.json), read and validated once, with the fields its
    readers need typed (in the manner of torchvision's ``Weights.meta`` or timm's
    ``pretrained_cfg``). Built by :func:`read_checkpoint_meta` (from a directory) or
    :meth:`from_doc` (a document in memory, e.g. one :func:`load_model` returned).

    The image size and channels are worked out one way for every reader: the recorded
    metadata, else the build spec's arguments, else the registered model's defaults (as
    training resolves them); None where none of them says. ``doc`` is the whole document
    (``spec``, ``meta``, ``config``) for everything else; treat it as read-only.
    """

    doc: dict[str, Any]
    num_classes: int | None  # the spec's, else the metadata's, else the registered default
    input_size: int | None  # the side of the (square) images the model takes: H of input_hw
    input_hw: tuple[int, int] | None  # (H, W); differ only for a spec built with [H, W]
    in_chans: int | None
    classes: tuple[str, ...] | None
    dataset: str | None  # the metadata's, else the run config's data.dataset
    mean: tuple[float, ...] | None  # the normalisation the data pipeline applied
    std: tuple[float, ...] | None

    @property
    def spec(self) -> dict[str, Any]:
        """How to rebuild the model: {"builder", "name" | "backbone", "kwargs"}, validated."""
        return self.doc["spec"]

    @property
    def meta(self) -> dict[str, Any]:
        """The raw metadata (dataset, classes, sizes, mean/std, stage fingerprint, ...)."""
        return self.doc["meta"]

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config of the run that wrote the checkpoint ({} if none)."""
        return self.doc["config"]

    @property
    def arch(self) -> str:
        """The architecture's name: the registered model's, or the backbone's."""
        return str(self.spec.get("name") or self.spec.get("backbone"))

    @property
    def data_config(self) -> dict[str, Any]:
        """The run config's data table ({} if none)."""
        data = self.config.get("data")
        return data if isinstance(data, dict) else {}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], where: str | os.PathLike = META) -> CheckpointMeta:
        """Validate a model.json document (`where` names it in errors) and type its fields.
        The document's format_version is the reader's to check (:func:`read_checkpoint_meta`)."""
        if not isinstance(doc, Mapping):
            raise CheckpointError(f"{where}: the document must be a JSON object.")
        doc = dict(doc)
        for key in ("meta", "config"):
            if not isinstance(doc.setdefault(key, {}), dict):
                raise CheckpointError(f"{where}: '{key}' must be a JSON object.")
        _check_meta(doc["meta"], where)
        try:
            doc["spec"] = validate_spec(doc.get("spec"), f"{where}: spec")
        except SpecError as e:
            raise CheckpointError(str(e)) from None
        meta, kwargs = doc["meta"], doc["spec"].get("kwargs", {})
        defaults = _registered_defaults(doc["spec"])
        size = _first(meta.get("input_size"), kwargs.get("input_size"), defaults.get("input_size"))
        hw = None if size is None else _hw(size)
        classes = meta.get("classes")
        data = doc["config"].get("data")
        data_set = data.get("dataset") if isinstance(data, dict) else None
        return cls(
            doc=doc,
            num_classes=_first(
                kwargs.get("num_classes"),
                meta.get("num_classes"),
                len(classes) if classes else None,
                defaults.get("num_classes"),
            ),
            input_size=hw[0] if hw else None,
            input_hw=hw,
            in_chans=_first(meta.get("in_chans"), kwargs.get("in_chans"), defaults.get("in_chans")),
            classes=tuple(classes) if classes is not None else None,
            dataset=_first(meta.get("dataset"), data_set if isinstance(data_set, str) else None),
            mean=tuple(meta["mean"]) if meta.get("mean") is not None else None,
            std=tuple(meta["std"]) if meta.get("std") is not None else None,
        )


def _first(*values: Any) -> Any:
    """The first of `values` that is not None (or empty), else None."""
    return next((v for v in values if v is not None and v != ""), None)


def _hw(size: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    """(H, W) of an image size: a side, or [H] / [H, W] (a spec's)."""
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    return int(size), int(size)


def _registered_defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The registered model's default input_size, in_chans and num_classes (a spec built
    from the registry); {} for a model built from a backbone."""
    from .models import is_model, model_cfg

    name = spec.get("name")
    if spec.get("builder") != "registry" or not is_model(name):
        return {}
    cfg = model_cfg(name)
    return {k: cfg.get(k) for k in ("input_size", "in_chans", "num_classes")}


def _check_meta(meta: dict[str, Any], where: str | os.PathLike) -> None:
    """The metadata fields that size data and models, bounded like the spec's, and the
    others :class:`CheckpointMeta` types."""
    size, chans, classes = meta.get("input_size"), meta.get("in_chans"), meta.get("classes")
    count, dataset = meta.get("num_classes"), meta.get("dataset")
    bad = None
    if size is not None and not (type(size) is int and 8 <= size <= MAX_SIZE):
        bad = f"'input_size' must be an integer from 8 to {MAX_SIZE}, got {size!r}"
    elif chans is not None and not (type(chans) is int and 1 <= chans <= 4):
        bad = f"'in_chans' must be 1 to 4, got {chans!r}"
    elif classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        bad = "'classes' must be a list of class names"
    elif count is not None and not (type(count) is int and 1 <= count <= 100_000):
        bad = f"'num_classes' must be an integer from 1 to 100000, got {count!r}"
    elif dataset is not None and not isinstance(dataset, str):
        bad = f"'dataset' must be a name, got {dataset!r}"
    else:
        bad = next(
            (f"'{k}' {_numbers(meta.get(k))}" for k in ("mean", "std") if _numbers(meta.get(k))),
            None,
        )
    if bad:
        raise CheckpointError(f"{where}: meta {bad}. Use a checkpoint written by wae, unedited.")


def _numbers(value: Any) -> str | None:
    """What is wrong with a mean/std value (None: nothing; absent is fine)."""
    ok = value is None or (
        isinstance(value, list)
        and 1 <= len(value) <= 4
        and all(type(v) in (int, float) and math.isfinite(v) for v in value)
    )
    return None if ok else f"must be a list of 1 to 4 numbers, got {value!r}"


def load_checkpoint(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read (model.json document, state_dict) from a checkpoint directory; nothing unpickled."""
    doc = read_meta(directory)
    return doc, _read_weights(directory)


def _read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_file(Path(directory) / WEIGHTS)
    except Exception as e:
        raise CheckpointError(f"Could not read the checkpoint in {directory}: {e}") from e


def _allowed_names(allow_code: Collection[str]) -> set[str]:
    """`allow_code` as a set, each checked to be a "pkg.module:function" name."""
    names = {allow_code} if isinstance(allow_code, str) else set(allow_code)
    for name in names:
        if not is_factory_name(name):
            raise CheckpointError(
                f"--allow-code (allow_code) takes names of your own functions as "
                f"'pkg.module:function' (dotted Python names, one colon), got {name!r}."
            )
    return names


def _check_allowed(spec: Mapping[str, Any], allow_code: Collection[str]) -> None:
    """Refuse a spec whose backbone is a user's factory ("pkg.module:function") that the
    caller has not allowed by that exact name: a checkpoint never selects code to import."""
    name = spec.get("backbone")
    if is_factory_name(name) and name not in _allowed_names(allow_code):
        raise CheckpointError(
            f"This checkpoint's network is built by your own code {name!r}. A checkpoint "
            f"never selects code by itself: pass --allow-code {name} (Python: "
            f"allow_code=[{name!r}]) if you trust it."
        )


def build_from_spec(spec: Mapping[str, Any], *, allow_code: Collection[str] = ()) -> nn.Module:
    """Rebuild an (untrained) model from a spec recorded by create_model / from_backbone.

    The spec is validated first (:func:`wae.models.spec.validate_spec`): a builder only ever
    gets the keys it may take from a file, bounded. A backbone that is a user's factory
    ("pkg.module:function") is imported only if `allow_code` holds that exact name. A spec
    that validates but does not build (an argument that builder does not take, a layer the
    base model lacks) is a CheckpointError too.
    """
    from .models import PlainNet, WAENet, create_model

    try:
        spec = validate_spec(spec)
    except SpecError as e:
        raise CheckpointError(str(e)) from None
    _check_allowed(spec, allow_code)
    kind, kwargs = spec["builder"], dict(spec.get("kwargs", {}))
    try:
        if kind == "registry":
            return create_model(spec["name"], **kwargs)
        if kind == "plain":
            return PlainNet.from_backbone(spec["backbone"], **kwargs)
        # Rebuilding a trained model: whether WAE pays off was the builder's question.
        return WAENet.from_backbone(spec["backbone"], check_payoff=False, **kwargs)
    except (WAEError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(
            f"The model spec {dict(spec)} cannot be built ({e}). The checkpoint is corrupt, "
            f"edited, or from another version of wae."
        ) from e


def _check_fits(
    spec: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    where: Path,
    allow_code: Collection[str] = (),
) -> None:
    """Refuse a spec whose architecture does not match the weights file, before building it
    for real: built on the meta device (no memory, global RNG untouched), its tensor shapes
    are compared with the file's. So a spec cannot make us allocate more than its weights
    file holds (e.g. a width edited to a huge value)."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = build_from_spec(spec, allow_code=allow_code)
    except CheckpointError:
        raise
    except Exception:  # a builder that reads tensor values cannot run on meta: build for real
        return
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != saved:
        key = next(k for k in sorted(shapes.keys() | saved.keys()) if shapes.get(k) != saved.get(k))
        raise CheckpointError(
            f"The weights in {where} do not fit the architecture its {META} describes "
            f"({key!r}: {saved.get(key, 'missing')} in {WEIGHTS}, {shapes.get(key, 'none')} in "
            f"the architecture). The checkpoint is corrupt, edited, or from another version."
        )


def check_num_classes(
    doc: Mapping[str, Any], num_classes: int | None, directory: str | os.PathLike
) -> None:
    """Refuse a checkpoint (its model.json document) whose class count is not `num_classes`."""
    saved = doc["spec"].get("kwargs", {}).get("num_classes")
    if num_classes is not None and saved is not None and num_classes != saved:
        raise CheckpointError(
            f"The checkpoint in {directory} has {saved} classes, but {num_classes} were "
            f"asked for. Use a checkpoint trained on this dataset, or train a new one."
        )


def load_model(
    directory: str | os.PathLike,
    *,
    num_classes: int | None = None,
    allow_code: Collection[str] = (),
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint and load its weights: (model in eval mode, document).

    `num_classes`, if given, must match the checkpoint's (a clear error otherwise).
    `allow_code`: the names of your own backbone factories ("pkg.module:function") that this
    checkpoint may build its network with; any other such name is refused, never imported.
    """
    _allowed_names(allow_code)  # the option first
    doc = read_meta(directory)
    _check_allowed(doc["spec"], allow_code)  # before the weights are read
    state = _read_weights(directory)
    check_num_classes(doc, num_classes, directory)
    _check_fits(doc["spec"], state, Path(directory), allow_code)
    model = build_from_spec(doc["spec"], allow_code=allow_code)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"The weights in {directory} do not fit the architecture its {META} describes "
            f"({first_line(e)}). The checkpoint is corrupt or from another version."
        ) from e
    return model.eval(), doc
