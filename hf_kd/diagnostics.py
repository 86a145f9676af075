"""Is distillation paying? The teacher's worth before training, and a student collapsing onto one class.

Distillation only helps when the teacher knows something the student's labels do not. A weak teacher, or
one that predicts a single class for most of the unlabelled text, makes a student worse without a sign:
these checks make it visible in the log, the run record (`hf_kd_run.json`) and the model card.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from datasets import Dataset
from transformers import TrainerCallback

from hf_kd.cache import teacher_logits
from hf_kd.data import INDEX_COLUMN, arrow_column, collated_batches, labelled_row_indices
from hf_kd.losses import IGNORE_LABEL
from hf_kd.metrics import glue_metrics, main_metric

logger = logging.getLogger(__name__)

COLLAPSE_SHARE = 0.95  # a student predicting one class this often has collapsed, unless its labels do too
SKEWED_TEACHER_GAP = 0.2  # the teacher's share of a class on unlabelled text this far above the labels' share


def class_shares(classes: np.ndarray, num_labels: int) -> list[float]:
    """Share of each class id 0..K-1 among `classes` (empty: zeros)."""
    counts = np.bincount(classes.astype(np.int64), minlength=num_labels)[:num_labels]
    return (counts / max(len(classes), 1)).tolist()


def labelled_rows(dataset: Dataset) -> Dataset:
    """The rows that carry a gold label (not `IGNORE_LABEL`, not NaN)."""
    return dataset.select(labelled_row_indices(dataset))


@dataclass
class TeacherWorth:
    """The teacher measured before the student trains (see `assess_teacher`)."""

    metric: str
    score: float | None  # the teacher's main metric on `measured_on` (None without labels there)
    majority_score: float | None  # the same metric for always predicting the labels' most frequent class
    measured_on: str
    unlabelled_rows: int = 0  # unlabelled rows the statistics below are over
    mean_top_probability: float | None = None
    teacher_shares: list[float] | None = None  # per class, the teacher's predictions on the unlabelled rows
    label_shares: list[float] | None = None  # per class, the labelled training rows
    label_names: list[str] | None = None
    warnings: list[str] = field(default_factory=list)
    confidence_on: str = "the unlabelled training rows"

    def as_dict(self) -> dict:
        return asdict(self)

    def card_text(self) -> str:
        """One line for the model card: what the teacher scored, and the student's reference point."""
        if self.score is None:
            return f"not scored (no labels on {self.measured_on})"
        text = f"{self.metric} {self.score:.4f} on {self.measured_on}"
        if self.majority_score is not None:
            text += f" (always predicting the most frequent class: {self.majority_score:.4f})"
        return text


CHUNK_ROWS = 65536  # unlabelled rows the teacher check reads from the cache at a time


def assess_teacher(trainer, data, max_unlabelled_rows: int = 2000) -> TeacherWorth:
    """The teacher's main metric on the validation data (the labelled training rows without any), against
    always predicting the labels' most frequent class; its confidence and class balance on the unlabelled rows
    (from the teacher-output cache when there is one, else on up to `max_unlabelled_rows` of them)."""
    metric = main_metric(data.task_name, data.is_regression)
    labelled = labelled_rows(data.train)
    scored, measured_on = data.validation, "the validation data"
    validation_unlabelled = scored is not None and len(labelled_rows(scored)) < len(scored)
    if scored is None or validation_unlabelled:
        scored, measured_on = labelled, "the labelled training rows (no validation data with labels)"
    worth = TeacherWorth(metric, None, None, measured_on, label_names=data.label_list)
    if len(scored):
        logits = teacher_logits(trainer, scored).numpy()
        references = np.asarray(scored["label"])
        predictions = logits[:, 0] if data.is_regression else logits.argmax(-1)
        worth.score = glue_metrics(data.task_name, predictions, references, data.is_regression)[metric]
        if not data.is_regression and len(labelled):  # without labelled rows there is no majority to compare with
            majority = np.bincount(np.asarray(labelled["label"], dtype=np.int64)).argmax()
            constant = np.full_like(references, majority)
            worth.majority_score = glue_metrics(data.task_name, constant, references)[metric]
    if data.is_regression:
        return with_warnings(worth, trainer, data)
    worth.label_shares = class_shares(np.asarray(labelled["label"]), data.num_labels) if len(labelled) else None
    labels = arrow_column(data.train, "label").to_numpy().astype(float)
    unlabelled = np.flatnonzero(labels == IGNORE_LABEL)
    chunks: list[torch.Tensor] | Iterator[torch.Tensor] = []
    if validation_unlabelled:  # the text the student will be judged on, without labels: confidence only
        worth.confidence_on = "the validation data (it has no labels: the teacher's confidence only)"
        rows = data.validation.select(range(min(max_unlabelled_rows, len(data.validation))))
        chunks = [teacher_logits(trainer, rows)]
    elif len(unlabelled):
        cache = trainer.teacher.cache
        if cache is not None:  # every unlabelled row, read from the cache a chunk at a time
            indices = arrow_column(data.train, INDEX_COLUMN).to_numpy()[unlabelled]
            chunks = (cache.rows("logits", indices[i : i + CHUNK_ROWS]) for i in range(0, len(indices), CHUNK_ROWS))
        else:
            chunks = [teacher_logits(trainer, data.train.select(unlabelled[:max_unlabelled_rows]))]
    rows, top, counts = 0, 0.0, np.zeros(data.num_labels, dtype=np.int64)
    for logits in chunks:
        probabilities = logits.softmax(-1)
        rows += len(logits)
        top += probabilities.max(-1).values.double().sum().item()
        counts += np.bincount(probabilities.argmax(-1).numpy(), minlength=data.num_labels)[: data.num_labels]
    if rows:
        worth.unlabelled_rows = rows
        worth.mean_top_probability = top / rows
        worth.teacher_shares = (counts / rows).tolist()
    return with_warnings(worth, trainer, data)


def with_warnings(worth: TeacherWorth, trainer, data) -> TeacherWorth:
    args = trainer.args
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    worth.warnings = teacher_warnings(worth, args.baseline_twin)
    share = labelled_share_warning(data, batch)
    if share and worth.warnings:  # measured to pay with a teacher this check doubts; with a strong one it did not
        worth.warnings.append(share)
    elif share:
        logger.info(share)
    return worth


def teacher_warnings(worth: TeacherWorth, twin: bool = False) -> list[str]:
    """What in `worth` says distillation may hurt, each with what to do about it (`twin`: the run already trains
    its no-KD twin, so it is not suggested)."""
    warnings = []
    names = worth.label_names or []
    compare = (
        "its no-KD twin, trained beside it, will show it"
        if twin
        else "compare with its no-KD twin (--baseline_twin true)"
    )
    if worth.score is not None and worth.majority_score is not None and worth.score <= worth.majority_score + 0.05:
        where = "below" if worth.score < worth.majority_score else "hardly above"
        warnings.append(
            f"The teacher scores {worth.metric} {worth.score:.3f} on {worth.measured_on}, {where} always "
            f"predicting the most frequent class ({worth.majority_score:.3f}): distillation may make the student "
            f"worse; {compare}."
        )
    if worth.teacher_shares and worth.label_shares:
        top = int(np.argmax(worth.teacher_shares))
        teacher_share, label_share = worth.teacher_shares[top], worth.label_shares[top]
        if teacher_share >= label_share + SKEWED_TEACHER_GAP:
            name = names[top] if top < len(names) else str(top)
            warnings.append(
                f"The teacher predicts '{name}' for {teacher_share:.0%} of the {worth.unlabelled_rows:,} rows checked "
                f"of {worth.confidence_on}, against {label_share:.0%} of the labels: KD on such text pulls the student toward "
                "one class (use fewer unlabelled rows, a lower --kd_temperature or --kd_row_weighting class_balanced"
                + (")." if twin else ", and --baseline_twin true to check).")
            )
    return warnings


LOW_LABELLED_SHARE = 0.25  # below it, the labelled-share warning fires


def labelled_share_warning(data, batch_size: int) -> str | None:
    """Few labelled rows among much unlabelled text leave batches with a label or two: the student then learns
    mostly the teacher. With a teacher the check doubts that cost points (BANKING77, weak teacher: -28.6 against
    no KD; the share beat no share on held-out, every seed); with a strong teacher the share was not selected
    (docs/RECIPES.md, section 0), so the warning joins the teacher's own warnings only."""
    labelled = len(data.train) - data.unlabelled  # copies included: what the batches hold
    if not data.unlabelled or not labelled:
        return None
    share = labelled / (labelled + data.unlabelled)
    if share >= LOW_LABELLED_SHARE:
        return None
    return (
        f"Only {share:.0%} of the training rows carry a label (about {share * batch_size:.1f} per batch of "
        f"{batch_size}): the student learns mostly a teacher this check doubts. --labelled_share 0.5 repeats the "
        "labelled rows until they are half of the rows (docs/RECIPES.md, section 0)."
    )


EARLY_SHARE = 0.2  # a collapse in the first 20% of training is a student still at its first guesses


def collapse_causes(args, data, has_teacher: bool, label_shares: list[float], top: int, name: str) -> list[str]:
    """The likely causes of a collapse that exist in this run, each with its flag."""
    causes = []
    if has_teacher and data.unlabelled:
        causes.append("the teacher's class balance on the unlabelled text (see the teacher check at the start)")
    if has_teacher and args.kd_temperature > 1:
        causes.append(f"a high --kd_temperature ({args.kd_temperature:g})")
    if data.unlabelled and (len(data.train) - data.unlabelled) / len(data.train) < LOW_LABELLED_SHARE:
        causes.append("too few labelled rows per batch (--labelled_share 0.5)")
    if label_shares[top] >= 0.6:
        causes.append(f"labels leaning to '{name}' ({label_shares[top]:.0%} of them)")
    causes.append(f"a learning rate too high or too low for this student (--learning_rate {args.learning_rate:g})")
    return causes


class CollapseGuard(TrainerCallback):
    """At every logging step, the student's predictions on a slice of the validation data (or of the labelled
    training rows). A student predicting one class for over 95% of them while the labels do not is warned about
    in one line naming the causes that exist in the run (and, with `stop`, training stops there) once the
    collapse persists: seen at two checks in a row past the first 20% of training, or in the student saved at
    the end. A student at its first guesses, early in training, is not a collapse."""

    def __init__(
        self,
        trainer,
        dataset: Dataset,
        rows: int,
        label_names: list[str] | None,
        stop: bool,
        causes=lambda top, name: [],
    ) -> None:
        self.trainer, self.stop, self.label_names, self.causes = trainer, stop, label_names or [], causes
        self.dataset = dataset.select(range(min(rows, len(dataset))))
        self.label_shares = class_shares(np.asarray(self.dataset["label"]), len(self.label_names) or 2)
        self.collapsed_at: int | None = None
        self.last_shares: list[float] | None = None
        self.seen_at: int | None = None  # the last check that found the student on one class

    def student_shares(self) -> list[float]:
        """The student's predicted-class shares on the slice, in eval mode; draws no random number."""
        trainer, model = self.trainer, self.trainer.model
        was_training = model.training
        model.eval()
        kept = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in self.dataset.column_names]
        rows = self.dataset.select_columns(kept)
        size, device = trainer.args.per_device_eval_batch_size, trainer.args.device
        classes = []
        with torch.no_grad():
            for batch in collated_batches(rows, trainer.data_collator, size, device):
                with trainer.accelerator.autocast():
                    classes.append(model(**batch).logits.argmax(-1).cpu())
        model.train(was_training)
        return class_shares(torch.cat(classes).numpy(), len(self.label_shares))

    def check(self, step: int) -> str | None:
        """A one-line warning if the student is on one class at `step`, else None."""
        shares = self.last_shares = self.student_shares()
        top = int(np.argmax(shares))
        if shares[top] < COLLAPSE_SHARE or self.label_shares[top] >= COLLAPSE_SHARE:
            return None
        name = self.label_names[top] if top < len(self.label_names) else str(top)
        causes = self.causes(top, name)
        return (
            f"Step {step}: the student predicts '{name}' for {shares[top]:.0%} of {len(self.dataset)} checked rows "
            f"whose labels are {self.label_shares[top]:.0%} '{name}': it has collapsed onto one class."
            + (f" Likely causes: {'; '.join(causes)}." if causes else "")
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._watch(state, control, final=False)

    def on_train_end(self, args, state, control, **kwargs):
        self._watch(state, control, final=True)  # the student as it is saved

    def _watch(self, state, control, final: bool) -> None:
        if self.collapsed_at is not None or not len(self.dataset):
            return
        warning = self.check(state.global_step)
        if warning is None:
            self.seen_at = None
            return
        early = state.global_step <= EARLY_SHARE * state.max_steps
        persists = self.seen_at is not None and not early
        self.seen_at = state.global_step
        if not (final or persists):
            return
        self.collapsed_at = state.global_step
        logger.warning(warning + (" Stopping (--stop_on_collapse)." if self.stop else ""))
        if self.stop:
            control.should_training_stop = True
