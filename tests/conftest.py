import pytest
import torch
from torch import nn

from wae.models import WAENet


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests: tiny convolutions on a shared 2-core machine
    run several times faster on one thread than on two fighting other processes, and a fixed
    count keeps runs comparable. The previous count is restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _randomise_stats(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Make a fresh model's BatchNorms and FixedNorms non-trivial, as after training; eval
    mode. Folding and export tests need this: identity statistics would hide their errors."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    if isinstance(model, WAENet):
        model.calibrate_norms([images])
    return model.eval()


@pytest.fixture
def randomise_stats():
    """``randomise_stats(model, images) -> model``: see :func:`_randomise_stats`."""
    return _randomise_stats


# --- the hostile-input battery (tests/test_hostile_*.py) ---------------------------------------

TINY = [  # a whole three-stage run in a few seconds
    "data.subset=600",
    "stages.1.epochs=1",
    "stages.2.epochs=1",
    "stages.2.schedule.warmup_epochs=0",
    "stages.3.epochs=1",
    "eval.subset=500",
    "eval.noise_vars=[]",
    "model.kwargs.width=8",
    "runtime.progress=off",
]


def tree_digest(root) -> dict[str, str]:
    """Relative path -> sha256 of every file under `root`: what "nothing written changed" checks."""
    import hashlib
    from pathlib import Path

    root = Path(root)
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_clean_error(code: int, err: str, expect: str | None = None) -> None:
    """A refused command: exit 2 and one paragraph on stderr (no traceback), naming `expect`."""
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    text = err.strip()
    assert text and "\n\n" not in text, err  # one paragraph
    assert text.startswith(("wae ", "usage: wae")), err
    if expect is not None:
        assert expect.lower() in text.lower(), (expect, err)


@pytest.fixture
def run_cli(capsys):
    """run_cli(*argv) -> (exit code, stderr) of `wae argv` in this process."""
    from wae.cli import main

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own usage errors
            code = e.code if isinstance(e.code, int) else 2
        return code, capsys.readouterr().err

    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished tiny Fashion-MNIST WAE run (OUT with final/, results.json, ...), shared; tests
    must not change it (copy it first when a case writes into it)."""
    from wae.data import DataError
    from wae.train import run_training

    out = tmp_path_factory.mktemp("tiny") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training("fashion_mnist", out, overrides=TINY)
    except DataError as e:  # no Fashion-MNIST on this machine
        pytest.skip(f"Fashion-MNIST not available: {e}")
    finally:
        torch.set_num_threads(n)
    return out


def assert_drawn_image(path, *, min_bytes: int = 5_000, max_bytes: int = 5_000_000) -> None:
    """`path` is a drawn picture, not just a file: a readable image of a plausible size (in
    bytes and pixels) with something on it (pixels not all one colour, the background at
    most 99% of them)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    path = Path(path)
    assert path.is_file(), path
    size = path.stat().st_size
    assert min_bytes <= size <= max_bytes, (path, size)
    with Image.open(path) as im:
        im.load()
        assert min(im.size) >= 100, (path, im.size)
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.std() > 0, f"{path} is blank"
    _, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    assert len(counts) > 1 and counts.max() / counts.sum() < 0.99, f"{path} is almost blank"
