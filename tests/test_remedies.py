"""Remedies for a weak or lopsided teacher: labelled share per batch, confidence and class-balanced KD rows."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from hf_kd.arguments import DataTrainingArguments
from hf_kd.build import build_trainer
from hf_kd.config import parse_args
from hf_kd.data import INDEX_COLUMN, prepare_data
from hf_kd.errors import ArgumentError
from hf_kd.losses import IGNORE_LABEL, kd_loss, kd_row_weights
from hf_kd.outputs import RUN_INFO_FILE
from hf_kd.run import main
from tests.conftest import cli_args
from tests.test_layouts import LAYOUTS, flat, relative, train
from tests.test_losses import hand_kl, softmax

TEACHER = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]]
STUDENT = [[1.0, 0.0, -0.5], [0.3, -0.2, 0.9], [0.0, 0.5, 0.2]]


# ---------------------------------------------------------------------------------------- losses
def test_weighted_kd_is_each_rows_kl_times_its_weight():
    weights = [0.5, 0.0, 2.0]
    expected = sum(w * hand_kl([t], [s], 2.0) for w, t, s in zip(weights, TEACHER, STUDENT, strict=True)) / 3
    value = kd_loss(torch.tensor(TEACHER), torch.tensor(STUDENT), 2.0, row_weights=torch.tensor(weights))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    unweighted = kd_loss(torch.tensor(TEACHER), torch.tensor(STUDENT), 2.0)
    assert unweighted.item() == pytest.approx(hand_kl(TEACHER, STUDENT, 2.0), rel=1e-6)


def test_confidence_weights_are_the_teachers_top_probability():
    weights = kd_row_weights(torch.tensor(TEACHER), "confidence")
    assert weights.tolist() == pytest.approx([max(softmax(row)) for row in TEACHER], rel=1e-6)


def test_min_confidence_leaves_unsure_rows_out():
    tops = [max(softmax(row)) for row in TEACHER]  # about 0.79, 0.37, 0.94
    weights = kd_row_weights(torch.tensor(TEACHER), "none", min_confidence=0.5)
    assert weights.tolist() == [1.0, 0.0, 1.0] and tops[1] < 0.5 < min(tops[0], tops[2])
    both = kd_row_weights(torch.tensor(TEACHER), "confidence", min_confidence=0.5)
    assert both.tolist() == pytest.approx([tops[0], 0.0, tops[2]], rel=1e-6)
    assert kd_row_weights(torch.tensor(TEACHER)) is None  # nothing asked: KD as it always was


def test_class_balanced_weights_divide_by_the_teachers_class_share():
    # the teacher predicts class 0, 2, 1 for these rows; on the training rows it predicts 0 for 60%
    shares = torch.tensor([0.6, 0.3, 0.1])
    weights = kd_row_weights(torch.tensor(TEACHER), "class_balanced", class_shares=shares)
    assert weights.tolist() == pytest.approx([1 / (3 * 0.6), 1 / (3 * 0.1), 1 / (3 * 0.3)], rel=1e-6)
    # over rows drawn with the teacher's own class shares the weights average 1: KD keeps its scale
    assert float((shares * (1 / (3 * shares))).sum()) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def tokenizer(bert):
    return AutoTokenizer.from_pretrained(bert.tokenizer)


def load(half_labelled, tokenizer, share, unlabelled_rows=30):
    args = DataTrainingArguments(
        task_name="sst2",
        train_file=half_labelled["train"],
        validation_file=half_labelled["dev"],
        unlabeled_file=half_labelled["unlabelled"],
        max_unlabeled_samples=unlabelled_rows,
        max_seq_length=32,
        labelled_share=share,
    )
    return prepare_data(args, tokenizer)


def test_labelled_share_repeats_the_labelled_rows(half_labelled, tokenizer):
    plain = load(half_labelled, tokenizer, None)
    assert (plain.labelled, plain.unlabelled, len(plain.train)) == (48, 78, 126)
    data = load(half_labelled, tokenizer, 0.75)  # 48 r / (48 r + 78) >= 0.75 first at r = 5 (0.7547)
    assert (data.labelled, data.unlabelled, data.labelled_repeats, len(data.train)) == (48, 78, 5, 48 * 5 + 78)
    labels = torch.tensor(data.train["label"])
    assert (labels != IGNORE_LABEL).float().mean().item() == pytest.approx(240 / 318) and 240 / 318 >= 0.75
    # the copies are the labelled rows themselves, index included (they read the same cached teacher outputs)
    original = plain.train.select([i for i, label in enumerate(plain.train["label"]) if label != IGNORE_LABEL])
    for copy in range(1, 5):
        block = data.train.select(range(126 + (copy - 1) * 48, 126 + copy * 48))
        assert block["input_ids"] == original["input_ids"] and block["label"] == original["label"]
        assert block[INDEX_COLUMN] == original[INDEX_COLUMN]


def test_labelled_share_already_met_changes_nothing(half_labelled, tokenizer):
    data = load(half_labelled, tokenizer, 0.3)  # 48 / 126 = 0.38 already
    assert (data.labelled_repeats, len(data.train)) == (1, 126)


# --------------------------------------------------------------------------------------- trainer
def kd_trainer(family, files, tmp_path, *extra):
    args = parse_args(cli_args(family, files, tmp_path / "run", "kd", "--unlabeled_file", files["unlabelled"], *extra))
    trainer, data = build_trainer(*args)
    return trainer, data


def test_class_shares_from_a_teacher_pass_match_the_cache(bert, half_labelled, tmp_path):
    """Over every training row, copies of labelled rows (--labelled_share) included; the teacher reads each
    distinct row once."""
    flags = ["--kd_row_weighting", "class_balanced", "--labelled_share", "0.6"]
    trainer, _ = kd_trainer(bert, half_labelled, tmp_path, *flags)
    trainer.teacher.prepare(trainer)
    from_pass = trainer.teacher.class_shares.clone()
    cache_flags = ["--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "cache")]
    cached, _ = kd_trainer(bert, half_labelled, tmp_path, *flags, *cache_flags)
    cached.teacher.prepare(cached)
    assert torch.allclose(cached.teacher.class_shares, from_pass, atol=1e-12)
    logits = cached.teacher.cache.column("logits")
    assert len(logits) == 96 + 40 and len(cached.train_dataset) == 48 * 3 + 88  # copies are not recomputed
    predicted = logits[torch.as_tensor(cached.train_dataset[INDEX_COLUMN])].argmax(-1)
    assert from_pass.tolist() == pytest.approx([(predicted == c).double().mean().item() for c in range(2)])
    assert from_pass.sum().item() == pytest.approx(1.0)


def test_a_threshold_no_row_reaches_trains_on_labels_alone(deterministic_bert, half_labelled, tmp_path):
    """With every row below --kd_min_confidence the KD term is 0 and the loss is CE's alone."""
    trainer, _ = kd_trainer(deterministic_bert, half_labelled, tmp_path, "--kd_min_confidence", "0.999999")
    batch = next(iter(trainer.get_train_dataloader()))
    batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
    loss, terms = trainer.compute_loss(trainer.model.train(), batch, return_outputs=True)
    assert terms["kd"].item() == 0.0 and terms["ce"].item() > 0
    assert loss.item() == pytest.approx(0.5 * terms["ce"].item(), rel=1e-6)  # kd's default weight of CE: 0.5
    free, _ = kd_trainer(deterministic_bert, half_labelled, tmp_path)
    free_loss, free_terms = free.compute_loss(free.model.train(), batch, return_outputs=True)
    assert free_terms["ce"].item() == pytest.approx(terms["ce"].item(), rel=1e-6)  # same student, same rows
    assert free_terms["kd"].item() > 0 and free_loss.item() > loss.item()


@pytest.mark.parametrize(
    ("method", "extra", "message"),
    [
        ("normal", ["--kd_row_weighting", "confidence"], "method 'normal' with these weights has none"),
        ("kd", ["--kd_min_confidence", "0.5", "--weight_kd", "0"], "has none"),
        ("kd", ["--kd_min_confidence", "1"], "--kd_min_confidence must be in [0, 1)"),
        ("kd", ["--labelled_share", "1"], "--labelled_share must be in (0, 1)"),
        ("kd", ["--kd_row_weighting", "balanced"], "invalid choice"),
    ],
)
def test_bad_remedy_options_are_refused(bert, sst2_files, tmp_path, capsys, method, extra, message):
    with pytest.raises((ArgumentError, SystemExit)) as error:
        build_trainer(*parse_args(cli_args(bert, sst2_files, tmp_path / "run", method, *extra)))
    shown = str(error.value) if error.type is ArgumentError else capsys.readouterr().err
    assert message in shown


def test_remedies_keep_every_layout_the_same_update(deterministic_bert, half_labelled, tmp_path):
    extra = ["--unlabeled_file", half_labelled["unlabelled"], "--kd_row_weighting", "class_balanced"]
    extra += ["--kd_min_confidence", "0.5", "--labelled_share", "0.6"]
    runs = [train(deterministic_bert, half_labelled, tmp_path / f"{b}x{k}", "kd", b, k, *extra) for b, k in LAYOUTS]
    weights, update, _, logs = runs[0]
    assert update.norm() > 0
    for other_weights, other_update, _, other_logs in runs[1:]:
        assert relative(other_update, update) < 1e-5
        assert relative(flat(other_weights["student"]), flat(weights["student"])) < 1e-5
        for entry, other in zip(logs, other_logs, strict=True):
            assert other["loss_kd"] == pytest.approx(entry["loss_kd"], rel=1e-5, abs=1e-7)


def test_a_run_with_remedies_records_them(bert, half_labelled, tmp_path):
    output_dir = tmp_path / "run"
    extra = ["--unlabeled_file", half_labelled["unlabelled"], "--labelled_share", "0.6", "--max_steps", "2"]
    extra += ["--kd_row_weighting", "class_balanced", "--kd_min_confidence", "0.4"]
    main(cli_args(bert, half_labelled, output_dir, "kd", *extra))
    record = json.loads((output_dir / RUN_INFO_FILE).read_text())
    # 48 labelled rows and 40 unlabelled ones (half the train file, and the text-only file): 48 r / (48 r + 88)
    # >= 0.6 first at r = 3
    assert (record["train_labelled_samples"], record["train_unlabelled_samples"]) == (48, 88)
    assert record["train_labelled_repeats"] == 3
    assert (record["kd_row_weighting"], record["kd_min_confidence"]) == ("class_balanced", 0.4)
    card = (output_dir / "README.md").read_text()
    assert "class_balanced" in card and "labelled share of training rows (at least)" in card


def test_few_labelled_rows_per_batch_are_warned_about_until_the_share_is_set():
    from hf_kd.data import TaskData
    from hf_kd.diagnostics import labelled_share_warning

    rows = [0] * 100 + [IGNORE_LABEL] * 900  # 10% labelled
    data = TaskData(Dataset.from_dict({"label": rows}), None, ["a", "b"], None, unlabelled=900)
    warning = labelled_share_warning(data, 32)
    assert warning.startswith("Only 10% of the training rows carry a label (about 3.2 per batch of 32)")
    assert "--labelled_share 0.5" in warning
    repeated = TaskData(Dataset.from_dict({"label": [0] * 900 + [IGNORE_LABEL] * 900}), None, ["a", "b"], None, 900, 9)
    assert repeated.labelled == 100 and labelled_share_warning(repeated, 32) is None  # 50% after the copies
    labelled_only = TaskData(Dataset.from_dict({"label": [0] * 100}), None, ["a", "b"], None)
    assert labelled_share_warning(labelled_only, 32) is None


def test_the_generator_step_weighs_kd_rows_as_the_student_step_does(deterministic_bert, half_labelled, tmp_path):
    """One rule for the KD term in both steps: with every row below --kd_min_confidence the max step's KD term is
    0 too (it read the plain kd_loss, so the generator sought rows the student was told to ignore)."""
    args = cli_args(deterministic_bert, half_labelled, tmp_path / "run", "mate_kd", "--kd_min_confidence", "0.999999")
    trainer, _ = build_trainer(*parse_args(args))
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    student = trainer.model.eval()
    torch.manual_seed(0)
    features = trainer.generator_features(student, batch)
    rows = len(batch["input_ids"])
    terms = trainer.compute_terms(trainer.generator_weights, batch, features, (torch.tensor(float(rows)), None))
    assert terms["kd_perturbed"].item() == 0.0
    plain = kd_loss(features.teacher_perturbed.logits, features.student_perturbed.logits, 1.0, rows)
    assert plain.item() > 0  # the term the generator used to maximise


def test_the_share_warning_joins_only_a_doubted_teachers_warnings():
    """With a strong teacher (the demo's) few labelled rows are no warning: the share was not selected there; with
    a teacher the check doubts it is."""
    from types import SimpleNamespace

    from hf_kd.data import TaskData
    from hf_kd.diagnostics import TeacherWorth, with_warnings

    data = TaskData(Dataset.from_dict({"label": [0] * 100 + [IGNORE_LABEL] * 900}), None, ["a", "b"], None, 900)
    args = SimpleNamespace(
        per_device_train_batch_size=32, gradient_accumulation_steps=1, world_size=1, baseline_twin=False
    )
    trainer = SimpleNamespace(args=args)
    strong = with_warnings(TeacherWorth("accuracy", 0.9, 0.5, "the validation data"), trainer, data)
    assert strong.warnings == []
    weak = with_warnings(TeacherWorth("accuracy", 0.52, 0.5, "the validation data"), trainer, data)
    assert len(weak.warnings) == 2 and weak.warnings[1].startswith("Only 10% of the training rows carry a label")
