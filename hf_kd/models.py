"""Loading tokenizer, student, teacher and generator, and checking that they can work together."""

from __future__ import annotations

import logging
import os

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

from hf_kd.adapters import adapter_for, position_limit
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


def load_config(name: str, flag: str, model_args: ModelArguments) -> PretrainedConfig:
    try:
        return AutoConfig.from_pretrained(name, **_hub_options(model_args))
    except (OSError, ValueError, KeyError) as error:
        raise ArgumentError(f"{flag} {name!r} is not a model directory or Hub model ({brief(error)}).") from error


def check_model_configs(model_args: ModelArguments, max_seq_length: int, roles: list[str]) -> None:
    """Options that depend on the models, checked on their configs before any data or weights load."""
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
    teacher = _load_classifier(
        name, "--teacher_name_or_path", model_args, data, keep_labels=model_args.teacher_state_dict is None
    )
    if model_args.teacher_state_dict:
        _load_state_dict(teacher, model_args.teacher_state_dict)
    _check_teacher_labels(teacher, data)
    if model_args.teacher_dtype != "auto":
        teacher.to(DTYPES[model_args.teacher_dtype])
    return teacher


def _load_classifier(
    name: str, flag: str, model_args: ModelArguments, data: TaskData, keep_labels: bool = False
) -> PreTrainedModel:
    """Load a sequence classifier; `keep_labels` keeps a fine-tuned model's own label map for checking."""
    config = load_config(name, flag, model_args)
    fine_tuned = any(arch.endswith("ForSequenceClassification") for arch in config.architectures or [])
    # transformers 5 leaves default label maps (LABEL_0, ...) out of saved configs, and some families default
    # to another label count (BART: 3): only a config with real label names is trusted as it is
    named = any(not str(name).startswith("LABEL_") for name in (config.id2label or {}).values())
    options = {} if keep_labels and fine_tuned and named else label_maps(data)
    try:
        return AutoModelForSequenceClassification.from_pretrained(name, **options, **_hub_options(model_args))
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


def _check_teacher_labels(teacher: PreTrainedModel, data: TaskData) -> None:
    if teacher.config.num_labels != data.num_labels:
        raise ArgumentError(
            f"The teacher predicts {teacher.config.num_labels} labels but the data has {data.num_labels} "
            f"({data.label_list or 'regression'}): use a teacher fine-tuned on this task."
        )
    if data.label_list is None:
        return
    names = [str(teacher.config.id2label[i]).lower() for i in range(teacher.config.num_labels)]
    wanted = [name.lower() for name in data.label_list]
    if sorted(names) == sorted(wanted) and names != wanted:
        raise ArgumentError(
            f"The teacher orders its labels {names}, the data {wanted}: its logits would be read in the wrong order. "
            "Re-export the teacher with the data's label order."
        )
    teacher.config.id2label = dict(enumerate(data.label_list))
    teacher.config.label2id = {name: i for i, name in enumerate(data.label_list)}


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
) -> None:
    """All models share one family and one vocabulary with the tokenizer (same size and tokens)."""
    families = {role: type(adapter_for(model)).__name__ for role, model in models.items()}
    types = {role: model.config.model_type for role, model in models.items()}
    if len(set(families.values())) > 1:
        raise ArgumentError(
            f"The models come from families that cannot be distilled into each other: {types}. "
            "Teacher, student and generator must share a family (BERT/DistilBERT, RoBERTa/DistilRoBERTa, or BART)."
        )
    sizes = {role: model.get_input_embeddings().num_embeddings for role, model in models.items()}
    if len(set(sizes.values())) > 1:
        raise ArgumentError(f"The models' vocabularies differ in size: {sizes}. They must share one tokenizer.")
    if len(tokenizer) > min(sizes.values()):
        raise ArgumentError(
            f"The tokenizer has {len(tokenizer)} tokens but the models' vocabulary only {min(sizes.values())}: "
            "use the models' own tokenizer (--tokenizer_name)."
        )
    vocabulary = tokenizer.get_vocab()
    for role, source in sources.items():
        if not has_tokenizer(source):
            continue  # no tokenizer stored with that model: the size check above is all we can do
        try:
            own = AutoTokenizer.from_pretrained(source, **_hub_options(model_args)).get_vocab()
        except (OSError, ValueError, TypeError):
            continue  # no tokenizer stored with that model: the size check above is all we can do
        if own != vocabulary:
            differing = sorted(set(own.items()) ^ set(vocabulary.items()))[:3]
            raise ArgumentError(
                f"The {role} ({source}) uses another vocabulary than the tokenizer (e.g. {differing}): "
                "teacher, student and generator must share one tokenizer."
            )
