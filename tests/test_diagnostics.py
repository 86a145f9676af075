"""Distillation that knows when it hurts: the teacher's worth, the collapse guard and the no-KD twin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, TrainerControl, TrainerState

from hf_kd.build import build_trainer
from hf_kd.config import parse_args
from hf_kd.diagnostics import (
    CollapseGuard,
    TeacherWorth,
    assess_teacher,
    class_shares,
    collapse_causes,
    teacher_warnings,
)
from hf_kd.errors import ArgumentError
from hf_kd.run import main
from tests.conftest import cli_args


def one_class_teacher(family, folder: Path) -> str:
    """The tiny teacher with its classifier's bias pushed to 'negative': a weak teacher that predicts one class."""
    teacher = AutoModelForSequenceClassification.from_pretrained(family.teacher)
    with torch.no_grad():
        teacher.classifier.bias.copy_(torch.tensor([20.0, -20.0]))
    teacher.save_pretrained(folder)
    AutoTokenizer.from_pretrained(family.tokenizer).save_pretrained(folder)
    return str(folder)


def trainer_for(args: list[str]):
    model_args, data_args, training_args = parse_args(args)
    return build_trainer(model_args, data_args, training_args)


def test_teacher_worth_against_a_hand_computation(bert, half_labelled, tmp_path):
    """Score on validation, the majority baseline, confidence and class shares on the unlabelled rows: all
    recomputed here from the teacher's own logits."""
    trainer, data = trainer_for(cli_args(bert, half_labelled, tmp_path / "run", "kd"))
    worth = assess_teacher(trainer, data, max_unlabelled_rows=10_000)

    def logits(dataset):
        batch = trainer.data_collator([{k: row[k] for k in ("input_ids", "attention_mask")} for row in dataset])
        with torch.no_grad():
            return trainer.teacher.model(**batch).logits

    references = np.array(data.validation["label"])
    assert worth.score == pytest.approx(float((logits(data.validation).argmax(-1).numpy() == references).mean()))
    train_labels = np.array(data.train["label"])
    labelled = train_labels[train_labels != -100]
    majority = np.bincount(labelled).argmax()
    assert worth.majority_score == pytest.approx(float((references == majority).mean()))
    assert worth.label_shares == pytest.approx(np.bincount(labelled, minlength=2) / len(labelled))
    unlabelled = data.train.select(np.flatnonzero(train_labels == -100))
    probabilities = logits(unlabelled).softmax(-1)
    assert worth.unlabelled_rows == len(unlabelled) == data.unlabelled
    assert worth.mean_top_probability == pytest.approx(probabilities.max(-1).values.mean().item(), rel=1e-5)
    assert worth.teacher_shares == pytest.approx(class_shares(probabilities.argmax(-1).numpy(), 2))
    assert worth.measured_on == "the validation data"


def test_a_one_class_teacher_is_warned_about_in_the_log_record_and_card(bert, half_labelled, tmp_path, caplog):
    teacher = one_class_teacher(bert, tmp_path / "weak")
    args = cli_args(bert, half_labelled, tmp_path / "run", "kd", "--log_level", "warning")
    args[args.index("--teacher_name_or_path") + 1] = teacher
    results = main(args)
    record = json.loads((tmp_path / "run" / "hf_kd_run.json").read_text())
    worth = record["teacher_check"]
    assert (worth["teacher_shares"] == [1.0, 0.0] and worth["score"] == worth["majority_score"]) or worth["score"] < 0.6
    assert results["teacher_eval_accuracy"] == worth["score"]
    assert json.loads((tmp_path / "run" / "all_results.json").read_text())["teacher_eval_accuracy"] == worth["score"]
    assert len(worth["warnings"]) == 2
    assert "hardly above always predicting the most frequent class" in caplog.text
    assert "The teacher predicts 'negative' for 100% of the" in caplog.text
    card = (tmp_path / "run" / "README.md").read_text()
    assert f"accuracy {worth['score']:.4f} on the validation data" in card and "## Warnings" in card


def test_teacher_warnings_only_when_they_apply():
    fine = TeacherWorth("accuracy", 0.9, 0.5, "v", 100, 0.9, [0.6, 0.4], [0.55, 0.45], ["neg", "pos"])
    assert teacher_warnings(fine) == []
    skewed = TeacherWorth("accuracy", 0.9, 0.5, "v", 100, 0.9, [0.95, 0.05], [0.7, 0.3], ["neg", "pos"])
    assert teacher_warnings(skewed) == [
        "The teacher predicts 'neg' for 95% of the 100 rows checked of the unlabelled training rows, against 70% of "
        "the labels: KD on such text pulls the student toward one class (use fewer unlabelled rows, a lower "
        "--kd_temperature or --kd_row_weighting class_balanced, and --baseline_twin true to check)."
    ]
    weak = TeacherWorth("matthews_correlation", 0.03, 0.0, "v")
    assert "matthews_correlation 0.030" in teacher_warnings(weak)[0]


def test_collapse_guard_fires_on_a_one_class_student_and_can_stop(bert, sst2_files, tmp_path):
    trainer, data = trainer_for(cli_args(bert, sst2_files, tmp_path / "run", "kd"))
    guard = CollapseGuard(trainer, data.validation, 32, data.label_list, stop=True)
    state, control = TrainerState(), TrainerControl()
    balance = max(guard.label_shares)
    assert balance < 0.95 and len(guard.dataset) == 32
    with torch.no_grad():
        trainer.model.classifier.bias.copy_(torch.tensor([0.0, 0.0]))
        trainer.model.classifier.weight.mul_(1e-6)
        trainer.model.classifier.bias.copy_(torch.tensor([-30.0, 30.0]))
    state.global_step, state.max_steps = 5, 20
    trainer.model.train()
    rng = torch.get_rng_state()
    guard.on_log(trainer.args, state, control)
    assert torch.equal(rng, torch.get_rng_state())  # the check draws no random number
    assert guard.collapsed_at is None and not control.should_training_stop  # seen once: not yet a collapse
    state.global_step = 7
    guard.on_log(trainer.args, state, control)  # seen again, past the first 20% of training: it persists
    assert guard.collapsed_at == 7 and guard.last_shares == [0.0, 1.0] and control.should_training_stop
    assert trainer.model.training  # back in training mode


def test_collapse_guard_is_quiet_unless_one_class_takes_over_and_the_labels_do_not(bert, sst2_files, tmp_path):
    trainer, data = trainer_for(cli_args(bert, sst2_files, tmp_path / "run", "kd"))
    guard = CollapseGuard(trainer, data.validation, 48, data.label_list, stop=False)
    guard.student_shares = lambda: [0.6, 0.4]
    assert guard.check(1) is None
    guard.student_shares = lambda: [0.96, 0.04]
    guard.label_shares = [0.97, 0.03]  # labels as lopsided: not a collapse
    assert guard.check(2) is None
    guard.label_shares = [0.5, 0.5]
    assert guard.check(3) == (
        "Step 3: the student predicts 'negative' for 96% of 48 checked rows whose labels are 50% 'negative': it has "
        "collapsed onto one class."  # no causes given to this guard
    )
    control = TrainerControl()
    guard.on_train_end(trainer.args, TrainerState(global_step=3), control)  # the saved student: warned at once
    assert guard.collapsed_at == 3 and not control.should_training_stop  # warned, not stopped


def test_baseline_twin_trains_the_same_student_without_the_teacher(bert, half_labelled, tmp_path):
    results = main(cli_args(bert, half_labelled, tmp_path / "run", "kd", "--baseline_twin", "true"))
    twin_dir = tmp_path / "run" / "no_kd_twin"
    twin_state = json.loads((twin_dir / "trainer_state.json").read_text())
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert twin_state["global_step"] == state["global_step"]  # the same budget in optimizer steps
    twin_record = json.loads((twin_dir / "hf_kd_run.json").read_text())
    assert twin_record["method"] == "normal" and twin_record["train_unlabelled_samples"] == 0
    assert twin_record["train_labelled_samples"] == 48
    twin_eval = json.loads((twin_dir / "all_results.json").read_text())["eval_accuracy"]
    assert results["no_kd_twin_eval_accuracy"] == twin_eval
    assert results["difference_to_no_kd_twin"] == pytest.approx(results["eval_accuracy"] - twin_eval)
    saved = json.loads((tmp_path / "run" / "all_results.json").read_text())
    assert saved["difference_to_no_kd_twin"] == results["difference_to_no_kd_twin"]
    record = json.loads((tmp_path / "run" / "hf_kd_run.json").read_text())
    assert record["twin"]["saved_student"] == "distilled"
    card = (tmp_path / "run" / "README.md").read_text()
    assert "## Against its no-KD twin" in card and f"{100 * results['difference_to_no_kd_twin']:+.2f} points" in card


def twin_wins(bert, tmp_path, *extra: str) -> list[str]:
    """A run whose twin clearly wins: 64 rows of two easy sentences (training and validation), a one-class teacher
    and all weight on KD, so the distilled student scores 0.5 and its twin 1.0."""
    rows = [("a good and fun film", 1), ("a bad and dull film", 0)] * 32
    easy = tmp_path / "easy.tsv"
    easy.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    files = {"train": str(easy), "dev": str(easy)}
    args = cli_args(bert, files, tmp_path / "run", "kd", "--baseline_twin", "true", "--load_best_of_twins", "true")
    args += ["--weight_ce", "0", "--weight_kd", "1", "--num_train_epochs", "4", "--learning_rate", "5e-3", *extra]
    args[args.index("--teacher_name_or_path") + 1] = one_class_teacher(bert, tmp_path / "weak")
    return args


def test_the_kept_twin_is_what_output_dir_describes(bert, tmp_path, capsys):
    """Whatever is saved in OUTPUT_DIR, its results, card and record describe that model; distilled/ keeps the
    distilled student's own; the verdict is printed at the default log level."""
    results = main(twin_wins(bert, tmp_path))
    run = tmp_path / "run"
    record = json.loads((run / "hf_kd_run.json").read_text())
    assert record["saved_student"] == record["twin"]["saved_student"] == "no_kd_twin"
    assert (record["twin"]["distilled"], record["twin"]["no_kd_twin"]) == (0.5, 1.0)
    assert record["teacher"] == str(tmp_path / "weak")  # the path, always; the check is "teacher_check"
    assert record["teacher_check"]["score"] == 0.5
    assert (run / "model.safetensors").read_bytes() == (run / "no_kd_twin" / "model.safetensors").read_bytes()
    saved = json.loads((run / "all_results.json").read_text())
    assert (
        saved["eval_accuracy"] == 1.0 and saved["distilled_eval_accuracy"] == 0.5 == results["distilled_eval_accuracy"]
    )
    assert json.loads((run / "eval_results.json").read_text())["eval_accuracy"] == 1.0
    card = (run / "README.md").read_text()
    assert "value: 1.0" in card and "This model is the no-KD twin of a kd run" in card and "| method | normal |" in card
    distilled = run / "distilled"
    assert json.loads((distilled / "all_results.json").read_text())["eval_accuracy"] == 0.5
    assert "value: 0.5" in (distilled / "README.md").read_text()
    assert (distilled / "model.safetensors").read_bytes() != (run / "model.safetensors").read_bytes()
    twin_record = json.loads((run / "no_kd_twin" / "hf_kd_run.json").read_text())
    assert twin_record["teacher"] is None and twin_record["method"] == "normal"
    twin_results = json.loads((run / "no_kd_twin" / "all_results.json").read_text())
    assert twin_results["train_labelled_samples"] == 64 and "train_loss" in twin_results
    assert AutoConfig.from_pretrained(run).id2label == {0: "negative", 1: "positive"}
    assert "kd -0.5000 below its no-KD twin (eval_accuracy 0.5000 against 1.0000" in capsys.readouterr().out


def test_a_sweep_picks_best_by_the_saved_models_metric(bert, tmp_path):
    """The sweep's best/ is the run whose saved model scored best: here the kept twin (1.0), not the distilled 0.5."""
    from hf_kd.sweep import run_sweep

    args = twin_wins(bert, tmp_path)
    args[args.index("--output_dir") + 1] = str(tmp_path / "sweep")
    (row,) = run_sweep([*args, "--sweep_learning_rates", "5e-3"])
    assert row["metric"] == 1.0
    best = json.loads((tmp_path / "sweep" / "sst2" / "best" / "all_results.json").read_text())
    assert best["eval_accuracy"] == 1.0


def test_overwrite_output_dir_leaves_nothing_of_the_previous_run(bert, tmp_path):
    main(twin_wins(bert, tmp_path))
    assert (tmp_path / "run" / "distilled").is_dir()
    main(
        [
            *cli_args(
                bert, {"train": str(tmp_path / "easy.tsv"), "dev": str(tmp_path / "easy.tsv")}, tmp_path / "run", "kd"
            ),
            "--max_steps",
            "1",
            "--overwrite_output_dir",
            "true",
        ]
    )
    left = sorted(os.listdir(tmp_path / "run"))
    assert "distilled" not in left and "no_kd_twin" not in left
    saved = json.loads((tmp_path / "run" / "all_results.json").read_text())
    assert "no_kd_twin_eval_accuracy" not in saved and "distilled_eval_accuracy" not in saved


def test_a_twin_without_labelled_rows_is_refused_before_training(bert, half_labelled, tmp_path):
    unlabelled_only = tmp_path / "text.tsv"
    texts = Path(half_labelled["unlabelled"]).read_text().splitlines()[1:]
    unlabelled_only.write_text("sentence\tlabel\n" + "".join(f"{text}\t\n" for text in texts))
    files = {"train": str(unlabelled_only), "dev": half_labelled["dev"]}
    with pytest.raises(ArgumentError, match=r"--baseline_twin trains a no-KD twin on the labelled training rows, and "):
        main(cli_args(bert, files, tmp_path / "run", "kd", "--baseline_twin", "true"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("method", "extra", "message"),
    [
        ("normal", ["--baseline_twin", "true"], "uses no teacher, so there is nothing to compare"),
        ("kd", ["--load_best_of_twins", "true"], "--load_best_of_twins picks between .* add --baseline_twin true"),
        ("kd", ["--baseline_twin", "true", "--do_eval", "false"], "needs training, evaluation"),
        ("kd", ["--collapse_check_rows", "-1"], "--collapse_check_rows must be"),
    ],
)
def test_twin_and_guard_refusals(bert, sst2_files, tmp_path, method, extra, message):
    with pytest.raises(ArgumentError, match=message):
        main(cli_args(bert, sst2_files, tmp_path / "run", method, *extra))
    assert not (tmp_path / "run").exists()


def test_a_validation_file_without_labels_gives_the_teachers_confidence_only(bert, sst2_files, tmp_path):
    """With --do_eval false it is read as text: the teacher's score comes from the labelled training rows and its
    confidence from the validation rows, and the record says so; with evaluation on it is refused."""
    rows = Path(sst2_files["dev"]).read_text().splitlines()[1:]
    (tmp_path / "text.tsv").write_text("sentence\n" + "".join(row.split("\t")[0] + "\n" for row in rows))
    files = {"train": sst2_files["train"], "dev": str(tmp_path / "text.tsv")}
    with pytest.raises(ArgumentError, match=r"text\.tsv has no labels .*--do_eval false"):
        main(cli_args(bert, files, tmp_path / "refused", "kd"))
    main(cli_args(bert, files, tmp_path / "run", "kd", "--do_eval", "false"))
    worth = json.loads((tmp_path / "run" / "hf_kd_run.json").read_text())["teacher_check"]
    assert worth["measured_on"].startswith("the labelled training rows")
    assert worth["confidence_on"].startswith("the validation data (it has no labels")
    assert worth["unlabelled_rows"] == 48 and worth["mean_top_probability"] > 0.5


def test_a_student_at_its_first_guesses_is_not_a_collapse(bert, sst2_files, tmp_path):
    """One class early on (step 25 of 250) that the student then leaves: no warning; one class still at the next
    check past the first 20% of training: a warning."""
    trainer, data = trainer_for(cli_args(bert, sst2_files, tmp_path / "run", "normal"))
    guard = CollapseGuard(trainer, data.validation, 48, data.label_list, stop=False)
    guard.label_shares = [0.5, 0.5]
    state, control = TrainerState(max_steps=250), TrainerControl()
    for step, shares in ((25, [1.0, 0.0]), (50, [0.6, 0.4]), (75, [1.0, 0.0])):
        guard.student_shares = lambda shares=shares: shares
        state.global_step = step
        guard.on_log(trainer.args, state, control)
        assert guard.collapsed_at is None, step
    state.global_step = 100
    guard.on_log(trainer.args, state, control)
    assert guard.collapsed_at == 100


def test_collapse_causes_are_those_of_the_run(bert, sst2_files, half_labelled, tmp_path):
    """A run without teacher or unlabelled text hears of neither; a KD run with much text at T = 4 of all three."""
    normal, normal_data = trainer_for(cli_args(bert, sst2_files, tmp_path / "a", "normal"))
    causes = collapse_causes(normal.args, normal_data, False, [0.5, 0.5], 0, "negative")
    assert causes == ["a learning rate too high or too low for this student (--learning_rate 0.001)"]
    args = cli_args(bert, half_labelled, tmp_path / "b", "kd", "--unlabeled_file", half_labelled["unlabelled"])
    kd, kd_data = trainer_for([*args, "--kd_temperature", "4", "--max_train_samples", "8"])
    causes = collapse_causes(kd.args, kd_data, True, [0.7, 0.3], 0, "negative")
    assert causes[:4] == [
        "the teacher's class balance on the unlabelled text (see the teacher check at the start)",
        "a high --kd_temperature (4)",
        "too few labelled rows per batch (--labelled_share 0.5)",
        "labels leaning to 'negative' (70% of them)",
    ]


def test_teacher_warning_says_below_and_does_not_suggest_a_twin_the_run_has():
    below = TeacherWorth("accuracy", 0.5, 0.5625, "the validation data")
    (text,) = teacher_warnings(below)
    assert "0.500 on the validation data, below always predicting" in text and "--baseline_twin true" in text
    (text,) = teacher_warnings(below, twin=True)
    assert "--baseline_twin" not in text and "its no-KD twin, trained beside it, will show it" in text
