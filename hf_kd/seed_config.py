"""Translate the original code's YAML experiment files into hf_kd arguments (METHODS.md, last table).

`run_glue_kd.py old_experiment.yaml` works: the file is recognised by its keys, translated, and the
equivalent command line is printed. Keys without an equivalent are named in an error.

A translated file reproduces what the original code computed, where hf_kd's own defaults differ
(`ORIGINAL_TRAINING_LOOP`, and per method below): no gradient clipping, a constant schedule, the
last incomplete batch dropped, one mask per example drawn while preprocessing, contrastive negatives
from each device's micro-batch, RAIL pooled over padding, and MATE's generator step weighted by
`lambdas[2]`.
"""

from __future__ import annotations

import shlex

from hf_kd.data import TASK_TO_KEYS
from hf_kd.errors import ArgumentError
from hf_kd.metrics import main_metric
from hf_kd.trainers import trainer_class

# keys only the original's files have: one of them marks a file as a seed config
SEED_ONLY_KEYS = {
    "lambdas",
    "lambda_nume",
    "lambda_deno",
    "alpha",
    "alpha2",
    "outdir",
    "model_name",
    "mlm_prob",
    "num_of_ex",
    "tasks",
    "wd",
    "batch_size",
    "epochs",
    "lr",
    "max_length",
    "linear",
    "sent_pool",
    "mask_fix",
    "use_neptune",
}
RENAMED = {
    "student": "model_name_or_path",
    "teacher": "teacher_name_or_path",
    "generator": "generator_name_or_path",
    "tokenizer": "tokenizer_name",
    "data_ratio": "data_ratio",
    "lr_scheduler_type": "lr_scheduler_type",
    "num_warmup_steps": "warmup_steps",
    "wd": "weight_decay",
    "batch_size": "per_device_train_batch_size",
    "num_accumulation_steps": "gradient_accumulation_steps",
    "epochs": "num_train_epochs",
    "seed": "seed",
    "pad_to_max_length": "pad_to_max_length",
    "max_length": "max_seq_length",
    "outdir": "output_dir",
    "n_generator_iter": "n_generator_iter",
    "n_student_iter": "n_student_iter",
    "mlm_prob": "mlm_probability",
    "linear": "projection_dim",
}
SEED_METHODS = {"bart_rail_c": "rail_kd", "bart_cilda": "cilda"}
# what the original's training loop did, whatever its YAML said (its KD_admin.py / training loop)
ORIGINAL_TRAINING_LOOP = {
    "max_grad_norm": 0.0,  # it never clipped the student's gradients
    "dataloader_drop_last": True,  # the last incomplete batch was dropped (losses divided by the configured size)
    "eval_strategy": "epoch",  # it evaluated after every epoch
}
ORIGINAL_ADVERSARIAL_LOOP = {
    "generator_max_grad_norm": 0.0,  # nor the generator's
    "static_mask": True,  # masks were drawn once, while preprocessing
    "student_dropout_in_generator_step": False,  # T and S in eval mode in the max step (g_train_mode)
    "contrastive_negatives": "micro_batch",  # CRD over each device's micro-batch
}


def is_seed_config(values: dict) -> bool:
    return bool(SEED_ONLY_KEYS & set(values))


def translate_seed_config(values: dict, source: str = "config", announce: bool = True) -> dict:
    """hf_kd argument names and values for an original YAML experiment file."""
    values = dict(values)
    method_name = str(values.pop("method", "KD"))
    method = trainer_class(SEED_METHODS.get(method_name.lower(), method_name))
    out: dict = {"method": method.method, **ORIGINAL_TRAINING_LOOP, "lr_scheduler_type": "constant"}
    if method.default_generator_weights:
        out.update(ORIGINAL_ADVERSARIAL_LOOP)
    values.pop("model_name", None)  # the family is read from the models' configs
    notes: list[str] = []

    tasks = values.pop("tasks", values.pop("task", None))
    tasks = [str(t).lower().replace("-", "") for t in (tasks if isinstance(tasks, list) else [tasks])] if tasks else []
    task = tasks[0] if len(tasks) == 1 else None
    if len(tasks) == 1:
        out["task_name"] = task
    elif tasks:
        if any(t in values for t in tasks):
            raise ArgumentError(
                f"{source}: a teacher state dict per task ({', '.join(tasks)}): write one config per task."
            )
        out["sweep_tasks"] = tasks
    if task and task in values:  # `<task>: path` = the teacher's state dict for that task
        out["teacher_state_dict"] = values.pop(task)
    for name in [key for key in values if key in TASK_TO_KEYS]:
        values.pop(name)  # state dicts of other tasks in a multi-task file
    if "model" in values:
        model = values.pop("model")
        target = "model_name_or_path" if "student" not in values else "teacher_name_or_path"
        if target == "teacher_name_or_path" and "teacher" in values:
            raise ArgumentError(f"{source}: seed keys 'model', 'student' and 'teacher' all set; remove 'model'.")
        out[target] = model
    if "lr" in values:
        rates = values.pop("lr")
        rates = [float(r) for r in (rates if isinstance(rates, list) else [rates])]
        if len(rates) == 1:
            out["learning_rate"] = rates[0]
        else:
            out["sweep_learning_rates"] = rates
    repetitions = values.pop("num_of_ex", 1) or 1
    if repetitions != 1:
        out["sweep_repetitions"] = int(repetitions)
    for key in ("start_num", "random_state_dir", "device_num"):
        value = values.pop(key, None)
        if key == "start_num" and value not in (None, 0):
            raise ArgumentError(
                f"{source}: start_num has no equivalent; a sweep rerun reuses its finished runs by itself."
            )
        if key == "random_state_dir" and value:
            raise ArgumentError(f"{source}: random_state_dir has no equivalent; checkpoints hold the random states.")
    if values.pop("save_check", False):  # keep the best-metric checkpoint of the run
        out.update(save_strategy="epoch", eval_strategy="epoch", save_total_limit=1, load_best_model_at_end=True)
        out["metric_for_best_model"] = main_metric(task, is_regression=task == "stsb")
    if values.pop("mask_fix", False):
        out["mask_mode"] = "fixed_count"
    if method.method == "rail_kd" or "sent_pool" in values:
        # the original pooled over padding; its sent_pool switch meant real tokens only (and crashed when on)
        out["rail_pooling"] = "masked_mean" if values.pop("sent_pool", False) else "mean"
    if values.pop("alpha2", False):
        out["scale_crd_by_log_batch"] = True
    linear_method = values.pop("linear_method", "training")
    if linear_method != "training":
        raise ArgumentError(
            f"{source}: linear_method '{linear_method}' has no equivalent; only 'training' (projections learn with the models)."
        )
    if values.pop("use_neptune", False) or any(k in values for k in ("nep_proj", "nep_token", "nep_method", "tags")):
        unsupported = [k for k in ("nep_proj", "nep_token", "nep_method", "tags") if k in values]
        raise ArgumentError(
            f"{source}: Neptune keys {unsupported or ['use_neptune']} have no equivalent yet; remove them."
        )
    out.update(_weights(values, method, source, notes))
    for key in list(values):
        if key in RENAMED:
            out[RENAMED[key]] = values.pop(key)
    if values:
        raise ArgumentError(f"{source}: seed keys {sorted(values)} have no hf_kd equivalent; remove them.")
    if announce:
        flags = " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in out.items())
        print(f"hf_kd: translated the original config {source}; equivalent arguments:\n  {flags}")
        for note in notes:
            print(f"hf_kd: note: {note}")
    return out


def _weights(values: dict, method, source: str, notes: list[str]) -> dict:
    """`lambdas` (or `lambda_nume` / `lambda_deno`) and `alpha`, in the order of the method's terms.

    MATE's max step reads `lambdas[2]` (the min step's weight of the perturbed KD term), never `alpha`.
    """
    out = {}
    terms, generator_terms = list(method.default_weights), list(method.default_generator_weights)
    lambdas = values.pop("lambdas", None)
    nume, deno = values.pop("lambda_nume", None), values.pop("lambda_deno", None)
    if (nume is None) != (deno is None):
        raise ArgumentError(f"{source}: lambda_nume and lambda_deno come together.")
    if nume is not None:
        if len(nume) != len(deno) or 0 in deno:
            raise ArgumentError(
                f"{source}: lambda_nume and lambda_deno must have equal lengths and no zero denominator."
            )
        lambdas = [n / d for n, d in zip(nume, deno, strict=True)]
    alpha = values.pop("alpha", None)
    if method.method == "mate_kd":
        if alpha is not None:
            notes.append(
                f"{source}: alpha is ignored, as the original's MATE ignored it (its max step uses lambdas[2])."
            )
        alpha = None if lambdas is None or len(lambdas) != len(terms) else [lambdas[terms.index("kd_perturbed")]]
    for given, names, prefix, key in (
        (lambdas, terms, "weight_", "lambdas"),
        (alpha, generator_terms, "generator_weight_", "alpha"),
    ):
        if given is None:
            continue
        if len(given) != len(names):
            raise ArgumentError(
                f"{source}: {key} has {len(given)} weights but method '{method.method}' has {len(names)} terms "
                f"({', '.join(names)}): give one weight per term."
            )
        out.update({prefix + name: float(weight) for name, weight in zip(names, given, strict=True)})
    return out
