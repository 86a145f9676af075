"""Sweeps (layout, aggregation, resume, best student) and the report (tables and plots)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import warnings

import pytest
from PIL import Image

from hf_kd.errors import ArgumentError
from hf_kd.report import comparison, find_runs, paired_differences, report, write_tables
from hf_kd.sweep import run_sweep, summarise
from tests.conftest import cli_args


def sweep_args(bert, files, output_dir, method="kd", *extra):
    args = cli_args(bert, files, output_dir, method, "--eval_strategy", "epoch", "--num_train_epochs", "2", *extra)
    return [*args, "--sweep_learning_rates", "1e-3", "3e-4", "--sweep_repetitions", "2"]


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert "| sst2 | kd | accuracy | 3 | 81.00 | 1.00 | 80.00 | +1.00 [" in table and "2/3 runs: ties |" in table


def write_run(folder, info: dict, results: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "hf_kd_run.json").write_text(json.dumps(info))
    (folder / "all_results.json").write_text(json.dumps(results))


def test_report_pairs_each_run_with_its_own_twin_not_by_seed(tmp_path):
    """Two runs of one seed at two learning rates are two pairs (they overwrote each other: one row, 0/1)."""
    info = {"method": "kd", "task": "sst2", "main_metric": "accuracy", "seed": 42}
    write_run(tmp_path / "a", info | {"learning_rate": 1e-4}, {"eval_accuracy": 0.5, "no_kd_twin_eval_accuracy": 0.5})
    write_run(tmp_path / "b", info | {"learning_rate": 2e-4}, {"eval_accuracy": 0.5, "no_kd_twin_eval_accuracy": 1.0})
    (row,) = comparison(find_runs([str(tmp_path)]))
    assert row["twin_mean"] == pytest.approx(0.75)
    assert sorted(row["twin_difference"]["differences"]) == pytest.approx([-0.5, 0.0])


def test_report_reads_the_methods_student_where_its_twin_was_kept(tmp_path):
    """--load_best_of_twins saved the twin: all_results.json describes the twin, the report the method's student;
    the distilled/ folder is part of the run, not a run."""
    info = {"method": "kd", "task": "sst2", "main_metric": "accuracy", "seed": 42, "learning_rate": 1e-4}
    results = {"eval_accuracy": 1.0, "distilled_eval_accuracy": 0.5, "no_kd_twin_eval_accuracy": 1.0}
    write_run(tmp_path / "run", info, results)
    write_run(tmp_path / "run" / "distilled", info, {"eval_accuracy": 0.5, "no_kd_twin_eval_accuracy": 1.0})
    (run,) = find_runs([str(tmp_path)])
    assert run["metric"] == 0.5 and run["twin_metric"] == 1.0


def test_report_keeps_data_sets_apart_whose_files_share_a_name(tmp_path):
    """`train.csv` of RTE and of CoLA: two data sets, two rows, named apart (they were merged into one)."""
    base = {"method": "kd", "task": "train.csv", "main_metric": "accuracy", "learning_rate": 1e-4}
    for name, data, value in (("rte", "/data/rte/train.csv#aaa", 0.6), ("cola", "/data/cola/train.csv#bbb", 0.8)):
        for seed in (1, 2):
            write_run(tmp_path / f"{name}-{seed}", base | {"data": data, "seed": seed}, {"eval_accuracy": value})
    rows = comparison(find_runs([str(tmp_path)]))
    assert [(row["task"], row["runs"], row["mean"]) for row in rows] == [
        ("train.csv (1)", 2, pytest.approx(0.8)),  # /data/cola sorts first
        ("train.csv (2)", 2, pytest.approx(0.6)),
    ]


def test_sweep_reads_equals_forms_and_refuses_a_folder_of_other_arguments(bert, sst2_files, tmp_path):
    """`--seed=7` and `--output_dir=X` work as their spaced forms; a second sweep with another --method into the
    same folder is refused (it silently reused the first sweep's runs), and the same sweep reuses them."""
    args = cli_args(bert, sst2_files, tmp_path / "unused", "kd", "--max_steps", "1", "--do_eval", "true")
    args = [arg for arg in args if arg != str(tmp_path / "unused")]
    args.remove("--output_dir")
    sweep = [*args, f"--output_dir={tmp_path / 'sweep'}", "--seed=7", "--sweep_learning_rates", "1e-3"]
    (row,) = run_sweep(sweep)
    assert row["seed"] == 7 and row["folder"] == str(tmp_path / "sweep" / "sst2" / "lr-0.001" / "rep-0")
    stamp = os.path.getmtime(os.path.join(row["folder"], "all_results.json"))
    run_sweep(sweep)  # the same arguments: reused
    assert os.path.getmtime(os.path.join(row["folder"], "all_results.json")) == stamp
    other = [arg if arg != "kd" else "normal" for arg in sweep]
    with pytest.raises(ArgumentError, match=r"holds a run of other arguments than this sweep's \(differing: .*kd"):
        run_sweep(other)
    assert os.path.getmtime(os.path.join(row["folder"], "all_results.json")) == stamp


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        ([0.02, 0.03, 0.025], "beats"),
        ([-0.02, -0.03, -0.025], "loses"),
        ([0.001, 0.04, 0.002], "leans above"),
        ([-0.001, -0.04, -0.002], "leans below"),
        ([0.03, -0.01, 0.03], "ties"),
        ([0.05], "one seed"),
        ([0.02, 0.021], "leans above"),  # an interval above 0, but two seeds cannot decide
        ([-0.02, -0.021], "leans below"),
        ([0.006, 0.006, 0.006], "leans above"),  # no spread: the t-interval is zero wide, not certain
        ([0.006, 0.006, 0.007], "beats"),
    ],
)
def test_the_selection_rule_in_words(differences, expected):
    """A setting replaces its default only when the paired 95% interval is above 0; everything else is a lean
    or a tie, never advice."""
    from hf_kd.report import selects, verdict

    baseline = {seed: 0.8 for seed in range(len(differences))}
    values = {seed: 0.8 + difference for seed, difference in enumerate(differences)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # equal differences: no precision-loss warning from scipy reaches a user
        paired = paired_differences(values, baseline)
    assert verdict(paired) == expected and selects(paired) == (expected == "beats")
