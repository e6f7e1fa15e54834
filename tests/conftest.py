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
