"""Does WAE pay off? The MAC-ratio check (wae.cost.payoff) and its PayoffWarning."""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch
from torch import nn

import wae
import wae.models.payoff as payoff_mod
from wae import PayoffWarning, WAENet
from wae.cli import main
from wae.cost import PAYOFF_MIN_RATIO, Payoff, check_payoff, compare_baselines, mac_payoff

RATIO = re.compile(r"MAC ratio \(full / WAE\) of (\d+\.\d\d)x")


def build(*args, **kwargs) -> tuple[WAENet, list[warnings.WarningMessage]]:
    """WAENet.from_backbone, and the PayoffWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = WAENet.from_backbone(*args, **kwargs)
    return net, [w for w in caught if issubclass(w.category, PayoffWarning)]


def tiny_backbone() -> nn.Module:
    """A CNN so small that the WAE encoder costs more than all of it."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1)
    )


# --- the threshold on real backbones (torchvision, 224x224, 1000 classes) -----------------------


@pytest.fixture(scope="module")
def mobilenet_v3_large() -> tuple[WAENet, list[warnings.WarningMessage]]:
    return build("mobilenet_v3_large", 1000, input_size=224)


@pytest.fixture(scope="module")
def vgg16() -> tuple[WAENet, list[warnings.WarningMessage]]:
    return build("vgg16", 1000, input_size=224)


@pytest.mark.slow  # building MobileNetV3-Large at 224 takes 5-14 s on 2 busy cores
def test_mobilenet_v3_large_warns_with_ratio_and_advice(mobilenet_v3_large) -> None:
    net, caught = mobilenet_v3_large
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller of from_backbone
    ratio = float(RATIO.search(msg).group(1))
    assert 0.6 <= ratio <= 0.72  # 0.22 GMACs full vs 0.33 with WAE
    assert msg.startswith("WAE will not make this network faster")
    assert "encoder alone costs 0.26 GMACs" in msg and "full network costs 0.22 GMACs" in msg
    assert "larger backbone" in msg and "half=True" in msg and "check_payoff=False" in msg
    # The light encoder would pay off here (issue 21: ~3x), and the message says so.
    assert "With encoder='light' it would pay off" in msg and "--encoder light" in msg
    p = mac_payoff(net)  # without the classifier: the I_L network + s_L head at full size
    assert not p.pays_off and p.ratio == pytest.approx(ratio, abs=0.02)
    assert p.encoder_macs == pytest.approx(0.264e9, rel=0.01)


def test_vgg16_does_not_warn_and_ratio_is_sane(vgg16) -> None:
    net, caught = vgg16
    assert caught == []
    p = check_payoff(net)
    assert p.pays_off and 3.0 <= p.ratio <= 4.0  # 15.5 / 4.4 GMACs
    assert p.full_macs == pytest.approx(15.35e9, rel=0.02) and p.input_size == (224, 224)
    assert "pays off" in p.message() and f"{p.ratio:.2f}x" in p.message()
    doc = json.loads(json.dumps(p.to_dict()))
    assert doc["pays_off"] is True and doc["min_ratio"] == PAYOFF_MIN_RATIO == 1.5


@pytest.mark.slow  # building ResNet-50 at 224 takes 8-15 s on 2 busy cores
def test_resnet50_does_not_warn_and_ratio_is_sane() -> None:
    net, caught = build("resnet50", 1000, input_size=224)
    assert caught == []
    assert 2.5 <= mac_payoff(net).ratio <= 3.2  # 4.09 / 1.42 GMACs


# --- the check itself, on a tiny backbone (milliseconds) -------------------------------------


def test_check_payoff_false_silences() -> None:
    _, caught = build(tiny_backbone(), 10, input_size=32)
    assert len(caught) == 1 and RATIO.search(str(caught[0].message))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PayoffWarning)
        WAENet.from_backbone(tiny_backbone(), 10, input_size=32, check_payoff=False)


def test_check_payoff_returns_and_warns_at_caller() -> None:
    net, _ = build(tiny_backbone(), 10, input_size=32)
    with pytest.warns(PayoffWarning, match="WAE will not make") as record:
        p = check_payoff(net)
    assert record[0].filename == __file__
    assert isinstance(p, Payoff) and p.ratio == pytest.approx(p.full_macs / p.wae_macs)
    assert p.ratio < PAYOFF_MIN_RATIO and p.backbone is None  # a module, not a name
    assert wae.PayoffWarning is wae.cost.PayoffWarning and issubclass(PayoffWarning, UserWarning)


def test_registered_models_skip_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("create_model counted the pay-off")

    monkeypatch.setattr(payoff_mod, "mac_payoff", fail)
    wae.create_model("wae_small_vgg_28")


def test_from_trained_reaches_the_check() -> None:
    trained = nn.Sequential(
        tiny_backbone(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)
    )
    with pytest.warns(PayoffWarning):
        WAENet.from_trained(trained, 32)


class DataDependent(nn.Module):
    """Feature maps through a branch on a value: cannot run on meta tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.body = tiny_backbone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y.relu() if float(y.mean()) > -1e9 else y


def test_counts_for_real_when_meta_cannot_run() -> None:
    net = WAENet.from_backbone(DataDependent(), 10, input_size=32, check_payoff=False)
    p = mac_payoff(net, DataDependent())
    wae_macs = wae.count_ops(net, torch.zeros(1, 3, 32, 32)).macs
    full_macs = wae.count_ops(DataDependent(), torch.zeros(1, 3, 32, 32)).macs
    assert p.wae_macs == wae_macs and p.full_macs == full_macs


# --- wae profile / compare_baselines ----------------------------------------------------------

SMALL = "profile --backbone small_vgg --input-size 28 --in-chans 1 --num-classes 10 --no-latency"


def test_compare_baselines_reports_the_verdict() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PayoffWarning)  # small_vgg pays off (2.35x)
        res = compare_baselines("small_vgg", 28, num_classes=10, in_chans=1, latency=False)
    assert res.payoff.pays_off and res.payoff.ratio == pytest.approx(res["mac_ratio"]["wae"])
    assert "Pays off: yes" in str(res) and res.to_report()["payoff"]["pays_off"] is True


def test_profile_prints_the_warning_below_the_threshold(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(payoff_mod, "PAYOFF_MIN_RATIO", 100.0)  # small_vgg's 2.35x no longer does
    with pytest.warns(PayoffWarning):  # the library warns ...
        compare_baselines("small_vgg", 28, num_classes=10, in_chans=1, latency=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*SMALL.split(), "--json"]) == 0
    assert not [w for w in caught if issubclass(w.category, PayoffWarning)]  # ... the CLI prints
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["payoff"]["pays_off"] is False and doc["payoff"]["min_ratio"] == 100.0
    assert err.startswith("wae profile: warning: WAE will not make this network faster")
    assert RATIO.search(err) and "--backbone small_vgg" in err
    assert main(SMALL.split()) == 0
    out, err = capsys.readouterr()
    assert "Pays off: NO" in out and "wae profile: warning:" in err
