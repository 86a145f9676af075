"""The main job (`scripts/run_glue_kd.py`): arguments -> data -> models -> trainer -> results.

`main` parses the arguments, checks what --output_dir already holds, builds the trainer (`build.py`),
runs the phases (`training.py`: teacher check, training, evaluation), trains the no-KD twin when asked
(`twin.py`) and writes what the saved model is (`outputs.py`); the card and the Hub push come from
`hub.py`.
"""

from __future__ import annotations

import logging
import os

from hf_kd.build import build_trainer
from hf_kd.callbacks import NeptuneCallback
from hf_kd.checkpoints import resolve_checkpoint
from hf_kd.cli import announce, exit_on_argument_error, keep_freed_memory, leave_process_group, setup_logging
from hf_kd.config import parse_args
from hf_kd.errors import ArgumentError
from hf_kd.guards import OutputDirLock, disk_guard
from hf_kd.hub import model_card, push_student
from hf_kd.outputs import (
    RESULTS_FILE,
    RUN_INFO_FILE,
    TRAIN_RESULTS_FILE,
    check_output_dir,
    check_stage,
    clear_previous_run,
    model_sizes,
    read_json,
    run_info,
    run_stage,
    split_metrics,
    write_json_atomic,
    write_run_folder,
)
from hf_kd.training import evaluate, restore_trained, train_distilled
from hf_kd.twin import settle_twins

logger = logging.getLogger("hf_kd")
__all__ = ["build_trainer", "cli", "main"]


def main(argv: list[str] | None = None) -> dict:
    """Run one distillation (or fine-tune) and write the student and its results to --output_dir.

    The run holds --output_dir's lock for its life (a second run there is refused), stops at a step
    boundary with a checkpoint on SIGTERM (`TrainingInterrupted`), and reports a full disk in one line
    (`DiskFullError`) with what it had written intact. A finished run is never re-run by a resume, and
    an interrupted one never started again from step 0 by accident (`check_stage`).
    """
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    if training_args.device.type == "cpu":
        keep_freed_memory()
    check_output_dir(training_args)
    # hf_kd pushes the student alone at the end; the Trainer would push every checkpoint and the extras
    push, training_args.push_to_hub = training_args.push_to_hub, False
    if push and not training_args.hub_model_id:
        raise ArgumentError("--push_to_hub needs --hub_model_id (e.g. my-user/distilroberta-sst2-cilda).")
    output_dir, resume = training_args.output_dir, training_args.resume_from_checkpoint
    with OutputDirLock(output_dir, enabled=training_args.process_index == 0):
        stage = run_stage(output_dir)
        check_stage(training_args, stage)
        if resume and stage == "finished":
            announce(f"{output_dir} holds a finished run ({RESULTS_FILE}): nothing to resume, nothing changed.")
            return read_json(os.path.join(output_dir, RESULTS_FILE))
        if training_args.overwrite_output_dir and not resume and training_args.process_index == 0:
            clear_previous_run(output_dir)
        trained = bool(resume) and stage == "trained" and training_args.do_train
        training_args.resume_from_checkpoint = None if trained else resolve_checkpoint(resume, output_dir)
        return _run(model_args, data_args, training_args, push, trained=trained, resume=bool(resume))


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def _run(model_args, data_args, training_args, push: bool, trained: bool = False, resume: bool = False) -> dict:
    """`trained`: the distilled student was saved by an earlier, interrupted call (its twin was not done): it is
    read back, not trained again."""
    trainer, data = build_trainer(model_args, data_args, training_args)
    output_dir = training_args.output_dir
    # the run record: what ran, and what the run learnt about itself (the teacher's labels and worth, a
    # collapse, the no-KD twin)
    record = run_info(model_args, data_args, training_args, data, trainer)
    results: dict = {}
    if trained:
        results, record = restore_trained(trainer, output_dir)
    elif training_args.do_train:
        results = train_distilled(trainer, data, record)
        if trainer.is_world_process_zero():  # the stage a resume starts from if the twin is interrupted
            with disk_guard(output_dir, 1 << 20, "the training results"):
                write_json_atomic(os.path.join(output_dir, TRAIN_RESULTS_FILE), split_metrics(results, "train"))
                write_json_atomic(os.path.join(output_dir, RUN_INFO_FILE), record)
    if "teacher_check" in record and record["teacher_check"]["score"] is not None:
        results[f"teacher_eval_{record['teacher_check']['metric']}"] = record["teacher_check"]["score"]
    if training_args.do_eval and data.validation is not None:
        results.update(evaluate(trainer, data))
    model_id = training_args.hub_model_id or os.path.basename(os.path.abspath(output_dir))
    sizes = model_sizes(trainer, model_args) if training_args.do_train else None
    saved = (model_args, training_args, results, record)  # what OUTPUT_DIR describes: the distilled student
    if training_args.baseline_twin:
        saved = settle_twins(model_args, data_args, trainer, data, results, record, model_id, sizes, resume)
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, NeptuneCallback):
            callback.close()
    card = None
    if trainer.is_world_process_zero():
        card_args, card_training_args, results, record = saved
        if training_args.do_train:
            card = model_card(model_id, card_args, data_args, card_training_args, results, sizes, record)
        write_run_folder(output_dir, results, record, card)
    if training_args.export_onnx and training_args.do_train and trainer.is_world_process_zero():
        from hf_kd.export import export_run

        validation = data.validation if training_args.do_eval else None
        export_run(output_dir, validation, data.task_name, data.is_regression)
        card = read_text(os.path.join(output_dir, "README.md"))
    if push and card is not None:
        url = push_student(
            output_dir, training_args.hub_model_id, card, training_args.hub_token, training_args.hub_private_repo
        )
        logger.info("Pushed the student to %s.", url)
    return results


def cli() -> None:
    exit_on_argument_error(main)
    leave_process_group()


if __name__ == "__main__":
    cli()
