"""Generated boundary test: every numeric option, at 0, -1, nan, inf and a huge value, ends in a clean
refusal that names it (exit status 2, nothing written) or in a finished run, never in a traceback.

The options come from the dataclasses themselves, so a new option is covered without editing this file.
"""

from __future__ import annotations

import os
import typing

import pytest
from transformers import TrainerCallback, TrainingArguments

import hf_kd.run
from hf_kd.arguments import VALID_RANGES, DataTrainingArguments, DistillationTrainingArguments
from hf_kd.errors import ArgumentError
from hf_kd.outputs import RESULTS_FILE
from hf_kd.run import main
from tests.conftest import cli_args

OWN_CLASSES = (DataTrainingArguments, DistillationTrainingArguments)
TRAINER_FIELDS = set(typing.get_type_hints(TrainingArguments))


def numeric_kind(cls: type, name: str) -> type | None:
    """int or float for a numeric field (also when optional), else None."""
    hint = typing.get_type_hints(cls)[name]
    kinds = set(typing.get_args(hint)) - {type(None)} or {hint}
    return next((kind for kind in (int, float) if kinds == {kind}), None)


def numeric_options() -> dict[str, type]:
    """hf_kd's own numeric fields, and the Trainer's fields hf_kd declares a range for."""
    options = {}
    for cls in OWN_CLASSES:
        for name in typing.get_type_hints(cls):
            own = name not in TRAINER_FIELDS
            if (own or name in VALID_RANGES) and (kind := numeric_kind(cls, name)) is not None:
                options[name] = kind
    return options


OPTIONS = numeric_options()
PROBES = {int: ("0", "-1", "nan", "inf", "1000000000000000"), float: ("0", "-1", "nan", "inf", "1e300")}
CASES = [(name, probe) for name, kind in sorted(OPTIONS.items()) for probe in PROBES[kind]]
ADVERSARIAL_OPTIONS = {
    "crd_temperature",
    "projection_dim",
    "mlm_probability",
    "n_generator_iter",
    "n_student_iter",
    "generator_learning_rate",
    "generator_max_grad_norm",
}


def method_for(name: str) -> str:
    """A method that reads the option, so that an accepted value really trains with it."""
    if name == "weight_rail":
        return "rail_kd"
    if name in ADVERSARIAL_OPTIONS or "perturbed" in name or name == "weight_crd":
        return "cilda_minild"
    return "kd"


class StopAfterSteps(TrainerCallback):
    """Ends an accepted run after two steps, so that a huge step or epoch count still finishes."""

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= 2


def test_every_numeric_option_has_a_range():
    assert {"max_seq_length", "kd_temperature", "crd_temperature", "learning_rate", "seed"} <= set(OPTIONS)
    assert [name for name in OPTIONS if name not in VALID_RANGES] == []


@pytest.mark.parametrize(("name", "probe"), CASES, ids=[f"{n}={p}" for n, p in CASES])
def test_numeric_option_is_refused_cleanly_or_runs(name, probe, bert, sst2_files, tmp_path, monkeypatch, capsys):
    build = hf_kd.run.build_trainer

    def build_with_stop(*args, **kwargs):
        trainer, data = build(*args, **kwargs)
        trainer.add_callback(StopAfterSteps())
        return trainer, data

    monkeypatch.setattr(hf_kd.run, "build_trainer", build_with_stop)
    output = tmp_path / "out"
    args = cli_args(bert, sst2_files, output, method_for(name), "--max_train_samples", "24", "--max_eval_samples", "8")
    if f"--{name}" in args:
        i = args.index(f"--{name}")
        del args[i : i + 2]
    args += [f"--{name}", probe]
    if name == "max_unlabeled_samples":
        args += ["--unlabeled_file", sst2_files["dev"]]
    try:
        main(args)
    except ArgumentError as error:
        assert f"--{name}" in str(error), str(error)
        assert not output.exists()
        return
    except SystemExit as stop:  # argparse: a value of the wrong type ("nan" for an integer)
        assert stop.code == 2
        assert f"--{name}" in capsys.readouterr().err
        assert not output.exists()
        return
    assert os.path.isfile(output / RESULTS_FILE)
