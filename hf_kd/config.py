"""From a command line (and an optional YAML/JSON file) to checked, method-resolved arguments.

`parse_args` is the one entry point: a leading config file supplies defaults that later flags
override, an original-code YAML file is translated (`hf_kd.seed_config`), unknown names are
refused with the closest known one, value ranges are checked by the dataclasses themselves, the
Trainer's own refusals are re-worded, and the method and its loss weights are settled by
`hf_kd.trainers.configure_method`. Every refusal is an `ArgumentError`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from hf_kd.arguments import GROUPS, DataTrainingArguments, DistillationTrainingArguments, ModelArguments
from hf_kd.errors import ArgumentError, brief
from hf_kd.seed_config import is_seed_config, translate_seed_config
from hf_kd.trainers import configure_method

ARGUMENT_CLASSES = (ModelArguments, DataTrainingArguments, DistillationTrainingArguments)
CONFIG_EXTENSIONS = (".yaml", ".yml", ".json")


def option_names() -> list[str]:
    """Every option the parser knows, without dashes."""
    return sorted({item.name for cls in ARGUMENT_CLASSES for item in fields(cls) if item.init})


def closest(name: str, known: list[str]) -> str:
    """' (did you mean --x?)' for a near miss of a known option name, else ''."""
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean --{match[0]}?)" if match else ""


def build_parser() -> HfArgumentParser:
    """The parser of the three dataclasses, every help text safe for argparse's `%` formatting (a help that
    says "95%" would end `--help` in a TypeError)."""
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    for action in parser._actions:
        if action.help:
            action.help = re.sub(r"%(?!\()", "%%", action.help)
    group_by_concern(parser)
    return parser


def group_by_concern(parser: HfArgumentParser) -> None:
    """List hf_kd's training options under their concern (`arguments.GROUPS`) in `--help`, before the Trainer's
    own: argparse groups its actions by dataclass, and `TrainingArguments` is one."""
    concern = {name: group for cls in ARGUMENT_CLASSES for name, group in getattr(cls, "option_groups", {}).items()}
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    for action in parser._actions:
        if action.dest in concern:
            for group in parser._action_groups:
                if action in group._group_actions and group not in groups.values():
                    group._group_actions.remove(action)
            groups[concern[action.dest]]._group_actions.append(action)
    ordered = list(groups.values())
    positional, trainer, *models_and_data = [group for group in parser._action_groups if group not in ordered]
    trainer.title = "training (the Trainer's TrainingArguments, as run_glue.py takes them)"
    parser._action_groups = [positional, *models_and_data, *ordered, trainer]


def parse_args(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataTrainingArguments, DistillationTrainingArguments]:
    """Parse, check and resolve the arguments of one run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith(CONFIG_EXTENSIONS):
        argv = config_file_to_argv(argv[0]) + argv[1:]
    parser = build_parser()
    try:
        model_args, data_args, training_args, unknown = parser.parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True
        )
    except ArgumentError:
        raise
    except (ValueError, TypeError) as error:  # the Trainer's own refusals (conflicting strategies, ...)
        raise ArgumentError(f"The training arguments conflict: {brief(error)}") from None
    except (ImportError, OSError) as error:  # an option whose package or file is missing (--deepspeed, ...)
        raise ArgumentError(f"The training arguments need something missing here: {brief(error)}") from None
    sweep_flags = [flag for flag in unknown if flag.startswith("--sweep_")]
    if sweep_flags:
        raise ArgumentError(
            f"{', '.join(sweep_flags)} describe a sweep: run `python -m hf_kd.sweep` with the same arguments "
            "(run_glue_kd.py trains one run)."
        )
    if unknown:
        known = option_names()
        hints = "".join(closest(flag.lstrip("-"), known) for flag in unknown if flag.startswith("--"))
        raise ArgumentError(
            f"Unknown arguments: {' '.join(unknown)}{hints}. See `run_glue_kd.py --help` for the options."
        )
    configure_method(training_args)
    return model_args, data_args, training_args


def read_config_file(path: str) -> dict:
    """A YAML/JSON mapping; a syntax error names the file, line and column."""
    if not os.path.isfile(path):
        raise ArgumentError(f"Config file {path} does not exist.")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ArgumentError(f"Config file {path} cannot be read as UTF-8 text ({brief(error)}).") from None
    if path.endswith(".json"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ArgumentError(
                f"Config file {path}, line {error.lineno}, column {error.colno}: {error.msg}. Fix the JSON there."
            ) from None
    else:
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error)
            raise ArgumentError(f"Config file {path}{where}: {problem}. Fix the YAML there.") from None
    if not isinstance(values, dict):
        raise ArgumentError(f"Config file {path} must hold a mapping of argument names to values.")
    return values


def config_file_to_argv(path: str) -> list[str]:
    """Turn a YAML/JSON file of argument names (or the original's YAML form) into command-line flags."""
    values = read_config_file(path)
    if is_seed_config(values):
        values = translate_seed_config(values, source=path)
    known = option_names()
    unknown = [key for key in values if str(key) not in known and not str(key).startswith("sweep_")]
    if unknown:
        hints = "; ".join(f"'{key}'{closest(str(key), known)}" for key in unknown)
        raise ArgumentError(f"Config file {path}: unknown key(s) {hints}. See `run_glue_kd.py --help` for the names.")
    argv: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        argv.extend(str(item) for item in value) if isinstance(value, list) else argv.append(str(value))
    return argv
