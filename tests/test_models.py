"""WAENet around many backbones, the registry, the quarter-width branch, baselines."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import wae
from wae.cost import count_ops
from wae.models import BackboneError, PlainNet, WAENet

TORCHVISION = [
    "resnet18",
    "vgg11_bn",
    "mobilenet_v3_small",
    "mnasnet0_5",
    "regnet_x_400mf",
    "squeezenet1_1",
    "alexnet",
]
TIMM = [
    "timm:resnet18",
    "timm:mobilenetv3_small_100",
    "timm:convnext_atto",
    "timm:regnetx_002",
    "timm:efficientnet_b0",
    "timm:dla34",
]


def _grads_everywhere(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("backbone", TORCHVISION + TIMM)
def test_backbones_build_run_forward_and_backward(backbone: str) -> None:
    size = 128 if backbone == "alexnet" else 64  # AlexNet's 11x11/4 stem needs room
    net = WAENet.from_backbone(backbone, num_classes=7, input_size=size)
    x = torch.rand(2, 3, size, size)
    out = net.forward_train(x)
    assert out.s_low.shape == out.s_fused.shape == (2, 7)
    loss = wae.classification_loss(out, torch.tensor([1, 2])) + wae.transform_loss(x, out.parts)
    loss.backward()
    assert not _grads_everywhere(net)
    assert net.high_features * 4 == pytest.approx(net.low_features, abs=4)
    net.eval()
    with torch.no_grad():
        s_low, s_fused = net.forward_head(net.forward_features(x))
        torch.testing.assert_close(net(x), (s_low + s_fused) / 2)


def test_backbone_runs_unchanged_on_i_low() -> None:
    vgg = torchvision.models.vgg11()
    net = WAENet.from_backbone(vgg, num_classes=10, input_size=64)
    assert net.low_net.body is vgg.features  # the very same modules and weights
    x = torch.rand(1, 3, 64, 64)
    net.eval()
    with torch.no_grad():
        parts = net.decompose(x)
        torch.testing.assert_close(net.forward_features(x)[0], vgg.features(parts.low))


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50"])
def test_high_branch_has_a_sixteenth_of_the_conv_macs(backbone: str) -> None:
    net = WAENet.from_backbone(backbone, num_classes=1000)
    x = torch.empty(1, 3, 112, 112)
    low = count_ops(net.low_net, x).macs
    high = count_ops(net.high_net, x).macs
    # The first conv keeps its 3 input channels, so slightly more than 1/16.
    assert 1 / 17 < high / low < 1 / 14, high / low


def test_vgg16_uses_the_release_heads_and_has_about_a_quarter_of_the_macs() -> None:
    with torch.device("meta"):
        net = wae.create_model("wae_vgg16")
        base = wae.create_model("vgg16_full")
    assert net.head_type == "vgg"
    fcs = [m for m in net.head_low.modules() if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [
        (512 * 3 * 3, 1024),
        (1024, 1024),
        (1024, 1000),
    ]
    fused = [m for m in net.head_fused.modules() if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fused] == [
        ((512 + 128) * 3 * 3, 2048),
        (2048, 2048),
        (2048, 1000),
    ]
    x = torch.empty(1, 3, 224, 224, device="meta")
    g_wae, g_base = count_ops(net, x).macs / 1e9, count_ops(base, x).macs / 1e9
    assert 4.1 < g_wae < 4.4 and 15.3 < g_base < 15.6, (g_wae, g_base)


@pytest.mark.parametrize(
    "name", [n for n in wae.list_models() if "input_size" in wae.model_cfg(n)]
)  # pruned_net is a template that needs a base model and shapes
def test_registry_sweep(name: str) -> None:
    cfg = wae.model_cfg(name)
    big = cfg["input_size"] >= 224
    with torch.device("meta") if big else torch.device("cpu"):
        model = wae.create_model(name, num_classes=5)
    assert model.wae_spec == {"builder": "registry", "name": name, "kwargs": {"num_classes": 5}}
    x = torch.rand(2, cfg["in_chans"], cfg["input_size"], cfg["input_size"])
    if big:
        x = x.to("meta")
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 5)


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="Unknown model 'wae_vgg17'"):
        wae.create_model("wae_vgg17")
    with pytest.raises(BackboneError, match="Unknown backbone 'resnet5'"):
        WAENet.from_backbone("resnet5")
    with pytest.raises(BackboneError, match="timm has no model"):
        WAENet.from_backbone("timm:not_a_model")


def test_backbone_that_cannot_be_slimmed_says_why() -> None:
    # torchvision's ShuffleNet reshapes channels in a way Torch-Pruning cannot follow.
    with pytest.raises(BackboneError, match="high_net="):
        WAENet.from_backbone("shufflenet_v2_x0_5", num_classes=3, input_size=64)


class TinyClassifier(nn.Module):
    """A user's own CNN classifier with a flatten at the end: traced and cut by torch.fx."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3)
        )
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1))


def test_any_module_classifier_or_feature_extractor() -> None:
    net = WAENet.from_backbone(TinyClassifier(), num_classes=4, input_size=32)
    assert (net.low_features, net.high_features) == (64, 16)
    assert net(torch.rand(3, 3, 32, 32)).shape == (3, 4)
    feats = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2))
    net = WAENet.from_backbone(feats, num_classes=2, input_size=32)
    assert (net.low_features, net.high_features) == (32, 8)

    class NotACNN(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :3]

    with pytest.raises(BackboneError, match="no 4-D feature map|no Conv2d|feature map"):
        WAENet.from_backbone(NotACNN(), num_classes=2, input_size=32)


def test_input_too_small_for_the_backbone_is_a_clear_error() -> None:
    with pytest.raises(BackboneError, match="Use a larger input_size"):
        WAENet.from_backbone("alexnet", num_classes=3, input_size=64)


class Every16(nn.Module):
    """Feature maps that need a side divisible by 16 (a skip joined to a /16 pooling upsampled
    back, as DLA's at a side not divisible by 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)
        return f + nn.functional.interpolate(nn.functional.max_pool2d(f, 16), scale_factor=16)


def test_size_errors_name_the_input_sizes_that_work() -> None:
    # I_L must be a multiple of 16: input sizes that are multiples of 32.
    works = r"e\.g\. 64 or 96: of the input sizes 16 to \d+ \(in steps of 16\), it runs at "
    with pytest.raises(BackboneError, match=works + r"32, 64, \.\.\., \d+ \(multiples of 32\)"):
        WAENet.from_backbone(Every16(), num_classes=3, input_size=80, use_high=False)
    # A trained classifier that cannot run at the input size (from_trained): multiples of 16.
    teacher = nn.Sequential(Every16(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(BackboneError, match=r"e\.g\. 32 or 48: .* runs at 16 to \d+\."):
        WAENet.from_trained(teacher, 40)


def test_from_backbone_by_name_records_a_rebuildable_spec() -> None:
    from wae.checkpoint import build_from_spec

    net = WAENet.from_backbone("small_vgg", num_classes=4, in_chans=1, input_size=28, width=8)
    assert net.wae_spec["builder"] == "wae_net" and net.wae_spec["backbone"] == "small_vgg"
    rebuilt = build_from_spec(net.wae_spec)
    assert rebuilt.state_dict().keys() == net.state_dict().keys()
    custom = WAENet.from_backbone(TinyClassifier(), num_classes=4, input_size=32)
    assert not hasattr(custom, "wae_spec")  # a user's module: no spec to rebuild from


def test_grey_images_and_odd_sizes() -> None:
    net = WAENet.from_backbone("resnet18", num_classes=3, in_chans=1, input_size=45)
    assert net.wae.in_chans == 1
    assert net(torch.rand(2, 1, 45, 45)).shape == (2, 3)


def test_variants_for_the_ablations() -> None:
    x = torch.rand(2, 1, 28, 28)
    alone = wae.create_model("wae_small_vgg_28", use_high=False)
    out = alone.forward_train(x)
    assert out.s_fused is None and alone.high_net is None
    assert wae.classification_loss(out, torch.tensor([0, 1])).ndim == 0
    enc = wae.create_model("wae_small_vgg_28", decomposer="encoder")
    assert enc.forward_train(x).parts.recon is None
    wav = wae.create_model("wae_small_vgg_28", decomposer="wavelet")
    assert wav.forward_train(x).parts.high.shape == (2, 3, 14, 14)  # cH, cV, cD
    assert wav(x).shape == (2, 10)


def test_calibrated_norms_standardise_the_sub_images() -> None:
    net = wae.create_model("wae_small_vgg_28")
    with torch.no_grad():  # shrink I_H as stage 1 does, to see the norm undo it
        net.wae.encoder.to_high.weight.mul_(0.1)
        net.wae.encoder.to_high.bias.mul_(0.1)
    batches = [torch.rand(16, 1, 28, 28) for _ in range(4)]
    net.calibrate_norms(batches)
    with torch.no_grad():
        parts = net.decompose(torch.cat(batches))
        high = net.norm_high(parts.high)
    assert high.mean().abs() < 1e-3 and (high.std() - 1).abs() < 1e-2


def test_plain_half_resolution_baseline() -> None:
    half = PlainNet.from_backbone("small_vgg", num_classes=10, half=True, in_chans=1)
    assert half(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert half.resize(torch.rand(1, 1, 27, 28)).shape == (1, 1, 14, 14)


def test_high_divisor_sets_the_i_h_branch_width_and_round_trips(tmp_path) -> None:
    """high_divisor=2: an I_H branch at half the backbone's width (the paper's is 1/4), kept
    in the spec so the checkpoint rebuilds it; the default leaves old specs unchanged."""
    import wae
    from wae.checkpoint import load_model, save_checkpoint
    from wae.models.spec import SpecError

    def chans(m):
        return [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]

    quarter = wae.create_model("wae_small_vgg_28", num_classes=3, width=16)
    wide = wae.create_model("wae_small_vgg_28", num_classes=3, width=16, high_divisor=2)
    assert max(chans(wide.high_net)) == 2 * max(chans(quarter.high_net))
    assert "high_divisor" not in quarter.wae_spec["kwargs"]
    save_checkpoint(tmp_path / "ck", wide)
    again, _ = load_model(tmp_path / "ck")
    assert chans(again.high_net) == chans(wide.high_net)
    with pytest.raises(SpecError, match="high_divisor"):
        wae.WAENet.from_backbone("small_vgg", num_classes=3, in_chans=1, high_divisor=0)
