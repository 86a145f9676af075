"""The no-KD twin (--baseline_twin): the same student trained on its labels alone, beside the distilled one.

The twin has the same data (its labelled rows), seed and number of optimizer steps, and no teacher; it
trains into OUTPUT_DIR/no_kd_twin with its own results, record and card. With --load_best_of_twins the
better of the two on the validation data is the model OUTPUT_DIR holds and describes; the other keeps
its own folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil

from hf_kd.build import build_trainer
from hf_kd.checkpoints import resolve_checkpoint
from hf_kd.cli import announce
from hf_kd.errors import ArgumentError
from hf_kd.guards import OutputDirLock
from hf_kd.hub import is_student_file, model_card
from hf_kd.metrics import main_metric
from hf_kd.outputs import (
    DISTILLED_FOLDER,
    RESULTS_FILE,
    TWIN_FOLDER,
    clear_previous_run,
    model_sizes,
    read_json,
    run_info,
    run_stage,
    split_metrics,
    write_run_folder,
)
from hf_kd.terms import TERMS
from hf_kd.training import evaluate, train_and_save

logger = logging.getLogger("hf_kd")


def settle_twins(model_args, data_args, trainer, data, results: dict, record: dict, model_id: str, sizes, resume: bool):
    """--baseline_twin: train the no-KD twin, set it beside the distilled student in the results and the record,
    and with --load_best_of_twins keep the better one in OUTPUT_DIR. Returns what OUTPUT_DIR then describes
    (model arguments, training arguments, results, record): the twin's own when it is kept, and the
    distilled student's files, results, record and card move to OUTPUT_DIR/distilled."""
    args = trainer.args
    twin_results, twin_args, twin_model_args = train_twin(model_args, data_args, trainer, data, model_id, resume)
    metric = f"eval_{main_metric(data.task_name, data.is_regression)}"
    difference = results[metric] - twin_results[metric]
    kept = "no_kd_twin" if args.load_best_of_twins and difference < 0 else "distilled"
    record["twin"] = {
        "metric": metric,
        "distilled": results[metric],
        "no_kd_twin": twin_results[metric],
        "difference": difference,
        "steps": trainer.state.global_step,
        "saved_student": kept,
        "folder": os.path.join(args.output_dir, TWIN_FOLDER),
    }
    record["saved_student"] = kept
    results.update({f"no_kd_twin_{key}": value for key, value in split_metrics(twin_results, "eval").items()})
    results["difference_to_no_kd_twin"] = difference
    word = "over" if difference >= 0 else "below"
    announce(
        f"{args.method} {difference:+.4f} {word} its no-KD twin ({metric} {results[metric]:.4f} against "
        f"{twin_results[metric]:.4f}, one seed); saved student: {kept}."
    )
    if kept == "distilled":
        return model_args, args, results, record
    distilled_dir = os.path.join(args.output_dir, DISTILLED_FOLDER)
    if trainer.is_world_process_zero():
        card = model_card(model_id, model_args, data_args, args, results, sizes, record)
        keep_twin_as_student(args.output_dir, record["twin"]["folder"])
        write_run_folder(distilled_dir, results, record, card)
    comparisons = {key: value for key, value in results.items() if not key.startswith(("train", "eval"))}
    saved_results = {
        **twin_results,
        **comparisons,
        **{f"distilled_{k}": v for k, v in split_metrics(results, "eval").items()},
    }
    return twin_model_args, twin_args, saved_results, record


def train_twin(model_args, data_args, trainer, data, model_id: str, resume: bool) -> tuple[dict, object, object]:
    """The no-KD twin (method normal, the labelled rows, the same seed and optimizer steps, no teacher), trained,
    evaluated and written into OUTPUT_DIR/no_kd_twin with its own results, record and card. With `resume` it
    continues from its own newest checkpoint, or reads back a twin that had finished. Returns its results and
    its model and training arguments."""
    args = trainer.args
    twin_dir = os.path.join(args.output_dir, TWIN_FOLDER)
    weights = [f"{prefix}{term}" for prefix in ("weight_", "generator_weight_") for term in TERMS]
    unset = {name: None for name in weights if hasattr(args, name)}  # normal's own defaults apply
    twin_args = dataclasses.replace(
        args,
        method="normal",
        output_dir=twin_dir,
        max_steps=max(trainer.state.global_step, 1),
        baseline_twin=False,
        load_best_of_twins=False,
        check_teacher=False,
        overwrite_output_dir=True,
        resume_from_checkpoint=None,
        report_to=[],
        kd_row_weighting="none",
        kd_min_confidence=0.0,
        **unset,
    )
    twin_data_args = dataclasses.replace(data_args, unlabeled_file=None, labelled_share=None)
    teacher_free = {name: None for name in ("teacher_name_or_path", "teacher_state_dict", "generator_name_or_path")}
    twin_model_args = dataclasses.replace(model_args, teacher_tokenizer_name_or_path=None, **teacher_free)
    with OutputDirLock(twin_dir, enabled=twin_args.process_index == 0):
        stage = run_stage(twin_dir)
        if resume and stage == "finished":
            logger.info("%s: the no-KD twin had finished; reading its results.", twin_dir)
            twin, _ = build_trainer(twin_model_args, twin_data_args, twin_args, labelled_only=True)
            return read_json(os.path.join(twin_dir, RESULTS_FILE)), twin.args, twin_model_args
        if resume and stage == "interrupted":
            with contextlib.suppress(ArgumentError):  # no complete checkpoint: it starts again
                twin_args.resume_from_checkpoint = resolve_checkpoint("last", twin_dir)
        if twin_args.resume_from_checkpoint is None and twin_args.process_index == 0:
            clear_previous_run(twin_dir)
        announce(f"Training the no-KD twin ({twin_args.max_steps} steps, labelled rows only) in {twin_dir}.")
        twin, twin_data = build_trainer(twin_model_args, twin_data_args, twin_args, labelled_only=True)
        twin.model.config.id2label = dict(trainer.model.config.id2label)  # the names the student was given
        twin.model.config.label2id = dict(trainer.model.config.label2id)
        twin_data.label_list = data.label_list
        twin_results = train_and_save(twin, twin_data, twin_dir)
        twin_results.update(evaluate(twin, twin_data))
        if twin.is_world_process_zero():
            record = run_info(twin_model_args, twin_data_args, twin.args, twin_data, twin)
            sizes = model_sizes(twin, twin_model_args)
            card = model_card(
                f"{model_id}-no-kd-twin", twin_model_args, twin_data_args, twin.args, twin_results, sizes, record
            )
            write_run_folder(twin_dir, twin_results, record, card)
    return twin_results, twin.args, twin_model_args


def keep_twin_as_student(output_dir: str, twin_dir: str) -> None:
    """The twin won: the distilled student's files move to OUTPUT_DIR/distilled, the twin's take their place."""
    distilled = os.path.join(output_dir, DISTILLED_FOLDER)
    os.makedirs(distilled, exist_ok=True)
    for name in os.listdir(twin_dir):
        source = os.path.join(twin_dir, name)
        if not os.path.isfile(source) or not is_student_file(name):
            continue
        target = os.path.join(output_dir, name)
        if os.path.isfile(target):
            os.replace(target, os.path.join(distilled, name))
        shutil.copy2(source, target)
