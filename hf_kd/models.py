"""Loading tokenizer, student, teacher and generator, and checking that they can work together."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from hf_kd.adapters import is_decoder_only, position_limit
from hf_kd.arguments import ModelArguments
from hf_kd.data import TaskData
from hf_kd.errors import ArgumentError, brief

logger = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _hub_options(model_args: ModelArguments) -> dict:
    return {
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "token": model_args.token,
        "trust_remote_code": model_args.trust_remote_code,
    }


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def has_tokenizer(name: str) -> bool:
    """False for a local model directory without tokenizer files (a Hub name is assumed to have one)."""
    return not os.path.isdir(name) or any(os.path.isfile(os.path.join(name, f)) for f in TOKENIZER_FILES)


def load_tokenizer(model_args: ModelArguments) -> PreTrainedTokenizerBase:
    name = model_args.tokenizer_name or model_args.model_name_or_path
    if name and not has_tokenizer(name):
        flag = "--tokenizer_name" if model_args.tokenizer_name else "--model_name_or_path"
        raise ArgumentError(f"{flag} {name} holds no tokenizer: pass --tokenizer_name with the models' tokenizer.")
    try:
        return AutoTokenizer.from_pretrained(name, **_hub_options(model_args))
    except (OSError, ValueError) as error:
        raise ArgumentError(
            f"Could not load a tokenizer from {name!r} ({brief(error)}). Pass --tokenizer_name with a tokenizer directory or Hub name."
        ) from error


def load_teacher_tokenizer(
    model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase
) -> PreTrainedTokenizerBase | None:
    """The teacher's own tokenizer when its vocabulary differs from the student's `tokenizer`, else None.

    It comes from --teacher_tokenizer_name_or_path, else from the teacher's folder or Hub id; a teacher
    folder without tokenizer files shares the student's.
    """
    flag, name = "--teacher_tokenizer_name_or_path", model_args.teacher_tokenizer_name_or_path
    if name is None:
        flag, name = "--teacher_name_or_path", model_args.teacher_name_or_path
        if not name or not has_tokenizer(name):
            return None
    try:
        own = AutoTokenizer.from_pretrained(name, **_hub_options(model_args))
    except (OSError, ValueError, TypeError) as error:
        if flag == "--teacher_name_or_path" and not os.path.isdir(name):
            return None  # a Hub teacher without a tokenizer of its own: it shares the student's
        raise ArgumentError(
            f"{flag} {name!r}: no tokenizer loads from it ({brief(error)}). Pass --teacher_tokenizer_name_or_path "
            "with the teacher's tokenizer."
        ) from None
    return None if own.get_vocab() == tokenizer.get_vocab() else own


def load_config(name: str, flag: str, model_args: ModelArguments) -> PretrainedConfig:
    try:
        return AutoConfig.from_pretrained(name, **_hub_options(model_args))
    except (OSError, ValueError, KeyError) as error:
        raise ArgumentError(f"{flag} {name!r} is not a model directory or Hub model ({brief(error)}).") from error


def check_model_configs(
    model_args: ModelArguments, max_seq_length: int, roles: list[str], teacher_max_seq_length: int | None = None
) -> None:
    """Options that depend on the models, checked on their configs before any data or weights load."""
    if teacher_max_seq_length is not None and "teacher" in roles:
        limit = position_limit(load_config(model_args.teacher_name_or_path, "--teacher_name_or_path", model_args))
        if limit is not None and teacher_max_seq_length > limit:
            raise ArgumentError(
                f"--teacher_max_seq_length {teacher_max_seq_length} is longer than the teacher's position embeddings "
                f"allow ({limit} tokens): pass --teacher_max_seq_length {limit} or less."
            )
        roles = [role for role in roles if role != "teacher"]
    models = {
        "student": ("--model_name_or_path", model_args.model_name_or_path),
        "teacher": ("--teacher_name_or_path", model_args.teacher_name_or_path),
        "generator": ("--generator_name_or_path", model_args.generator_name_or_path),
    }
    limits = {}
    for role in roles:
        flag, name = models[role]
        if not name:
            continue  # refused with its own message where the model loads
        limit = position_limit(load_config(name, flag, model_args))
        if limit is not None:
            limits[role] = limit
    if limits and max_seq_length > min(limits.values()):
        shortest = min(limits, key=limits.get)
        raise ArgumentError(
            f"--max_seq_length {max_seq_length} is longer than the {shortest}'s position embeddings allow "
            f"({limits[shortest]} tokens; limits {limits}): pass --max_seq_length {limits[shortest]} or less."
        )


def label_maps(data: TaskData) -> dict:
    """Label names in the config so that saved models reload with their real label count and names."""
    if data.is_regression:
        return {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}
    names = list(data.label_list)
    return {
        "num_labels": len(names),
        "problem_type": "single_label_classification",
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def load_student(model_args: ModelArguments, data: TaskData) -> PreTrainedModel:
    if not model_args.model_name_or_path:
        raise ArgumentError("No student: pass --model_name_or_path (or --student_name_or_path).")
    return _load_classifier(model_args.model_name_or_path, "--model_name_or_path", model_args, data)


def load_teacher(model_args: ModelArguments, data: TaskData) -> PreTrainedModel:
    """A fine-tuned classifier, or a base model plus --teacher_state_dict; labels must match the data."""
    name = model_args.teacher_name_or_path
    placement = {"device_map": model_args.teacher_device_map} if model_args.teacher_device_map else {}
    teacher = _load_classifier(
        name, "--teacher_name_or_path", model_args, data, keep_labels=model_args.teacher_state_dict is None, **placement
    )
    if model_args.teacher_state_dict:
        _load_state_dict(teacher, model_args.teacher_state_dict)
    if model_args.teacher_dtype != "auto":
        teacher.to(DTYPES[model_args.teacher_dtype])
    return teacher


def _load_classifier(
    name: str, flag: str, model_args: ModelArguments, data: TaskData, keep_labels: bool = False, **placement
) -> PreTrainedModel:
    """Load a sequence classifier; `keep_labels` keeps a fine-tuned model's own label map for checking."""
    config = load_config(name, flag, model_args)
    fine_tuned = any(arch.endswith("ForSequenceClassification") for arch in config.architectures or [])
    # transformers 5 leaves default label maps (LABEL_0, ...) out of saved configs, and some families default
    # to another label count (BART: 3): only a config with real label names is trusted as it is
    named = any(not str(name).startswith("LABEL_") for name in (config.id2label or {}).values())
    options = {} if keep_labels and fine_tuned and named else label_maps(data)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            name, **options, **placement, **_hub_options(model_args)
        )
    except (OSError, ValueError) as error:  # no weights there, or a config it cannot build
        raise ArgumentError(f"{flag} {name!r}: no sequence classifier loads from it ({brief(error)}).") from error
    except RuntimeError as error:  # a classifier head of another size
        raise ArgumentError(
            f"{flag} {name!r} has a classification head for another number of labels than the data's "
            f"{data.num_labels}: start from its base model instead ({brief(error)})."
        ) from error


def _load_state_dict(model: PreTrainedModel, path: str) -> None:
    if not os.path.isfile(path):
        raise ArgumentError(f"--teacher_state_dict {path} does not exist.")
    try:
        state = (
            load_file(path)
            if path.endswith(".safetensors")
            else torch.load(path, map_location="cpu", weights_only=True)
        )
    except Exception as error:  # torch and safetensors raise many types for a file that is not a state dict
        raise ArgumentError(f"--teacher_state_dict {path} is not a readable state dict ({brief(error)}).") from None
    if not isinstance(state, dict):
        raise ArgumentError(f"--teacher_state_dict {path} holds a {type(state).__name__}, not a state dict.")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ArgumentError(
            f"--teacher_state_dict {path} does not fit --teacher_name_or_path: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}. Use the base model the state dict was trained from."
        )


@dataclass
class LabelReading:
    """How the teacher's outputs are read as the data's labels (`match_teacher_labels`).

    `order[i]`: the teacher's output for the data's label i (None: the same positions); `names`: the label
    names the student is saved with; `how`: "by name", "by position" (the data's labels are the integers
    0..n-1, which name nothing), "by --teacher_label_map" or "unnamed teacher" (LABEL_0, ...: by position).
    """

    how: str
    pairs: dict[str, str]  # the data's label -> the teacher's label it reads
    names: list[str]
    order: list[int] | None = None

    def text(self) -> str:
        """One line for the log, the run record and the card: 'read by position: 0 -> NEGATIVE, 1 -> POSITIVE'."""
        shown = list(self.pairs.items())
        listed = ", ".join(f"{data} -> {teacher}" for data, teacher in shown[:10])
        more = f", ... ({len(shown)} labels)" if len(shown) > 10 else ""
        return f"read {self.how}: {listed}{more}"

    def as_dict(self) -> dict:
        return {"read": self.how, "pairs": self.pairs, "text": self.text()}


def is_positional(labels: list[str]) -> bool:
    """The integers 0..n-1 in order: labels that are positions, not names."""
    return labels == [str(i) for i in range(len(labels))]


def match_teacher_labels(
    teacher_config: PretrainedConfig, data: TaskData, label_map: dict[str, str] | None = None
) -> LabelReading | None:
    """Where each of the data's (the student's) labels is among the teacher's outputs.

    Named labels match by name (case-insensitive, reordered), after --teacher_label_map renames the teacher's;
    data labels that are the integers 0..n-1 name nothing and read any teacher of n labels by position (the
    student then takes the teacher's names); a teacher without names (LABEL_0, ...) is read by position.
    Other differing sets are refused in one line naming both sides and --teacher_label_map. None for regression.
    """
    count = teacher_config.num_labels
    if count != data.num_labels:
        raise ArgumentError(
            f"The teacher predicts {count} labels but the data has {data.num_labels} "
            f"({data.label_list or 'regression'}): use a teacher fine-tuned on this task."
        )
    if data.label_list is None:
        return None
    mapping = label_map or {}
    teacher_names = [str(teacher_config.id2label[i]) for i in range(count)]
    unknown = sorted(set(mapping) - set(teacher_names))
    if unknown:
        raise ArgumentError(f"--teacher_label_map names {unknown}, which are not the teacher's labels {teacher_names}.")
    wanted = [str(name) for name in data.label_list]
    renamed = [mapping.get(name, name).lower() for name in teacher_names]
    if sorted(renamed) == sorted(w.lower() for w in wanted) and len(set(renamed)) == count:
        order = [renamed.index(w.lower()) for w in wanted]
        how = "by --teacher_label_map" if mapping else "by name"
        return LabelReading(
            how,
            {w: teacher_names[i] for w, i in zip(wanted, order, strict=True)},
            wanted,
            None if order == list(range(count)) else order,
        )
    if all(name.startswith("LABEL_") for name in teacher_names):
        return LabelReading("unnamed teacher", dict(zip(wanted, teacher_names, strict=True)), wanted)
    if is_positional(wanted) and not mapping:
        return LabelReading("by position", dict(zip(wanted, teacher_names, strict=True)), teacher_names)
    raise ArgumentError(
        f"The teacher's labels {teacher_names} are not the data's (the student's) {wanted}: use a teacher "
        "fine-tuned on these labels, or pair the names with --teacher_label_map "
        f"""'{{"{teacher_names[0]}": "{wanted[0]}", ...}}'."""
    )


def load_generator(model_args: ModelArguments) -> PreTrainedModel:
    name = model_args.generator_name_or_path
    if not name:
        raise ArgumentError("This method needs a masked-LM generator: pass --generator_name_or_path.")
    architectures = load_config(name, "--generator_name_or_path", model_args).architectures or []
    if architectures and not any(
        arch.endswith(("MaskedLM", "ForPreTraining", "ForConditionalGeneration")) for arch in architectures
    ):
        raise ArgumentError(
            f"--generator_name_or_path {name!r} is a {architectures[0]}, not a masked language model: "
            "its LM head would be random. Use a masked LM (e.g. distilroberta-base)."
        )
    try:
        return AutoModelForMaskedLM.from_pretrained(name, **_hub_options(model_args))
    except (OSError, ValueError) as error:
        raise ArgumentError(
            f"--generator_name_or_path {name!r}: no masked language model loads from it ({brief(error)})."
        ) from error


def check_compatible(
    tokenizer: PreTrainedTokenizerBase,
    models: dict[str, PreTrainedModel],
    sources: dict[str, str],
    model_args: ModelArguments,
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
) -> None:
    """Each model fits the tokenizer it reads: the student and generator the student's, the teacher its own
    (the student's unless `teacher_tokenizer`); decoder-only models have a padding token."""
    for role, model in models.items():
        own = teacher_tokenizer if role == "teacher" and teacher_tokenizer is not None else tokenizer
        flag = "--teacher_tokenizer_name_or_path" if role == "teacher" else "--tokenizer_name"
        if is_decoder_only(model.config) and model.config.pad_token_id is None:
            raise ArgumentError(
                f"The {role} ({sources[role]}) is a decoder-only classifier without a padding token, so it cannot "
                "find each example's last token in a padded batch: set `pad_token_id` in its config.json (for "
                "example to its end-of-sequence token's id) and save its tokenizer with `pad_token` set."
            )
        size = model.get_input_embeddings().num_embeddings
        if len(own) > size:
            raise ArgumentError(
                f"The {role} ({sources[role]}) has {size} token embeddings but its tokenizer {len(own)} tokens: "
                f"use the {role}'s own tokenizer ({flag})."
            )
        if own.pad_token is None:
            raise ArgumentError(
                f"The {role}'s tokenizer ({sources[role]}) has no padding token: save it with `pad_token` set (for "
                "example to its end-of-sequence token)."
            )
    vocabulary = tokenizer.get_vocab()
    for role, source in sources.items():
        if role == "teacher" and teacher_tokenizer is not None:
            continue  # it reads its own tokenization
        if not has_tokenizer(source):
            continue  # no tokenizer stored with that model: the size check above is all we can do
        try:
            own = AutoTokenizer.from_pretrained(source, **_hub_options(model_args)).get_vocab()
        except (OSError, ValueError, TypeError):
            continue  # no tokenizer stored with that model: the size check above is all we can do
        if own != vocabulary:
            differing = sorted(set(own.items()) ^ set(vocabulary.items()))[:3]
            raise ArgumentError(
                f"The {role} ({source}) uses another vocabulary than the student's tokenizer (e.g. {differing}): "
                + (
                    "the generator writes tokens the student reads, so it must share the student's tokenizer."
                    if role == "generator"
                    else "pass --tokenizer_name with the student's own tokenizer."
                )
            )
