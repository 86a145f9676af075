"""Command-line / config-file arguments: `run_glue.py`'s names plus the distillation options.

Three dataclasses, parsed by `HfArgumentParser`: `ModelArguments`, `DataTrainingArguments` and
`DistillationTrainingArguments` (a `TrainingArguments`). A YAML or JSON file can stand in for the
command line (`run_glue_kd.py configs/kd.yaml --learning_rate 3e-5`: later arguments win); a file in
the original code's YAML form is translated (see `hf_kd.seed_config`).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments

TERMS = ("ce", "kd", "rail", "crd", "ce_perturbed", "kd_perturbed", "crd_perturbed")


class ArgumentError(ValueError):
    """Bad input found before any work starts; the message names the argument and the fix."""


@dataclass
class ModelArguments:
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
        default=None, metadata={"help": "Tokenizer shared by all models (default: the student's)."}
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


@dataclass
class DataTrainingArguments:
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
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated."})
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every batch to max_seq_length (else dynamic padding)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N validation examples."})
    data_ratio: float = field(
        default=1.0, metadata={"help": "Keep the first fraction (0, 1] of training and validation data."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenisation."})


@dataclass
class DistillationTrainingArguments(TrainingArguments):
    method: str = field(default="kd", metadata={"help": "normal, kd, rail_kd, mate_kd, cilda or cilda_minild."})
    do_train: bool = field(default=True, metadata={"help": "Train (default; --do_train false to only evaluate)."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate on the validation split after training (default)."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow writing over a finished run's results."})
    # student (min step) loss weights; None takes the method's default (METHODS.md)
    weight_ce: float | None = field(default=None, metadata={"help": "Weight of CE(S(x), y)."})
    weight_kd: float | None = field(default=None, metadata={"help": "Weight of KD(T(x), S(x))."})
    weight_rail: float | None = field(default=None, metadata={"help": "Weight of RAIL(T(x), S(x)) (rail_kd)."})
    weight_crd: float | None = field(default=None, metadata={"help": "Weight of CRD(T(x), S(x)) (cilda_minild)."})
    weight_ce_perturbed: float | None = field(default=None, metadata={"help": "Weight of CE(S(e_S), y)."})
    weight_kd_perturbed: float | None = field(default=None, metadata={"help": "Weight of KD(T(e_T), S(e_S))."})
    weight_crd_perturbed: float | None = field(default=None, metadata={"help": "Weight of CRD(T(e_T), S(e_S))."})
    # generator (max step) loss weights
    generator_weight_kd_perturbed: float | None = field(
        default=None, metadata={"help": "Max step: weight of KD(T(e_T), S(e_S))."}
    )
    generator_weight_crd_perturbed: float | None = field(
        default=None, metadata={"help": "Max step: weight of CRD(T(e_T), S(e_S))."}
    )
    kd_temperature: float = field(
        default=1.0, metadata={"help": "KD temperature tau (loss scaled by tau^2); 1 as in the original."}
    )
    crd_temperature: float = field(default=2.0, metadata={"help": "Temperature of the contrastive loss."})
    scale_crd_by_log_batch: bool = field(
        default=False, metadata={"help": "Divide every CRD weight by ln(batch size) (the original's alpha2)."}
    )
    projection_dim: int = field(
        default=128, metadata={"help": "Size of the W_t / W_s projections (the original's `linear`)."}
    )
    rail_pooling: str = field(
        default="masked_mean",
        metadata={
            "help": "RAIL-KD pooling: masked_mean (real tokens) or mean (padding too, as the original).",
            "choices": ["masked_mean", "mean"],
        },
    )
    mlm_probability: float = field(default=0.3, metadata={"help": "Fraction of tokens the generator replaces."})
    mask_mode: str = field(
        default="bernoulli",
        metadata={
            "help": "bernoulli, or fixed_count = exactly floor(p * n) tokens (the original's mask_fix).",
            "choices": ["bernoulli", "fixed_count"],
        },
    )
    static_mask: bool = field(default=False, metadata={"help": "Draw each example's mask once, as the original did."})
    n_generator_iter: int = field(default=10, metadata={"help": "Generator (max) steps per cycle."})
    n_student_iter: int = field(default=100, metadata={"help": "Student (min) steps per cycle."})
    generator_learning_rate: float = field(default=5e-7, metadata={"help": "Learning rate of the generator's AdamW."})
    generator_lr_scheduler_type: str = field(default="constant", metadata={"help": "Scheduler of the generator."})
    generator_max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the generator's gradients (0: off)."})
    cache_teacher_outputs: bool = field(
        default=False,
        metadata={"help": "Compute the teacher's outputs on the clean training set once, store and reuse them."},
    )
    teacher_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where --cache_teacher_outputs stores them (default: $HF_HOME/hf_kd/teacher_outputs)."},
    )
    neptune_project: str | None = field(default=None, metadata={"help": "Neptune project (or NEPTUNE_PROJECT)."})
    neptune_api_token: str | None = field(default=None, metadata={"help": "Neptune API token (or NEPTUNE_API_TOKEN)."})
    neptune_mode: str | None = field(
        default=None,
        metadata={
            "help": "Neptune mode: async (default), offline or debug (or NEPTUNE_MODE).",
            "choices": [None, "async", "sync", "offline", "debug"],
        },
    )
    neptune_tags: list[str] = field(default_factory=list, metadata={"help": "Tags of the Neptune run."})
    neptune_method_label: str | None = field(default=None, metadata={"help": "The original code's `nep_method` field."})
    nonfinite_loss: str = field(
        default="raise",
        metadata={
            "help": "On a NaN/inf loss term: raise (stop, naming the term and step) or skip the batch and count it.",
            "choices": ["raise", "skip"],
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # Neptune is logged by hf_kd's own callback (transformers deprecated its integration)
        self.report_to_neptune = "neptune" in self.report_to
        self.report_to = [name for name in self.report_to if name != "neptune"]
        from hf_kd.trainers import trainer_class

        self.method = trainer_class(self.method).method
        self.loss_weights = self._resolve(trainer_class(self.method).default_weights, "weight_")
        self.generator_loss_weights = self._resolve(
            trainer_class(self.method).default_generator_weights, "generator_weight_"
        )
        if not 0.0 <= self.mlm_probability <= 1.0:
            raise ArgumentError(f"--mlm_probability must lie in [0, 1], got {self.mlm_probability}.")
        if self.n_generator_iter < 0 or self.n_student_iter < 1:
            raise ArgumentError("--n_generator_iter must be >= 0 and --n_student_iter >= 1.")
        if self.projection_dim < 1:
            raise ArgumentError(f"--projection_dim must be positive, got {self.projection_dim}.")

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
            if value < 0:
                raise ArgumentError(f"--{prefix}{term} must be >= 0 (0 switches the term off), got {value}.")
            weights[term] = float(value)
        return weights


def parse_args(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataTrainingArguments, DistillationTrainingArguments]:
    """Parse the command line; a leading .yaml/.yml/.json file supplies defaults that later flags override."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = config_file_to_argv(argv[0]) + argv[1:]
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, DistillationTrainingArguments))
    model_args, data_args, training_args, unknown = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    sweep_flags = [flag for flag in unknown if flag.startswith("--sweep_")]
    if sweep_flags:
        raise ArgumentError(
            f"{', '.join(sweep_flags)} describe a sweep: run `python -m hf_kd.sweep` with the same arguments "
            "(run_glue_kd.py trains one run)."
        )
    if unknown:
        raise ArgumentError(f"Unknown arguments: {' '.join(unknown)}. See `run_glue_kd.py --help` for the options.")
    return model_args, data_args, training_args


def config_file_to_argv(path: str) -> list[str]:
    """Turn a YAML/JSON file of argument names (or the original's YAML form) into command-line flags."""
    if not os.path.isfile(path):
        raise ArgumentError(f"Config file {path} does not exist.")
    text = Path(path).read_text()
    values = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ArgumentError(f"Config file {path} must hold a mapping of argument names to values.")
    from hf_kd.seed_config import is_seed_config, translate_seed_config

    if is_seed_config(values):
        values = translate_seed_config(values, source=path)
    argv: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        argv.extend(str(item) for item in value) if isinstance(value, list) else argv.append(str(value))
    return argv
