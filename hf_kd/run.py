"""The main job: arguments -> data -> models -> trainer -> results (`scripts/run_glue_kd.py`)."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile

import datasets
import torch
import transformers
from safetensors import safe_open
from transformers import TrainerState, set_seed

from hf_kd.adapters import adapter_for
from hf_kd.arguments import TERMS
from hf_kd.callbacks import NeptuneCallback, neptune_settings, run_parameters
from hf_kd.config import parse_args
from hf_kd.data import DistillationCollator, prepare_data
from hf_kd.diagnostics import CollapseGuard, TeacherWorth, assess_teacher, collapse_causes, labelled_rows
from hf_kd.errors import ArgumentError, DiskFullError, NonFiniteLossError, TrainingInterrupted, brief
from hf_kd.footprint import parameter_count, size_on_disk
from hf_kd.guards import GracefulStop, OutputDirLock, disk_guard
from hf_kd.hub import is_student_file, model_card, push_student
from hf_kd.metrics import build_compute_metrics, main_metric
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
from hf_kd.trainers import AdversarialTrainer, DistillationTrainer, configure_method

logger = logging.getLogger("hf_kd")
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
        "student": model_args.model_name_or_path,
        "generator": model_args.generator_name_or_path if getattr(trainer, "generator", None) is not None else None,
        "loss_weights": training_args.loss_weights,
        "generator_loss_weights": training_args.generator_loss_weights,
        "train_labelled_samples": data.labelled,
        "train_unlabelled_samples": data.unlabelled,
        "train_labelled_repeats": data.labelled_repeats,
        "kd_row_weighting": training_args.kd_row_weighting,
        "kd_min_confidence": training_args.kd_min_confidence,
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


def checkpoint_problem(folder: str) -> str | None:
    """Why `folder` is not a complete checkpoint, or None when it is.

    The Trainer writes `trainer_state.json` after the weights, optimizer, scheduler and hf_kd's extras,
    so a save cut short (a killed process, a full disk) leaves none; the weights' headers are read too.
    """
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            json.load(f)
    except (OSError, ValueError):
        return "no readable trainer_state.json"
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".safetensors"):
                try:
                    with safe_open(os.path.join(root, name), framework="pt"):
                        pass
                except Exception:  # safetensors' own error for a file cut short
                    return f"{os.path.relpath(os.path.join(root, name), folder)} does not read back"
    return None


def resolve_checkpoint(value: str | None, output_dir: str) -> str | None:
    """`--resume_from_checkpoint` as a path, or `last` / `true`: the newest complete checkpoint in --output_dir,
    naming each newer one it skips (`checkpoint_problem`)."""
    if value is None:
        return None
    if value.lower() in ("last", "latest", "true"):
        folders = (
            [os.path.join(output_dir, d) for d in os.listdir(output_dir) if d.startswith("checkpoint-")]
            if os.path.isdir(output_dir)
            else []
        )
        for folder in sorted(folders, key=lambda f: int(f.rsplit("-", 1)[-1]), reverse=True):
            problem = checkpoint_problem(folder)
            if problem is None:
                return folder
            logger.warning("Skipping %s, an incomplete checkpoint (%s).", folder, problem)
        raise ArgumentError(f"--resume_from_checkpoint {value}: {output_dir} holds no complete checkpoint-* folder.")
    problem = checkpoint_problem(value)
    if problem is not None:
        raise ArgumentError(
            f"--resume_from_checkpoint {value} is not a complete checkpoint ({problem}): "
            "pass an earlier checkpoint, or `last` for the newest complete one."
        )
    return value


def keep_freed_memory() -> bool:
    """On Linux with glibc, keep freed memory for reuse instead of handing it back to the system.

    By default glibc returns freed blocks above a threshold (and the heap's top) to the system, so a
    CPU training step maps its activations afresh every step: ~18,000 page faults a step, and the
    copies and GEMM outputs that first touch the pages pay for them. The process keeps at most its
    peak memory instead. Returns whether the setting was applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters (malloc.h)
    return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**30))


def setup_logging(training_args) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def unlabelled_without_teacher(method: str, what: str) -> str:
    return (
        f"Method '{method}' learns from labels only, so {what} would teach the student nothing: use a "
        "distillation method (e.g. --method kd with --teacher_name_or_path), or give those rows labels."
    )


def check_sentence_positions(data, models: dict, tokenizer, teacher_tokenizer) -> None:
    """Each model finds its sentence position in its own tokenization of a few training examples (BART needs an
    end-of-sequence token), before any training."""
    if data.train is None or len(data.train) == 0:
        return
    sample = [data.train[i] for i in range(min(4, len(data.train)))]
    batch = DistillationCollator(tokenizer, teacher_tokenizer=teacher_tokenizer)(sample)
    for role, model in models.items():
        if role == "generator":
            continue
        view = DistillationTrainer.teacher_view(batch) if role == "teacher" else batch
        adapter_for(model).sentence_positions(view)


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
    adversarial = issubclass(method, AdversarialTrainer)
    needs_teacher = adversarial or any(w > 0 for t, w in training_args.loss_weights.items() if t != "ce")
    check_twin_arguments(training_args, data_args, needs_teacher)
    if needs_teacher and not model_args.teacher_name_or_path:
        raise ArgumentError(f"Method '{method.method}' needs a teacher: pass --teacher_name_or_path.")
    if adversarial and not model_args.generator_name_or_path:
        raise ArgumentError(f"Method '{method.method}' needs a masked-LM generator: pass --generator_name_or_path.")
    if data_args.unlabeled_file and not needs_teacher:
        raise ArgumentError(unlabelled_without_teacher(method.method, "--unlabeled_file"))
    roles = ["student", *(["teacher"] if needs_teacher else []), *(["generator"] if adversarial else [])]
    check_model_configs(model_args, data_args.max_seq_length, roles, data_args.teacher_max_seq_length)
    neptune = neptune_settings(training_args) if training_args.report_to_neptune else None
    set_seed(training_args.seed)

    tokenizer = load_tokenizer(model_args)
    if adversarial and tokenizer.mask_token_id is None:
        raise ArgumentError(
            f"Method '{method.method}' masks tokens but the tokenizer has no mask token: use --tokenizer_name with one."
        )
    teacher_tokenizer = load_teacher_tokenizer(model_args, tokenizer) if needs_teacher else None
    data = prepare_data(
        data_args,
        tokenizer,
        seed=training_args.seed,
        static_mask_probability=training_args.mlm_probability if adversarial and training_args.static_mask else None,
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
    teacher = generator = labels_read = None
    if needs_teacher:  # first: with integer labels the student takes the teacher's label names
        teacher = load_teacher(model_args, data)
        labels_read = match_teacher_labels(teacher.config, data, model_args.teacher_label_pairs)
        if labels_read is not None:
            data.label_list = labels_read.names
            log = logger.warning if labels_read.how == "by position" else logger.info
            log("The teacher's labels are %s.", labels_read.text())
    student = load_student(model_args, data)
    models, sources = {"student": student}, {"student": model_args.model_name_or_path}
    if teacher is not None:
        models["teacher"], sources["teacher"] = teacher, model_args.teacher_name_or_path
    if adversarial:
        generator = load_generator(model_args)
        models["generator"], sources["generator"] = generator, model_args.generator_name_or_path
    check_compatible(tokenizer, models, sources, model_args, teacher_tokenizer)
    check_sentence_positions(data, models, tokenizer, teacher_tokenizer)

    extra = {"generator": generator} if adversarial else {}
    pad_to = 8 if training_args.bf16 or training_args.fp16 else None
    try:
        # the optimizer is made when training starts: check now, before the Trainer makes --output_dir
        method.get_optimizer_cls_and_kwargs(training_args, student)
        trainer = method(
            model=student,
            teacher=teacher,
            teacher_label_order=None if labels_read is None else labels_read.order,
            teacher_tokenizer=teacher_tokenizer,
            teacher_max_length=data_args.teacher_max_seq_length or data_args.max_seq_length,
            args=training_args,
            train_dataset=data.train if training_args.do_train else None,
            eval_dataset=data.validation if training_args.do_eval else None,
            processing_class=tokenizer,
            data_collator=DistillationCollator(
                tokenizer, pad_to_multiple_of=pad_to, teacher_tokenizer=teacher_tokenizer
            ),
            compute_metrics=build_compute_metrics(data.task_name, data.is_regression),
            **extra,
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


def announce(text: str) -> None:
    """A line every user sees (the log's default level hides info) from the main process, as the Trainer
    prints its metrics."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(text, flush=True)


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


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
        sizes["teacher"] = {"parameters": parameter_count(trainer.teacher), "size_on_disk_mb": on_disk}
    return sizes


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
    if push and card is not None:
        url = push_student(
            output_dir, training_args.hub_model_id, card, training_args.hub_token, training_args.hub_private_repo
        )
        logger.info("Pushed the student to %s.", url)
    return results


def split_metrics(results: dict, split: str) -> dict:
    return {key: value for key, value in results.items() if key.startswith(split)}


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
    trainer.prepare_teacher_cache()  # the check reads the unlabelled rows from it when there is one
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


def exit_on_argument_error(function, program: str = "hf_kd") -> None:
    """Run a command-line entry point; bad input ends it with one line and exit status 2, a loss that
    diverged or a full disk with one line and status 1, a SIGTERM with a checkpoint and a line on how to
    resume, status 143: a traceback is left for bugs in hf_kd. Open progress bars are closed first, so the
    line is the last a user sees."""
    try:
        function()
    except ArgumentError as error:
        close_progress_bars()
        print(f"{program}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLossError as error:
        close_progress_bars()
        print(f"{program}: training stopped: {error}", file=sys.stderr)
        sys.exit(1)
    except DiskFullError as error:
        close_progress_bars()
        print(f"{program}: error: {error}", file=sys.stderr)
        sys.exit(1)
    except TrainingInterrupted as error:
        close_progress_bars()
        print(f"{program}: {error}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)  # as a process ended by SIGTERM, so schedulers see a preemption


def close_progress_bars() -> None:
    """Close every open tqdm bar (the Trainer's, datasets', ...): their last redraw would follow the message."""
    from tqdm import tqdm

    classes = [tqdm]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        for bar in list(cls.__dict__.get("_instances", ())):
            bar.close()


def leave_process_group() -> None:
    """End a torchrun job's process group after its last collective (the final evaluation).

    A gloo group left for the interpreter's exit to tear down can abort a rank that finished
    ("terminate called without an active exception"), failing a run that succeeded. No barrier:
    rank 0 may still be pushing to the Hub, which needs no other rank.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def cli() -> None:
    exit_on_argument_error(main)
    leave_process_group()


if __name__ == "__main__":
    cli()
