"""Initialise a student: a shallower copy of a teacher's layers, or a small model of your own from scratch.

`python -m hf_kd.student_init TEACHER --layers 2 5 --output_dir student/` keeps the embeddings,
the chosen transformer layers (renumbered 0..k-1) and every other weight of the teacher (the
DistilBERT way). It works for every family whose config counts its layers in `num_hidden_layers` or
`n_layers` (BERT, RoBERTa, DistilBERT, ELECTRA, ...).

`python -m hf_kd.student_init --from_scratch --config_like bert --num_layers 4 --hidden_size 256
--train_tokenizer_on train.tsv --vocab_size 8000 --output_dir student/` makes a randomly initialised
model of a family (a family name, or a model whose config and tokenizer pipeline to copy) with a
tokenizer trained on in-domain text: the edge-deployment student, distilled across tokenizers.
"""

from __future__ import annotations

import argparse
import os
import re

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from hf_kd.errors import ArgumentError, brief

LAYER_KEY = re.compile(r"(\.layers?\.)(\d+)(\.)")


def evenly_spaced_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Layers spread over the teacher's depth, the last one included: 6 -> 2 gives [2, 5]."""
    return [round((i + 1) * num_teacher_layers / num_student_layers) - 1 for i in range(num_student_layers)]


def shrink(
    teacher_path: str, layers: list[int], output_dir: str | None = None, auto_class=AutoModel
) -> PreTrainedModel:
    """A copy of the teacher with only `layers` (teacher indices, ascending), saved to `output_dir` if given."""
    config = AutoConfig.from_pretrained(teacher_path)
    attribute = "num_hidden_layers" if hasattr(config, "num_hidden_layers") else "n_layers"
    total = getattr(config, attribute)
    check_layers(layers, total)
    teacher = auto_class.from_pretrained(teacher_path)
    setattr(config, attribute, len(layers))
    student = auto_class.from_config(config)
    source = teacher.state_dict()

    def teacher_key(key: str) -> str:
        return LAYER_KEY.sub(lambda m: f"{m.group(1)}{layers[int(m.group(2))]}{m.group(3)}", key, count=1)

    student.load_state_dict({key: source[teacher_key(key)] for key in student.state_dict()})
    if output_dir:
        student.save_pretrained(output_dir)
        AutoTokenizer.from_pretrained(teacher_path).save_pretrained(output_dir)
    return student


def check_layers(layers: list[int], total: int) -> None:
    """--layers: distinct ascending indices of the teacher's layers, 0 to total - 1."""
    if not layers or sorted(set(layers)) != list(layers) or layers[-1] >= total or layers[0] < 0:
        example = " ".join(str(i) for i in evenly_spaced_layers(total, min(2, total)))
        raise ArgumentError(
            f"--layers {' '.join(map(str, layers))}: the teacher has {total} layers, so give distinct ascending "
            f"indices from 0 to {total - 1} (e.g. --layers {example})."
        )


def check_output_folder(folder: str, overwrite: bool) -> None:
    """Refuse to write a new student over a model or a finished run, as run_glue_kd.py does, unless asked; asked,
    the old run's results, record and card go too, so nothing is left describing the model that was there."""
    from hf_kd.outputs import RESULTS_FILE, clear_previous_run

    held = [name for name in (RESULTS_FILE, "config.json") if os.path.isfile(os.path.join(folder, name))]
    if not held:
        return
    if not overwrite:
        what = f"a finished run ({RESULTS_FILE})" if RESULTS_FILE in held else "a model (config.json)"
        raise ArgumentError(
            f"--output_dir {folder} already holds {what}. Pick another --output_dir, or pass "
            "--overwrite_output_dir to replace it."
        )
    clear_previous_run(folder)


# families whose tokenizers are WordPiece (the rest get a byte-level BPE tokenizer like RoBERTa's)
WORDPIECE_FAMILIES = {"bert", "distilbert", "electra", "deberta-v2", "albert", "mpnet", "mobilebert", "funnel"}


def read_texts(paths: list[str]) -> list[str]:
    """Texts to train a tokenizer on: the text columns of hf_kd data files (.tsv / .csv / .json / .jsonl), or the
    lines of a .txt file."""
    from hf_kd.data import _load_file, text_columns

    texts: list[str] = []
    for path in paths:
        if path.endswith(".txt"):
            with open(path, encoding="utf-8") as f:
                texts += [line.strip() for line in f if line.strip()]
            continue
        dataset = _load_file(path, None, None, option="--train_tokenizer_on")
        for column in text_columns(dataset, None, path):
            if column is not None:
                texts += [text for text in dataset[column] if text]
    if not texts:
        raise ArgumentError(f"--train_tokenizer_on {' '.join(paths)}: no text to train a tokenizer on.")
    return texts


def new_tokenizer(family: str, texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A tokenizer of the family's kind trained on `texts` with the `tokenizers` trainers: uncased WordPiece with
    [CLS] / [SEP], or byte-level BPE with <s> / </s>."""
    if family in WORDPIECE_FAMILIES:
        special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
        special["mask_token"] = "[MASK]"
        backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(lowercase=True)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(special.values()))
    else:
        special = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
        special["mask_token"] = "<mask>"
        backend = Tokenizer(models.BPE(unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(special.values()),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    backend.train_from_iterator(texts, trainer=trainer)
    if family in WORDPIECE_FAMILIES:
        cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
        backend.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
        special |= {"cls_token": "[CLS]", "sep_token": "[SEP]"}
    else:
        bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
        backend.post_processor = processors.RobertaProcessing(("</s>", eos), ("<s>", bos), add_prefix_space=False)
        special |= {"cls_token": "<s>", "sep_token": "</s>"}
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


def from_scratch(
    config_like: str,
    num_layers: int,
    hidden_size: int,
    texts: list[str],
    vocab_size: int,
    output_dir: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A randomly initialised model of `config_like`'s family and size, with a tokenizer trained on `texts`.

    `config_like` is a family name (`bert`, `roberta`, `modernbert`, ...) or a model whose config to copy
    (and whose tokenizer pipeline to retrain, `train_new_from_iterator`, where it has a fast one).
    """
    if config_like in CONFIG_MAPPING:
        config: PretrainedConfig = AutoConfig.for_model(config_like)
        tokenizer = new_tokenizer(config_like, texts, vocab_size)
    else:
        config = AutoConfig.from_pretrained(config_like)
        try:
            tokenizer = AutoTokenizer.from_pretrained(config_like).train_new_from_iterator(texts, vocab_size)
        except (OSError, ValueError, AttributeError):  # no fast tokenizer to retrain: a new one of the family's kind
            tokenizer = new_tokenizer(config.model_type, texts, vocab_size)
    if hidden_size % 64 and hidden_size % 32:
        raise ArgumentError(f"--hidden_size {hidden_size}: use a multiple of 32 (attention heads of 32 or 64).")
    heads = max(1, hidden_size // 64)
    sizes = {
        "num_hidden_layers": num_layers, "n_layers": num_layers,
        "hidden_size": hidden_size, "dim": hidden_size, "d_model": hidden_size,
        "num_attention_heads": heads, "n_heads": heads,
        "intermediate_size": 4 * hidden_size, "hidden_dim": 4 * hidden_size,
        "embedding_size": hidden_size,
    }  # fmt: skip
    for name, value in sizes.items():
        if hasattr(config, name):
            setattr(config, name, value)
    config.vocab_size = len(tokenizer)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id"):
        token_id = getattr(tokenizer, name, None)
        if token_id is not None and hasattr(config, name):
            setattr(config, name, token_id)
    model = AutoModel.from_config(config)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    return model, tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", nargs="?", help="model directory or Hub name to take layers from")
    parser.add_argument("--layers", type=int, nargs="+", help="teacher layers to keep (default: 2, evenly spaced)")
    parser.add_argument("--num_layers", type=int, default=2, help="how many layers (when --layers is not given)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument(
        "--overwrite_output_dir", action="store_true", help="replace a model or finished run in --output_dir"
    )
    scratch = parser.add_argument_group("a student of your own (--from_scratch)")
    scratch.add_argument("--from_scratch", action="store_true", help="a random model with its own tokenizer")
    scratch.add_argument("--config_like", help="a family name (bert, roberta, ...) or a model to copy the config of")
    scratch.add_argument("--hidden_size", type=int, default=256)
    scratch.add_argument("--train_tokenizer_on", nargs="+", help="data files (.tsv/.csv/.json/.jsonl) or .txt")
    scratch.add_argument("--vocab_size", type=int, default=8000)
    args = parser.parse_args(argv)
    check_output_folder(args.output_dir, args.overwrite_output_dir)
    if args.from_scratch:
        if not (args.config_like and args.train_tokenizer_on):
            parser.error("--from_scratch needs --config_like and --train_tokenizer_on.")
        if args.num_layers < 1 or args.vocab_size < 100 or args.hidden_size < 32:
            parser.error("--num_layers >= 1, --hidden_size >= 32 and --vocab_size >= 100, please.")
        texts = read_texts(args.train_tokenizer_on)
        from_scratch(args.config_like, args.num_layers, args.hidden_size, texts, args.vocab_size, args.output_dir)
        return
    if not args.teacher:
        parser.error("give the TEACHER to take layers from, or --from_scratch.")
    try:
        config = AutoConfig.from_pretrained(args.teacher)
    except (OSError, ValueError) as error:
        raise ArgumentError(
            f"TEACHER {args.teacher!r} is not a model directory or Hub model ({brief(error)})."
        ) from None
    total = getattr(config, "num_hidden_layers", None) or config.n_layers
    layers = args.layers or evenly_spaced_layers(total, args.num_layers)
    check_layers(layers, total)
    shrink(args.teacher, layers, args.output_dir)


if __name__ == "__main__":
    from hf_kd.cli import exit_on_argument_error

    exit_on_argument_error(main, program="hf_kd.student_init")
