"""`wae.accelerate(model, train_data, test_data, ...)`: a trained nn.Module the library never
saw and in-memory datasets in, trained students and results.json's dict out; the images
written once to OUT/data, every checkpoint data that reloads with the network's own class."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import wae
from wae.apps.accelerate import AccelerateError
from wae.apps.accelerate_module import load_student
from wae.checkpoint import load_model
from wae.data import build_dataset
from wae.errors import WAEError

SIZE, K = 32, 4
QUICK = ["runtime.progress=off", "runtime.verbose=false"]


class TinyNet(nn.Module):
    """The user's network: a small CNN for grey 32x32 images (its class is its factory)."""

    def __init__(self, num_classes: int = K, in_chans: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _images(per_class: int, seed: int) -> TensorDataset:
    """Grey images in [0, 1]: a bright square in the quadrant of the class, on noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(K).repeat_interleave(per_class)
    x = torch.rand(len(labels), 1, SIZE, SIZE, generator=g) * 0.3
    for i, k in enumerate(labels.tolist()):
        top, left = 16 * (k // 2) + 2, 16 * (k % 2) + 2
        x[i, :, top : top + 12, left : left + 12] += 0.6
    return TensorDataset(x.clamp(0, 1), labels)


def _trained(train: TensorDataset) -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for x, y in DataLoader(train, batch_size=32, shuffle=True):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def data() -> tuple[TensorDataset, TensorDataset]:
    return _images(60, 1), _images(20, 2)


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread, data):
    """One quick acceleration of a trained TinyNet: (its result, the network, OUT)."""
    train, test = data
    net = _trained(train)
    out = tmp_path_factory.mktemp("acc") / "out"
    result = wae.accelerate(
        net,
        train,
        test,
        input_size=SIZE,
        output=out,
        quick=True,
        force=True,  # a net this small is too cheap for WAE to pay off; it runs anyway
        latency_batch=4,
        threads=1,
        overrides=QUICK,
        log=lambda line: None,
    )
    return result, net, out


def test_the_students_are_trained_modules_giving_logits(run) -> None:
    result, _, out = run
    assert set(result.students) == {"wae", "half"}
    x = torch.rand(3, 1, SIZE, SIZE)
    for student in result.students.values():
        assert isinstance(student, nn.Module)
        with torch.no_grad():
            assert student(x).shape == (3, K)
    assert result.output == out.absolute() and not result.in_memory
    assert result.factory == f"{__name__}:TinyNet"  # the user's class names the network


def test_results_are_the_apps_results_json(run) -> None:
    result, _, out = run
    written = json.loads((out / "results.json").read_text())
    assert set(result.results) == set(written)
    assert {"baseline", "wae", "half", "speedup", "mac_ratio", "verdict", "configs"} <= set(written)
    assert result.results["wae"]["top1"] == written["wae"]["top1"]
    assert (out / "results.md").is_file()
    for key in ("baseline", "wae", "half"):
        assert 0 <= written[key]["top1"] <= 100 and written[key]["latency_ms"] > 0
    assert written["configs"]["wae"]["data"]["dataset"] == str(out.absolute() / "data")


def test_every_checkpoint_reloads_with_the_users_class(run) -> None:
    result, net, out = run
    x = torch.rand(2, 1, SIZE, SIZE)
    teacher, doc = load_model(out / "teacher", allow_code=[result.factory])
    assert doc["spec"]["backbone"] == result.factory
    with torch.no_grad():
        assert torch.allclose(teacher(x), net(x), atol=1e-6)
    for key, student in result.students.items():  # (a WAE builds its I_H branch with autograd)
        again, _ = load_model(out / key / "final", allow_code=[result.factory])
        with torch.no_grad():
            assert torch.equal(again(x), student(x))
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))


def test_the_images_are_written_once_at_their_own_size(run, data) -> None:
    _, _, out = run
    info = json.loads((out / "data" / "wae-folder.json").read_text())
    assert info["image_size"] == SIZE and info["classes"] == ["0", "1", "2", "3"]
    ds = build_dataset(out / "data", "test", input_size=SIZE, in_chans=1)
    assert ds.info.native_size == SIZE and len(ds) == len(data[1])
    image, label = ds[0]  # no resize or crop: the same pixels, to 1/255
    assert torch.allclose(image, data[1][0][0], atol=0.5 / 255 + 1e-6) and label == 0


def test_other_images_or_weights_in_the_same_output_are_refused(run, data) -> None:
    _, net, out = run
    before = sorted(p.name for p in (out / "data" / "test" / "0").iterdir())
    other = _images(20, 3)
    with pytest.raises(AccelerateError, match="differ from train_data"):
        wae.accelerate(net, data[0], other, input_size=SIZE, output=out, log=lambda m: None)
    with pytest.raises(AccelerateError, match="another trained network"):
        wae.accelerate(TinyNet(), data[0], data[1], input_size=SIZE, output=out)
    assert sorted(p.name for p in (out / "data" / "test" / "0").iterdir()) == before


def _bad(**change):
    """wae.accelerate's arguments for a small run, with `change` applied."""
    train, test = _images(5, 1), _images(2, 2)
    args = dict(model=TinyNet(), train_data=train, test_data=test, input_size=SIZE)
    return {**args, **change}


@pytest.mark.parametrize(
    "change, expect",
    [
        (dict(model="resnet18"), "nn.Module"),
        (dict(input_size=0), "input_size"),
        (dict(input_size=[32, 32]), "one integer"),
        (dict(test_data=None), "test_data"),
        (dict(test_data=[1, 2]), "not an .image, label. pair"),
        (dict(train_data=TensorDataset(torch.rand(4, 1, 32, 32) - 0.5, torch.arange(4))), "[0, 1]"),
        (dict(train_data=TensorDataset(torch.rand(4, 3, 32, 32), torch.arange(4))), "1-channel"),
        (dict(train_data=TensorDataset(torch.rand(4, 1, 32, 32), torch.arange(4) + 3)), "label 4"),
        (dict(test_data=TensorDataset(torch.rand(3, 1, 32, 32), torch.arange(3))), "class 3"),
        (dict(test_data=_images(2, 2), train_data="fashion-mnist"), "own test split"),
        (dict(overrides="stages.1.epochs=1"), "overrides"),
        (dict(overrides=["stages.nine.epochs=1"]), "stages"),
        (dict(factory="torchvision.models:resnet18"), "does not rebuild"),
        (dict(quick="yes"), "quick must be True or False"),
        (dict(latency_batch=0), "latency-batch"),
        (dict(backends=["tensorrt"]), "backends"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(change, expect, tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(WAEError, match=expect) as e:
        wae.accelerate(**_bad(**change), output=out, log=lambda m: None)
    assert "\n" not in str(e.value).strip()  # one paragraph
    assert not out.exists()


def test_a_dataloader_serves_as_well_as_a_dataset(tmp_path) -> None:
    train, test = _images(3, 1), _images(1, 2)
    out = tmp_path / "out"
    loader = DataLoader(train, batch_size=5, shuffle=True)
    with pytest.raises(WAEError, match="Unknown config key 'x'"):  # as far as the configs
        wae.accelerate(
            TinyNet(), loader, DataLoader(test), input_size=SIZE, output=out, overrides=["x=1"]
        )
    assert not out.exists()


@pytest.mark.slow
def test_a_network_its_class_cannot_rebuild_reloads_with_an_instance(tmp_path, data) -> None:
    class Local(TinyNet):  # defined in a function: no importable name
        pass

    net = _trained(data[0])
    local = Local()
    local.load_state_dict(net.state_dict())
    lines: list[str] = []
    result = wae.accelerate(
        local,
        *data,
        input_size=SIZE,
        output=tmp_path / "out",
        quick=True,
        force=True,
        latency_batch=4,
        threads=1,
        overrides=QUICK,
        log=lines.append,
    )
    assert result.in_memory and any("cannot be rebuilt by name" in line for line in lines)
    again = load_student(tmp_path / "out" / "wae" / "final", Local())
    x = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(again(x), result.students["wae"](x))
