"""Section 4's curve is read from the committed reports: every point has its seeds and the step budget the
report gives its runs, and a report that lacks either is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import steps_curve

ROOT = Path(__file__).resolve().parents[1]


REPORT = """# Quality benchmark

Every method: batch 32, 1,000 student steps (`full`: 1 epoch).

Teacher: held-out 88.00, dev **88.30**.

## Ablations

| setting | method | ablation | flags | held-out, default |
|---|---|---|---|---|
| unlabelled | kd | s2000 | `--max_unlabeled_samples 10 --max_steps 2000` | 80.90 |

## Every run

| setting | ablation | method | lr | seed | held-out | dev | wall time (s) |
|---|---|---|---|---|---|---|---|
| few_labels |  | normal | 0.0001 | 42 | 78.00 | 80.00 | 10 |
| few_labels |  | normal | 0.0001 | 43 | 79.00 | 81.00 | 10 |
| unlabelled |  | kd | 0.0001 | 42 | 81.00 | 82.00 | 10 |
| unlabelled |  | kd | 0.0001 | 43 | 81.50 | 83.00 | 10 |
| unlabelled | s2000 | kd | 0.0001 | 42 | 82.00 | 84.00 | 10 |
| unlabelled | s2000 | kd | 0.0001 | 43 | 83.00 | 84.50 | 10 |
| unlabelled | s2000 | kd | 0.0001 | 44 | 82.50 | 85.50 | 10 |

## What it says

| a table of the analysis | 1 | 2 |
"""


@pytest.fixture
def one_report(tmp_path, monkeypatch):
    """REPORT as `tmp_path/R.md`, the report that no KD and the teacher are read from too."""
    (tmp_path / "R.md").write_text(REPORT)
    monkeypatch.setattr(steps_curve, "NO_KD", steps_curve.Point(1000, "R.md", method="normal", setting="few_labels"))
    monkeypatch.setattr(steps_curve, "TEACHER_REPORT", "R.md")


def test_points_are_the_runs_of_their_report_with_their_step_budget(one_report, tmp_path, monkeypatch):
    monkeypatch.setattr(
        steps_curve, "CURVES", {"KD, text": [steps_curve.Point(1000, "R.md"), steps_curve.Point(2000, "R.md", "s2000")]}
    )
    assert steps_curve.main(["--reports", str(tmp_path), "--output", str(tmp_path / "C.png")]) == 0
    data = json.loads((tmp_path / "C.json").read_text())
    assert data["teacher"] == {"heldout": 88.0, "dev": 88.3} and data["no_kd"]["dev_mean"] == pytest.approx(80.5)
    one, two = data["curves"]["KD, text"]
    assert one["seeds"] == [42, 43] and one["dev"] == [82.0, 83.0] and one["heldout_mean"] == pytest.approx(81.25)
    assert two["steps"] == 2000 and two["seeds"] == [42, 43, 44] and two["dev_mean"] == pytest.approx(84.6667, abs=1e-4)
    assert two["dev_std"] == pytest.approx(0.7638, abs=1e-4)  # sample std of 84.0, 84.5, 85.5
    assert (tmp_path / "C.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("point", "says"),
    [
        ((4000, "R.md", "s2000"), "have 2000 steps, not 4000"),  # the ablation's --max_steps disagrees
        ((2000, "R.md"), "have 1000 steps, not 2000"),  # the header's default disagrees
        ((1000, "R.md", "s4000"), "no ablation row for unlabelled/kd/s4000"),
        ((1000, "R.md", "", "rail_kd"), "0 run(s) of unlabelled//rail_kd: need 2 seeds"),
    ],
)
def test_a_point_its_report_does_not_hold_is_refused_by_name(one_report, tmp_path, monkeypatch, capsys, point, says):
    monkeypatch.setattr(steps_curve, "CURVES", {"KD": [steps_curve.Point(*point)]})
    assert steps_curve.main(["--reports", str(tmp_path), "--output", str(tmp_path / "C.png")]) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'R.md'}: " in error and says in error and not (tmp_path / "C.png").exists()


def test_a_missing_report_is_named_without_a_traceback(one_report, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(steps_curve, "CURVES", {"KD": [steps_curve.Point(1000, "gone.md")]})
    assert steps_curve.main(["--reports", str(tmp_path), "--output", str(tmp_path / "C.png")]) == 2
    assert str(tmp_path / "gone.md") in capsys.readouterr().err and not (tmp_path / "C.json").exists()


def test_the_committed_curve_matches_the_committed_reports():
    """Every point of section 4's figure has its 3 seeds in the report named for it, and the JSON beside the
    figure is what the reports say today (re-run `python benchmarks/steps_curve.py` after a report changes)."""
    data = steps_curve.collect(ROOT / "benchmarks")
    assert all(p["seeds"] == [42, 43, 44] for points in data["curves"].values() for p in points)
    assert data["no_kd"]["seeds"] == [42, 43, 44] and data["teacher"] == {"heldout": 88.0, "dev": 88.3}
    committed = json.loads((ROOT / "benchmarks" / "RESULTS_sst2_steps_curve.json").read_text())
    assert committed == json.loads(json.dumps(data))
