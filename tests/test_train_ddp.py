"""Two-process DistributedDataParallel training on the CPU (gloo), launched by torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wae.checkpoint import load_checkpoint
from wae.data import DEFAULT_FASHION_MNIST_DIR

pytestmark = pytest.mark.skipif(
    not any(DEFAULT_FASHION_MNIST_DIR.glob("train-images-idx3-ubyte*"))
    or not torch.distributed.is_available(),
    reason="needs Fashion-MNIST and torch.distributed",
)

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from safetensors.torch import save_file
    from wae.train import TrainHooks, run_training

    class Grab(TrainHooks):
        def on_epoch_end(self, stage, epoch, row, model):
            self.row = row
            self.state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    cfg = json.load(open(sys.argv[1]))
    out, rank = sys.argv[2], os.environ["RANK"]
    grab = Grab()
    res = run_training(cfg, out, hooks=grab)
    save_file(grab.state, f"{out}.rank{rank}.safetensors")
    json.dump({"row": grab.row, "test": res["test"], "world": os.environ["WORLD_SIZE"]},
              open(f"{out}.rank{rank}.json", "w"))
    """
)


def test_two_process_gloo_run_agrees_across_ranks(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_train import tiny_config

    cfg = tiny_config(s1=1, s2=1)
    cfg["stages"] = cfg["stages"][:2]  # WAE + classifier: DDP with frozen and unused parts
    cfg["stages"][1]["schedule"] = {"name": "constant"}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "worker.py").write_text(WORKER)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", CI="true")
    env.pop("WAE_DATA_DIR", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(tmp_path / "worker.py"), str(tmp_path / "cfg.json"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"run.rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == "2"
    w0, w1 = (load_file(tmp_path / f"run.rank{r}.safetensors") for r in (0, 1))
    # DDP keeps the replicas identical: same gradients, same updates, buffers from rank 0.
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # What rank 0 wrote is what both ranks hold.
    final = load_checkpoint(out / "final")[1]
    for k in w0:
        assert torch.equal(final[k], w0[k]), k
    # Metrics are reduced over the ranks, so every rank reports the same numbers...
    assert r0["row"] == {
        **r1["row"],
        "epoch_time_s": r0["row"]["epoch_time_s"],
        "images_per_s": r0["row"]["images_per_s"],
    }
    assert r0["test"] == r1["test"]
    # ...over the whole evaluation set (strided shards, nothing padded or counted twice).
    assert r0["test"]["num_images"] == 40
    saved = json.loads((out / "config.json").read_text())
    assert saved["world_size"] == 2
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one epoch per stage, written once (rank 0)
