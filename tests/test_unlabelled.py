"""Unlabelled transfer text: loading, per-term losses on mixed batches, refusals, and end-to-end runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from hf_kd.arguments import DataTrainingArguments
from hf_kd.build import build_trainer
from hf_kd.config import parse_args
from hf_kd.data import prepare_data
from hf_kd.errors import ArgumentError
from hf_kd.losses import IGNORE_LABEL, task_loss
from hf_kd.outputs import RUN_INFO_FILE
from hf_kd.run import main
from hf_kd.trainers import TRAINERS
from tests.conftest import cli_args, logits_used, student_terms
from tests.test_losses import hand_kl


def log_softmax(row: list[float]) -> list[float]:
    top = math.log(sum(math.exp(v) for v in row))
    return [v - top for v in row]


@pytest.fixture(scope="module")
def tokenizer(bert):
    return AutoTokenizer.from_pretrained(bert.tokenizer)


# ---------------------------------------------------------------------------------------- losses
def test_task_loss_averages_over_labelled_rows_only():
    logits = torch.tensor([[2.0, -1.0], [0.3, 0.4], [1.5, 0.5], [-0.2, 0.9]])
    labels = torch.tensor([0, IGNORE_LABEL, 1, IGNORE_LABEL])
    expected = -(log_softmax([2.0, -1.0])[0] + log_softmax([1.5, 0.5])[1]) / 2
    assert task_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_regression_loss_skips_nan_labels():
    predictions = torch.tensor([[1.0], [2.0], [4.0]])
    labels = torch.tensor([1.5, float("nan"), 3.0])
    assert task_loss(predictions, labels).item() == pytest.approx((0.25 + 1.0) / 2)


def test_batch_without_labels_gives_zero_with_a_graph():
    logits = torch.randn(3, 2, requires_grad=True)
    loss = task_loss(logits, torch.full((3,), IGNORE_LABEL))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(3, 2))


# ------------------------------------------------------------------------------------------ data
def test_empty_labels_and_unlabeled_file_become_unlabelled_rows(tokenizer, half_labelled):
    args = DataTrainingArguments(
        task_name="sst2",
        train_file=half_labelled["train"],
        validation_file=half_labelled["dev"],
        unlabeled_file=half_labelled["unlabelled"],
        max_unlabeled_samples=30,
        max_seq_length=32,
    )
    data = prepare_data(args, tokenizer)
    labels = data.train["label"]
    assert (len(data.train), data.labelled, data.unlabelled) == (96 + 30, 48, 48 + 30)
    assert labels[1::2][:48] == [IGNORE_LABEL] * 48 and set(labels[0:96:2]) <= {0, 1}
    assert labels[96:] == [IGNORE_LABEL] * 30
    assert data.train["hf_kd_index"] == list(range(126))  # the teacher cache covers the unlabelled rows too
    first_unlabelled = Path(half_labelled["unlabelled"]).read_text().splitlines()[1]
    assert data.train[96]["input_ids"] == tokenizer(first_unlabelled, truncation=True, max_length=32)["input_ids"]


def test_regression_labels_with_empty_cells(tokenizer, tmp_path):
    (tmp_path / "train.csv").write_text("sentence1,sentence2,label\na b,c d,1.5\ne f,g h,\ni j,k l,4.0\n")
    (tmp_path / "dev.csv").write_text("sentence1,sentence2,label\na b,c d,1.5\n")
    args = DataTrainingArguments(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv"))
    data = prepare_data(args, tokenizer)
    assert data.is_regression and data.unlabelled == 1
    assert data.train["label"][0] == 1.5 and math.isnan(data.train["label"][1]) and data.train["label"][2] == 4.0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("validation_without_label", "without a label"),
        ("unlabelled_lacks_column", "lacks the text column"),
        ("normal_with_unlabeled_file", "learns from labels only"),
        ("normal_with_empty_labels", "learns from labels only"),
        ("zero_max_unlabelled", "--max_unlabeled_samples must be >= 1"),
    ],
)
def test_bad_unlabelled_input_is_refused(bert, half_labelled, tmp_path, case, message):
    files = dict(half_labelled)
    extra = ["--unlabeled_file", half_labelled["unlabelled"]]
    method = "kd"
    if case == "validation_without_label":
        files["dev"] = half_labelled["train"]
    elif case == "unlabelled_lacks_column":
        (tmp_path / "bad.tsv").write_text("text_a\nsome words\n")
        extra = ["--unlabeled_file", str(tmp_path / "bad.tsv")]
    elif case == "normal_with_unlabeled_file":
        method = "normal"
    elif case == "normal_with_empty_labels":
        method, extra = "normal", []
    elif case == "zero_max_unlabelled":
        extra += ["--max_unlabeled_samples", "0"]
    with pytest.raises(ArgumentError, match=message):
        main(cli_args(bert, files, tmp_path / "run", method, *extra))
    assert not (tmp_path / "run").exists()  # refused before anything was written


# ------------------------------------------------------------------------------- mixed batches
def test_mixed_batch_terms_match_a_hand_computation(bert, half_labelled, tmp_path):
    model_args, data_args, training_args = parse_args(cli_args(bert, half_labelled, tmp_path, "kd"))
    trainer, _ = build_trainer(model_args, data_args, training_args)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    labels = batch["labels"].tolist()
    assert IGNORE_LABEL in labels and any(label != IGNORE_LABEL for label in labels)
    trainer.model.eval()  # no dropout, so the hand computation sees the same logits
    with torch.no_grad():  # the tiny random teacher is nearly uniform: sharpen it so KD is far from zero
        trainer.teacher.model.classifier.weight.mul_(300.0)
    unlabelled = batch["labels"] == IGNORE_LABEL

    def unsure_on_unlabelled(module, args, output) -> None:
        """The teacher uniform on the unlabelled rows, sure on the labelled ones: a random teacher says much the
        same on every row, and a KD term over the labelled rows alone would pass for one over every row."""
        logits = output.logits if hasattr(output, "logits") else output[0]
        logits[unlabelled] = 0.0

    unsure = trainer.teacher.model.register_forward_hook(unsure_on_unlabelled)  # before logits_used's: it sees these
    try:
        with logits_used(trainer) as used:
            terms = student_terms(trainer, batch)
    finally:
        unsure.remove()
    teacher, student = used["teacher"], used["student"]
    labelled = [(row, label) for row, label in zip(student, labels, strict=True) if label != IGNORE_LABEL]
    hand_ce = -sum(log_softmax(row)[label] for row, label in labelled) / len(labelled)
    assert terms["ce"].item() == pytest.approx(hand_ce, rel=1e-5)
    # every row, labelled or not; the labelled rows' KL alone is far from it (the teacher unsure on the others)
    every_row = hand_kl(teacher, student)
    labelled_only = hand_kl(
        [row for row, label in zip(teacher, labels, strict=True) if label != IGNORE_LABEL], [row for row, _ in labelled]
    )
    assert abs(labelled_only - every_row) > 0.1 * every_row
    assert terms["kd"].item() == pytest.approx(every_row, rel=1e-6)


def test_logged_ce_leaves_out_batches_without_labels(bert, half_labelled, tmp_path):
    model_args, data_args, training_args = parse_args(cli_args(bert, half_labelled, tmp_path, "kd"))
    trainer, _ = build_trainer(model_args, data_args, training_args)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    unlabelled = {**batch, "labels": torch.full_like(batch["labels"], IGNORE_LABEL)}
    trainer.model.train()
    torch.manual_seed(0)
    with_labels = trainer.compute_loss(trainer.model, batch, return_outputs=True)[1]
    without_labels = trainer.compute_loss(trainer.model, unlabelled, return_outputs=True)[1]
    assert without_labels["ce"].item() == 0.0
    logs = {"loss": 0.0}
    trainer.log(logs)
    assert logs["loss_ce"] == pytest.approx(with_labels["ce"].item(), rel=1e-6)  # mean over the labelled batch only
    assert logs["loss_kd"] == pytest.approx((with_labels["kd"].item() + without_labels["kd"].item()) / 2, rel=1e-6)


# ---------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("method", [m for m in TRAINERS if m != "normal"])
def test_every_method_trains_on_labelled_and_unlabelled_text(bert, half_labelled, tmp_path, method):
    extra = ["--unlabeled_file", half_labelled["unlabelled"]]
    if method == "kd":
        extra += ["--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "cache")]
    results = main(cli_args(bert, half_labelled, tmp_path / "run", method, *extra))
    assert results["train_labelled_samples"] == 48 and results["train_unlabelled_samples"] == 48 + 40
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and math.isfinite(results["train_loss"])
    info = json.loads((tmp_path / "run" / RUN_INFO_FILE).read_text())
    assert (info["train_labelled_samples"], info["train_unlabelled_samples"]) == (48, 88)
    assert "48 labelled, 88 unlabelled" in (tmp_path / "run" / "README.md").read_text()
