"""The quality benchmark's report: every finished run on disk, methods against no KD on dev, ablations
against the method's defaults on held-out, both paired by seed (checked against hand computations)."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.quality import runner as runner_module
from hf_kd.guards import OutputDirLock
from hf_kd.reuse import RUN_KEY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    """The benchmark package's modules (tasks, report, runner) as one namespace."""
    from benchmarks.quality import report, runner, tasks

    return SimpleNamespace(**{**vars(tasks), **vars(report), **vars(runner)})


def finished(folder: Path, heldout: float, dev: float) -> None:
    (folder / "dev").mkdir(parents=True)
    (folder / "all_results.json").write_text(json.dumps({"eval_accuracy": heldout}))
    (folder / "dev" / "all_results.json").write_text(json.dumps({"eval_accuracy": dev}))
    (folder / "wall_time.json").write_text(json.dumps({"seconds": 60.0}))


def finished_seeds(method_folder: Path, heldout: list[float], dev: list[float]) -> None:
    """Seeds 42, 43, 44 at learning rate 1e-4, finished with these accuracies."""
    for seed, h, d in zip([42, 43, 44], heldout, dev, strict=True):
        finished(method_folder / "lr-0.0001" / f"seed-{seed}", h, d)


# held-out and dev accuracy per seed 42, 43, 44
NO_KD = ([0.80, 0.81, 0.79], [0.78, 0.80, 0.77])
DEFAULT = ([0.84, 0.83, 0.85], [0.81, 0.82, 0.80])
NO_CRD = ([0.85, 0.85, 0.84], [0.82, 0.81, 0.82])


def test_report_reads_every_run_and_pairs_ablations_on_heldout(quality, tmp_path):
    runs = tmp_path / "runs"
    for folder, (heldout, dev) in [
        (runs / "few_labels" / "normal", NO_KD),
        (runs / "few_labels" / "cilda_minild", DEFAULT),
        (runs / "few_labels_no_crd" / "cilda_minild", NO_CRD),
    ]:
        finished_seeds(folder, heldout, dev)
    (runs / "few_labels_no_crd" / quality.ABLATION_FLAGS).write_text("--weight_crd 0")
    for seed, h in [(42, 0.83), (43, 0.85)]:  # a two-seed lead is paired on the seeds it has
        finished(runs / "few_labels_t2" / "cilda_minild" / "lr-0.0001" / f"seed-{seed}", h, 0.8)
    # one seed (no row), at the ablation's own --learning_rate: not in the sweep the header names
    finished(runs / "few_labels_t4" / "cilda_minild" / "lr-0.0002" / "seed-42", 0.9, 0.9)
    (runs / "few_labels" / "kd" / "lr-0.0001" / "seed-42").mkdir(parents=True)  # unfinished: not reported

    found = quality.finished_runs(quality.runs_root(tmp_path, "minilm2"))
    assert len(found) == 12 and {r["variant"] for r in found} == {"", "no_crd", "t2", "t4"}
    report = tmp_path / "report" / "R.md"
    report.parent.mkdir()
    options = Namespace(seeds=[42, 43, 44], steps=1000, report=str(report), student="minilm2")
    rows = quality.write_report(
        found, {"heldout": 0.9, "dev": 0.88}, options, {"full": 100, "unlabelled": 10, "labelled": 40}, "cmd"
    )
    text = report.read_text()
    assert "## `few_labels`: 40 labelled sentences" in text  # the files' own counts (an imbalanced cut has fewer)
    assert "chosen per setting and method from {0.0001} by mean accuracy" in text

    # cilda_minild against no KD on dev: differences +3, +2, +3 points
    assert rows["few_labels/cilda_minild"]["paired_difference"]["differences"] == pytest.approx([0.03, 0.02, 0.03])
    assert (
        f"| cilda_minild | 1,000 | 0.0001 | 84.00 | 81.00 ± {100 * statistics.stdev(DEFAULT[1]):.2f} | +2.67 [" in text
    )
    assert "| 3/3 | beats |" in text and "kd" not in rows  # +2, +3, +3 points on dev: the interval is above 0
    # each method's row says over how many flag sets it was screened: defaults, no_crd, t2, t4 / defaults only
    method_rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert method_rows["| cilda_minild"].endswith("| 4 |") and method_rows["| normal"].endswith("| 1 |")
    # the ablation against the default on held-out: +1, +2, -1 points; on dev +1, -1, +2
    heldout = [a - b for a, b in zip(NO_CRD[0], DEFAULT[0], strict=True)]
    mean = 100 * statistics.fmean(heldout)
    row = next(line for line in text.splitlines() if "| no_crd |" in line)
    assert row.startswith(
        f"| few_labels | cilda_minild | no_crd | `--weight_crd 0` | defaults | 84.00 | 84.67 | {mean:+.2f} ["
    )
    assert "| 2/3 | +0.67 | +3.33 [" in row and row.endswith("(3/3) |")  # and against no KD: +4, +1, +5 on dev
    row = next(line for line in text.splitlines() if "| t2 |" in line)
    assert "| `` | defaults | 83.50 | 84.00 | +0.50 [" in row and "| 1/2 | -1.50 | +1.00 [" in row  # seeds 42, 43 only
    assert "| cilda_minild | t4 |" not in text  # (its run is listed under "Every run")
    assert (report.parent / "R.png").is_file() and "![methods](R.png)" in text


def test_the_chart_draws_each_ablation_beside_its_method(quality, tmp_path):
    """A report made of ablations (`--methods normal --ablation s8000@kd=...`) must not chart no KD alone."""
    runs = tmp_path / "runs"
    s8000 = ([0.85, 0.84, 0.86], [0.86, 0.87, 0.85])
    for folder, (heldout, dev) in [
        (runs / "few_labels" / "normal", NO_KD),
        (runs / "few_labels" / "kd", DEFAULT),
        (runs / "unlabelled_s8000" / "kd", s8000),
    ]:
        finished_seeds(folder, heldout, dev)
    found = quality.finished_runs(quality.runs_root(tmp_path, "minilm2"))
    options = Namespace(seeds=[42, 43, 44], steps=1000, report=str(tmp_path / "R.md"), student="minilm2")
    counts = {"full": 100, "labelled": 40, "unlabelled": 10}
    rows = quality.write_report(found, {"heldout": 0.9, "dev": 0.88}, options, counts, "cmd")
    bars = quality.chart_bars(rows, found)
    assert list(bars) == ["normal", "kd", "kd · s8000"]  # methods in their order, each ablation after its method
    assert set(bars["normal"]) == {"few_labels", "unlabelled"}  # no KD's runs are both settings' baseline
    assert set(bars["kd"]) == {"few_labels"} and set(bars["kd · s8000"]) == {"unlabelled"}
    mean, std = bars["kd · s8000"]["unlabelled"]
    assert mean == pytest.approx(86.0) and std == pytest.approx(100 * statistics.stdev(s8000[1]))
    assert bars["kd"]["few_labels"] == pytest.approx((81.0, 100 * statistics.stdev(DEFAULT[1])))
    assert (tmp_path / "R.png").stat().st_size > 10_000


def test_a_remedy_run_without_its_methods_defaults_is_still_compared_with_no_kd(quality, tmp_path):
    """`--methods normal --ablation_methods kd --ablation share90=...`: no default KD to pair with on held-out,
    but the remedy's own held-out mean and its dev against no KD are what the choice needs."""
    runs = tmp_path / "runs"
    share = ([0.82, 0.80, 0.81], [0.80, 0.81, 0.79])
    for folder, (heldout, dev) in [
        (runs / "unlabelled_share90" / "kd", share),
        (runs / "few_labels" / "normal", NO_KD),
    ]:
        finished_seeds(folder, heldout, dev)
    (runs / "unlabelled_share90" / quality.ABLATION_FLAGS).write_text("--labelled_share 0.9")
    report = tmp_path / "R.md"
    options = Namespace(seeds=[42, 43, 44], steps=1000, report=str(report), student="minilm2")
    found = quality.finished_runs(quality.runs_root(tmp_path, "minilm2"))
    quality.write_report(
        found, {"heldout": 0.9, "dev": 0.88}, options, {"full": 100, "labelled": 40, "unlabelled": 10}, "cmd"
    )
    row = next(line for line in report.read_text().splitlines() if "| share90 |" in line)
    # dev against no KD: +2, +1, +2 points
    assert row.startswith(
        "| unlabelled | kd | share90 | `--labelled_share 0.9` | defaults | not run | 81.00 | | | | +1.67 ["
    )
    assert row.endswith("(3/3) |")


def test_ablation_flags_are_checked(quality):
    with pytest.raises(SystemExit):
        quality.parse_options(["--ablation", "no flags"])
    with pytest.raises(SystemExit):
        quality.parse_options(["--ablation", "a=--x 1", "--ablation", "a=--y 2"])
    options = quality.parse_options(["--extra_args", "--bf16 true", "--ablation", "t2=--kd_temperature 2"])
    assert options.variants == {"": "", "t2": "--kd_temperature 2"} and options.extra_args == "--bf16 true"


def test_an_ablations_learning_rate_names_its_runs_and_per_run_flags_are_refused(quality, capsys):
    """An ablation's `--learning_rate` replaces the sweep for its runs (their folders say lr-0.0002, not the
    sweep's 1e-4 that the flag silently overrode); seeds, output folders and unparsable flags are refused."""
    ablations = ["fast@kd=--max_steps 10 --learning_rate 1e-3", "faster@kd=--learning_rate=5e-3 --learning_rate 2e-4"]
    ablations.append("t2=--kd_temperature 2")
    argv = ["--learning_rates", "1e-4", "3e-4"]
    options = quality.parse_options(argv + [arg for ablation in ablations for arg in ("--ablation", ablation)])
    assert options.variant_rates == {"": [1e-4, 3e-4], "fast": [1e-3], "faster": [2e-4], "t2": [1e-4, 3e-4]}
    refused = [
        (["--ablation", "a=--seed 3"], "--seed is set run by run"),
        (["--ablation", "a=--output_dir=x"], "--output_dir is set run by run"),
        (["--ablation", "a=--learning_rate"], "is not a learning rate"),
        (["--ablation", "a=--learning_rate 5"], "is not a learning rate"),
        (["--ablation", "a=--learning_rate nan"], "is not a learning rate"),
        (["--ablation", "a=--kd_temperature ' 2"], "No closing quotation"),
        (["--extra_args", "--learning_rate 1e-3"], "give --learning_rates instead"),
        (["--learning_rates", "0"], "each a learning rate in (0, 1)"),
    ]
    for argv, message in refused:
        with pytest.raises(SystemExit) as refusal:
            quality.parse_options(argv)
        assert refusal.value.code == 2 and message in capsys.readouterr().err, argv


def test_an_ablation_can_name_its_own_methods(quality):
    """`NAME@METHOD,...=FLAGS` runs only there: a contrastive-weight ablation means nothing for KD."""
    options = quality.parse_options(
        [
            "--methods",
            "kd",
            "rail_kd",
            "--ablation",
            "t4=--kd_temperature 4",
            "--ablation",
            "no_crd@cilda_minild=--weight_crd 0",
        ]
    )
    assert options.variants == {"": "", "t4": "--kd_temperature 4", "no_crd": "--weight_crd 0"}
    assert options.variant_methods == {"": ["kd", "rail_kd"], "t4": ["kd", "rail_kd"], "no_crd": ["cilda_minild"]}
    assert quality.needs_generator(options)  # only the ablation runs an adversarial method
    with pytest.raises(SystemExit):
        quality.parse_options(["--ablation", "x@cilda_minlid=--weight_crd 0"])


def test_a_job_alone_gets_every_thread_and_pooled_jobs_share_them(quality, tmp_path, monkeypatch):
    """The teacher trains before the pool starts: with --jobs 2 it must not run on half the cores."""
    seen = []
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setattr(quality.subprocess, "call", lambda args, env, **_: seen.append(env["OMP_NUM_THREADS"]) or 0)
    runner = quality.Runner(jobs=2, deadline=None)
    runner.run("teacher", tmp_path / "teacher", [], alone=True)
    runner.evaluate("teacher", tmp_path / "teacher", tmp_path / "dev.tsv", tmp_path / "train.tsv", alone=True)
    runner.run("student", tmp_path / "student", [])
    runner.evaluate("student", tmp_path / "student", tmp_path / "dev.tsv", tmp_path / "train.tsv")
    assert seen == ["4", "4", "2", "2"]


def test_jobs_import_this_checkouts_hf_kd(quality, tmp_path, monkeypatch):
    """An hf_kd installed elsewhere (a re-pointed editable install, an old wheel) must not run the students."""
    shadow = tmp_path / "elsewhere" / "hf_kd"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    script = tmp_path / "which_hf_kd.py"
    script.write_text("import sys, hf_kd; open(sys.argv[-1], 'w').write(hf_kd.__file__)\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    monkeypatch.setattr(runner_module, "SCRIPT", script)
    monkeypatch.chdir(tmp_path)
    quality.Runner(jobs=1, deadline=None)._call("student", tmp_path / "log.txt", [str(tmp_path / "seen")], alone=True)
    assert Path((tmp_path / "seen").read_text()) == ROOT / "hf_kd" / "__init__.py"


def test_a_finished_run_is_reused_only_with_its_exact_configuration(quality, tmp_path, monkeypatch, capsys):
    """Same flags and same file contents: reused. Another flag, a changed data file or teacher: re-run, saying why."""
    calls = []

    def train(args, **_):
        calls.append(args)
        folder = Path(args[args.index("--output_dir") + 1])
        (folder / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))
        return 0

    monkeypatch.setattr(quality.subprocess, "call", train)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood\t1\n")
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "model.safetensors").write_bytes(b"weights")
    args = ["--train_file", str(tmp_path / "train.tsv"), "--teacher_name_or_path", str(tmp_path / "teacher")]
    runner = quality.Runner(jobs=1, deadline=None)
    for flags in (args, args, [*args, "--kd_temperature", "4"], [*args, "--kd_temperature", "4"]):
        runner.run("kd", tmp_path / "run", flags)
    assert len(calls) == 2 and "its args differ" in capsys.readouterr().out
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nbad\t0\n")
    runner.run("kd", tmp_path / "run", [*args, "--kd_temperature", "4"])
    assert len(calls) == 3 and "its files differ (--train_file)" in capsys.readouterr().out
    (tmp_path / "teacher" / "model.safetensors").write_bytes(b"other weights")
    runner.run("kd", tmp_path / "run", [*args, "--kd_temperature", "4"])
    assert len(calls) == 4 and "(--teacher_name_or_path)" in capsys.readouterr().out
    (tmp_path / "run" / RUN_KEY).unlink()
    runner.run("kd", tmp_path / "run", [*args, "--kd_temperature", "4"])
    assert len(calls) == 5 and "made before runs were keyed" in capsys.readouterr().out


def test_a_folder_in_use_keeps_its_log_and_a_failed_run_leaves_no_key(quality, tmp_path, monkeypatch, capsys):
    """Two benchmark processes on one run folder: the second must not truncate the running job's log, and
    no failed attempt may write the timing and key that mark a run as made with its configuration."""
    calls = []
    monkeypatch.setattr(quality.subprocess, "call", lambda args, **_: calls.append(args) or 1)
    folder, runner = tmp_path / "run", quality.Runner(jobs=1, deadline=None)
    with OutputDirLock(str(folder)):
        (folder / "log.txt").write_text("the running job's log\n")
        assert runner.run("kd", folder, []) is None
    assert calls == [] and (folder / "log.txt").read_text() == "the running job's log\n"
    assert f"{folder} is in use by another run (pid {os.getpid()}" in capsys.readouterr().out
    assert runner.run("kd", folder, []) is None  # the lock is gone: it runs, and fails
    assert len(calls) == 1 and not (folder / "wall_time.json").exists() and not (folder / RUN_KEY).exists()


def test_no_student_starts_when_the_teacher_fails(quality, tmp_path, monkeypatch):
    """A teacher that did not train stops the benchmark in one line naming its log, before any student starts."""
    calls = []
    monkeypatch.setattr(quality.subprocess, "call", lambda args, **_: calls.append(args) or 1)
    files = {}
    for name in ("heldout", "unlabelled", "full", "labelled", "dev"):
        files[name] = tmp_path / f"{name}.tsv"
        files[name].write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    sst2 = dataclasses.replace(quality.TASKS["sst2"], files=lambda options, folder: dict(files))
    monkeypatch.setitem(quality.TASKS, "sst2", sst2)  # the task's declared carving, replaced by the files above
    with pytest.raises(SystemExit, match=r"The teacher did not train .*teacher/log\.txt"):
        quality.benchmark(["--output_dir", str(tmp_path / "out"), "--base_model", "missing", "--methods", "kd"])
    assert len(calls) == 1 and calls[0][calls[0].index("--output_dir") + 1] == str(tmp_path / "out" / "teacher")


def test_an_ablated_adversarial_method_gets_its_generator(quality):
    """`--methods normal --ablation_methods cilda_minild` runs CILDA+minILD, which needs the generator."""
    ablated = ["--methods", "normal", "--ablation_methods", "cilda_minild", "--ablation", "t2=--kd_temperature 2"]
    assert quality.needs_generator(quality.parse_options(ablated))
    assert not quality.needs_generator(quality.parse_options(["--methods", "normal", "kd"]))
    assert not quality.needs_generator(quality.parse_options(["--methods", "normal", "--ablation_methods", "kd"]))
    assert quality.needs_generator(quality.parse_options(["--methods", "normal", "mate_kd"]))
    # and only those runs are given (and keyed by) the generator: training one for MATE-KD reruns no KD run
    assert [m for m in quality.METHODS if quality.is_adversarial(m)] == ["mate_kd", "cilda", "cilda_minild"]


def test_token_level_methods_run_without_the_teacher_cache(quality):
    """The cache keeps the teacher's logits and pooled features: TinyBERT and MiniLM, which hf_kd refuses with it,
    get the teacher's pass instead; every other method keeps reading the cache."""
    assert [m for m in quality.METHODS if not quality.reads_the_cache(m)] == ["tinybert", "minilm"]


def test_an_imbalanced_file_keeps_every_negative_and_the_first_positives(quality, tmp_path):
    """`--minority_share 0.3`: positives cut to 30% of a labelled TSV and of unlabelled text alike, in file order."""
    labelled = tmp_path / "train.tsv"
    rows = [(f"text {i}", "0" if i % 3 == 0 else "1") for i in range(30)]  # 10 negatives, 20 positives
    labelled.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    unlabelled = tmp_path / "unlabelled.tsv"
    unlabelled.write_text("sentence\n" + "".join(f"{t}\n" for t, _ in rows))
    label_of = dict(rows)
    kept = quality.skewed(labelled, label_of, 0.3, tmp_path).read_text().splitlines()
    # round(10 x 0.3 / 0.7) = 4 positives beside the 10 negatives: the first four, in order
    positives = [t for t, y in rows if y == "1"][:4]
    assert kept == ["sentence\tlabel", *(f"{t}\t{y}" for t, y in rows if y == "0" or t in positives)]
    text_only = quality.skewed(unlabelled, label_of, 0.3, tmp_path).read_text().splitlines()
    assert text_only == [line.split("\t")[0] for line in kept]
    for bad in (
        ["--minority_share", "0.5"],
        ["--minority_share", "0"],
        ["--minority_share", "0.3", "--task", "banking77"],
    ):
        with pytest.raises(SystemExit):
            quality.parse_options(bad)
    assert quality.parse_options(["--minority_share", "0.3"]).minority_share == 0.3


def test_phrase_rows_as_unlabelled_text_are_refused_for_banking77(quality, capsys):
    with pytest.raises(SystemExit):
        quality.parse_options(["--unlabelled_phrases", "--task", "banking77"])
    assert "--unlabelled_phrases: for --task sst2" in capsys.readouterr().err
    assert quality.parse_options(["--unlabelled_phrases", "--unlabelled", "50000"]).unlabelled_phrases


def test_class_recall_reweights_dev_accuracy_by_class(bert, sst2_files, tmp_path, capsys):
    """benchmarks/class_recall.py: per-class recall from the saved student's own predictions, and accuracy
    reweighted to 70 / 30; a run paired with an identical model differs by exactly 0."""
    import shutil

    import torch

    from benchmarks import class_recall

    for variant in ("few_labels/normal", "unlabelled/kd"):
        for seed in (42, 43):
            shutil.copytree(bert.student, tmp_path / "runs" / variant / "lr-0.0001" / f"seed-{seed}")
    class_recall.main(["--runs", str(tmp_path / "runs"), "--dev_file", sst2_files["dev"]])
    scores = json.loads((tmp_path / "runs" / "class_recall.json").read_text())
    rows = [line.split("\t") for line in Path(sst2_files["dev"]).read_text().splitlines()[1:]]
    labels = torch.tensor([int(row[1]) for row in rows])
    predicted = class_recall.predictions(Path(bert.student), [row[0] for row in rows])
    negative = (predicted[labels == 0] == 0).float().mean().item()
    positive = (predicted[labels == 1] == 1).float().mean().item()
    score = scores["unlabelled/kd"]["42"]
    assert score["recall_negative"] == pytest.approx(negative) and score["recall_positive"] == pytest.approx(positive)
    assert score["reweighted_accuracy"] == pytest.approx(0.7 * negative + 0.3 * positive)
    assert score["accuracy"] == pytest.approx((predicted == labels).float().mean().item())
    table = capsys.readouterr().out
    kd_row = next(line for line in table.splitlines() if line.startswith("| unlabelled/kd |"))
    assert kd_row.endswith(f"| {100 * score['reweighted_accuracy']:.2f} | +0.00 [+0.00, +0.00] (0/2) |")


def test_each_budget_is_chosen_on_heldout_by_the_rule_and_reported_with_its_data(quality, tmp_path):
    """--budgets 1000 2000 4000: KD's 2,000 steps beat its 1,000 on held-out and 4,000 do not beat 2,000, so KD is
    reported at 2,000; no KD's 2,000 do not beat its 1,000 (a tie), so it stays at 1,000. The report's JSON holds
    the rows, the curves and the runs; the ledger's looks at dev are counted."""
    runs = tmp_path / "runs"
    for folder, (heldout, dev) in [
        (runs / "few_labels" / "normal", NO_KD),
        (runs / "few_labels_steps2000" / "normal", ([0.81, 0.80, 0.80], [0.79, 0.80, 0.78])),
        (runs / "few_labels" / "kd", ([0.80, 0.81, 0.82], [0.79, 0.80, 0.81])),
        (runs / "few_labels_steps2000" / "kd", ([0.83, 0.85, 0.85], [0.82, 0.84, 0.82])),  # +3, +4, +3 over 1,000
        (runs / "few_labels_steps4000" / "kd", ([0.84, 0.83, 0.86], [0.85, 0.85, 0.85])),
    ]:
        finished_seeds(folder, heldout, dev)
    for steps in (2000, 4000):  # as the runner writes them
        (runs / f"few_labels_steps{steps}" / quality.ABLATION_FLAGS).write_text(f"--max_steps {steps}")
    found = quality.finished_runs(quality.runs_root(tmp_path, "minilm2"))
    report = tmp_path / "R.md"
    options = Namespace(
        seeds=[42, 43, 44], steps=1000, budgets=[1000, 2000, 4000], report=str(report), student="minilm2"
    )
    ledger = [{"date": "2026-12-06 10:00", "task": "SST-2", "set": "dev", "run": "x", "decided": "nothing"}] * 4
    rows = quality.write_report(
        found, {"heldout": 0.9, "dev": 0.88}, options, {"full": 6400, "labelled": 3200}, "c", ledger
    )
    assert rows["few_labels/kd"]["steps"] == 2000 and rows["few_labels/normal"]["steps"] == 1000
    # KD at 2,000 against no KD at 1,000 on dev: +4, +4, +5 points
    assert rows["few_labels/kd"]["paired_difference"]["differences"] == pytest.approx([0.04, 0.04, 0.05])
    text = report.read_text()
    assert "| kd | 2,000 | 0.0001 | 84.33 |" in text
    assert "| beats (no KD at 1,000 steps) |" in text  # each at its chosen budget, and the table says they differ
    # passes over the 3,200 labelled rows at batch 32: a tenth of the steps
    assert (
        "| few_labels | kd |  | 1,000 (10.0): 81.00; 2,000 (20.0): 84.33 (beats); 4,000 (40.0): 84.33 (ties) "
        "| 2,000 (20.0 passes) |" in text
    )
    assert "| few_labels | normal |  | 1,000 (10.0): 80.00; 2,000 (20.0): 80.33 (ties) | 1,000 (10.0 passes) |" in text
    assert "dev: 4 evaluations (2026-12-06 10:00 to 2026-12-06 10:00)" in text
    assert "| few_labels | kd | steps2000 |" not in text  # budgets are not ablations (they are in "Every run")
    data = json.loads(report.with_suffix(".json").read_text())
    assert data["rows"]["few_labels/kd"]["verdict"] == "beats" and len(data["runs"]) == 15
    assert [p["steps"] for p in data["budgets"]["few_labels/kd"]["points"]] == [1000, 2000, 4000]
    assert len(data["ledger"]) == 4


def test_budgets_make_each_ablation_a_variant_per_budget(quality, capsys):
    """--budgets 3000 runs every ablation at 3,000 steps too (`NAME-steps3000`, for its own methods), except one
    that sets its own --max_steps; naming that variant by hand as well is refused, naming the ablation it comes from."""
    argv = ["--methods", "normal", "kd", "--budgets", "3000", "--ablation", "share50@kd=--labelled_share 0.5"]
    options = quality.parse_options([*argv, "--ablation", "long@kd=--max_steps 8000"])
    assert options.variants == {
        "": "",
        "share50": "--labelled_share 0.5",
        "long": "--max_steps 8000",
        "steps3000": "--max_steps 3000",
        "share50-steps3000": "--labelled_share 0.5 --max_steps 3000",
    }
    assert options.variant_methods["share50-steps3000"] == ["kd"]
    assert options.variant_methods["steps3000"] == ["normal", "kd"]
    with pytest.raises(SystemExit):
        quality.parse_options([*argv, "--ablation", "share50-steps3000@kd=--labelled_share 0.5 --max_steps 3000"])
    assert "--budgets 3000 makes it from --ablation share50; drop it" in capsys.readouterr().err


def test_only_ablations_runs_the_ablations_and_none_of_the_defaults(quality, capsys):
    argv = ["--methods", "kd", "--budgets", "3000", "--ablation", "share50@kd=--labelled_share 0.5", "--only_ablations"]
    options = quality.parse_options(argv)
    assert options.variant_methods == {"": [], "share50": ["kd"], "steps3000": [], "share50-steps3000": ["kd"]}
    with pytest.raises(SystemExit):
        quality.parse_options(["--methods", "kd", "--only_ablations"])
    assert "--only_ablations: give the --ablation to run" in capsys.readouterr().err


def test_an_ablation_gets_its_own_budget_curve_and_is_paired_at_its_own_budget(quality, tmp_path):
    """KD + share50 at 1,000 and 3,000 steps: its own curve (3,000 beats 1,000 on held-out); at 3,000 it is paired
    with KD's defaults at 3,000 (not run: no pairing) and with no KD at 3,000 on dev, never with a 1,000-step run."""
    runs = tmp_path / "runs"
    for folder, flags, (heldout, dev) in [
        (runs / "few_labels" / "normal", "", NO_KD),
        # no flags file, as no KD's budget runs were once written: `stepsN` is read as its budget
        (runs / "few_labels_steps3000" / "normal", "", ([0.82, 0.83, 0.81], [0.80, 0.81, 0.80])),
        (runs / "unlabelled" / "kd", "", DEFAULT),
        (runs / "unlabelled_share50" / "kd", "--labelled_share 0.5", ([0.85, 0.85, 0.86], [0.83, 0.83, 0.84])),
        (
            runs / "unlabelled_share50-steps3000" / "kd",
            "--labelled_share 0.5 --max_steps 3000",
            ([0.88, 0.89, 0.88], [0.87, 0.88, 0.86]),
        ),
        (  # the share and augmented text: paired with the share alone at 3,000, the ablation it extends
            runs / "unlabelled_aug-steps3000" / "kd",
            "--labelled_share 0.5 --unlabeled_file aug.csv --max_steps 3000",
            ([0.89, 0.89, 0.90], [0.88, 0.88, 0.87]),
        ),
    ]:
        finished_seeds(folder, heldout, dev)
        if flags:
            (folder.parent / quality.ABLATION_FLAGS).write_text(flags)
    found = quality.finished_runs(quality.runs_root(tmp_path, "minilm2"))
    report = tmp_path / "R.md"
    options = Namespace(seeds=[42, 43, 44], steps=1000, budgets=[1000, 3000], report=str(report), student="minilm2")
    counts = {"full": 6400, "labelled": 320, "unlabelled": 2880}
    rows = quality.write_report(found, {"heldout": 0.9, "dev": 0.88}, options, counts, "c")
    assert rows["unlabelled/kd"]["steps"] == 1000  # the table reports the defaults: KD's ran at one budget
    text = report.read_text()
    # held-out 85.33 -> 88.33: +3, +4, +2 points, beats; 32,000 rows over 320 + 2,880 at 1,000 steps: 10 passes
    assert (
        "| unlabelled | kd | share50 | 1,000 (10.0): 85.33; 3,000 (30.0): 88.33 (beats) | 3,000 (30.0 passes) "
        "(the largest run, still rising) |" in text
    )
    # against KD's defaults at 1,000 on held-out: +1, +2, +1 points
    assert "| unlabelled | kd | share50 | `--labelled_share 0.5` | defaults | 84.00 | 85.33 | +1.33 [" in text
    # at 3,000: KD's defaults did not run there; on dev against no KD at 3,000: +7, +7, +6 points (+8.67 at 1,000)
    at_3000 = (
        "| unlabelled | kd | share50-steps3000 | `--labelled_share 0.5 --max_steps 3000` | defaults | not run | 88.33 |"
    )
    assert f"{at_3000} | | | +6.67 [" in text
    data = json.loads(report.with_suffix(".json").read_text())
    curve = data["budgets"]["unlabelled/kd/share50"]
    assert [p["steps"] for p in curve["points"]] == [1000, 3000] and curve["chosen_steps"] == 3000
    # held-out against the share at 3,000: +1, 0, +2 points
    extends = "| unlabelled | kd | aug-steps3000 | `--labelled_share 0.5 --unlabeled_file aug.csv --max_steps 3000` "
    assert f"{extends}| share50-steps3000 | 88.33 | 89.33 | +1.00 [" in text
    steps = {a["ablation"]: (a["steps"], a["against"]) for a in data["ablations"]}
    assert steps == {
        "aug-steps3000": (3000, "share50-steps3000"),
        "share50": (1000, ""),
        "share50-steps3000": (3000, ""),
    }
    from benchmarks import claims

    table = {row.split(" | ")[2]: row for row in claims.ablations_table(data).splitlines()[4:]}
    # held-out against the share at 3,000: +1, 0, +2 points (t(0.975, 2) = 4.303: +-2.48); test against no KD at
    # 3,000: +8, +7, +7 points
    assert (
        "| 3,000 | share50-steps3000 | 89.33 | +1.00 [-1.48, +3.48], 2/3 |"
        in table["aug-steps3000 (`--labelled_share 0.5 --unlabeled_file aug.csv --max_steps 3000`)"]
    )
    assert table["aug-steps3000 (`--labelled_share 0.5 --unlabeled_file aug.csv --max_steps 3000`)"].endswith(
        "| 87.67 ± 0.58 | +7.33 [+5.90, +8.77], 3/3, beats |"
    )
    assert "| 1,000 | defaults | 85.33 | +1.33 [" in table["share50 (`--labelled_share 0.5`)"]
    assert (
        "| 3,000 | defaults (not run) | 88.33 |  |  |"
        in table["share50-steps3000 (`--labelled_share 0.5 --max_steps 3000`)"]
    )
    (line,) = [row for row in claims.budget_curves_table(data).splitlines() if "share50" in row]
    assert line.startswith("| unlabelled | kd + share50 (`--labelled_share 0.5`) | 1,000 (10.0): 85.33; 3,000 (30.0)")
    assert line.endswith("beats) | 3,000 (the largest run, still rising) |")


def test_a_method_run_without_its_defaults_is_paired_with_kd_under_the_same_flags(quality, tmp_path):
    """TinyBERT run only as `share50-steps3000` (`--only_ablations`): its own defaults never ran, so it is paired on
    held-out with KD's run of the same ablation, the question it answers (what its layer terms add to KD); KD's own
    run stays against KD's defaults (not run here: no pairing)."""
    runs = tmp_path / "runs"
    share = "--labelled_share 0.5 --max_steps 3000"
    for folder, flags, (heldout, dev) in [
        (runs / "few_labels" / "normal", "", NO_KD),
        (runs / "unlabelled" / "kd", "", DEFAULT),
        (runs / "unlabelled_share50-steps3000" / "kd", share, ([0.88, 0.89, 0.88], [0.87, 0.88, 0.86])),
        (runs / "unlabelled_share50-steps3000" / "tinybert", share, ([0.87, 0.86, 0.88], [0.86, 0.85, 0.86])),
    ]:
        finished_seeds(folder, heldout, dev)
        if flags:
            (folder.parent / quality.ABLATION_FLAGS).write_text(flags)
    found = quality.finished_runs(quality.runs_root(tmp_path, "minilm2"))
    options = Namespace(
        seeds=[42, 43, 44], steps=1000, budgets=[1000], report=str(tmp_path / "R.md"), student="minilm2"
    )
    counts = {"full": 6400, "labelled": 320, "unlabelled": 2880}
    quality.write_report(found, {"heldout": 0.9, "dev": 0.88}, options, counts, "c")
    data = json.loads((tmp_path / "R.json").read_text())
    rows = {(a["method"], a["ablation"]): a for a in data["ablations"]}
    tinybert = rows[("tinybert", "share50-steps3000")]
    # held-out 88.33 (KD) -> 87.00: -1, -3, 0 points; t(0.975, 2) = 4.303, sd 1.53: -1.33 +- 3.79
    assert tinybert["against"] == "kd share50-steps3000" and tinybert["means_on_shared_seeds"] == pytest.approx(
        [0.8833333, 0.87]
    )
    assert 100 * tinybert["heldout_vs_base"]["mean"] == pytest.approx(-1.3333333)
    assert 100 * tinybert["heldout_vs_base"]["low"] == pytest.approx(-5.1280, abs=1e-3)
    assert tinybert["verdict"] == "ties" and not tinybert["selected"]
    assert (
        rows[("kd", "share50-steps3000")]["against"] == ""
        and rows[("kd", "share50-steps3000")]["heldout_vs_base"] is None
    )
    text = (tmp_path / "R.md").read_text()
    assert (
        "| unlabelled | tinybert | share50-steps3000 | `--labelled_share 0.5 --max_steps 3000` | kd share50-steps3000 |"
        in text
    )
    assert "else, for a method run without its defaults, KD with the same flags, `kd NAME`" in text


def test_every_look_at_dev_is_written_to_the_ledger(quality, tmp_path, monkeypatch):
    """The benchmark's dev evaluation appends one line per look, naming the run and what it decided."""
    calls = []
    monkeypatch.setattr(quality.subprocess, "call", lambda args, **_: calls.append(args) or 0)
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    runner = quality.Runner(jobs=1, deadline=None, ledger=tmp_path / "ledger.jsonl")
    runner.evaluate("kd seed 42", tmp_path / "student", tmp_path / "dev.tsv", tmp_path / "dev.tsv")
    (entry,) = quality.ledger(tmp_path / "ledger.jsonl")
    assert entry["run"] == "kd seed 42" and entry["decided"].startswith("nothing") and len(calls) == 1


def test_the_ladder_students_take_minilm_layers_evenly_and_run_in_their_own_folders(quality, tmp_path):
    from benchmarks.quality.models import STUDENTS, minilm_layers

    assert [minilm_layers(f"minilm{size}") for size in (2, 3, 4, 6)] == [
        [2, 5],
        [1, 3, 5],
        [1, 2, 3, 5],
        [0, 1, 2, 3, 4, 5],
    ]
    assert minilm_layers("scratch") is None and "layers 1, 3, 5" in STUDENTS["minilm3"]
    assert quality.runs_root(tmp_path, "minilm2") == tmp_path / "runs"  # the runs of every report so far
    assert quality.runs_root(tmp_path, "minilm4") == tmp_path / "runs_minilm4"


def test_passes_count_the_rows_each_method_reads(quality):
    counts = {"labelled": 800, "unlabelled": 7200, "full": 16000}
    assert quality.passes(1000, "unlabelled", "kd", counts) == 4.0  # 32,000 rows over 800 + 7,200
    assert quality.passes(1000, "unlabelled", "normal", counts) == 40.0  # no KD reads the labels alone
    assert quality.passes(1000, "few_labels", "kd", counts) == 40.0
    assert quality.passes(500, "full", "kd", counts) == 1.0


def test_budgets_for_full_start_at_its_epoch(quality, tmp_path, monkeypatch):
    """`full` trains 1 epoch at its first budget, so a larger budget must be above it: `--budgets` at or below the
    epoch is refused in one line naming it, before the teacher starts."""
    calls = []
    monkeypatch.setattr(quality.subprocess, "call", lambda args, **_: calls.append(args) or 1)
    files = {}
    for name in ("heldout", "unlabelled", "full", "labelled", "dev"):
        files[name] = tmp_path / f"{name}.tsv"
        rows = 70 if name == "full" else 2  # 70 rows: 3 batches of 32
        files[name].write_text("sentence\tlabel\n" + "".join(f"text {i}\t{i % 2}\n" for i in range(rows)))
    sst2 = dataclasses.replace(quality.TASKS["sst2"], files=lambda options, folder: dict(files))
    monkeypatch.setitem(quality.TASKS, "sst2", sst2)
    base = ["--output_dir", str(tmp_path / "out"), "--base_model", "missing", "--settings", "full", "--steps", "1"]
    with pytest.raises(SystemExit, match=r"--budgets 3 9: full's first budget is its 1 epoch \(3 steps\)"):
        quality.benchmark([*base, "--budgets", "3", "9"])
    assert calls == []
    with pytest.raises(SystemExit, match="The teacher did not train"):  # above the epoch it goes on to the teacher
        quality.benchmark([*base, "--budgets", "4", "9"])
    assert len(calls) == 1


def test_the_full_settings_first_budget_is_labelled_with_its_epochs_steps(quality):
    """Whatever --steps says, `full`'s default runs trained 1 epoch: ceil(rows / 32) steps in its curve."""
    defaults = {
        ("full", "normal"): {"heldout": 0.5, "runs": []},
        ("few_labels", "normal"): {"heldout": 0.6, "runs": []},
    }
    counts = {"full": 8769, "labelled": 770, "unlabelled": 7999}
    curves = quality.budget_curves([], defaults, [1000, 3000], 3, set(), counts)
    assert [curves[(*key, "")]["points"][0]["steps"] for key in defaults] == [275, 1000]  # 8,769 / 32 = 274.03


def test_a_report_covers_its_settings_and_no_kds_shared_runs(quality):
    """`--settings unlabelled`: its runs and no KD's few_labels runs (its baseline), not `full`'s, which may have run
    at another --steps in the same folder."""
    pairs = [("unlabelled", "kd"), ("few_labels", "normal"), ("full", "normal"), ("few_labels", "kd")]
    runs = [{"setting": s, "method": m} for s, m in pairs]
    assert quality.in_settings(runs, ["unlabelled"]) == runs[:2]
    assert quality.in_settings(runs, ["full"]) == [runs[2]]
    assert quality.in_settings(runs, ["few_labels", "unlabelled"]) == [runs[0], runs[1], runs[3]]
