"""``wae.accelerate(model, train_data, test_data, input_size=..., output=...)``: the Python call
for a trained ``nn.Module`` in a notebook; the work is ``wae accelerate``'s
(:func:`wae.apps.accelerate.accelerate`), fed with data written to OUT.

How the module and the data reach the engine, which builds networks and datasets by name from
a config (so runs resume, are reused and can be re-run from their config.json):

* the network: by a name the engine can build it from, checked to rebuild `model`'s very
  layers: `factory` ("pkg.module:function" or a backbone name), else `model`'s class
  ("module:Class", ``__main__:Net`` for a notebook's class), else an in-memory factory of
  this process (a class needing constructor arguments, or defined inside a function). Its
  weights become the teacher checkpoint ``OUT/teacher`` (safetensors + JSON, no pickle);
* the data: Datasets or DataLoaders are written once as an ImageFolder tree ``OUT/data``
  (8-bit PNGs, ``train/`` and ``test/``, one folder per class) that declares its image size
  (``wae-folder.json``), so it is used at that size like CIFAR, not resized by the ImageNet
  rule; the students' configs name that path. A dataset name or ImageFolder path is used as
  ``wae accelerate --data`` uses it.

Re-running with the same network and images reuses OUT/data, OUT/teacher and finished runs;
other weights or images are refused unless ``overwrite=True``.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import cost
from ..checkpoint import CheckpointError, load_model, model_spec, read_meta, save_checkpoint
from ..encoders import DEFAULT_ENCODER, check_encoder
from ..errors import first_line
from ..models import PlainNet, WAENet
from ..models._backbone import build_classifier, import_factory
from ..models.spec import is_factory_name
from ..models.trained import _first_conv, _num_classes
from ..runlock import RunLock
from . import accelerate as app
from .accelerate import QUICK_OVERRIDES, AccelerateError, check_payoff, student_configs
from .accelerate_data import DataPlan, plan_data

__all__ = ["AccelerateResult", "accelerate", "load_student"]

_HELD: dict[str, nn.Module] = {}  # the in-memory factories' networks, by attribute name


@dataclass
class AccelerateResult:
    """What :func:`accelerate` returns.

    ``students``: {"wae": WAE + KD[, "half": I_R + KD]}, trained, on the CPU, in eval mode;
    ``results``: results.json's dict; ``output``: OUT; ``factory``: the name the checkpoints
    rebuild your network by (``allow_code=[factory]``); ``in_memory``: True when that is a
    factory of this process only (reload elsewhere with :func:`load_student`).
    """

    students: dict[str, nn.Module]
    results: dict[str, Any]
    output: Path
    factory: str
    in_memory: bool


def accelerate(
    model: nn.Module,
    train_data: Dataset | DataLoader | str | os.PathLike[str],
    test_data: Dataset | DataLoader | None = None,
    *,
    input_size: int,
    output: str | os.PathLike[str],
    factory: str | None = None,
    data_dir: str | None = None,
    overrides: Sequence[str] = (),
    half: bool = True,
    force: bool = False,
    overwrite: bool = False,
    quick: bool = False,
    latency_batch: int = 256,
    threads: int | None = None,
    min_run_time: float | None = None,
    encoder: str = DEFAULT_ENCODER,
    log: Callable[[str], Any] = print,
    backends: Sequence[str] | None = None,
) -> AccelerateResult:
    """Make your trained classifier `model` cheaper: a WAE started from it and taught by it,
    beside the same network on the half-size image, all measured against it.

    `model`: your trained full-resolution CNN, (N, C, S, S) images in [0, 1] -> (N, K) logits
    (S = `input_size`). `train_data`, `test_data`: Datasets of (image tensor (C, H, W) in
    [0, 1] or uint8, int label) or DataLoaders of such batches, every class 0..K-1 in both
    (no random augmentation: wae augments, ``data.augment``); or `train_data` a dataset name
    or ImageFolder path (as ``wae accelerate --data``; `data_dir` where it lives) and no
    `test_data`. `factory`: "pkg.module:function" (called with num_classes / in_chans when
    it takes them) or a backbone name that builds your network; default: `model`'s class when
    calling it rebuilds the same layers, else an in-memory factory. The other options are
    ``wae accelerate``'s (:func:`wae.apps.accelerate.accelerate`); `min_run_time` defaults to
    0.3 s with `quick`, else 2 s. Everything is checked before anything is written.

    Writes OUT/data, OUT/teacher, OUT/wae, OUT/half, OUT/results.json and results.md, all
    data (safetensors + JSON). Reload a checkpoint with your factory, never a pickle::

        from wae.checkpoint import load_model
        student, doc = load_model("OUT/wae/final", allow_code=[result.factory])

    (``result.factory`` e.g. "mynets:Net"; "__main__:Net" needs ``Net`` defined first). When
    ``result.in_memory``, the checkpoints name a factory of this process: the returned
    students work now; elsewhere, ``load_student("OUT/wae/final", Net(...))``.
    """
    opts = dict(
        overrides=overrides,
        half=half,
        force=force,
        overwrite=overwrite,
        quick=quick,
        latency_batch=latency_batch,
        threads=threads,
        min_run_time=min_run_time if min_run_time is not None else (0.3 if quick else 2.0),
        encoder=encoder,
        log=log,
        backends=backends,
    )
    _check_options(**opts)
    run = _setup(model, train_data, test_data, input_size, output, factory, data_dir, opts)
    try:
        run.lock.acquire()
        run.data.write(log)
        _save_teacher(run.tdir, run.teacher, run.data, run.size)
        results = app.accelerate(
            run.lock.dir, checkpoint=run.tdir, allow_code=run.code, lock=run.lock, **opts
        )
    finally:
        run.lock.release()
    students = {k: load_model(results[k]["checkpoint"], allow_code=run.code)[0] for k in run.keys}
    return AccelerateResult(students, results, run.lock.dir, run.factory, run.in_memory)


@dataclass
class _Run:
    """Everything :func:`accelerate` checked and built before writing anything."""

    lock: RunLock
    data: DataPlan
    teacher: PlainNet
    tdir: Path
    size: int
    factory: str
    in_memory: bool
    code: list[str]  # allow_code: the factory, when it is one
    keys: list[str]  # the students: "wae"[, "half"]


def _setup(
    model: Any,
    train_data: Any,
    test_data: Any,
    input_size: Any,
    output: Any,
    factory: Any,
    data_dir: Any,
    opts: dict[str, Any],
) -> _Run:
    """Check every argument, the images, the students' configs and the MAC ratio (the app's
    own checks, on the teacher document to be written): nothing is written."""
    net = _network(model)
    size = _size(input_size)
    chans = _first_conv(net).in_channels
    num_classes = _probe(net, chans, size)
    lock = RunLock(output, "wae accelerate")  # checks the path
    lock.check()
    data = plan_data(train_data, test_data, lock.dir / "data", data_dir, size, chans, num_classes)
    data.check_reuse(opts["overwrite"])
    name, in_memory = _factory(net, factory, num_classes, chans, opts["log"])
    teacher = _teacher(name, net, num_classes, chans)
    tdir = lock.dir / "teacher"
    _check_teacher(tdir, teacher, opts["overwrite"])
    meta = {"dataset": data.dataset, "input_size": size, "in_chans": chans}
    doc = _teacher_doc(teacher, {**meta, "num_classes": num_classes}, data)
    overrides = [*(QUICK_OVERRIDES if opts["quick"] else ()), *opts["overrides"]]  # as the app
    configs = student_configs(tdir, overrides, half=opts["half"], doc=doc, encoder=opts["encoder"])
    check_payoff(configs["wae"], teacher, num_classes, opts["force"], log=lambda m: None)
    code = [name] if is_factory_name(name) else []
    return _Run(lock, data, teacher, tdir, size, name, in_memory, code, list(configs))


def load_student(directory: str | os.PathLike[str], model: nn.Module) -> nn.Module:
    """The network of a checkpoint :func:`accelerate` wrote for a network it could not name
    (``result.in_memory``): `model`, an instance of your network (any weights), stands in for
    the in-memory factory the checkpoint names. Returns it loaded, in eval mode."""
    try:
        name = read_meta(directory)["spec"].get("backbone")
    except CheckpointError as e:
        raise AccelerateError(str(e)) from None
    module, _, attr = str(name).partition(":")
    if module != __name__ or not attr.startswith("in_memory_"):
        raise AccelerateError(
            f"{directory} names its network {name!r}, not an in-memory one: load it with "
            f"wae.checkpoint.load_model({str(directory)!r}, allow_code=[{name!r}])."
        )
    _HELD[attr] = copy.deepcopy(_network(model)).cpu()
    try:
        return load_model(directory, allow_code=[name])[0]
    except CheckpointError as e:
        raise AccelerateError(f"{e} Pass an instance of the network {directory} holds.") from None


def __getattr__(attr: str) -> Callable[[], nn.Module]:
    """The in-memory factories ("wae.apps.accelerate_module:in_memory_<digest>"): each
    returns a copy of the network registered under its name in this process."""
    held = _HELD.get(attr)
    if held is None:
        raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")

    def in_memory_factory() -> nn.Module:  # on the default device, as a constructor would be
        return copy.deepcopy(held).to(torch.get_default_device())

    return in_memory_factory


# --------------------------------------------------------------------------------------------
# The arguments
# --------------------------------------------------------------------------------------------


def _network(model: Any) -> nn.Module:
    """`model` as the classifier itself (a full-resolution PlainNet unwrapped)."""
    if not isinstance(model, nn.Module):
        raise AccelerateError(
            f"model must be your trained classifier, an nn.Module, got "
            f"{type(model).__name__}. To start from a wae checkpoint directory or a "
            f"safetensors file, use `wae accelerate --checkpoint` or `--model --weights`."
        )
    if isinstance(model, WAENet) or getattr(model, "half", False) is True:
        raise AccelerateError(
            f"model is a {type(model).__name__} that is already a WAE or runs on the half-size "
            f"image. Pass the trained full-resolution network it came from."
        )
    return model.net if isinstance(model, PlainNet) else model


def _size(input_size: Any) -> int:
    if not (isinstance(input_size, int) and not isinstance(input_size, bool)):
        raise AccelerateError(
            f"input_size must be one integer, the side of the square images your network "
            f"was trained on (e.g. 32 or 224), got {input_size!r}."
        )
    if not 8 <= input_size <= 1024:
        raise AccelerateError(
            f"input_size must be from 8 to 1024 pixels, got {input_size}. Pass the image size "
            f"your network was trained on."
        )
    return input_size


def _probe(net: nn.Module, chans: int, size: int) -> int:
    """K, the number of classes, from one forward pass of a zero image."""
    if chans not in (1, 3):
        raise AccelerateError(
            f"model's first convolution takes {chans} channels; wae accelerates networks on "
            f"grey (1) or RGB (3) images."
        )
    try:
        return _num_classes(net, chans, (size, size))
    except Exception as e:  # the user's network: any error of its forward pass
        raise AccelerateError(f"model: {first_line(e)}") from None


def _check_options(
    overrides: Any,
    latency_batch: Any,
    threads: Any,
    min_run_time: Any,
    encoder: Any,
    log: Any,
    backends: Any,
    **flags: Any,
) -> None:
    """The options passed on to the app, checked as it checks them (and their types)."""
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise AccelerateError(
            f"overrides must be a list of 'KEY=VALUE' strings (e.g. "
            f"['stages.classifier.epochs=20']), got {overrides!r}."
        )
    if not callable(log):
        raise AccelerateError(f"log must be a function taking a line (e.g. print), got {log!r}.")
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise AccelerateError(f"{key} must be True or False, got {value!r}.")
    check_encoder(encoder)
    cost.check_timing(batch_size=latency_batch, threads=threads, min_run_time=min_run_time)
    cost.resolve_backends(backends)


# --------------------------------------------------------------------------------------------
# The network: a name the engine builds it by, and the teacher checkpoint
# --------------------------------------------------------------------------------------------


def _factory(
    net: nn.Module, factory: Any, num_classes: int, chans: int, log: Callable[[str], Any]
) -> tuple[str, bool]:
    """(the name the engine builds `net`'s architecture by, whether it is in-memory)."""
    if factory is not None:
        if not isinstance(factory, str):
            raise AccelerateError(f"factory must be a string, got {type(factory).__name__}.")
        why = _rebuild_error(factory, net, num_classes, chans)
        if why:
            raise AccelerateError(
                f"factory {factory!r} does not rebuild your network: {why}. Name a function "
                f"that returns this architecture (called with num_classes / in_chans when it "
                f"takes them), or leave factory out."
            )
        return factory, False
    cls = type(net)
    name = f"{cls.__module__}:{cls.__qualname__}"
    why = "its name is not importable" if not is_factory_name(name) else None
    why = why or _rebuild_error(name, net, num_classes, chans, same_class=True)
    if not why:
        return name, False
    key = repr((cls.__module__, cls.__qualname__, _shapes(net)))
    digest = hashlib.sha256(key.encode()).hexdigest()
    attr = f"in_memory_{digest[:16]}"
    _HELD[attr] = copy.deepcopy(net).cpu()
    log(
        f"[accelerate] {cls.__qualname__} cannot be rebuilt by name ({why}); the checkpoints "
        f"name an in-memory factory of this process. Pass factory='pkg.module:function' to "
        f"make them loadable anywhere."
    )
    return f"{__name__}:{attr}", True


def _shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _rebuild_error(
    name: str, net: nn.Module, num_classes: int, chans: int, same_class: bool = False
) -> str | None:
    """Why `name` does not build `net`'s architecture (the same state_dict keys and shapes;
    with `same_class`, `name` must name `net`'s very class), or None when it does."""
    try:
        with torch.random.fork_rng(devices=[]):  # the user's RNG stays as it was
            if same_class and import_factory(name) is not type(net):
                return "that name is another class now (redefined after the model was built?)"
            built = build_classifier(name, num_classes=num_classes, in_chans=chans)
    except Exception as e:  # the user's code: whatever its constructor raises
        return f"{type(e).__name__}: {first_line(e)}"
    want, got = _shapes(net), _shapes(built)
    if want != got:
        key = next(k for k in sorted(want.keys() | got.keys()) if want.get(k) != got.get(k))
        return f"it builds other layers ({key!r}: {got.get(key)} instead of {want.get(key)})"
    return None


def _teacher(name: str, net: nn.Module, num_classes: int, chans: int) -> PlainNet:
    """The trained network as the teacher checkpoint holds it: built by `name`, `net`'s
    weights."""
    with torch.random.fork_rng(devices=[]):
        teacher = PlainNet.from_backbone(name, num_classes=num_classes, in_chans=chans)
    teacher.net.load_state_dict(net.state_dict())
    return teacher.eval()


def _teacher_doc(teacher: PlainNet, meta: dict[str, Any], data: DataPlan) -> dict[str, Any]:
    """The teacher checkpoint's document: its spec, `meta` and the data it was trained on
    (as an imported teacher's: a seeded 10 % of the training images held out to validate)."""
    data_cfg = {"dataset": data.dataset, "data_dir": data.data_dir, "val_fraction": 0.1}
    return {
        "spec": model_spec(teacher),
        "meta": dict(meta),
        "config": {"seed": 0, "data": data_cfg},
    }


def _check_teacher(tdir: Path, teacher: PlainNet, overwrite: bool) -> None:
    """Refuse an OUT/teacher of another network (its students were taught by it) unless
    `overwrite`."""
    if overwrite or not (tdir / "model.json").is_file():
        return
    if _saved_teacher(tdir, teacher) is None:
        raise AccelerateError(
            f"{tdir} holds another trained network (other weights or layers) than `model`, "
            f"and the students in {tdir.parent} were taught by it. Pass overwrite=True to "
            f"start over with this one, or another output."
        )


def _saved_teacher(tdir: Path, teacher: PlainNet) -> dict[str, Any] | None:
    """The meta of the checkpoint in `tdir` if it holds `teacher` (spec and weights), else
    None."""
    try:
        doc, state = read_meta(tdir), load_file(tdir / "model.safetensors")
    except Exception:  # missing or unreadable: not this teacher
        return None
    mine = teacher.state_dict()
    same = (
        doc["spec"] == model_spec(teacher)
        and state.keys() == mine.keys()
        and all(torch.equal(state[k], mine[k].cpu()) for k in mine)
    )
    return doc["meta"] if same else None


def _save_teacher(tdir: Path, teacher: PlainNet, data: DataPlan, size: int) -> None:
    """OUT/teacher, with the data's facts (unless it holds just that already)."""
    chans = teacher.in_chans
    meta = {**data.facts(size, chans), "imported_from": "an nn.Module given to wae.accelerate"}
    if _saved_teacher(tdir, teacher) == meta:
        return
    doc = _teacher_doc(teacher, meta, data)
    save_checkpoint(tdir, teacher, meta=doc["meta"], config=doc["config"])
