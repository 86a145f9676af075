"""The phases of one run: the teacher check, training with a clean stop on SIGTERM, saving, evaluation."""

from __future__ import annotations

import logging
import os

from transformers import TrainerState

from hf_kd.callbacks import NeptuneCallback
from hf_kd.cli import announce
from hf_kd.diagnostics import CollapseGuard, TeacherWorth, assess_teacher, collapse_causes, labelled_rows
from hf_kd.guards import GracefulStop, disk_guard
from hf_kd.outputs import RUN_INFO_FILE, TRAIN_RESULTS_FILE, read_json, save_student

logger = logging.getLogger("hf_kd")


def train_distilled(trainer, data, record: dict) -> dict:
    """The teacher check, the collapse guard and training; the training metrics (findings go into `record`)."""
    args = trainer.args
    results = {}
    if args.check_teacher and trainer.teacher is not None:
        record["teacher_check"] = check_teacher(trainer, data).as_dict()
    guard = collapse_guard(trainer, data)
    results.update(train_and_save(trainer, data, args.output_dir))
    if guard is not None and guard.collapsed_at is not None:
        record["collapse"] = {"step": guard.collapsed_at, "shares": guard.last_shares}
    return results


def restore_trained(trainer, output_dir: str) -> tuple[dict, dict]:
    """The distilled student an interrupted run saved, read back into `trainer.model`, with its training metrics
    and the run record written beside it."""
    announce(f"{output_dir}: the student was trained by the interrupted run; reading it back.")
    trainer._load_from_checkpoint(output_dir)  # the Trainer's own loader: sharded, safetensors, adapters
    trainer.state = TrainerState.load_from_json(os.path.join(output_dir, "trainer_state.json"))
    return read_json(os.path.join(output_dir, TRAIN_RESULTS_FILE)), read_json(os.path.join(output_dir, RUN_INFO_FILE))


def evaluate(trainer, data) -> dict:
    metrics = {**trainer.evaluate(), "eval_samples": len(data.validation)}
    trainer.log_metrics("eval", metrics)
    return metrics


def train_and_save(trainer, data, output_dir: str) -> dict:
    """Train (stopping with a checkpoint on SIGTERM), save the student and its extras; the training metrics."""
    stop = GracefulStop().install()
    trainer.add_callback(stop)
    resumed = trainer.args.resume_from_checkpoint
    try:
        train_result = trainer.train(resume_from_checkpoint=resumed)
    finally:
        stop.uninstall()
    if stop.stopped_at is not None:
        raise stop.interruption(output_dir)
    student_bytes = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
    with disk_guard(output_dir, student_bytes, "the student"):
        save_student(trainer, output_dir)
        trainer.save_extras()
        trainer.save_state()
    metrics = {
        **train_result.metrics,
        "train_samples": len(data.train),
        "train_labelled_samples": data.labelled,
        "train_unlabelled_samples": data.unlabelled,
    }
    if resumed:  # the Trainer's train_loss and speed then cover the steps of this call only
        metrics["train_resumed_from_step"] = int(str(resumed).rstrip("/").rsplit("-", 1)[-1])
    trainer.log_metrics("train", metrics)
    return metrics


def check_teacher(trainer, data) -> TeacherWorth:
    """The teacher's worth, measured before the student trains, logged and given to the tracker."""
    trainer.teacher.prepare(trainer)  # the check reads the unlabelled rows from the cache when there is one
    worth = assess_teacher(trainer, data, trainer.args.teacher_check_rows)
    announce(f"Teacher: {worth.card_text()}.")
    shown = {
        f"teacher_{worth.metric}": worth.score,
        f"majority_class_{worth.metric}": worth.majority_score,
        "teacher_unlabelled_rows_checked": worth.unlabelled_rows or None,
        "teacher_unlabelled_mean_top_probability": worth.mean_top_probability,
        "teacher_unlabelled_largest_class_share": max(worth.teacher_shares) if worth.teacher_shares else None,
    }
    trainer.log_metrics("teacher check", {name: value for name, value in shown.items() if value is not None})
    if worth.mean_top_probability is not None:
        shares = ", ".join(
            f"{name} {teacher:.0%}" + ("" if label is None else f" (labels {label:.0%})")
            for name, teacher, label in zip(
                data.label_list, worth.teacher_shares, worth.label_shares or [None] * data.num_labels, strict=True
            )
        )
        logger.info(
            "Teacher on %d unlabelled rows: mean top probability %.3f; predicted classes: %s.",
            worth.unlabelled_rows,
            worth.mean_top_probability,
            shares if len(data.label_list) <= 10 else f"{len(data.label_list)} classes",
        )
    for warning in worth.warnings:
        logger.warning(warning)
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, NeptuneCallback) and worth.score is not None:
            callback.parameters[f"teacher_{worth.metric}"] = worth.score
    return worth


def collapse_guard(trainer, data) -> CollapseGuard | None:
    """The collapse check on the validation data (the labelled training rows without it), for classifiers."""
    rows = trainer.args.collapse_check_rows
    if rows == 0 or data.is_regression:
        return None
    labelled = data.validation is not None and len(labelled_rows(data.validation)) == len(data.validation)
    dataset = data.validation if labelled else labelled_rows(data.train)

    def causes(top: int, name: str) -> list[str]:
        return collapse_causes(trainer.args, data, trainer.teacher is not None, guard.label_shares, top, name)

    guard = CollapseGuard(trainer, dataset, rows, data.label_list, trainer.args.stop_on_collapse, causes)
    trainer.add_callback(guard)
    return guard
