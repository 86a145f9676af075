"""Sweeps (layout, aggregation, resume, best student) and the report (tables and plots)."""

from __future__ import annotations

import json
import os
import shutil
import statistics

import pytest
from PIL import Image

from hf_kd.errors import ArgumentError
from hf_kd.report import comparison, find_runs, paired_differences, report, write_tables
from hf_kd.sweep import run_sweep, summarise
from tests.conftest import cli_args


def sweep_args(bert, files, output_dir, method="kd", *extra):
    args = cli_args(bert, files, output_dir, method, "--eval_strategy", "epoch", "--num_train_epochs", "2", *extra)
    return [*args, "--sweep_learning_rates", "1e-3", "3e-4", "--sweep_repetitions", "2"]


def test_sweep_layout_table_best_and_resume(bert, sst2_files, tmp_path, capsys):
    rows = run_sweep(sweep_args(bert, sst2_files, tmp_path / "sweep"))
    folders = sorted(os.path.relpath(row["folder"], tmp_path / "sweep") for row in rows)
    assert folders == ["sst2/lr-0.0003/rep-0", "sst2/lr-0.0003/rep-1", "sst2/lr-0.001/rep-0", "sst2/lr-0.001/rep-1"]
    assert sorted(row["seed"] for row in rows) == [42, 42, 43, 43]
    table = (tmp_path / "sweep" / "results.md").read_text()
    for row in rows:
        assert f"| {100 * row['metric']:.2f} |" in table
    values = [row["metric"] for row in rows if row["learning_rate"] == 1e-3]
    mean, std = statistics.fmean(values), statistics.stdev(values)
    assert f"| sst2 | 0.001 | 2 | accuracy | {100 * mean:.2f} | {100 * std:.2f} |" in table
    assert "mean" in (tmp_path / "sweep" / "results.csv").read_text()
    best = max(rows, key=lambda row: row["metric"])
    assert json.loads((tmp_path / "sweep" / "sst2" / "best" / "best_run.json").read_text())["folder"] == best["folder"]
    assert (tmp_path / "sweep" / "sst2" / "best" / "model.safetensors").read_bytes() == (
        tmp_path / best["folder"] / "model.safetensors"
    ).read_bytes()

    # an interrupted sweep: one run lost its results, another never started; finished runs are reused
    shutil.rmtree(tmp_path / "sweep" / "sst2" / "lr-0.0003" / "rep-1")
    os.remove(tmp_path / "sweep" / "sst2" / "lr-0.001" / "rep-1" / "all_results.json")
    stamp = os.path.getmtime(tmp_path / "sweep" / "sst2" / "lr-0.001" / "rep-0" / "all_results.json")
    capsys.readouterr()
    again = run_sweep(sweep_args(bert, sst2_files, tmp_path / "sweep"))
    out = capsys.readouterr().out
    assert out.count("hf_kd.sweep: sst2") == 2  # only the two missing runs trained again
    assert os.path.getmtime(tmp_path / "sweep" / "sst2" / "lr-0.001" / "rep-0" / "all_results.json") == stamp
    assert [r["metric"] for r in again] == [r["metric"] for r in rows]  # same seeds, same results


def test_summary_against_hand_computation():
    rows = [
        {"task": "rte", "learning_rate": 1e-5, "metric_name": "accuracy", "metric": value} for value in (0.6, 0.7, 0.8)
    ]
    (item,) = summarise(rows)
    assert item["mean"] == pytest.approx(0.7) and item["std"] == pytest.approx(0.1) and item["runs"] == 3


def test_empty_learning_rate_list_is_refused(bert, sst2_files, tmp_path):
    args = cli_args(bert, sst2_files, tmp_path / "sweep", "kd")
    args = [a for a in args if a not in ("--learning_rate", "1e-3")]
    with pytest.raises(ArgumentError, match="--sweep_learning_rates is empty"):
        run_sweep([*args, "--sweep_learning_rates"])
    assert not (tmp_path / "sweep").exists()


def test_report_tables_and_plots(bert, sst2_files, tmp_path):
    for method in ("normal", "kd", "cilda_minild"):
        run_sweep(
            [
                *cli_args(
                    bert, sst2_files, tmp_path / method, method, "--eval_strategy", "epoch", "--num_train_epochs", "2"
                ),
                "--sweep_repetitions",
                "2",
            ]
        )
    result = report([str(tmp_path / m) for m in ("normal", "kd", "cilda_minild")], str(tmp_path / "report"))
    assert len(result["runs"]) == 6
    table = (tmp_path / "report" / "comparison.md").read_text()
    for row in result["comparison"]:
        values = [run["metric"] for run in result["runs"] if run["method"] == row["method"]]
        assert (
            f"| sst2 | {row['method']} | accuracy | 2 | {100 * statistics.fmean(values):.2f} | {100 * statistics.stdev(values):.2f} |"
            in table
        )
    assert [row["method"] for row in result["comparison"]] == ["normal", "kd", "cilda_minild"]
    for name in ("validation_sst2.png", "losses_sst2.png", "methods_sst2.png"):
        path = tmp_path / "report" / name
        assert path.stat().st_size > 10_000
        with Image.open(path) as image:
            width, height = image.size
            assert width > 400 and height > 300
            assert len(set(image.convert("L").getdata())) > 20  # lines, text and bars, not a blank canvas


def test_report_without_finished_runs_is_an_error(tmp_path):
    (tmp_path / "empty" / "run").mkdir(parents=True)
    with pytest.raises(ArgumentError, match="No finished runs"):
        report([str(tmp_path / "empty")], str(tmp_path / "report"))


def test_paired_differences_against_a_hand_computation():
    method = {42: 0.83, 43: 0.80, 44: 0.82, 45: 0.79}
    baseline = {42: 0.80, 43: 0.81, 44: 0.79}  # seed 45 has no baseline run: left out of the pairing
    result = paired_differences(method, baseline)
    differences = [0.03, -0.01, 0.03]
    mean, std = statistics.fmean(differences), statistics.stdev(differences)
    half_width = 4.302652729911275 * std / 3**0.5  # t(0.975, 2 degrees of freedom)
    assert result["seeds"] == [42, 43, 44] and result["wins"] == 2
    assert result["differences"] == pytest.approx(differences)
    assert (result["mean"], result["std"]) == pytest.approx((mean, std))
    assert (result["low"], result["high"]) == pytest.approx((mean - half_width, mean + half_width))


def test_report_sets_each_method_beside_its_no_kd_twins(tmp_path):
    """Runs made with --baseline_twin: the twins' mean and the paired difference per method; the twins' own
    folders are not counted as `normal` runs."""
    for seed, (mine, twin) in zip((1, 2, 3), ((0.80, 0.78), (0.82, 0.80), (0.81, 0.82)), strict=True):
        folder = tmp_path / f"kd-{seed}"
        (folder / "no_kd_twin").mkdir(parents=True)
        info = {"method": "kd", "task": "sst2", "main_metric": "accuracy", "learning_rate": 1e-4, "seed": seed}
        (folder / "hf_kd_run.json").write_text(json.dumps(info))
        (folder / "all_results.json").write_text(json.dumps({"eval_accuracy": mine, "no_kd_twin_eval_accuracy": twin}))
        (folder / "no_kd_twin" / "hf_kd_run.json").write_text(json.dumps(info | {"method": "normal"}))
        (folder / "no_kd_twin" / "all_results.json").write_text(json.dumps({"eval_accuracy": twin}))
    runs = find_runs([str(tmp_path)])
    assert [run["method"] for run in runs] == ["kd"] * 3
    (row,) = comparison(runs)
    assert row["twin_mean"] == pytest.approx(0.80)
    assert row["twin_difference"]["differences"] == pytest.approx([0.02, 0.02, -0.01])
    assert row["twin_difference"]["wins"] == 2
    write_tables(runs, [row], str(tmp_path))
    table = (tmp_path / "comparison.md").read_text()
    assert "| sst2 | kd | accuracy | 3 | 81.00 | 1.00 | 80.00 | +1.00 [" in table and "2/3 seeds |" in table
