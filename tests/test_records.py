"""Run records (`benchmarks/records.py`): a benchmark's results survive the loss of its output folder, a
report rebuilt from them reads the same runs, and a restored run is trained again, never reused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmarks.quality import records, runner, tasks
from hf_kd.reuse import RUN_KEY

ROOT = Path(__file__).resolve().parents[1]


def finished_run(folder: Path, heldout: float, dev: float, key: dict) -> None:
    """A run as the benchmark leaves it: results, dev results, timing, key, and a model and log besides."""
    (folder / "dev").mkdir(parents=True)
    (folder / "all_results.json").write_text(json.dumps({"eval_accuracy": heldout}))
    (folder / "dev" / "all_results.json").write_text(json.dumps({"eval_accuracy": dev}))
    (folder / "wall_time.json").write_text(json.dumps({"seconds": 1800.0}))
    (folder / RUN_KEY).write_text(json.dumps(key))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "log.txt").write_text("training\n")


def benchmark_output(out: Path) -> None:
    finished_run(out / "teacher", 0.906, 0.893, {"args": ["teacher"]})
    variant = out / "runs" / "unlabelled_share50"
    for seed, heldout, dev in [(42, 0.878, 0.8896), (43, 0.885, 0.8877)]:
        finished_run(variant / "kd" / "lr-0.0001" / f"seed-{seed}", heldout, dev, {"args": [str(seed)]})
    (variant / runner.ABLATION_FLAGS).write_text("--labelled_share 0.5")
    (out / "teacher_cache").mkdir()
    (out / "teacher_cache" / "all_results.json").write_text("{}")  # a cache's file of the same name: not kept
    (out / "data").mkdir()
    (out / "data" / "labelled.csv").write_text("text,category\nhi,greeting\n")
    (out / runner.LEDGER_FILE).write_text('{"run": "teacher"}\n{"run": "kd seed 42"}\n')


def tiny_sst2(tmp_path: Path, monkeypatch) -> None:
    """SST-2 as the benchmark sees it, two rows a split, without the data set's files."""
    files = {}
    for name in ("heldout", "unlabelled", "full", "labelled", "dev"):
        files[name] = tmp_path / f"{name}.tsv"
        files[name].write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    sst2 = dataclasses.replace(tasks.TASKS["sst2"], files=lambda options, folder: dict(files))
    monkeypatch.setitem(runner.TASKS, "sst2", sst2)


def fake_training(monkeypatch) -> list[list[str]]:
    """Every hf_kd call the benchmark makes, recorded; each leaves results (accuracy 0.9) and weights behind."""
    calls = []

    def train(args, **_):
        calls.append(args)
        folder = Path(args[args.index("--output_dir") + 1])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.9}))
        (folder / "model.safetensors").write_bytes(b"new weights")
        return 0

    monkeypatch.setattr(runner.subprocess, "call", train)
    return calls


def test_records_keep_what_reports_read_and_restore_it_without_models_or_keys(tmp_path):
    out, kept, fresh = tmp_path / "out", tmp_path / "records", tmp_path / "fresh"
    benchmark_output(out)
    written = records.save(out, kept)
    assert len(written) == 4 * 3 + 1 + 1  # results, dev results, timing, key per run; the flags; the ledger
    assert not list(kept.rglob("*.safetensors")) and not (kept / "teacher_cache").exists()
    assert not (kept / "data").exists() and (kept / "runs" / "unlabelled_share50" / "kd" / "lr-0.0001").is_dir()

    restored = records.restore(kept, fresh)
    assert len(restored) == 3 * 3 + 1 + 1 and not list(fresh.rglob(RUN_KEY))  # every file but the keys
    root = runner.runs_root(fresh, "minilm2")
    assert runner.finished_runs(root) == runner.finished_runs(runner.runs_root(out, "minilm2"))
    assert [(r["seed"], r["heldout"], r["dev"], r["flags"]) for r in runner.finished_runs(root)] == [
        (42, 0.878, 0.8896, "--labelled_share 0.5"),
        (43, 0.885, 0.8877, "--labelled_share 0.5"),
    ]
    assert runner.read_run(fresh / "teacher") == {"heldout": 0.906, "dev": 0.893, "wall_seconds": 1800.0}
    assert (fresh / "teacher" / runner.RESTORED).is_file() and (fresh / "teacher" / "dev" / runner.RESTORED).is_file()


def test_restore_never_overwrites_and_save_only_grows_the_ledger(tmp_path):
    out, kept = tmp_path / "out", tmp_path / "records"
    benchmark_output(out)
    records.save(out, kept)
    seed_42 = out / "runs" / "unlabelled_share50" / "kd" / "lr-0.0001" / "seed-42" / "all_results.json"
    seed_42.write_text(json.dumps({"eval_accuracy": 0.5}))  # a run made here since: restore leaves it alone
    assert Path("runs/unlabelled_share50/kd/lr-0.0001/seed-42/all_results.json") not in records.restore(kept, out)
    assert json.loads(seed_42.read_text()) == {"eval_accuracy": 0.5}
    assert not (seed_42.parent / runner.RESTORED).exists()

    elsewhere = tmp_path / "elsewhere"  # another machine's folder, its ledger started afresh
    elsewhere.mkdir()
    (elsewhere / runner.LEDGER_FILE).write_text('{"run": "kd seed 44"}\n{"run": "teacher"}\n')
    records.save(elsewhere, kept)
    entries = runner.ledger(kept / runner.LEDGER_FILE)
    assert [entry["run"] for entry in entries] == ["teacher", "kd seed 42", "kd seed 44"]
    assert (kept / "runs" / "unlabelled_share50" / "kd" / "lr-0.0001" / "seed-43").is_dir()  # still recorded


def test_a_restored_run_and_its_dev_result_are_trained_again(tmp_path, monkeypatch, capsys):
    """Restored results have no model: asked for again, the run trains and its dev evaluation runs, each
    saying why, and the marker goes."""
    out, kept, fresh = tmp_path / "out", tmp_path / "records", tmp_path / "fresh"
    benchmark_output(out)
    records.save(out, kept)
    records.restore(kept, fresh)
    (tmp_path / "dev.csv").write_text("text,category\nhello,greeting\n")
    calls = fake_training(monkeypatch)
    bench = runner.Runner(jobs=1, deadline=None)
    folder = fresh / "runs" / "unlabelled_share50" / "kd" / "lr-0.0001" / "seed-42"
    assert bench.run("kd seed 42", folder, ["--seed", "42"])["heldout"] == 0.9
    assert len(calls) == 1 and "holds results restored from the records" in capsys.readouterr().out
    assert not (folder / runner.RESTORED).exists()
    bench.evaluate("kd seed 42", folder, tmp_path / "dev.csv", tmp_path / "dev.csv")
    assert len(calls) == 2 and not (folder / "dev" / runner.RESTORED).exists()
    assert bench.run("kd seed 42", folder, ["--seed", "42"])["heldout"] == 0.9 and len(calls) == 2  # now reused


def test_a_benchmark_with_records_reports_the_restored_runs_on_a_new_machine(tmp_path, monkeypatch):
    """`--records NAME` on a machine without the runs: the records are restored first, and the report is built
    from them as it was from the runs themselves."""
    out, kept = tmp_path / "out", tmp_path / "records"
    finished_run(out / "teacher", 0.9, 0.88, {"args": ["teacher"]})
    for seed, heldout, dev in [(42, 0.80, 0.78), (43, 0.81, 0.80), (44, 0.79, 0.77)]:
        finished_run(out / "runs" / "few_labels" / "normal" / "lr-0.0001" / f"seed-{seed}", heldout, dev, {})
    records.save(out, kept / "sst2")
    tiny_sst2(tmp_path, monkeypatch)
    monkeypatch.setattr(runner, "RECORDS", kept)
    report = tmp_path / "R.md"
    fresh = tmp_path / "fresh"
    flags = ["--output_dir", str(fresh), "--settings", "few_labels", "--methods", "normal", "--report", str(report)]
    runner.benchmark([*flags, "--report_only", "--records", "sst2"])
    assert runner.read_run(fresh / "teacher")["heldout"] == 0.9 and (fresh / "teacher" / runner.RESTORED).is_file()
    assert "| normal | 1,000 | 0.0001 | 80.00 | 78.33 ± " in report.read_text()  # the three seeds' means


def test_a_report_not_named_goes_to_the_output_folder_and_leaves_the_committed_ones_alone(tmp_path, monkeypatch):
    """Any run may be partial (one seed, one ablation): without `--report` its report is written beside its runs,
    and the repository's reports are rewritten only when named."""
    out = tmp_path / "out"
    finished_run(out / "teacher", 0.9, 0.88, {"args": ["teacher"]})
    finished_run(out / "runs" / "few_labels" / "normal" / "lr-0.0001" / "seed-42", 0.80, 0.78, {})
    tiny_sst2(tmp_path, monkeypatch)
    committed = {path: path.read_bytes() for path in (ROOT / "benchmarks").glob("RESULTS*")}
    runner.benchmark(["--output_dir", str(out), "--settings", "few_labels", "--methods", "normal", "--report_only"])
    assert "| few_labels |  | normal | 0.0001 | 42 | 80.00 | 78.00 |" in (out / "RESULTS.md").read_text()
    assert (out / "RESULTS.png").is_file() and (out / "RESULTS.json").is_file()
    assert {path: path.read_bytes() for path in (ROOT / "benchmarks").glob("RESULTS*")} == committed


def test_teacher_only_trains_and_records_the_teacher_and_starts_no_student(tmp_path, monkeypatch, capsys):
    """A new machine's first call: the teacher alone (all threads), evaluated and recorded, then a stop, so the
    student benchmarks can start side by side and find it finished."""
    tiny_sst2(tmp_path, monkeypatch)
    monkeypatch.setattr(runner, "RECORDS", tmp_path / "records")
    calls = fake_training(monkeypatch)
    out, report = tmp_path / "out", tmp_path / "R.md"
    flags = ["--output_dir", str(out), "--base_model", "base", "--report", str(report), "--records", "sst2"]
    runner.benchmark([*flags, "--settings", "unlabelled", "--methods", "kd", "--teacher_only"])
    outputs = [Path(args[args.index("--output_dir") + 1]) for args in calls]
    assert outputs == [out / "teacher", out / "teacher" / "dev"]  # trained, then scored on the reported set
    assert not (out / "runs").exists() and not report.exists()
    assert "the teacher is ready" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "records" / "sst2" / "teacher" / "all_results.json").read_text())
    assert recorded["eval_accuracy"] == 0.9
    with pytest.raises(SystemExit):
        runner.parse_options([*flags, "--teacher_only", "--report_only"])
    assert "give one of them" in capsys.readouterr().err
