"""The arguments: `run_glue.py`'s names plus the distillation options, each numeric one with a valid range.

Three dataclasses, parsed by `HfArgumentParser` (see `hf_kd.config`): `ModelArguments`,
`DataTrainingArguments` and `DistillationTrainingArguments` (a `TrainingArguments`). Every numeric
option, hf_kd's own and the Trainer's commonly set ones, has a range in `VALID_RANGES`: `--help`
shows it and constructing the dataclass checks it, so a value outside it never reaches training.
This module imports nothing of hf_kd but its errors and the term registry (`hf_kd.terms`: one weight
option per declared term): the method names and their default weights are known to `hf_kd.trainers`,
which resolves them (`DistillationTrainingArguments.apply_method`). `--help` groups the options by
concern (`GROUPS`: a field's `group`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field, fields, make_dataclass
from types import MappingProxyType

import torch
from transformers import TrainingArguments

from hf_kd.errors import ArgumentError
from hf_kd.terms import MAX_STEP_TERMS, TERMS

SEED_LIMIT = 2**32 - 1  # numpy's seeds are 32-bit


@dataclass(frozen=True)
class Range:
    """A closed or half-open interval, plus values outside it that carry a meaning (e.g. -1: unset)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    special: tuple = ()
    note: str = ""

    def __contains__(self, value) -> bool:
        if value is None or value in self.special:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            interval = f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}{')' if self.high_open else ']'}"
        elif self.low is not None:
            interval = f"{'>' if self.low_open else '>='} {_number(self.low)}"
        else:
            interval = f"{'<' if self.high_open else '<='} {_number(self.high)}"
        return " or ".join([*(_number(v) for v in self.special), interval])


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


POSITIVE_INT = Range(1)
WEIGHT = Range(0, 1000, note="0 switches the term off")
TEMPERATURE = Range(0.01, 100)
VALID_RANGES: dict[str, Range] = {
    # hf_kd's own options
    "max_seq_length": Range(2, 1_000_000, note="it must also fit the models' position embeddings"),
    "teacher_max_seq_length": Range(2, 1_000_000, note="it must also fit the teacher's position embeddings"),
    "max_train_samples": POSITIVE_INT,
    "max_eval_samples": POSITIVE_INT,
    "max_unlabeled_samples": POSITIVE_INT,
    "data_ratio": Range(0, 1, low_open=True),
    "labelled_share": Range(0, 1, low_open=True, high_open=True),
    "kd_min_confidence": Range(0, 1, high_open=True, note="0 keeps every row"),
    "preprocessing_num_workers": Range(1, 1024),
    **{f"weight_{term}": WEIGHT for term in TERMS},
    **{f"generator_weight_{term}": WEIGHT for term in MAX_STEP_TERMS},
    "kd_temperature": TEMPERATURE,
    "crd_temperature": TEMPERATURE,
    "projection_dim": Range(1, 65536),
    "relation_layer": POSITIVE_INT,
    "relation_heads": POSITIVE_INT,
    "mlm_probability": Range(0, 1),
    "n_generator_iter": Range(0, 1_000_000_000),
    "n_student_iter": Range(1, 1_000_000_000),
    "generator_learning_rate": Range(0, 1, note="0 keeps the generator fixed"),
    "generator_max_grad_norm": Range(0, 1e6, note="0: no clipping"),
    "teacher_check_rows": Range(1, 1_000_000_000),
    "teacher_cache_shard_rows": Range(1, 1_000_000_000),
    "collapse_check_rows": Range(0, 1_000_000_000, note="0: no collapse check"),
    # the Trainer's options users commonly set
    "learning_rate": Range(0, 1, low_open=True),
    "per_device_train_batch_size": Range(1, 1_000_000),
    "per_device_eval_batch_size": Range(1, 1_000_000),
    "gradient_accumulation_steps": Range(1, 1_000_000),
    "eval_accumulation_steps": Range(1, 1_000_000),
    "num_train_epochs": Range(0, 1_000_000, low_open=True),
    "max_steps": Range(1, 1_000_000_000_000, special=(-1,), note="-1: train --num_train_epochs epochs"),
    "warmup_steps": Range(0, 1_000_000_000, note="below 1: a fraction of the training steps"),
    "weight_decay": Range(0, 10),
    "adam_beta1": Range(0, 1, high_open=True),
    "adam_beta2": Range(0, 1, high_open=True),
    "adam_epsilon": Range(0, 1, low_open=True),
    "max_grad_norm": Range(0, 1e6, note="0: no clipping"),
    "label_smoothing_factor": Range(
        0, 0, note="hf_kd's CE has no label smoothing: the teacher's soft labels do that job"
    ),
    "logging_steps": Range(0, 1_000_000_000, low_open=True, note="below 1: a fraction of the training steps"),
    "eval_steps": Range(0, 1_000_000_000, low_open=True, note="below 1: a fraction of the training steps"),
    "save_steps": Range(0, 1_000_000_000, low_open=True, note="below 1: a fraction of the training steps"),
    "save_total_limit": Range(1, 1_000_000),
    "seed": Range(0, SEED_LIMIT),
    "data_seed": Range(0, SEED_LIMIT),
    "dataloader_num_workers": Range(0, 1024),
}


def with_ranges(cls: type) -> type:
    """Append each field's valid range to its `--help` text, and move its `group` (the concern `--help` lists it
    under) out of the metadata argparse reads into `cls.option_groups` (copies of the fields: the Trainer's own
    stay as they are)."""
    cls.option_groups = {}
    for item in fields(cls):
        bound = VALID_RANGES.get(item.name)
        if bound is None and "group" not in item.metadata:
            continue
        described = copy.copy(item)
        metadata = dict(item.metadata)
        if "group" in metadata:
            cls.option_groups[item.name] = metadata.pop("group")
        if bound is not None:
            note = f"; {bound.note}" if bound.note else ""
            metadata["help"] = f"{metadata.get('help', '').rstrip()} Valid: {bound}{note}."
        described.metadata = MappingProxyType(metadata)
        cls.__dataclass_fields__[item.name] = described
    return cls


def check_ranges(arguments) -> None:
    """Refuse the first numeric option outside its range, naming it, the range and the value given."""
    for item in fields(arguments):
        bound = VALID_RANGES.get(item.name)
        value = getattr(arguments, item.name, None)
        if bound is None or isinstance(value, bool) or (not isinstance(value, (int, float)) and value is not None):
            continue
        if value not in bound:
            note = f" ({bound.note})" if bound.note else ""
            raise ArgumentError(f"--{item.name} must be {bound}{note}, got {value}.")


def parse_label_map(value: str | None) -> dict[str, str]:
    """--teacher_label_map: a JSON object of the teacher's label names to the data's."""
    if value is None:
        return {}
    try:
        mapping = json.loads(value)
    except ValueError as error:
        raise ArgumentError(
            f"--teacher_label_map {value!r} is not JSON ({error.msg}): give an object of the teacher's label names "
            """to the data's, e.g. '{"LABEL_POS": "positive", "LABEL_NEG": "negative"}'."""
        ) from None
    if not isinstance(mapping, dict) or not all(isinstance(v, (str, int)) for v in mapping.values()):
        raise ArgumentError(
            f"--teacher_label_map {value!r} must be a JSON object of the teacher's label names to the data's."
        )
    return {str(key): str(name) for key, name in mapping.items()}


def launched_processes() -> int:
    """How many processes a launcher (torchrun, accelerate launch, mpirun) started for this job: 1 if none."""
    for name in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def _has_accelerator(use_cpu: bool) -> bool:
    """Whether training may run on an accelerator (pinned host memory helps only there)."""
    if use_cpu:
        return False
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


@dataclass
class ModelArguments:
    _argument_group_name = "models: student, teacher, generator, tokenizers"
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The student: a model name on the Hub or a local directory.",
            "aliases": ["--student_name_or_path"],
        },
    )
    teacher_name_or_path: str | None = field(
        default=None,
        metadata={"help": "The teacher: a fine-tuned classifier, or a base model with --teacher_state_dict."},
    )
    teacher_state_dict: str | None = field(
        default=None,
        metadata={"help": "A state-dict file (.bin/.pt/.safetensors) with the teacher's fine-tuned weights."},
    )
    generator_name_or_path: str | None = field(
        default=None, metadata={"help": "The masked-LM generator of MATE-KD / CILDA / CILDA+minILD."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "The student's (and generator's) tokenizer (default: the student's own)."}
    )
    teacher_tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The teacher's tokenizer (default: the one saved with the teacher, else the student's). When its "
            "vocabulary differs from the student's, every example is also tokenised with it for the teacher."
        },
    )
    teacher_label_map: str | None = field(
        default=None,
        metadata={
            "help": "The teacher's label names paired with the data's when they are spelt differently, as a JSON "
            """object (e.g. '{"LABEL_POS": "positive", "LABEL_NEG": "negative"}'). Without it labels match by name """
            "(case-insensitive), and data labels that are the integers 0..n-1 read the teacher by position."
        },
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models are stored."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the models on the Hub."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow models with custom code from the Hub."})
    teacher_dtype: str = field(
        default="auto",
        metadata={
            "help": "Teacher precision: auto (as loaded), float32, bfloat16 or float16.",
            "choices": ["auto", "float32", "bfloat16", "float16"],
        },
    )

    teacher_device_map: str | None = field(
        default=None,
        metadata={
            "help": "Spread a teacher too large for one accelerator over this machine's (accelerate's big-model "
            "inference: auto, balanced, sequential); one process only, for `python -m hf_kd.teacher_pass` or a run.",
            "choices": ["auto", "balanced", "balanced_low_0", "sequential"],
        },
    )

    def __post_init__(self) -> None:
        self.teacher_label_pairs = parse_label_map(self.teacher_label_map)
        if self.teacher_device_map and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ArgumentError(
                f"--teacher_device_map {self.teacher_device_map} spreads the teacher over every accelerator of the "
                "machine: run one process (not torchrun / accelerate launch with several), or drop it."
            )


@with_ranges
@dataclass
class DataTrainingArguments:
    _argument_group_name = "data: files, columns, labels, lengths"
    task_name: str | None = field(
        default=None, metadata={"help": "GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli)."}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "csv / tsv / json / jsonl training file (GLUE column names)."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "csv / tsv / json / jsonl validation file."})
    unlabeled_file: str | None = field(
        default=None,
        metadata={
            "help": "Text-only training examples (same formats and text columns as --train_file, the label column "
            "absent or empty): they learn from the teacher's terms only, never from CE. Rows with an empty label "
            "inside --train_file count as unlabelled too."
        },
    )
    max_unlabeled_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N examples of --unlabeled_file."}
    )
    labelled_share: float | None = field(
        default=None,
        metadata={
            "help": "Repeat the labelled training rows so that they make at least this share of the training "
            "rows (e.g. 0.5: about half of every batch carries a label). Without unlabelled rows it changes nothing."
        },
    )
    text_column_names: str | None = field(
        default=None,
        metadata={
            "help": "The text column(s) of local data files, comma-separated: one, or two for sentence pairs "
            "(e.g. 'text' or 'question,passage'). Default: GLUE's names (sentence, sentence1/sentence2, ...) or 'text'."
        },
    )
    label_column_name: str | None = field(
        default=None,
        metadata={
            "help": "The gold-label column of local data files (default 'label'). String labels become ids in "
            "sorted order (integers in number order), saved in the student's config as id2label. Integer labels "
            "0..n-1 are positions: they read a teacher's outputs in its order, and the student takes its names."
        },
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated."})
    teacher_max_seq_length: int | None = field(
        default=None,
        metadata={
            "help": "Truncation of the teacher's own tokenization (another tokenizer): default --max_seq_length."
        },
    )
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every batch to max_seq_length (else dynamic padding)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N validation examples."})
    data_ratio: float = field(
        default=1.0, metadata={"help": "Keep the first fraction (0, 1] of training and validation data."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenisation."})

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.text_column_names is not None and not 1 <= len(self.text_columns) <= 2:
            raise ArgumentError(
                f"--text_column_names takes one column name, or two for sentence pairs, separated by a comma; "
                f"got {self.text_column_names!r}."
            )
        if self.label_column_name is not None and not self.label_column_name.strip():
            raise ArgumentError("--label_column_name is empty: name the data's gold-label column.")

    @property
    def text_columns(self) -> tuple[str, ...]:
        """--text_column_names as a tuple of names (empty when not given)."""
        if self.text_column_names is None:
            return ()
        return tuple(name.strip() for name in self.text_column_names.split(",") if name.strip())


def option(default, help: str, group: str, **metadata):
    """A dataclass field with its `--help` text and the group `--help` lists it under (`GROUPS`)."""
    return field(default=default, metadata={"help": help, "group": group, **metadata})


# `--help` lists hf_kd's training options by concern; the Trainer's own follow in its group
GROUPS = {
    "distillation": "distillation: the method, its loss terms and the KD options",
    "adversarial": "adversarial methods (MATE-KD, CILDA, CILDA+minILD): generator, masking, schedule",
    "diagnostics": "diagnostics: teacher check, collapse guard, no-KD twin, non-finite losses",
    "deployment": "deployment: the student as ONNX and int8",
    "tracking": "tracking (Neptune)",
    "quirks": "the original code's quirks (each off by default; on reproduces the original)",
}


def _weight_fields() -> type:
    """`--weight_<term>` for every term and `--generator_weight_<term>` for the max step's, from the registry."""
    weights = [
        (f"weight_{name}", float | None, option(None, f"Weight of {term.formula}.", "distillation"))
        for name, term in TERMS.items()
    ]
    weights += [
        (f"generator_weight_{name}", float | None, option(None, f"Max step: weight of {term.formula}.", "adversarial"))
        for name, term in TERMS.items()
        if term.max_step
    ]
    return make_dataclass("LossWeightArguments", weights)


LossWeightArguments = _weight_fields()


@with_ranges
@dataclass
class DistillationTrainingArguments(TrainingArguments, LossWeightArguments):
    # which method, and the run's shape (run_glue.py's defaults)
    method: str = option("kd", "normal, kd, rail_kd, mate_kd, cilda, cilda_minild, tinybert or minilm.", "distillation")
    do_train: bool = field(default=True, metadata={"help": "Train (default; --do_train false to only evaluate)."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate on the validation split after training (default)."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow writing over a finished run's results."})
    # distillation: the loss weights (`LossWeightArguments`; None takes the method's default) and KD's options
    kd_temperature: float = option(
        1.0, "KD temperature tau (loss scaled by tau^2); 1 as in the original.", "distillation"
    )
    kd_row_weighting: str = option(
        "none",
        "Weight of each row in the KD terms: none, confidence (the teacher's top probability) or class_balanced "
        "(1 / (classes x the share of training rows the teacher predicts the row's class for)).",
        "distillation",
        choices=["none", "confidence", "class_balanced"],
    )
    kd_min_confidence: float = option(
        0.0, "Leave rows whose teacher top probability is below this out of the KD terms.", "distillation"
    )
    crd_temperature: float = option(2.0, "Temperature of the contrastive loss.", "distillation")
    layer_map: str | None = option(
        None,
        "TinyBERT's layer map: the teacher layer (1-based) each student layer reads, comma-separated (e.g. 3,6 for a "
        "2-layer student of a 6-layer teacher). Default: uniform, round(i x L_t / L_s).",
        "distillation",
    )
    relation_layer: int | None = option(
        None,
        "MiniLM: the teacher layer (1-based) whose self-attention relations the student's last layer learns "
        "(default: the last).",
        "distillation",
    )
    relation_heads: int | None = option(
        None,
        "MiniLM: relation heads (default: the student's attention heads; must divide both hidden sizes).",
        "distillation",
    )
    projection_dim: int = option(128, "Size of the W_t / W_s projections (the original's `linear`).", "distillation")
    contrastive_negatives: str = option(
        "effective_batch",
        "effective_batch: the contrastive terms compare every row with all rows of the optimizer step (all "
        "micro-batches and processes), so the update does not depend on the batch layout; micro_batch: with the "
        "rows of its own micro-batch on its own process, as the original's accelerate loop did.",
        "distillation",
        choices=["effective_batch", "micro_batch"],
    )
    cache_teacher_outputs: bool = option(
        False, "Compute the teacher's outputs on the clean training set once, store and reuse them.", "distillation"
    )
    teacher_cache_dir: str | None = option(
        None, "Where --cache_teacher_outputs stores them (default: $HF_HOME/hf_kd/teacher_outputs).", "distillation"
    )
    teacher_cache_dtype: str = option(
        "float32",
        "How --cache_teacher_outputs stores the outputs: float16 / bfloat16 halve the disk and the pages read (the "
        "losses still compute in float32).",
        "distillation",
        choices=["float32", "float16", "bfloat16"],
    )
    teacher_cache_shard_rows: int = option(
        8192,
        "Rows per shard of the teacher-output cache: each process computes its own shards; an interrupted pass "
        "resumes from the shards written.",
        "distillation",
    )
    # adversarial methods
    mlm_probability: float = option(0.3, "Fraction of tokens the generator replaces.", "adversarial")
    n_generator_iter: int = option(10, "Generator (max) steps per cycle.", "adversarial")
    n_student_iter: int = option(100, "Student (min) steps per cycle.", "adversarial")
    generator_learning_rate: float = option(5e-7, "Learning rate of the generator's AdamW.", "adversarial")
    generator_lr_scheduler_type: str = option("constant", "Scheduler of the generator.", "adversarial")
    generator_max_grad_norm: float = option(1.0, "Clip the generator's gradients (0: off).", "adversarial")
    keyed_sampling: bool = option(
        False,
        "Draw the adversarial methods' masks and sampling noise from generators keyed by (seed, example, step), so "
        "that a run gives the same student under any batch layout (gradient accumulation, number of processes). "
        "Costs a few small draws and one host read per step.",
        "adversarial",
    )
    # diagnostics
    check_teacher: bool = option(
        True,
        "Before training, score the teacher on the validation data (its metric against always predicting the most "
        "frequent class) and read its confidence and class balance on the unlabelled text; warn when it looks "
        "unlikely to help. Written to hf_kd_run.json and the model card.",
        "diagnostics",
    )
    teacher_check_rows: int = option(
        2000, "Unlabelled rows the teacher check reads without --cache_teacher_outputs (with it: all).", "diagnostics"
    )
    baseline_twin: bool = option(
        False,
        "Also train the same student with the same data, seed and number of optimizer steps without the teacher "
        "(method normal, labelled rows only) into OUTPUT_DIR/no_kd_twin, and report the paired difference in "
        "all_results.json, hf_kd_run.json and the model card.",
        "diagnostics",
    )
    load_best_of_twins: bool = option(
        False,
        "With --baseline_twin: save as the student the better of the two on the validation data (the distilled one "
        "stays in OUTPUT_DIR/distilled when the twin wins).",
        "diagnostics",
    )
    collapse_check_rows: int = option(
        512,
        "At each logging step, the student's predictions on this many validation rows (labelled training rows "
        "without validation data): warn when one class takes over 95% of them and not of their labels, and the "
        "collapse persists (0: off).",
        "diagnostics",
    )
    stop_on_collapse: bool = option(
        False, "Stop training when the collapse check fires (the student as it then is gets saved).", "diagnostics"
    )
    nonfinite_loss: str = option(
        "raise",
        "On a NaN/inf loss term: raise (stop, naming the term and step) or skip the batch and count it.",
        "diagnostics",
        choices=["raise", "skip"],
    )
    logging_nan_inf_filter: bool = option(
        False,
        "The Trainer's NaN filter of logged losses (off: it reads the loss on the host every step; "
        "--nonfinite_loss handles non-finite losses).",
        "diagnostics",
    )
    export_onnx: bool = option(
        False,
        "After training: the student as ONNX and int8 (OUTPUT_DIR/onnx), checked against it on the validation data "
        "and timed (python -m hf_kd.export; needs pip install -e .[export]).",
        "deployment",
    )
    # tracking
    neptune_project: str | None = option(None, "Neptune project (or NEPTUNE_PROJECT).", "tracking")
    neptune_api_token: str | None = option(None, "Neptune API token (or NEPTUNE_API_TOKEN).", "tracking")
    neptune_mode: str | None = option(
        None,
        "Neptune mode: async (default), offline or debug (or NEPTUNE_MODE).",
        "tracking",
        choices=[None, "async", "sync", "offline", "debug"],
    )
    neptune_tags: list[str] = field(
        default_factory=list, metadata={"help": "Tags of the Neptune run.", "group": "tracking"}
    )
    neptune_method_label: str | None = option(None, "The original code's `nep_method` field.", "tracking")
    # the original code's quirks, each a switch (METHODS.md, "(quirk)")
    scale_crd_by_log_batch: bool = option(
        False, "Divide every CRD weight by ln(batch size) (the original's alpha2).", "quirks"
    )
    rail_pooling: str = option(
        "masked_mean",
        "RAIL-KD pooling: masked_mean (real tokens) or mean (padding too, as the original).",
        "quirks",
        choices=["masked_mean", "mean"],
    )
    mask_mode: str = option(
        "bernoulli",
        "bernoulli, or fixed_count = exactly floor(p * n) tokens (the original's mask_fix).",
        "quirks",
        choices=["bernoulli", "fixed_count"],
    )
    static_mask: bool = option(False, "Draw each example's mask once, as the original did.", "quirks")
    student_dropout_in_generator_step: bool = option(
        False,
        "Keep the student's dropout on in the generator (max) step (the original runs it in eval mode).",
        "quirks",
    )

    def __post_init__(self) -> None:
        check_ranges(self)  # before the Trainer's own checks see a value out of range
        if launched_processes() > 1 and not self.use_cpu and not _has_accelerator(False):
            # torchrun / accelerate launch on a machine without accelerators: data parallel over gloo on the CPU,
            # as --use_cpu true does (without it every process trains alone and they fight over --output_dir)
            self.use_cpu = True
        super().__post_init__()
        # Neptune is logged by hf_kd's own callback (transformers deprecated its integration)
        self.report_to_neptune = "neptune" in self.report_to
        self.report_to = [name for name in self.report_to if name != "neptune"]
        self.loss_weights: dict[str, float] | None = None  # set by apply_method
        self.generator_loss_weights: dict[str, float] | None = None
        if self.dataloader_pin_memory and not _has_accelerator(self.use_cpu):
            self.dataloader_pin_memory = False  # nothing to pin for; torch would warn on every dataloader

    def apply_method(self, method: str, defaults: dict[str, float], generator_defaults: dict[str, float]) -> None:
        """Settle on a method (a canonical name, from `hf_kd.trainers`): its default weights, overridden by
        the weights given; a weight the method lacks is an error."""
        self.method = method
        self.loss_weights = self._resolve(defaults, "weight_")
        self.generator_loss_weights = self._resolve(generator_defaults, "generator_weight_")

    def _resolve(self, defaults: dict[str, float], prefix: str) -> dict[str, float]:
        """Method defaults overridden by the weights given; a weight the method lacks is an error."""
        weights = dict(defaults)
        for term in TERMS:
            value = getattr(self, prefix + term, None)
            if value is None:
                continue
            if term not in defaults:
                raise ArgumentError(
                    f"--{prefix}{term} is not a loss term of method '{self.method}' "
                    f"(its {prefix.rstrip('_')} terms: {', '.join(defaults) or 'none'}). Remove it or pick another --method."
                )
            weights[term] = float(value)
        return weights
