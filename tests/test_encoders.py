"""The encoder registry (wae.encoders): the light encoder's shapes, start and cost, and every
consumer of the choice: WAENet, checkpoints, recipes, export (ONNX, OpenVINO),
optimize_for_inference, the pay-off check, `wae profile` / `bench` / `accelerate`."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import wae
from conftest import assert_clean_error
from wae import PlainNet, WAENet, WaveletAutoEncoder
from wae.autoencoder import WAEEncoder
from wae.checkpoint import CheckpointError, build_from_spec, load_model, save_checkpoint
from wae.cli import main
from wae.cost import PAYOFF_MIN_RATIO, PayoffWarning, compare_baselines, count_ops, mac_payoff
from wae.encoders import (
    DEFAULT_ENCODER,
    ENCODERS,
    EncoderError,
    LightEncoder,
    build_encoder,
    check_encoder,
)
from wae.errors import WAEError
from wae.export import check_parity, export_onnx
from wae.optimize import optimize_for_inference
from wae.train import ConfigError, load_config

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = dict(num_classes=10, in_chans=1, input_size=28)


def light_net(size: int = 28, chans: int = 1, **kwargs: object) -> WAENet:
    return WAENet.from_backbone(
        "small_vgg",
        10,
        in_chans=chans,
        input_size=size,
        encoder="light",
        check_payoff=False,
        **kwargs,
    )


def haar(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Haar LL (2x2 average) and HH (diagonal difference / 4) of x, odd sides edge-padded."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    c = x.shape[1]
    hh = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).div(4).expand(c, 1, 2, 2)
    return F.avg_pool2d(x, 2), F.conv2d(x, hh, stride=2, groups=c)


# --- the registry and the light encoder -------------------------------------------------------


def test_registry_default_is_the_papers_encoder() -> None:
    assert DEFAULT_ENCODER == "paper" == next(iter(ENCODERS))
    assert ENCODERS == {"paper": WAEEncoder, "light": LightEncoder}
    assert type(WaveletAutoEncoder(3).encoder) is WAEEncoder
    assert WaveletAutoEncoder(3).encoder_name == "paper"
    assert type(WaveletAutoEncoder(3, encoder="light").encoder) is LightEncoder


@pytest.mark.parametrize("chans", [1, 3])
@pytest.mark.parametrize("size", [(28, 28), (31, 29), (1, 1), (2, 3)])
def test_light_encoder_shapes_and_haar_start(chans: int, size: tuple[int, int]) -> None:
    ae = WaveletAutoEncoder(chans, encoder="light")
    x = torch.rand(2, chans, *size)
    out = ae(x)
    half = ((size[0] + 1) // 2, (size[1] + 1) // 2)
    assert out.low.shape == out.high.shape == (2, chans, *half)
    assert out.recon.shape == x.shape  # the decoder's output is cropped back to H x W
    # The same sizes as the paper's encoder gives, odd ones included.
    assert WaveletAutoEncoder(chans)(x, decode=False).low.shape == out.low.shape
    # At the start, I_L is the 2x2 average and I_H the Haar HH band, exactly.
    ll, hh = haar(x)
    torch.testing.assert_close(out.low, ll, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.high, hh, atol=1e-6, rtol=0)


def test_light_encoder_too_narrow_for_haar_starts_from_xavier() -> None:
    enc = build_encoder("light", in_chans=3, width=8)  # LL fits (6 channels), HH does not
    enc.reset_parameters()
    x = torch.rand(1, 3, 8, 8)
    low, high = enc(x)
    torch.testing.assert_close(low, haar(x)[0], atol=1e-6, rtol=0)
    assert float(high.detach().abs().max()) == 0.0  # its head starts at zero, it learns from there
    enc = build_encoder("light", in_chans=3, width=4)  # no band fits: Xavier alone
    enc.reset_parameters()
    assert float(enc.to_low.weight.detach().abs().sum()) > 0


def test_unknown_encoder_is_one_clear_error() -> None:
    for bad in ("lite", "Light", "", None, 3):
        with pytest.raises(EncoderError, match="encoder must be one of 'paper', 'light'") as e:
            check_encoder(bad)
        msg = str(e.value)
        assert "\n" not in msg and "--encoder light" in msg and isinstance(e.value, WAEError)
    with pytest.raises(EncoderError):
        WaveletAutoEncoder(3, encoder="lite")
    with pytest.raises(EncoderError):
        WAENet.from_backbone("small_vgg", **DIMS, encoder="lite")
    with pytest.raises(EncoderError):
        wae.create_model("wae_small_vgg_28", encoder="lite")
    # Only the learned decomposers have an encoder to choose.
    with pytest.raises(wae.models.SpecError, match="decomposer='wavelet' has none"):
        WAENet.from_backbone("small_vgg", **DIMS, decomposer="wavelet", encoder="light")


def test_light_encoder_costs_a_fraction_of_the_papers() -> None:
    x = torch.empty(1, 3, 224, 224, device="meta")
    with torch.device("meta"):
        paper, light = build_encoder("paper"), build_encoder("light")
    paper_macs, light_macs = count_ops(paper, x).macs, count_ops(light, x).macs
    assert light_macs == 112 * 112 * (4 * 3 * 16 + 9 * 16 + 2 * 16 * 3)  # 432 per half pixel
    assert paper_macs == pytest.approx(0.264e9, rel=0.01) and paper_macs / light_macs > 45
    # In a WAENet, its cost is the "encoder" part.
    net = light_net()
    parts = count_ops(net, torch.zeros(1, 1, 28, 28), parts=net.cost_parts).parts
    assert parts["encoder"].macs == 14 * 14 * (4 * 16 + 9 * 16 + 2 * 16)


# Issue 21's acceptance: original / WAE MACs at 224x224 RGB (built on meta: ~1 s each).
@pytest.mark.parametrize(
    ("backbone", "least"),
    [
        ("resnet50", 3.4),
        ("timm:mobilenetv3_large_100", 2.5),
        ("timm:efficientnet_b0", 2.5),
        ("timm:regnetx_002", 2.5),
        ("timm:ghostnet_100", 2.0),
    ],
)
def test_acceptance_mac_ratios(backbone: str, least: float) -> None:
    with torch.device("meta"):
        full = PlainNet.from_backbone(backbone)
        net = WAENet.from_backbone(backbone, encoder="light", check_payoff=False)
    p = mac_payoff(net, full)
    assert p.encoder == "light" and p.ratio >= least, p.ratio
    assert p.ratio_with("paper") < p.ratio  # the paper's encoder costs more
    assert p.ratio <= 1 / (1 / 4 + 1 / 64) + 0.01  # never past the paper's bound


# --- models, checkpoints, recipes ------------------------------------------------------------


def test_checkpoint_round_trip_keeps_the_encoder(tmp_path: Path) -> None:
    net = wae.create_model("wae_small_vgg_28", encoder="light").eval()
    assert net.wae_spec["kwargs"] == {"encoder": "light"}
    x = torch.rand(3, 1, 28, 28)
    net.calibrate_norms([x])
    save_checkpoint(tmp_path / "ck", net, meta={"input_size": 28, "in_chans": 1})
    back, doc = load_model(tmp_path / "ck")
    assert doc["spec"]["kwargs"]["encoder"] == "light"
    assert isinstance(back.wae.encoder, LightEncoder)
    torch.testing.assert_close(back(x), net(x))
    # Built by backbone name, the spec records the encoder too (the default as well).
    assert light_net().wae_spec["kwargs"]["encoder"] == "light"
    assert WAENet.from_backbone("small_vgg", **DIMS).wae_spec["kwargs"]["encoder"] == "paper"


def test_old_checkpoints_without_the_key_mean_the_paper(tmp_path: Path) -> None:
    net = WAENet.from_backbone("small_vgg", **DIMS, check_payoff=False)
    save_checkpoint(tmp_path / "ck", net, meta={"input_size": 28, "in_chans": 1})
    doc = json.loads((tmp_path / "ck" / "model.json").read_text())
    del doc["spec"]["kwargs"]["encoder"]  # as written before the registry existed
    (tmp_path / "ck" / "model.json").write_text(json.dumps(doc))
    back, _ = load_model(tmp_path / "ck")
    assert type(back.wae.encoder) is WAEEncoder


def test_spec_and_recipe_refuse_an_unknown_encoder(tmp_path: Path) -> None:
    spec = dict(light_net().wae_spec)
    spec["kwargs"] = {**spec["kwargs"], "encoder": "lite"}
    with pytest.raises(CheckpointError, match='\'encoder\' must be "paper" or "light"'):
        build_from_spec(spec)
    # A light checkpoint's weights do not fit a paper architecture (and the reverse).
    net = light_net()
    save_checkpoint(tmp_path / "ck", net, meta={"input_size": 28, "in_chans": 1})
    doc = json.loads((tmp_path / "ck" / "model.json").read_text())
    doc["spec"]["kwargs"]["encoder"] = "paper"
    (tmp_path / "ck" / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        load_model(tmp_path / "ck")
    cfg = load_config("fashion_mnist", ['model.kwargs.encoder="light"'])
    assert cfg.model.kwargs["encoder"] == "light"
    with pytest.raises(ConfigError, match="encoder"):
        load_config("fashion_mnist", ['model.kwargs.encoder="lite"'])


def test_from_trained_takes_the_encoder() -> None:
    trained = PlainNet.from_backbone("small_vgg", num_classes=10, in_chans=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PayoffWarning)
        student = WAENet.from_trained(trained, 28, encoder="light")
    assert isinstance(student.wae.encoder, LightEncoder)
    assert student.wae_spec["kwargs"]["encoder"] == "light"


# --- inference: optimize_for_inference, ONNX, OpenVINO -----------------------------------------


@pytest.mark.parametrize("size", [28, 27])
def test_optimize_for_inference_folds_the_light_encoder(size: int, randomise_stats) -> None:
    x = torch.rand(4, 1, size, size)
    net = randomise_stats(light_net(size), x)
    for kwargs in ({}, {"fuse_mkldnn": False, "channels_last": False}):
        opt = optimize_for_inference(net, check=x, **kwargs)  # outputs within 1e-5
        # The norms were folded into the two head convs, merged into one.
        assert type(opt.encoder).__name__ == "_Encoder"
        assert not any(isinstance(m, wae.FixedNorm) for m in opt.modules())
        with torch.no_grad():
            assert (opt(x) - net(x)).abs().max() <= 1e-5


def test_onnx_export_parity(tmp_path: Path, randomise_stats) -> None:
    for size in (28, 27):
        x = torch.rand(3, 1, size, size)
        net = randomise_stats(light_net(size), x)
        path = export_onnx(net, tmp_path / f"light{size}.onnx", size, in_chans=1)
        assert check_parity(net, path, x) <= 1e-4
        opt = optimize_for_inference(net, fuse_mkldnn=False, channels_last=False)
        path = export_onnx(opt, tmp_path / f"opt{size}.onnx", size, in_chans=1)
        assert check_parity(net, path, x) <= 1e-4


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs openvino")
def test_cli_export_openvino_of_a_light_checkpoint(tmp_path: Path, capsys) -> None:
    net = wae.create_model("wae_small_vgg_28", encoder="light")
    ck = save_checkpoint(tmp_path / "ck", net, meta={"input_size": 28, "in_chans": 1})
    assert main(["export", "--checkpoint", str(ck), "--format", "openvino", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parity_max_abs_diff"] <= 1e-4 and doc["onnx_parity_max_abs_diff"] <= 1e-4


# --- the pay-off check and `wae profile` ------------------------------------------------------


def test_payoff_says_whether_the_light_encoder_would_pay_off() -> None:
    with pytest.warns(PayoffWarning) as record:
        paper = WAENet.from_backbone("small_vgg", **DIMS, width=8)  # ~0.4x with the paper's
    light = light_net(width=8)
    p, q = mac_payoff(paper), mac_payoff(light)
    assert (p.encoder, q.encoder) == ("paper", "light")
    assert set(p.alternatives) == {"light"} and set(q.alternatives) == {"paper"}
    # The alternative's ratio is what the light WAE really has, and the reverse.
    assert p.ratio_with("light") == pytest.approx(q.ratio, rel=1e-9)
    assert q.ratio_with("paper") == pytest.approx(p.ratio, rel=1e-9)
    assert p.alternatives["light"] == q.encoder_macs
    assert not p.pays_off and q.pays_off and q.ratio >= PAYOFF_MIN_RATIO
    msg = str(record[0].message)
    assert "With encoder='light' it would pay off" in msg and f"{q.ratio:.2f}x" in msg
    assert "encoder alone costs" in msg
    doc = json.loads(json.dumps(p.to_dict()))
    assert doc["encoder"] == "paper" and doc["alternatives"]["light"]["pays_off"] is True
    # Where neither pays off, it says so; the light WAE's own message names no better one.
    assert "encoder='paper'" not in q.message()
    nor = type(p)(**{**p.__dict__, "full_macs": p.full_macs / 5, "ratio": p.ratio / 5})
    assert "Nor would encoder='light'" in nor.message()


def test_payoff_check_draws_no_random_numbers() -> None:
    torch.manual_seed(0)
    net = light_net()
    state = torch.random.get_rng_state()
    mac_payoff(net)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_compare_baselines_with_the_light_encoder() -> None:
    res = compare_baselines("small_vgg", 28, num_classes=10, in_chans=1, latency=False,
                            encoder="light")  # fmt: skip
    assert res["encoder"] == "light" and res.payoff.encoder == "light"
    assert res.payoff.ratio == pytest.approx(res["mac_ratio"]["wae"])
    assert res.payoff.ratio_with("paper") < res.payoff.ratio
    assert "WAE (light encoder) vs full resolution" in res.summary()
    with pytest.raises(WAEError, match="has the encoder 'light'"):
        compare_baselines(light_net(), 28, latency=False, encoder="paper")


def test_cli_profile_encoder(run_cli, capsys) -> None:
    argv = ["profile", "--backbone", "small_vgg", "--input-size", "28", "--in-chans", "1",
            "--num-classes", "10", "--no-latency", "--json"]  # fmt: skip
    assert main([*argv, "--encoder", "light"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["encoder"] == "light" and doc["payoff"]["encoder"] == "light"
    assert doc["wae"]["parts"]["encoder"]["macs"] == 14 * 14 * (4 * 16 + 9 * 16 + 2 * 16)
    code, err = run_cli(*argv, "--encoder", "lite")
    assert_clean_error(code, err, "encoder must be one of 'paper', 'light'")


# --- `wae bench`, `wae accelerate` ------------------------------------------------------------


def test_bench_builds_the_chosen_encoder(run_cli, tmp_path: Path) -> None:
    from wae.apps.bench import build_models, wae_parts

    models, info = build_models("small_vgg_28", encoder="light")
    assert info["encoder"] == "light" and isinstance(models["wae"].wae.encoder, LightEncoder)
    parts = wae_parts(optimize_for_inference(models["wae"]), torch.rand(1, 1, 28, 28))
    low, high = parts["encoder"][0](torch.rand(1, 1, 28, 28))  # timed as one part
    assert low.shape == high.shape == (1, 1, 14, 14)
    out = tmp_path / "never"
    code, err = run_cli("bench", "--quick", "--encoder", "lite", "--output-dir", out)
    assert_clean_error(code, err, "encoder must be one of")
    assert not out.exists()  # refused before anything was built or written


def test_accelerate_students_take_the_encoder(tmp_path: Path, run_cli) -> None:
    from wae.apps import accelerate

    doc = accelerate.teacher_doc_from_config(load_config("fashion_mnist_baseline"))
    light = accelerate.student_configs(tmp_path / "t", [], doc=doc, encoder="light")
    assert light["wae"].model.kwargs == {"width": 48, "encoder": "light"}
    assert "encoder" not in light["half"].model.kwargs  # a plain network has no encoder
    paper = accelerate.student_configs(tmp_path / "t", [], doc=doc)
    assert "encoder" not in paper["wae"].model.kwargs  # the default: configs as before
    with pytest.raises(EncoderError):
        accelerate.student_configs(tmp_path / "t", [], doc=doc, encoder="lite")
    code, err = run_cli("accelerate", "--checkpoint", tmp_path / "none", "-o", tmp_path / "o",
                        "--encoder", "lite")  # fmt: skip
    assert_clean_error(code, err, "encoder must be one of")
    assert not (tmp_path / "o").exists()
