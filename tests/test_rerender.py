"""`wae reproduce --report-only`: a finished reproduction's report re-rendered from its
results.json (claims and number figures recomputed, the model figures kept), training nothing.

The fixture is test_reproduce's fake results, written where a finished run would have left
them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_drawn_image
from test_reproduce import fake_results
from wae.apps.reproduce import claims, figures
from wae.cli import main
from wae.runlock import HOLDER_FILE, RunLock

pytestmark = pytest.mark.usefixtures("one_thread")

DECOMPOSITION = "figures/decomposition_dataset.png"
STALE_NOISE = b"an old noise figure"
MODEL_FIGURE = b"drawn from the trained models"


def _finished(out: Path) -> dict:
    """A finished reproduction in `out` whose claims and figures are out of date."""
    results = fake_results()
    results["claims"] = [{"claim": "stale", "verdict": "stale"}]
    results["figures"] = {
        "Accuracy vs noise variance (Table 7)": "figures/accuracy_vs_noise.png",
        "Decomposition of test images (Fig. 3/4)": DECOMPOSITION,
    }
    results["figure_captions"] = {}
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "accuracy_vs_noise.png").write_bytes(STALE_NOISE)
    (out / DECOMPOSITION).write_bytes(MODEL_FIGURE)
    (out / "results.json").write_text(json.dumps(results))
    return results


def test_report_only_rerenders_from_results_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "repro"
    before = _finished(out)
    assert main(["reproduce", "--report-only", "-o", str(out)]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    after = json.loads((out / "results.json").read_text())
    # Claims recomputed from the stored numbers; the numbers themselves untouched.
    assert after["claims"] == claims(before) and after["claims"] != before["claims"]
    assert after["methods"] == before["methods"] and after["plan"] == before["plan"]
    # The number figures redrawn (the stale one replaced), the model figure kept as it was.
    figs = after["figures"]
    assert {
        "Accuracy vs CPU latency (batch 256)",
        "Accuracy vs CPU latency (batch 1)",
        "Accuracy vs noise variance (Table 7)",
    } <= set(figs)
    for title, rel in figs.items():
        if rel != DECOMPOSITION:
            assert_drawn_image(out / rel)
            assert after["figure_captions"][title]
    assert (out / "figures" / "accuracy_vs_noise.png").read_bytes() != STALE_NOISE
    assert figs["Decomposition of test images (Fig. 3/4)"] == DECOMPOSITION
    assert (out / DECOMPOSITION).read_bytes() == MODEL_FIGURE
    assert after["figure_captions"]["Decomposition of test images (Fig. 3/4)"] == (
        figures.STRETCH_CAPTION
    )
    # The report shows the recomputed figures; nothing was trained, the lock was released.
    report = (out / "report.md").read_text()
    assert "accuracy_vs_latency_b256.png" in report and "WAE" in report
    assert not (out / "runs").exists() and not (out / HOLDER_FILE).exists()


def test_report_only_needs_a_finished_reproduction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["reproduce", "--report-only", "-o", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "holds no finished reproduction" in err and "Traceback" not in err
    assert list(empty.iterdir()) == []  # nothing written
    assert main(["reproduce", "--report-only"]) == 2
    assert "--report-only needs -o" in capsys.readouterr().err


def test_report_only_refuses_a_directory_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "repro"
    _finished(out)
    text = (out / "results.json").read_text()
    with RunLock(out, "wae reproduce"):
        assert main(["reproduce", "--report-only", "-o", str(out)]) == 2
    assert "is in use" in capsys.readouterr().err
    assert (out / "results.json").read_text() == text and not (out / "report.md").exists()
