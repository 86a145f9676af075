"""From parsed arguments to a ready trainer: data, models and the method's trainer, every input checked.

The path of a run is arguments -> data -> models -> trainer -> results; `build_trainer` is its middle.
Everything a user can get wrong is refused here, in one line naming the argument and the fix, before
any output folder is written.
"""

from __future__ import annotations

import logging

from transformers import set_seed

from hf_kd.callbacks import NeptuneCallback, neptune_settings, run_parameters
from hf_kd.data import DistillationCollator, prepare_data
from hf_kd.diagnostics import labelled_rows
from hf_kd.errors import ArgumentError, brief
from hf_kd.metrics import build_compute_metrics
from hf_kd.models import (
    check_compatible,
    check_model_configs,
    load_generator,
    load_student,
    load_teacher,
    load_teacher_tokenizer,
    load_tokenizer,
    match_teacher_labels,
)
from hf_kd.roles import StudentRole, teacher_role
from hf_kd.terms import uses_teacher
from hf_kd.trainers import configure_method

logger = logging.getLogger("hf_kd")


def unlabelled_without_teacher(method: str, what: str) -> str:
    return (
        f"Method '{method}' learns from labels only, so {what} would teach the student nothing: use a "
        "distillation method (e.g. --method kd with --teacher_name_or_path), or give those rows labels."
    )


def check_sentence_positions(data, roles: list, collator: DistillationCollator) -> None:
    """Each model finds its sentence position in its own view of a few training examples (BART needs an
    end-of-sequence token), before any training."""
    if data.train is None or len(data.train) == 0:
        return
    batch = collator([data.train[i] for i in range(min(4, len(data.train)))])
    for role in roles:
        role.adapter.sentence_positions(role.view(batch))


def check_twin_arguments(training_args, data_args, needs_teacher: bool) -> None:
    """--baseline_twin compares a distilled student with the same student trained on its labels alone."""
    if training_args.load_best_of_twins and not training_args.baseline_twin:
        raise ArgumentError(
            "--load_best_of_twins picks between a student and its no-KD twin: add --baseline_twin true."
        )
    if not training_args.baseline_twin:
        return
    if not needs_teacher:
        raise ArgumentError(
            f"--baseline_twin trains a no-KD twin to compare with; method '{training_args.method}' uses no teacher, "
            "so there is nothing to compare: drop --baseline_twin or pick a distillation --method."
        )
    if not (training_args.do_train and training_args.do_eval) or not (data_args.validation_file or data_args.task_name):
        raise ArgumentError(
            "--baseline_twin compares the two students on the validation data: it needs training, evaluation "
            "(--do_train / --do_eval true) and a --validation_file with labels."
        )


def build_trainer(model_args, data_args, training_args, repetition: int = 0, labelled_only: bool = False):
    """Data, models and the method's trainer from parsed arguments; every input check happens here.
    `labelled_only` keeps the training rows that carry a label (the no-KD twin)."""
    method = configure_method(training_args)
    needs_teacher = method.adversarial or uses_teacher(training_args.loss_weights, training_args.generator_loss_weights)
    check_twin_arguments(training_args, data_args, needs_teacher)
    if data_args.unlabeled_file and not needs_teacher:
        raise ArgumentError(unlabelled_without_teacher(method.method, "--unlabeled_file"))
    roles = ["student", *(["teacher"] if needs_teacher else []), *(["generator"] if method.adversarial else [])]
    check_model_configs(model_args, data_args.max_seq_length, roles, data_args.teacher_max_seq_length)
    tokenizer = load_tokenizer(model_args)
    method.check_inputs(
        training_args, bool(model_args.teacher_name_or_path), bool(model_args.generator_name_or_path), tokenizer
    )
    neptune = neptune_settings(training_args) if training_args.report_to_neptune else None
    set_seed(training_args.seed)

    teacher_tokenizer = load_teacher_tokenizer(model_args, tokenizer) if needs_teacher else None
    static_mask = method.adversarial and training_args.static_mask
    data = prepare_data(
        data_args,
        tokenizer,
        seed=training_args.seed,
        static_mask_probability=training_args.mlm_probability if static_mask else None,
        fixed_count_mask=training_args.mask_mode == "fixed_count",
        cache_dir=model_args.cache_dir,
        teacher_tokenizer=teacher_tokenizer,
        teacher_max_seq_length=data_args.teacher_max_seq_length,
        validation_labels_required=training_args.do_eval,
    )
    if labelled_only:
        data.train, data.unlabelled = labelled_rows(data.train), 0
    if training_args.baseline_twin and training_args.do_train and data.labelled == 0:
        raise ArgumentError(
            f"--baseline_twin trains a no-KD twin on the labelled training rows, and "
            f"{data_args.train_file or data_args.task_name} has none: give some rows a label, or drop --baseline_twin."
        )
    if data.unlabelled and not needs_teacher and training_args.do_train:
        raise ArgumentError(
            unlabelled_without_teacher(method.method, f"{data.unlabelled} rows of --train_file with an empty label")
        )
    teacher_model = generator = labels_read = None
    if needs_teacher:  # first: with integer labels the student takes the teacher's label names
        teacher_model = load_teacher(model_args, data)
        labels_read = match_teacher_labels(teacher_model.config, data, model_args.teacher_label_pairs)
        if labels_read is not None:
            data.label_list = labels_read.names
            log = logger.warning if labels_read.how == "by position" else logger.info
            log("The teacher's labels are %s.", labels_read.text())
    student = load_student(model_args, data)
    if method.adversarial:
        generator = load_generator(model_args)
    models = {"student": student, "teacher": teacher_model, "generator": generator}
    sources = {
        "student": model_args.model_name_or_path,
        "teacher": model_args.teacher_name_or_path,
        "generator": model_args.generator_name_or_path,
    }
    present = {role: model for role, model in models.items() if model is not None}
    check_compatible(tokenizer, present, {role: sources[role] for role in present}, model_args, teacher_tokenizer)
    pad_to = 8 if training_args.bf16 or training_args.fp16 else None
    collator = DistillationCollator(tokenizer, pad_to_multiple_of=pad_to, teacher_tokenizer=teacher_tokenizer)
    teacher = None
    if needs_teacher:
        length = data_args.teacher_max_seq_length or data_args.max_seq_length
        order = None if labels_read is None else labels_read.order
        teacher = teacher_role(teacher_model, tokenizer, teacher_tokenizer, order, length)
    check_sentence_positions(data, [StudentRole(student, tokenizer), *([teacher] if teacher else [])], collator)

    try:
        # the optimizer is made when training starts: check now, before the Trainer makes --output_dir
        method.get_optimizer_cls_and_kwargs(training_args, student)
        trainer = method(
            model=student,
            teacher=teacher,
            generator=generator,
            args=training_args,
            train_dataset=data.train if training_args.do_train else None,
            eval_dataset=data.validation if training_args.do_eval else None,
            processing_class=tokenizer,
            data_collator=collator,
            compute_metrics=build_compute_metrics(data.task_name, data.is_regression),
        )
    except ArgumentError:
        raise
    except (ValueError, RuntimeError, ImportError) as error:  # refused options, a tracker or optimizer not installed
        raise ArgumentError(f"The Trainer refused the arguments: {brief(error)}") from None
    trainer.labels_read = labels_read  # for the run record and the card
    if neptune is not None:
        parameters = run_parameters(model_args, data_args, training_args, repetition)
        trainer.add_callback(NeptuneCallback(neptune, parameters, tags=training_args.neptune_tags))
    return trainer, data
