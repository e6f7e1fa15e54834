"""`wae reproduce`: method configs from the recipes, one training step of every method, the
I_L-alone and pruned starting checkpoints, run-directory status, the verdicts, the report
writer on fake results, and (slow) the --quick pipeline end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from conftest import assert_drawn_image
from wae.apps.accelerate import kd_settings
from wae.apps.reproduce import (
    PAPER,
    ReproduceOptions,
    claims,
    figures,
    format_report,
    run_reproduce,
    training,
)
from wae.apps.reproduce.analysis import decomposition_stats
from wae.apps.reproduce.budget import auto_subset, estimate_seconds, wall_seconds
from wae.apps.reproduce.measure import aggregate
from wae.apps.reproduce.methods import (
    BEYOND_KEYS,
    FEATURE_KD_WEIGHT,
    METHOD_KEYS,
    METHODS,
    ReproduceError,
    classifier_epochs,
    default_recipes,
    derive_configs,
    recipe_source,
    select_methods,
    split_stages,
)
from wae.apps.reproduce.plan import SeedConfigs, resolve_jobs, seed_configs
from wae.apps.reproduce.pruning import taylor_prune
from wae.apps.reproduce.report import write_report
from wae.apps.reproduce.rundirs import run_status
from wae.apps.reproduce.starts import kd_teacher_dir, make_il_init, make_kd_teacher
from wae.apps.reproduce.training import eval_stage2, run_in_processes
from wae.apps.reproduce.verdicts import se_diff, verdict
from wae.checkpoint import load_checkpoint, load_model, save_checkpoint
from wae.cli import build_parser
from wae.cost import count_ops
from wae.data import DEFAULT_FASHION_MNIST_DIR
from wae.models import WAENet, create_model
from wae.models.pruned import changed_shapes
from wae.models.trained import init_from_trained
from wae.train import build_datasets, evaluate, load_config
from wae.train.config import StageConfig, TeacherConfig, config_to_dict, fingerprint
from wae.train.engine import StageModule
from wae.wavelet import WaveletDecomposer

pytestmark = pytest.mark.usefixtures("one_thread")

has_fmnist = any(DEFAULT_FASHION_MNIST_DIR.glob("train-images-idx3-ubyte*"))
needs_fmnist = pytest.mark.skipif(not has_fmnist, reason="needs Fashion-MNIST")

DIMS = dict(num_classes=10, in_chans=1, input_size=28)


@pytest.fixture(scope="module")
def recipes():
    """The repository's recipes, read now (they are being tuned), at width 8."""
    wae_cfg = load_config(recipe_source(None, "fashion_mnist.toml"), ["model.kwargs.width=8"])
    base_cfg = load_config(recipe_source(None, "fashion_mnist_baseline.toml"))
    return wae_cfg, base_cfg


def _build(cfg: dict) -> torch.nn.Module:
    return create_model(cfg["model"]["name"], **DIMS, **cfg["model"]["kwargs"])


def _pruned_width8() -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    full = create_model("small_vgg_28_full", **DIMS, width=8)
    ex = torch.zeros(1, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(16, 1, 28, 28, generator=g), torch.arange(16) % 10)]
    target = 0.5 * count_ops(full, ex).macs
    pruned, log = taylor_prune(full, batches, target, ex, num_classes=10, step_ratio=0.1)
    return full, pruned, log


# --------------------------------------------------------------------------------------------
# Methods: configs and one training step each
# --------------------------------------------------------------------------------------------


def test_derive_configs_budget_and_roles(recipes):
    wae_cfg, base_cfg = recipes
    w = config_to_dict(wae_cfg)
    e_c = classifier_epochs(w)
    _, s2, s3 = split_stages(w)
    assert e_c == s2["epochs"] + s3["epochs"]
    cfgs = derive_configs(wae_cfg, base_cfg, seed=3, il_init="/x/init")
    assert set(cfgs) == {"full", "half", "wavelet", "ca", "encoder", "wae", "il", "wae_light"}
    for key in ("full", "half", "wavelet", "ca", "encoder", "il"):
        assert len(cfgs[key]["stages"]) == 1 and cfgs[key]["stages"][0]["epochs"] == e_c, key
    assert cfgs["wae"]["stages"] == w["stages"]  # the WAE recipe itself
    # Same data, evaluation and seed everywhere; the paper's noise variances come from the caller.
    for c in cfgs.values():
        assert c["data"] == w["data"] and c["eval"] == w["eval"] and c["seed"] == 3
    assert cfgs["full"]["model"]["name"] == "small_vgg_28_full"
    assert cfgs["half"]["model"]["name"] == "small_vgg_28_half"
    assert cfgs["wavelet"]["model"]["kwargs"]["decomposer"] == "wavelet"
    assert cfgs["ca"]["model"]["kwargs"] == {"width": 8, "decomposer": "wavelet", "use_high": False}
    enc = cfgs["encoder"]
    assert enc["model"]["kwargs"]["decomposer"] == "encoder"
    assert enc["stages"][0]["freeze"] == []  # the encoder learns with the classifier
    assert cfgs["il"]["stages"][0]["freeze"] == ["wae"]
    assert cfgs["il"]["model"]["init"] == "/x/init"
    # Beyond the paper: the WAE row with the light encoder, nothing else changed.
    light = cfgs["wae_light"]
    assert light["model"]["kwargs"] == {"width": 8, "encoder": "light"}
    assert {**light, "name": None, "model": None} == {**cfgs["wae"], "name": None, "model": None}
    assert {**light["model"], "kwargs": None} == {**cfgs["wae"]["model"], "kwargs": None}
    with pytest.raises(ReproduceError, match="model.kwargs.encoder"):  # set per method
        derive_configs(load_config(wae_cfg, ['model.kwargs.encoder="light"']), base_cfg, seed=0)
    assert all(
        c["stages"][0]["losses"] == {"classification": 1.0}
        for c in cfgs.values()
        if len(c["stages"]) == 1
    )
    quick = derive_configs(wae_cfg, base_cfg, seed=0, quick=True)
    assert all(s["epochs"] == 1 for c in quick.values() for s in c["stages"])


def test_recipe_without_three_stages_is_refused(recipes):
    wae_cfg, base_cfg = recipes
    raw = config_to_dict(wae_cfg)
    raw["stages"] = raw["stages"][1:]
    with pytest.raises(ReproduceError, match="three stages"):
        derive_configs(load_config(raw), base_cfg, seed=0)


def test_every_method_builds_and_takes_a_training_step(recipes):
    wae_cfg, base_cfg = recipes
    full, pruned, _ = _pruned_width8()
    shapes = changed_shapes(full, pruned)
    cfgs = derive_configs(
        wae_cfg,
        base_cfg,
        seed=0,
        il_init="unused",
        taylor_model={
            "name": "pruned_net",
            "kwargs": {"base": "small_vgg_28_full", "shapes": shapes, "width": 8},
            "init": "unused",
        },
        kd_teacher="unused",
    )
    assert set(cfgs) == set(METHOD_KEYS) - {"wae_noft"}
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    for key, cfg in cfgs.items():
        model = _build(cfg)
        if key == "taylor":
            model.load_state_dict(pruned.state_dict())  # the recorded shapes rebuild it
        if key == "il":
            assert isinstance(model, WAENet) and model.high_net is None
        teacher = None
        if cfg["teacher"]["checkpoint"]:  # the distillation rows: what model.init does
            teacher = full
            report = init_from_trained(model, full)
            assert "fresh" not in report.get("head_low", ""), report
        for raw in cfg["stages"]:
            stage = StageConfig(**{k: v for k, v in raw.items() if k != "schedule"})
            params = [
                p for n, p in model.named_parameters() if not n.startswith(tuple(stage.freeze))
            ]
            opt = torch.optim.SGD(params, lr=1e-3)
            module = StageModule(model, stage, teacher, TeacherConfig(**cfg["teacher"]))
            loss, terms, _ = module(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss), (key, raw["name"], terms)


# --------------------------------------------------------------------------------------------
# Starting checkpoints: I_L alone from the WAE's stage 1; the Taylor-pruned network
# --------------------------------------------------------------------------------------------


def test_il_init_copies_the_stage1_wae(tmp_path, recipes):
    wae_cfg, base_cfg = recipes
    cfgs = derive_configs(wae_cfg, base_cfg, seed=0, il_init=str(tmp_path / "init"))
    wae = _build(cfgs["wae"])
    with torch.no_grad():
        for p in wae.wae.parameters():
            p.add_(1.0)  # "trained" weights, unlike any fresh initialisation
    save_checkpoint(tmp_path / "wae" / "stage1", wae, meta=dict(DIMS))
    dest = make_il_init(tmp_path / "wae", cfgs["il"], tmp_path / "init")
    _, state = load_checkpoint(dest)
    for k, v in wae.state_dict().items():
        if k.startswith("wae."):
            assert torch.equal(state[k], v), k
    il = _build(cfgs["il"])
    il.load_state_dict(state, strict=True)  # what the engine's model.init does


def test_taylor_pruning_hits_the_target_and_rebuilds(tmp_path):
    full, pruned, log = _pruned_width8()
    ex = torch.zeros(1, 1, 28, 28)
    assert log["final_macs"] == count_ops(pruned, ex).macs
    assert 0.7 < log["final_macs"] / log["target_macs"] < 1.3
    assert log["final_macs"] < log["base_macs"]
    shapes = changed_shapes(full, pruned)
    assert "net.fc" in shapes and shapes["net.fc"][0] == 10  # the classes stay
    model = create_model("pruned_net", base="small_vgg_28_full", shapes=shapes, width=8, **DIMS)
    model.load_state_dict(pruned.state_dict())
    save_checkpoint(tmp_path / "p", model)
    again, _ = load_model(tmp_path / "p")  # rebuilds from the spec, no pickling
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(again(x), pruned.eval()(x))
    # A target above the network's own cost prunes nothing.
    same, log2 = taylor_prune(full, [], 1e12, ex, num_classes=10)
    assert log2["final_macs"] == log2["base_macs"] and "note" in log2


def test_decomposition_stats():
    x = torch.rand(4, 1, 16, 16)
    dwt = decomposition_stats(WaveletDecomposer(1), x)
    assert dwt["psnr_full_db"] > 100  # the inverse DWT is exact
    assert dwt["psnr_low_only_db"] < dwt["psnr_full_db"]
    from wae.autoencoder import WaveletAutoEncoder

    s = decomposition_stats(WaveletAutoEncoder(1), x)
    assert s["num_images"] == 4 and s["energy_ratio_high_to_low"] > 0


# --------------------------------------------------------------------------------------------
# Run directories, aggregation, budget
# --------------------------------------------------------------------------------------------


def test_recipes_are_found_in_the_package(tmp_path):
    assert recipe_source(None, "fashion_mnist.toml") == "fashion_mnist"  # by name
    assert load_config(recipe_source(None, "fashion_mnist_baseline.toml")).stages
    assert (
        recipe_source(str(tmp_path / "mine.toml"), "fashion_mnist.toml") == tmp_path / "mine.toml"
    )
    with pytest.raises(ReproduceError, match="packaged recipe"):
        recipe_source(None, "no_such_recipe.toml")


def test_seed_configs_are_derived_once(tmp_path, recipes):
    wae_cfg, base_cfg = recipes
    sc = seed_configs(tmp_path, wae_cfg, base_cfg, 2, True, 1e6)
    assert sc.seed == 2 and "taylor" not in sc.configs  # its pruning is not on disk yet
    il_init = Path(sc.configs["il"]["model"]["init"])
    assert il_init.parent == tmp_path / "runs" / "il" / "seed2" and il_init.name.startswith("init-")
    spec = {
        "name": "pruned_net",
        "kwargs": {"base": "small_vgg_28_full", "shapes": {}},
        "init": "p",
    }
    seeded = load_config(wae_cfg, ["seed=2"])
    again = derive_configs(
        seeded,
        base_cfg,
        seed=2,
        quick=True,
        il_init=str(il_init),
        taylor_model=spec,
        kd_teacher=sc.configs["wae_kd"]["teacher"]["checkpoint"],
    )
    assert {k: again[k] for k in sc.configs} == sc.configs
    assert sc.derivation.taylor(spec) == again["taylor"]


def test_distillation_rows_start_from_and_learn_from_the_full_run(tmp_path, recipes):
    wae_cfg, base_cfg = recipes
    cfgs = seed_configs(tmp_path, wae_cfg, base_cfg, 1, False, 1e6).configs
    teacher = str(kd_teacher_dir(tmp_path, cfgs["full"], 1))
    assert Path(teacher).parent == tmp_path / "runs" / "full" / "seed1"
    losses, table = kd_settings()  # `wae accelerate`'s stage template
    assert losses == {"classification": 0.3, "distillation": 0.7}
    assert cfgs["wae"]["teacher"]["checkpoint"] is None  # the paper's rows learn from labels
    assert cfgs["wae_light"]["teacher"]["checkpoint"] is None  # the light row too
    kd_keys = [m.key for m in METHODS if m.beyond and "full" in m.needs]
    assert kd_keys == ["wae_kd", "half_kd", "wae_kd_unfrozen", "wae_kd_wide", "wae_kd_feat"]
    assert kd_keys == [m.key for m in METHODS if m.taught]
    for key in kd_keys:
        c = cfgs[key]
        assert c["model"]["init"] == teacher and c["teacher"]["checkpoint"] == teacher, key
        assert c["teacher"] == {"cache": False, **table, "checkpoint": teacher}
        assert c["data"] == cfgs["wae"]["data"] and c["eval"] == cfgs["wae"]["eval"]
    # WAE + distillation: the WAE's stages, stages 2 and 3 distilling (3 keeps its transform).
    kd, wae = cfgs["wae_kd"], cfgs["wae"]
    assert {**kd["model"], "init": None} == wae["model"]
    assert [s["losses"] for s in kd["stages"]] == [
        wae["stages"][0]["losses"],
        losses,
        {**losses, "transform": wae["stages"][2]["losses"]["transform"]},
    ]
    for a, b in zip(kd["stages"], wae["stages"], strict=True):
        assert {**a, "losses": None} == {**b, "losses": None}  # epochs, optimiser, freeze, ...
    # I_R + distillation: the half-size network's config (budget E_c), distilling.
    h, half = cfgs["half_kd"], cfgs["half"]
    assert {**h["model"], "init": None} == half["model"]
    assert h["stages"][0]["losses"] == losses
    assert {**h["stages"][0], "losses": None} == {**half["stages"][0], "losses": None}
    assert h["stages"][0]["epochs"] == classifier_epochs(config_to_dict(wae_cfg))
    # A full network trained otherwise is another teacher: a new path, new fingerprints.
    other = seed_configs(
        tmp_path, wae_cfg, load_config(base_cfg, ["stages.1.lr=0.01"]), 1, False, 1e6
    )
    for key in kd_keys:
        assert other.configs[key]["model"]["init"] != teacher
        assert fingerprint(other.configs[key]) != fingerprint(cfgs[key])
    # Trained after what they start from (the full run), after every row of the paper's.
    order = training.TRAIN_ORDER
    for m in METHODS:
        if m.trained == "engine":
            assert all(order.index(n) < order.index(m.key) for n in m.needs), m.key
    assert order[-len(BEYOND_KEYS) :] == BEYOND_KEYS


def test_kd_teacher_copies_the_full_run_once(tmp_path):
    full = create_model("small_vgg_28_full", **DIMS, width=8)
    save_checkpoint(tmp_path / "full" / "final", full, meta=dict(DIMS), config={"seed": 0})
    dest = make_kd_teacher(tmp_path / "full", tmp_path / "full" / "teacher-x")
    copy_model, doc = load_model(dest)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(copy_model(x), full.eval()(x))
    assert doc["meta"]["source"] == str(tmp_path / "full" / "final")
    (tmp_path / "full" / "final" / "model.json").unlink()  # made once: not read again
    assert make_kd_teacher(tmp_path / "full", dest) == dest


@needs_fmnist
def test_eval_stage2_scores_the_checkpoint_and_caches(tmp_path, recipes, monkeypatch):
    wae_cfg, base_cfg = recipes
    wae_cfg = load_config(wae_cfg, ["eval.subset=40", "eval.noise_vars=[0.01, 0.1]"])
    cfg = derive_configs(wae_cfg, base_cfg, seed=1, quick=True)["wae"]
    model = _build(cfg).eval()
    save_checkpoint(tmp_path / "stage2", model, meta={**DIMS, "stage_fingerprint": "s2"})
    r = eval_stage2(tmp_path, cfg, log=lambda _: None)
    # The numbers of evaluating the model directly on the run's test set, as before.
    test = build_datasets(cfg, ["test"])["test"]
    ref = evaluate(model, test, [0.01, 0.1], batch_size=cfg["eval"]["batch_size"], seed=1)
    assert r["num_images"] == 40 and r["top1"] == ref["top1"]
    assert [n["top1"] for n in r["noise"]] == [n["top1"] for n in ref["noise"]]
    # Cached: a second call does not evaluate again.
    monkeypatch.setattr(training, "evaluate_checkpoint", None)
    assert eval_stage2(tmp_path, cfg, log=lambda _: None) == json.loads(json.dumps(r))


def test_seed_processes_run_a_function_with_their_own_log(tmp_path):
    logs = tmp_path / "logs"
    tasks = {0: "import torch; print('seed 0 threads', torch.get_num_threads())", 1: "int('x')"}
    with pytest.raises(ReproduceError, match=r"seed 1: ValueError.*Full logs") as err:
        run_in_processes(exec, tasks, 2, logs=logs, threads=2, log=print)
    assert "seed 0" not in str(err.value)  # only the failure; the other seed finished
    # Each ran in its own process with the thread count given (this one runs one thread),
    # everything it printed in its own log, a failure's traceback too.
    assert (logs / "seed0.log").read_text() == "seed 0 threads 2\n"
    assert "Traceback" in (logs / "seed1.log").read_text()


def test_run_status(tmp_path, recipes):
    wae_cfg, base_cfg = recipes
    cfg = derive_configs(wae_cfg, base_cfg, seed=0)["full"]
    rd = tmp_path / "run"
    assert run_status(rd, cfg) == ("train", [])
    rd.mkdir()
    (rd / "config.json").write_text(json.dumps({"config": cfg, "fingerprint": fingerprint(cfg)}))
    assert run_status(rd, cfg)[0] == "resume"
    (rd / "results.json").write_text("{}")
    (rd / "final").mkdir()
    (rd / "final" / "model.json").write_text("{}")
    assert run_status(rd, cfg)[0] == "reuse"
    other = copy.deepcopy(cfg)
    other["stages"][0]["lr"] = 0.123
    status, diff = run_status(rd, other)
    assert status == "changed" and any("lr" in d for d in diff)


def test_aggregate_mean_and_spread():
    def run(t1: float) -> dict:
        return {"top1": t1, "top5": 99.0, "noise": [{"var": 0.0, "top1": t1, "top5": 99.0}]}

    a = aggregate({"0": run(90.0), "1": run(92.0)})
    assert a["top1"] == 91.0 and a["top1_std"] == pytest.approx(2**0.5)
    assert a["noise"][0]["top1"] == 91.0
    assert aggregate({"0": run(90.0)})["top1_std"] is None


def test_budget_estimate_and_auto_subset(recipes):
    wae_cfg, base_cfg = recipes

    def make(n: int) -> dict:
        return derive_configs(load_config(wae_cfg, [f"data.subset={n}"]), base_cfg, seed=0)

    small = sum(estimate_seconds(make(1000), 900, 100, 1000).values())
    big = sum(estimate_seconds(make(1000), 9000, 1000, 1000).values())
    assert big > small > 0
    n = auto_subset(make, total_train=60000, val_fraction=0.1, n_test=1000, seeds=1, budget_s=big)
    assert n is not None and 1000 <= n <= 60000
    assert (
        auto_subset(make, total_train=5000, val_fraction=0.1, n_test=10, seeds=1, budget_s=1e9)
        is None
    )  # everything fits: no subset
    # Two seeds side by side fit a larger subset than one after the other, never a smaller one.
    one = auto_subset(make, total_train=60000, val_fraction=0.1, n_test=1000, seeds=2, budget_s=big)
    two = auto_subset(
        make, total_train=60000, val_fraction=0.1, n_test=1000, seeds=2, budget_s=big, jobs=2
    )
    assert one is not None and two is not None and two > one


def test_textures_recipes_are_the_default_for_skimage_textures():
    assert default_recipes("skimage-textures-64") == ("textures.toml", "textures_baseline.toml")
    assert default_recipes("fashion-mnist")[0] == "fashion_mnist.toml"
    assert default_recipes("/data/faces")[0] == "fashion_mnist.toml"
    wae_cfg = load_config(recipe_source(None, "textures.toml"))
    base_cfg = load_config(recipe_source(None, "textures_baseline.toml"))
    cfgs = derive_configs(wae_cfg, base_cfg, seed=0)
    # The registered 64-px family: every method on the same backbone and patches.
    assert cfgs["full"]["model"]["name"] == "small_vgg_64_full"
    assert cfgs["half"]["model"]["name"] == "small_vgg_64_half"
    assert {c["data"]["dataset"] for c in cfgs.values()} == {"skimage-textures"}
    # A 64x64 image costs (64 / 28)**2 as much as a 28x28 one: so does the estimate.
    fm = load_config(recipe_source(None, "fashion_mnist.toml"), ["model.kwargs.width=16"])
    fm_cfgs = derive_configs(
        fm, load_config(recipe_source(None, "fashion_mnist_baseline.toml")), seed=0
    )
    tex = estimate_seconds({"full": cfgs["full"]}, 1000, 0, 0)["full"]
    fm_s = estimate_seconds({"full": fm_cfgs["full"]}, 1000, 0, 0)["full"]
    assert tex / fm_s == pytest.approx((64 / 28) ** 2 * 12 / classifier_epochs(config_to_dict(fm)))
    # The WAE alone (stage 1) has no classifier: a narrower one does not make it cheaper.
    wae_only = {"wae": {**cfgs["wae"], "stages": cfgs["wae"]["stages"][:1]}}
    narrow = {"wae": {**wae_only["wae"], "model": {**cfgs["wae"]["model"], "kwargs": {"width": 8}}}}
    assert estimate_seconds(wae_only, 1000, 0, 0)["wae"] == pytest.approx(
        estimate_seconds(narrow, 1000, 0, 0)["wae"]
    )


def test_fonts_recipes_derive_every_method_unflipped():
    assert default_recipes("fonts-64,train=4000") == ("fonts.toml", "fonts_baseline.toml")
    wae_cfg = load_config(recipe_source(None, "fonts.toml"))
    base_cfg = load_config(recipe_source(None, "fonts_baseline.toml"))
    cfgs = derive_configs(wae_cfg, base_cfg, seed=0)
    assert cfgs["full"]["model"]["name"] == "small_vgg_64_full"
    assert cfgs["half"]["model"]["name"] == "small_vgg_64_half"
    assert cfgs["full"]["model"]["kwargs"]["width"] == cfgs["wae"]["model"]["kwargs"]["width"] == 32
    assert {c["data"]["dataset"] for c in cfgs.values()} == {"fonts"}
    assert not any(c["data"]["augment"] for c in cfgs.values())  # a flip mirrors the glyphs


def test_wall_seconds_and_jobs():
    est = {"full": 100.0, "wae": 60.0, "fixed": 40.0}
    assert wall_seconds(est) == 200.0
    assert 40.0 + 160.0 / 2 < wall_seconds(est, jobs=2) < 200.0  # parallel, not perfectly
    assert resolve_jobs(ReproduceOptions(jobs=3), n_seeds=2) == 2  # at most one per seed
    assert resolve_jobs(ReproduceOptions(jobs=3, train_only=True), n_seeds=2) == 1
    assert resolve_jobs(ReproduceOptions(threads=64), n_seeds=2) == 1  # cores // threads
    with pytest.raises(ReproduceError, match="--jobs"):
        resolve_jobs(ReproduceOptions(jobs=0), n_seeds=2)


# --------------------------------------------------------------------------------------------
# Verdicts and the report
# --------------------------------------------------------------------------------------------


def _method(
    label: str, top1: float, macs: float = 1e6, speedup: float = 1.0, slope: float = 300.0
) -> dict:
    # Accuracy falls by `slope` points per unit of noise variance.
    noise = [{"var": v, "top1": top1 - slope * v, "top5": 99.0} for v in (0.0, 0.01, 0.05, 0.1)]
    return {
        "label": label,
        "paper": label,
        "budget": "classifier 1 ep",
        "top1": top1,
        "top1_std": None,
        "top5": 99.5,
        "top5_std": None,
        "noise": noise,
        "macs": macs,
        "params": 1000,
        "mac_ratio": 3e6 / macs,
        "latency": {
            "b256": {"median_ms": 10.0 / speedup, "iqr_ms": 0.1},
            "b1": {"median_ms": 1.0 / speedup, "iqr_ms": 0.01},
        },
        "speedup": {"b256": speedup, "b1": speedup},
    }


def fake_results(quick: bool = False, **top1: float) -> dict:
    acc = dict(
        full=92.0,
        half=89.0,
        wavelet=90.0,
        ca=88.5,
        encoder=90.5,
        wae_noft=90.5,  # every margin of the claims beyond 2 SE (0.8-0.9 pts on 10,000 images)
        wae=91.5,
        il=90.0,
        taylor=90.0,
    )
    acc.update(top1)
    macs = dict(full=3e6, half=0.75e6, wavelet=0.8e6, ca=0.75e6, taylor=1.2e6)
    methods = {
        k: _method(
            k.upper(),
            v,
            macs.get(k, 1.2e6),
            3e6 / macs.get(k, 1.2e6) * 0.9,
            slope=150.0 if k.startswith("wae") else 300.0,
        )
        for k, v in acc.items()
    }
    return {
        "quick": quick,
        "dataset": "fashion-mnist",
        "created": "now",
        "seeds": [0],
        "num_test": 10000,
        "plan": {
            "n_train": 9000,
            "n_val": 1000,
            "subset": 10000,
            "subset_source": "auto",
            "classifier_epochs": 16,
        },
        "methods": methods,
        "decomposition": {
            "wae_stage1": {
                "psnr_low_only_db": 20.0,
                "psnr_full_db": 30.0,
                "energy_ratio_high_to_low": 1e-3,
                "num_images": 100,
            },
        },
        "pruning": {
            "0": {
                "torch_pruning": "1.6",
                "grad_images_per_step": 256,
                "step_ratio": 0.025,
                "final_macs": 1.2e6,
                "target_macs": 1.2e6,
                "steps": [1, 2],
            }
        },
        "figures": {"noise": "figures/accuracy_vs_noise.png"},
        "machine": {"cpu_model": "cpu", "threads": 1},
        "timing_s": {"total": 60.0},
    }


def _verdicts(results: dict) -> dict[str, dict]:
    return {c["id"]: c for c in claims(results)}


def test_verdicts_follow_the_numbers():
    v = _verdicts(fake_results())
    for cid in (
        "wae_vs_ir",
        "wae_vs_wavelet",
        "wae_vs_decomposition",
        "finetune",
        "il_vs_ir",
        "il_vs_ca",
        "noise",
        "speedup",
        "wae_vs_taylor",
        "wae_vs_full",
    ):
        assert v[cid]["verdict"] == "holds", (cid, v[cid])
    assert v["wae_vs_ir"]["margin"] == pytest.approx(2.5)
    assert v["speedup"]["margin"] == pytest.approx(0.9)
    # Reversed numbers reverse the verdicts, with negative margins.
    v = _verdicts(fake_results(wae=88.0, wae_noft=89.0, il=87.5))
    for cid in (
        "wae_vs_ir",
        "wae_vs_wavelet",
        "wae_vs_decomposition",
        "finetune",
        "il_vs_ir",
        "il_vs_ca",
        "wae_vs_full",
        "wae_vs_taylor",
    ):
        assert v[cid]["verdict"] == "does not hold", cid
    assert v["wae_vs_ir"]["margin"] == pytest.approx(-1.0)
    assert "beyond 2 standard errors" in v["wae_vs_ir"]["note"]
    # A margin within 2 standard errors decides nothing, whichever its sign.
    close = _verdicts(fake_results(wae=89.2))["wae_vs_ir"]
    assert close["verdict"] == "inconclusive" and "within 2 standard errors" in close["note"]
    assert _verdicts(fake_results(wae=88.8))["wae_vs_ir"]["verdict"] == "inconclusive"


def test_verdict_rule_two_standard_errors():
    se = se_diff(90.0, 89.0, 10000)
    assert se == pytest.approx(100 * ((0.9 * 0.1 + 0.89 * 0.11) / 10000) ** 0.5)
    assert verdict(2.01 * se, se) == "holds"
    assert verdict(-2.01 * se, se) == "does not hold"
    for m in (0.0, 1.99 * se, -1.99 * se, 2 * se, -2 * se):
        assert verdict(m, se) == "inconclusive", m
    assert verdict(0.1, float("nan")) == "holds"  # no test-set size: the sign decides
    assert verdict(-0.1, float("nan")) == "does not hold"
    # The same margin decides on a large test set and not on a small one.
    r = fake_results(wae=89.6)  # +0.6 over I_R; 2 SE is 0.87 pts on 10,000 images
    assert _verdicts(r)["wae_vs_ir"]["verdict"] == "inconclusive"
    r["num_test"] = 100000  # 2 SE: 0.27 pts
    assert _verdicts(r)["wae_vs_ir"]["verdict"] == "holds"
    # Noise: inconclusive when the smallest margin is within 2 SE, even if it is positive.
    r = fake_results()
    r["methods"]["wae"]["noise"][1]["top1"] = r["methods"]["full"]["noise"][1]["top1"] + 0.2
    noise = _verdicts(r)["noise"]
    assert noise["verdict"] == "inconclusive" and noise["margin"] == pytest.approx(0.2)
    # WAE vs Taylor needs both accuracy and speed: as accurate within 2 SE but slower fails.
    r = fake_results(wae=90.1)
    r["methods"]["taylor"]["speedup"]["b256"] = 5.0
    t = _verdicts(r)["wae_vs_taylor"]
    assert t["verdict"] == "does not hold" and "slower" in t["note"]
    assert "**inconclusive**" in format_report(fake_results(wae=89.2))


def test_verdict_edge_cases():
    r = fake_results()
    r["methods"]["wae"]["noise"][2]["top1"] = 0.0  # worse than full at V = 0.05
    r["methods"]["wae"]["speedup"]["b256"] = 1.0  # far from the 2.5x MAC ratio
    r["methods"]["taylor"]["speedup"]["b256"] = 5.0  # WAE more accurate but slower
    v = _verdicts(r)
    assert v["noise"]["verdict"] == "does not hold" and v["noise"]["margin"] < 0
    assert v["speedup"]["verdict"] == "does not hold"
    assert v["wae_vs_taylor"]["verdict"] == "does not hold"
    assert "slower" in v["wae_vs_taylor"]["note"]
    del r["methods"]["il"]
    assert _verdicts(r)["il_vs_ir"]["verdict"] == "not measured"
    # A small loss against full holds within 2 SE; spread over seeds is reported.
    r = fake_results(wae=91.9)
    for m in r["methods"].values():
        m["top1_std"] = 0.3
    v = _verdicts(r)
    assert v["wae_vs_full"]["verdict"] == "holds" and "seed spread" in v["wae_vs_full"]["note"]


def test_verdicts_beyond_the_paper_only_for_rows_that_ran():
    base = fake_results()
    assert not any(c.get("beyond") for c in claims(base))  # an older results.json: none
    assert "Beyond the paper" not in format_report(base)
    r = fake_results(wae_kd=92.5, half_kd=90.0)
    assert [c for c in claims(r) if not c.get("beyond")] == claims(base)  # the paper's as before
    v = _verdicts(r)
    for cid in ("kd_wae_vs_full", "kd_wae_vs_kd_ir", "kd_improves_wae"):
        assert v[cid]["verdict"] == "holds" and v[cid]["paper"] == "beyond the paper", cid
    assert v["kd_improves_wae"]["margin"] == pytest.approx(1.0)
    v = _verdicts(fake_results(wae_kd=90.0, half_kd=91.5))
    for cid in ("kd_wae_vs_full", "kd_wae_vs_kd_ir", "kd_improves_wae"):
        assert v[cid]["verdict"] == "does not hold", cid
    # Within 2 SE: no gain over WAE shown, and no loss against full.
    v = _verdicts(fake_results(wae_kd=91.8))
    assert v["kd_improves_wae"]["verdict"] == "inconclusive"
    assert v["kd_wae_vs_full"]["verdict"] == "holds"
    assert "kd_wae_vs_kd_ir" not in v  # I_R + distillation was not run
    text = format_report(r)
    assert "## Beyond the paper" in text and "| WAE_KD | 7.50 |" in text
    assert "WAE_KD (ours, beyond the paper)" in text and "WAE_KD (beyond the paper):" in text


def test_light_encoder_row_has_its_claim_and_section():
    base = fake_results()
    r = fake_results(wae_light=91.2)  # 0.3 below the WAE: within 2 SE on 10,000 images
    assert [c for c in claims(r) if not c.get("beyond")] == claims(base)
    v = _verdicts(r)["light_vs_wae"]
    assert v["verdict"] == "holds" and v["margin"] == pytest.approx(-0.3)
    assert v["unit"] == "top-1 points (WAE, light encoder - WAE)"
    assert _verdicts(fake_results(wae_light=89.0))["light_vs_wae"]["verdict"] == "does not hold"
    text = format_report(r)
    assert "## Beyond the paper: a light encoder" in text and "| WAE_LIGHT | 8.80 |" in text
    assert "knowledge distillation" not in text  # no distillation row was run
    order = training.TRAIN_ORDER
    assert "wae_light" in BEYOND_KEYS
    assert set(order[-len(BEYOND_KEYS) :]) == set(BEYOND_KEYS)  # the paper's rows first


def test_figures_keep_one_style_per_method_and_hide_no_point(tmp_path):
    styles = figures.METHOD_STYLES
    assert set(styles) == set(METHOD_KEYS)
    assert len({(st.color, st.marker) for st in styles.values()}) == len(styles)
    # WAE and "WAE w/o stage 3" share a latency: a larger hollow ring drawn under the star.
    ring, star = styles["wae_noft"], styles["wae"]
    assert ring.size > star.size and not ring.filled
    # The distillation rows share their network's latency: larger hollow markers around it.
    for kd, plain in (("wae_kd", "wae"), ("half_kd", "half")):
        assert styles[kd].size > styles[plain].size and not styles[kd].filled
    order = {
        label: z for z, label, _ in figures._styles(["WAE", "noft"], {"WAE": star, "noft": ring})
    }
    assert order["noft"] < order["WAE"]
    labels = {"WAE": star, "WAE w/o stage 3": ring}
    pts = {k: {"latency_ms": 1.0, "top1": 90.0, "top1_std": None} for k in labels}
    assert_drawn_image(figures.accuracy_vs_latency(pts, tmp_path / "a.png", "t", "x", labels))
    series = {k: [(0.0, 90.0), (0.1, 80.0)] for k in labels}
    assert_drawn_image(figures.accuracy_vs_noise(series, tmp_path / "n.png", "t", labels))
    row = [("input", torch.rand(1, 8, 8), False), ("I_H", torch.rand(1, 4, 4) * 1e-3, True)]
    assert_drawn_image(figures.decomposition_grid([row], tmp_path / "d.png", "t"))
    # The check itself: a saved empty figure of the same size is refused.
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8, 4.4))
    fig.savefig(tmp_path / "blank.png", dpi=110)
    plt.close(fig)
    with pytest.raises(AssertionError, match="blank"):
        assert_drawn_image(tmp_path / "blank.png", min_bytes=0)
    assert "false colours" in figures.STRETCH_CAPTION and "[min, max]" in figures.STRETCH_CAPTION
    # The report shows each figure's caption under it.
    r = fake_results()
    r["figure_captions"] = {"noise": "what the lines mean"}
    assert "*what the lines mean*" in format_report(r)


def test_report_writer(tmp_path):
    results = fake_results(quick=True)
    path = write_report(results, tmp_path)
    text = path.read_text()
    assert text.startswith("**QUICK RUN")
    for heading in (
        "## Verdicts",
        "## Table 2",
        "## Table 3",
        "## Table 4",
        "## Table 7",
        "## What I_H carries",
        "ThiNet is not run",
    ):
        assert heading in text, heading
    # Paper numbers beside ours.
    assert f"{PAPER['table2']['wae']['top5_err']:.2f}" in text
    assert "| WAE | 8.50 |" in text  # ours: top-1 err = 100 - 91.5
    assert "**holds**" in text
    assert "QUICK" not in format_report(fake_results(quick=False))
    assert "Trivial cues" not in text  # reports made before it was measured have no line
    r = fake_results()
    r["trivial_cue"] = {"top1": 11.8, "chance": 10.0}
    assert "gets 11.8 % top-1 (chance 10.0 %)" in format_report(r)
    assert "mean and standard deviation alone" in format_report(r)  # measured before ink
    r["trivial_cue"]["features"] = ["mean", "std", "ink"]
    assert "standard deviation and ink fraction alone" in format_report(r)


# --------------------------------------------------------------------------------------------
# CLI and the pipeline
# --------------------------------------------------------------------------------------------


def test_cli_registers_reproduce():
    args = build_parser().parse_args(["reproduce", "--quick", "--seeds", "0", "1", "--plan"])
    assert args.quick and args.seeds == [0, 1] and args.plan


@needs_fmnist
def test_plan_only(tmp_path, capsys):
    res = run_reproduce(ReproduceOptions(output=str(tmp_path / "o"), quick=True, plan_only=True))
    plan = res["plan"]
    assert plan["subset"] == 600 and plan["classifier_epochs"] == 1
    assert all(
        st == {0: "train"} for k, st in plan["status"].items() if k not in ("wae_noft", "taylor")
    )
    assert "estimated total" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()  # a plan writes nothing


@needs_fmnist
@pytest.mark.slow
def test_quick_seeds_in_parallel_processes(tmp_path):
    out = tmp_path / "p"
    opts = ReproduceOptions(
        output=str(out),
        quick=True,
        seeds=[0, 1],
        jobs=2,
        verbose=False,
        photo_steps=5,
        latency=False,
    )
    res = run_reproduce(opts)
    assert res["plan"]["jobs"] == 2 and "parallel_training" in res["timing_s"]
    assert set(res["methods"]["wae"]["per_seed"]) == {"0", "1"}
    for seed in (0, 1):  # each seed trained in its own process, which logged it
        log = (out / "logs" / f"seed{seed}.log").read_text()
        assert f"== seed {seed} WAE" in log and f"== seed {1 - seed} " not in log


@needs_fmnist
@pytest.mark.slow
def test_quick_end_to_end(tmp_path):
    out = tmp_path / "q"
    opts = ReproduceOptions(output=str(out), quick=True, verbose=False, photo_steps=5)
    res = run_reproduce(opts)
    assert set(res["methods"]) == set(METHOD_KEYS)
    text = (out / "report.md").read_text()
    assert text.startswith("**QUICK RUN")
    assert json.loads((out / "results.json").read_text())["quick"] is True
    assert "Training precision: " in text and "wae/seed0" in res["precision"]
    assert "methods" in json.loads((out / "config.json").read_text())
    for rel in res["figures"].values():
        assert_drawn_image(out / rel)
    for m in res["methods"].values():
        assert [r["var"] for r in m["noise"]] == [0.0, 0.01, 0.02, 0.05, 0.1]
        assert m["macs"] > 0 and m["latency"]["b256"]["median_ms"] > 0
    # Everything is reused the second time (same config): same numbers, nothing retrained.
    again = run_reproduce(opts)
    assert again["methods"]["wae"]["top1"] == res["methods"]["wae"]["top1"]
    assert not list(out.glob("runs/*/seed0/replaced-*"))
    # A changed recipe is refused before training.
    with pytest.raises(ReproduceError, match="retrain-changed"):
        run_reproduce(
            ReproduceOptions(
                output=str(out), quick=True, verbose=False, overrides=["stages.2.lr=0.04"]
            )
        )


def test_every_run_of_a_method_records_its_training_precision(tmp_path, recipes, monkeypatch):
    """A method's run (trained now, or reused: results.json) gives the precision it trained
    in; the report's notes say it, with the reason when "auto" fell back to fp32."""
    from wae.apps.reproduce import runner
    from wae.runtime import describe_precision

    wae_cfg, base_cfg = recipes
    assert wae_cfg.runtime.precision == "auto"  # the packaged recipe's; every method takes it
    cfgs = derive_configs(wae_cfg, base_cfg, seed=0, quick=True)
    assert {c["runtime"]["precision"] for c in cfgs.values()} == {"auto"}
    note = (
        "this CPU has no AMX or AVX-512 BF16, so bf16 would be slower than fp32: training in fp32"
    )
    rec = {"precision": "fp32", "precision_requested": "auto", "precision_note": note}
    test = {"top1": 50.0, "top5": 90.0, "num_images": 10, "noise": []}
    monkeypatch.setattr(
        training, "run_training", lambda *a, **k: {"complete": True, "test": test, **rec}
    )
    job = training.SeedJob(tmp_path, SeedConfigs(0, cfgs, None), 0.0, (1, 1))  # type: ignore[arg-type]
    res = training.SeedResult(0)
    training._train_method(job, res, "full", cfgs["full"], lambda _: None)
    assert res.precision == {"full": rec}
    old = training.SeedResult(1, precision={"full": {}})  # a run from before precision
    precision = runner._precision({0: res, 1: old})
    assert precision == {"full/seed0": rec, "full/seed1": {}}
    notes = runner._notes(
        ReproduceOptions(output="o"), {"input_size": 28, "in_chans": 1}, precision
    )
    assert notes[-1] == describe_precision(precision) and note in notes[-1]
    assert "fp32 for full/seed0; not recorded for full/seed1" in notes[-1]


def test_results_round_trip_to_report(tmp_path):
    r = fake_results()
    p = tmp_path / "results.json"
    p.write_text(json.dumps(r))
    assert format_report(json.loads(p.read_text())) == format_report(r)
    assert Path(write_report(r, tmp_path)).name == "report.md"


def test_distilled_wae_variants_change_one_thing_each(tmp_path, recipes):
    """What the paper leaves open, each the distilled WAE with one change."""
    wae_cfg, base_cfg = recipes
    cfgs = seed_configs(tmp_path, wae_cfg, base_cfg, 0, False, 1e6).configs
    kd = cfgs["wae_kd"]

    def without(c, *keys):
        c = copy.deepcopy(c)
        for k in keys:
            c[k] = None
        return c

    # Encoder unfrozen in stage 2, which keeps the transform loss at stage 3's weight.
    un = cfgs["wae_kd_unfrozen"]
    s2, kd2, kd3 = un["stages"][1], kd["stages"][1], kd["stages"][2]
    assert kd2["freeze"] == ["wae"] and s2["freeze"] == []
    assert s2["losses"] == {**kd2["losses"], "transform": kd3["losses"]["transform"]}
    assert un["stages"][0] == kd["stages"][0] and un["stages"][2] == kd3
    assert without(un, "name", "stages") == without(kd, "name", "stages")
    # Wider I_H branch: only the model's kwargs change.
    wide = cfgs["wae_kd_wide"]
    assert wide["model"]["kwargs"] == {**kd["model"]["kwargs"], "high_divisor": 2}
    assert without(wide, "name", "model") == without(kd, "name", "model")
    # Feature distillation: stages 2 and 3 gain the loss, stage 1 is the same.
    feat = cfgs["wae_kd_feat"]
    assert feat["stages"][0] == kd["stages"][0]
    for a, b in zip(feat["stages"][1:], kd["stages"][1:], strict=True):
        assert a["losses"] == {**b["losses"], "feature_distillation": FEATURE_KD_WEIGHT}
    assert without(feat, "name", "stages") == without(kd, "name", "stages")


def test_methods_selection_adds_what_rows_start_from(tmp_path, recipes):
    assert select_methods(None) == METHOD_KEYS
    assert select_methods(["wae_kd_feat", "half"]) == ("full", "half", "wae_kd_feat")
    assert select_methods(["taylor"]) == ("full", "wae", "taylor")
    assert select_methods(["il", "wae_noft"]) == ("wae_noft", "wae", "il")  # METHODS order
    with pytest.raises(ReproduceError, match="--methods takes row keys"):
        select_methods(["wae", "resnet"])
    wae_cfg, base_cfg = recipes
    sc = seed_configs(tmp_path, wae_cfg, base_cfg, 0, False, 1e6, ("full", "half_kd"))
    assert set(sc.configs) == {"full", "half_kd"} and sc.methods == ("full", "half_kd")


def test_variant_claims_and_section():
    r = fake_results(wae_kd=91.0, half_kd=91.0, wae_kd_feat=93.0, wae_kd_wide=89.0)
    v = _verdicts(r)
    assert v["feat_vs_kd_wae"]["verdict"] == "holds" and v["feat_vs_kd_ir"]["verdict"] == "holds"
    assert v["wide_vs_kd_wae"]["verdict"] == "does not hold"
    assert "unfrozen_vs_kd_wae" not in v  # not run: no claim
    assert "## Beyond the paper: what the paper leaves open" in format_report(r)


# --------------------------------------------------------------------------------------------
# The fastest-backend columns
# --------------------------------------------------------------------------------------------


def _with_fastest(results: dict, deploy: list[str]) -> dict:
    """`results` as timed on `deploy` besides eager: each row's fastest at both batches."""
    for m in results["methods"].values():
        eager = m["latency"]
        m["latency_fastest"] = {
            b: {"backend": "ort", "median_ms": lat["median_ms"] / 2, "iqr_ms": 0.01}
            for b, lat in eager.items()
        }
        m["speedup_fastest"] = dict(m["speedup"])
    results["cost"] = {b: {"settings": {"backends": deploy}} for b in ("b256", "b1")}
    return results


def test_table2_shows_the_fastest_backend_columns() -> None:
    from wae.apps.reproduce.report import format_report

    text = format_report(_with_fastest(fake_results(), ["optimized", "ort"]))
    header = next(line for line in text.splitlines() if line.startswith("| method | top-1"))
    assert "| speed-up (b1) | fastest backend ms (b256) | fastest backend ms (b1) | MMACs" in header
    table = text.split("## Table 2")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len({r.count("|") for r in rows}) == 1  # ThiNet's row too
    full = next(r for r in rows if r.startswith("| FULL |"))
    assert "| 11.1 | 0.90x | 1.11 | 0.90x | 5.56 (ort) | 0.556 (ort) |" in full  # eager kept
    assert "optimized, ort (optimized: wae.optimize.optimize_for_inference" in text
    beyond = _with_fastest(fake_results(wae_kd=91.0, half_kd=89.5), ["ort"])
    section = format_report(beyond).split("## Beyond the paper: knowledge")[1]
    rows = [line for line in section.split("\n## ")[0].splitlines() if line.startswith("|")]
    assert "fastest backend ms (b1)" in rows[0] and rows[0].endswith("| MAC ratio | row |")
    assert len({r.count("|") for r in rows}) == 1


def test_table2_without_deploy_timing_has_the_eager_columns_only() -> None:
    from wae.apps.reproduce.report import format_report

    for r in (fake_results(), _with_fastest(fake_results(), [])):  # older results, or off
        text = format_report(r)
        assert "fastest backend" not in text and "| CPU ms (b1) | speed-up (b1) | MMACs" in text


def test_time_models_measures_eager_and_the_fastest_backend_and_add_cost_copies_it() -> None:
    from wae.apps.reproduce.measure import add_cost, time_models

    models = {
        "full": create_model("small_vgg_28_full", width=4),
        "wae": create_model("wae_small_vgg_28", width=4),
    }
    lines: list[str] = []
    cost = time_models(
        models, 28, 1, latency=True, quick=True, log=lines.append, backends=["optimized"]
    )
    assert set(cost) == {"b256", "b1"}
    assert "eager and optimized" in lines[0]
    for b in ("b256", "b1"):
        assert cost[b]["settings"]["backends"] == ["optimized"]
        for key in models:
            assert set(cost[b]["backends"][key]) == {"eager", "optimized"}
            assert cost[b]["fastest"][key]["backend"] in ("eager", "optimized")
    json.dumps(cost)
    methods = {k: {"label": k} for k in models}
    add_cost(methods, cost, models)
    for key, m in methods.items():
        for b in ("b256", "b1"):
            assert m["latency_fastest"][b] == cost[b]["fastest"][key]
            assert m["speedup_fastest"][b] == cost[b]["speedup_fastest"][key]
            assert m["latency_fastest"][b]["median_ms"] <= m["latency"][b]["median_ms"]
    assert methods["full"]["speedup_fastest"]["b1"] == pytest.approx(1.0)
