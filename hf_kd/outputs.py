"""What a run writes into --output_dir, and what a folder already holds.

The files that describe the saved model (`hf_kd_run.json`, the results files, the card) are written
through atomic renames, `all_results.json` last: its presence marks a finished run (`run_stage`). A
finished or half-done run is never overwritten or started again silently (`check_stage`);
`--overwrite_output_dir` removes what the old run wrote (`clear_previous_run`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

from hf_kd.errors import ArgumentError
from hf_kd.footprint import parameter_count, size_on_disk
from hf_kd.guards import disk_guard
from hf_kd.metrics import main_metric

RESULTS_FILE = "all_results.json"
TRAIN_RESULTS_FILE = "train_results.json"
EVAL_RESULTS_FILE = "eval_results.json"
RUN_INFO_FILE = "hf_kd_run.json"
TWIN_FOLDER = "no_kd_twin"  # --baseline_twin's student, in the output folder
DISTILLED_FOLDER = "distilled"  # the distilled student when --load_best_of_twins keeps the twin


def write_text_atomic(path: str, text: str) -> None:
    """Write a file through a temporary file and a rename, so a crash never leaves half a file."""
    folder = os.path.dirname(path) or "."
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as f:
        scratch = f.name
        try:
            f.write(text)
            f.flush()
        except BaseException:
            f.close()
            os.remove(scratch)
            raise
    os.replace(scratch, path)


def write_json_atomic(path: str, values: dict) -> None:
    write_text_atomic(path, json.dumps(values, indent=4, sort_keys=True))


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def split_metrics(results: dict, split: str) -> dict:
    return {key: value for key, value in results.items() if key.startswith(split)}


def run_info(model_args, data_args, training_args, data, trainer) -> dict:
    """What `hf_kd.report` and sweeps need to know about a run (the teacher only where one ran)."""
    record = {
        "method": training_args.method,
        "task": data.task_name or os.path.basename(str(data_args.train_file)),
        "data": data_identity(data_args),
        "main_metric": main_metric(data.task_name, data.is_regression),
        "learning_rate": training_args.learning_rate,
        "seed": training_args.seed,
        "teacher": model_args.teacher_name_or_path if trainer.teacher is not None else None,
        "teacher_tokenizer": model_args.teacher_tokenizer_name_or_path if trainer.teacher is not None else None,
        "student": model_args.model_name_or_path,
        "generator": model_args.generator_name_or_path if getattr(trainer, "generator", None) is not None else None,
        "loss_weights": training_args.loss_weights,
        "generator_loss_weights": training_args.generator_loss_weights,
        "train_labelled_samples": data.labelled,
        "train_unlabelled_samples": data.unlabelled,
        "train_labelled_repeats": data.labelled_repeats,
        "kd_row_weighting": training_args.kd_row_weighting,
        "kd_min_confidence": training_args.kd_min_confidence,
        # how to read the data again (`python -m hf_kd.export` checks the exports on the validation rows)
        "data_args": {
            name: getattr(data_args, name)
            for name in ("task_name", "train_file", "validation_file", "text_column_names", "label_column_name")
        }
        | {"max_seq_length": data_args.max_seq_length},
    }
    if trainer.labels_read is not None:
        record["teacher_labels"] = trainer.labels_read.as_dict()
    return record


def data_identity(data_args) -> str:
    """Which data a run read, for grouping runs: the GLUE task, or the training file's full path and the first
    12 hex digits of its content's SHA-256 (two `train.csv` of different tasks are two data sets)."""
    if not data_args.train_file:
        return f"glue/{data_args.task_name}"
    path = os.path.abspath(data_args.train_file)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{path}#{digest.hexdigest()[:12]}"


def save_student(trainer, output_dir: str) -> None:
    """`save_model` into a scratch folder, then move each file into place with an atomic rename."""
    scratch = os.path.join(output_dir, ".hf_kd_saving")
    try:
        trainer.save_model(scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    if trainer.args.should_save:
        for name in os.listdir(scratch):
            os.replace(os.path.join(scratch, name), os.path.join(output_dir, name))
        os.rmdir(scratch)


def model_sizes(trainer, model_args) -> dict[str, dict]:
    """Parameters and weights on disk of the saved student and, where it ran, the teacher (for the card)."""
    sizes = {
        "student": {
            "parameters": parameter_count(trainer.model),
            "size_on_disk_mb": size_on_disk(trainer.args.output_dir) / 2**20,
        }
    }
    if trainer.teacher is not None:
        folder = model_args.teacher_name_or_path
        on_disk = size_on_disk(folder) / 2**20 if os.path.isdir(folder) else None
        sizes["teacher"] = {"parameters": parameter_count(trainer.teacher.model), "size_on_disk_mb": on_disk}
    return sizes


def write_run_folder(folder: str, results: dict, record: dict, card: str | None) -> None:
    """The files that describe the model saved in `folder`: hf_kd_run.json, train_results.json /
    eval_results.json, the card, and all_results.json last (its presence marks a finished run)."""
    with disk_guard(folder, 1 << 20, "the results"):
        os.makedirs(folder, exist_ok=True)
        write_json_atomic(os.path.join(folder, RUN_INFO_FILE), record)
        for split, name in (("train", TRAIN_RESULTS_FILE), ("eval", EVAL_RESULTS_FILE)):
            if split_metrics(results, split):
                write_json_atomic(os.path.join(folder, name), split_metrics(results, split))
        if card is not None:
            write_text_atomic(os.path.join(folder, "README.md"), card)
        write_json_atomic(os.path.join(folder, RESULTS_FILE), results)


def check_output_dir(training_args) -> None:
    """A folder hf_kd can create or write into (what a run already there holds: `check_stage`)."""
    folder = training_args.output_dir
    existing = os.path.abspath(folder)  # the folder, or its nearest ancestor that exists
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ArgumentError(
            f"--output_dir {folder}: {existing} is an existing file, not a folder. Pick another --output_dir."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ArgumentError(f"--output_dir {folder}: {existing} is not writable. Pick a folder you can write to.")


def run_stage(folder: str) -> str:
    """How far a run in `folder` got: "finished" (all_results.json, written last), "trained" (the distilled
    student saved with train_results.json, its twin or evaluation not done), "interrupted" (checkpoints only)
    or "new"."""
    if os.path.isfile(os.path.join(folder, RESULTS_FILE)):
        return "finished"
    if all(os.path.isfile(os.path.join(folder, name)) for name in (TRAIN_RESULTS_FILE, RUN_INFO_FILE)):
        return "trained"
    if os.path.isdir(folder) and any(name.startswith("checkpoint-") for name in os.listdir(folder)):
        return "interrupted"
    return "new"


def check_stage(training_args, stage: str) -> None:
    """Nothing finished or half-done in --output_dir is overwritten, or started again, unless asked."""
    folder, resume = training_args.output_dir, training_args.resume_from_checkpoint
    if training_args.overwrite_output_dir or stage == "new" or (resume and stage != "finished"):
        return
    if stage == "finished" and resume:
        return  # said to be finished by `main`, nothing changed
    if stage == "finished":
        raise ArgumentError(
            f"{folder} already holds a finished run ({RESULTS_FILE}). Pick another --output_dir, "
            "or pass --overwrite_output_dir to replace it."
        )
    what = "its student is trained but the run did not finish" if stage == "trained" else "it holds checkpoints"
    raise ArgumentError(
        f"{folder} holds an interrupted run ({what}): pass --resume_from_checkpoint last to continue it, or "
        "--overwrite_output_dir to start again."
    )


def clear_previous_run(folder: str) -> None:
    """What an earlier run wrote in `folder` (results, record, card, checkpoints, distilled/ and no_kd_twin/):
    --overwrite_output_dir starts again, so nothing of the old run is left to be mistaken for the new one's."""
    if not os.path.isdir(folder):
        return
    outputs = {RESULTS_FILE, RUN_INFO_FILE, TRAIN_RESULTS_FILE, EVAL_RESULTS_FILE, "README.md", "trainer_state.json"}
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name in (TWIN_FOLDER, DISTILLED_FOLDER) or name.startswith("checkpoint-"):
            shutil.rmtree(path, ignore_errors=True)
        elif name in outputs:
            os.remove(path)
