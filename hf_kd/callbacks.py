"""Trainer callbacks: Neptune logging with the `neptune` client (transformers deprecated its own).

`--report_to neptune` (with the Trainer's other trackers or alone) adds `NeptuneCallback`: the run's
parameters, every logged value (each loss term of both steps, learning rates, evaluation metrics)
as series over the global step, tags, and the original code's `nep_method` label. Project, token and
mode come from `--neptune_project` / `--neptune_api_token` / `--neptune_mode` or the usual
`NEPTUNE_PROJECT` / `NEPTUNE_API_TOKEN` / `NEPTUNE_MODE`; `offline` and `debug` need neither project
nor token (offline runs can be uploaded later with `neptune sync`).
"""

from __future__ import annotations

import os
from numbers import Number
from typing import Any

from transformers import TrainerCallback

from hf_kd.errors import ArgumentError

OFFLINE_MODES = ("offline", "debug")


def neptune_settings(args) -> dict[str, Any]:
    """Project, token and mode from the arguments or the environment; refused early when incomplete."""
    mode = args.neptune_mode or os.environ.get("NEPTUNE_MODE") or "async"
    project = args.neptune_project or os.environ.get("NEPTUNE_PROJECT")
    token = args.neptune_api_token or os.environ.get("NEPTUNE_API_TOKEN")
    if mode not in OFFLINE_MODES and not (project and token):
        missing = " and ".join(
            name for name, value in (("--neptune_project", project), ("--neptune_api_token", token)) if not value
        )
        raise ArgumentError(
            f"Neptune logging in '{mode}' mode needs {missing} (or NEPTUNE_PROJECT / NEPTUNE_API_TOKEN); "
            "use --neptune_mode offline to log locally."
        )
    try:
        import neptune  # noqa: F401
    except ImportError as error:
        raise ArgumentError("--report_to neptune needs the neptune client: pip install 'hf_kd[neptune]'.") from error
    return {"project": project or "hf-kd/offline", "api_token": token, "mode": mode}


class NeptuneCallback(TrainerCallback):
    """Log an hf_kd run to Neptune from the main process."""

    def __init__(self, settings: dict[str, Any], parameters: dict[str, Any], tags: list[str] | None = None) -> None:
        self.settings, self.parameters, self.tags = settings, parameters, list(tags or [])
        self.run = None

    def _start(self) -> None:
        import neptune

        self.run = neptune.init_run(
            **self.settings,
            tags=self.tags,
            capture_hardware_metrics=self.settings["mode"] not in OFFLINE_MODES,
            capture_stdout=False,
            capture_stderr=False,
            source_files=[],
            git_ref=False,
        )
        self.run["parameters"] = {key: value for key, value in self.parameters.items() if value is not None}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.run is None:
            self._start()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.run is None:
            self._start()
        for key, value in logs.items():
            if isinstance(value, Number) and not isinstance(value, bool):
                namespace = "eval" if key.startswith("eval_") else "train"
                self.run[f"{namespace}/{key.removeprefix('eval_')}"].append(float(value), step=state.global_step)

    def close(self) -> None:
        if self.run is not None:
            self.run.stop()
            self.run = None


def run_parameters(model_args, data_args, training_args, repetition: int = 0) -> dict[str, Any]:
    """What identifies a run in the tracker (the original's method, task, batch size, lr, repetition)."""
    return {
        "method": training_args.method,
        "nep_method": training_args.neptune_method_label or training_args.method,
        "task": data_args.task_name or os.path.basename(str(data_args.train_file)),
        "teacher": model_args.teacher_name_or_path,
        "student": model_args.model_name_or_path,
        "generator": model_args.generator_name_or_path,
        "effective_batch_size": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * max(training_args.world_size, 1),
        "learning_rate": training_args.learning_rate,
        "seed": training_args.seed,
        "repetition": repetition,
        "loss_weights": str(training_args.loss_weights),
        "generator_loss_weights": str(training_args.generator_loss_weights),
    }
