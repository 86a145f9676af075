"""Tiny models and tokenizers built offline from configs, for tests, benchmarks and examples.

`build_family(kind, folder, texts)` trains a small tokenizer on `texts` and saves a teacher, a student
(fewer and narrower layers) and a masked-LM generator of that family, all sharing the tokenizer.
"""

from __future__ import annotations

import os
import shutil
import traceback
from dataclasses import dataclass

import torch
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BartConfig,
    BartTokenizer,
    BertConfig,
    BertTokenizer,
    DistilBertConfig,
    LlamaConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
    RobertaConfig,
    RobertaTokenizer,
)

FAMILIES = ("bert", "roberta", "distilbert", "bart")
DECODER_ONLY = {"qwen2": Qwen2Config, "llama": LlamaConfig}  # classifiers only: no masked LM to generate with
# more encoder families, built from their configs' common fields; the first four use WordPiece, the rest BPE
MORE_ENCODERS = ("electra", "deberta-v2", "albert", "mpnet", "xlm-roberta", "modernbert")
WORDPIECE = ("bert", "distilbert", "electra", "deberta-v2", "albert", "mpnet")


@dataclass
class TinyFamily:
    tokenizer: str
    teacher: str
    student: str
    generator: str


def train_tokenizer(kind: str, texts: list[str], folder: str, vocab_size: int = 600) -> PreTrainedTokenizerBase:
    """A WordPiece (BERT / DistilBERT) or byte-level BPE (RoBERTa / BART) tokenizer trained on `texts`."""
    os.makedirs(folder, exist_ok=True)
    if kind in WORDPIECE:
        trainer = BertWordPieceTokenizer(lowercase=True)
        trainer.train_from_iterator(
            texts, vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        )
        trainer.save_model(folder)
        tokenizer = BertTokenizer(vocab=os.path.join(folder, "vocab.txt"), model_max_length=64)
    else:
        trainer = ByteLevelBPETokenizer()
        trainer.train_from_iterator(
            texts, vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        )
        trainer.save_model(folder)
        cls = BartTokenizer if kind == "bart" else RobertaTokenizer
        tokenizer = cls(
            vocab=os.path.join(folder, "vocab.json"), merges=os.path.join(folder, "merges.txt"), model_max_length=64
        )
    tokenizer.save_pretrained(folder)
    return tokenizer


def tiny_config(
    kind: str, vocab_size: int, layers: int, hidden: int, tokenizer: PreTrainedTokenizerBase, num_labels: int = 2
):
    common = {"vocab_size": vocab_size, "num_labels": num_labels}
    if kind == "bert":
        return BertConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=72,
            pad_token_id=tokenizer.pad_token_id,
            **common,
        )
    if kind == "roberta":
        return RobertaConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=72,
            type_vocab_size=1,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **common,
        )
    if kind == "distilbert":
        return DistilBertConfig(
            dim=hidden,
            n_layers=layers,
            n_heads=2,
            hidden_dim=2 * hidden,
            max_position_embeddings=72,
            pad_token_id=tokenizer.pad_token_id,
            **common,
        )
    if kind == "bart":
        return BartConfig(
            d_model=hidden,
            encoder_layers=layers,
            decoder_layers=max(1, layers - 1),
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=2 * hidden,
            decoder_ffn_dim=2 * hidden,
            max_position_embeddings=72,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.eos_token_id,
            forced_eos_token_id=None,
            **common,
        )
    if kind in MORE_ENCODERS:
        special = {
            name: getattr(tokenizer, name)
            for name in ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")
            if getattr(tokenizer, name, None) is not None
        }
        return AutoConfig.for_model(
            kind,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=72,
            **({"embedding_size": hidden} if kind == "albert" else {}),
            **special,
            **common,
        )
    if kind in DECODER_ONLY:
        return DECODER_ONLY[kind](
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=72,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **common,
        )
    raise ValueError(f"Unknown tiny model family {kind!r}; choose from {FAMILIES + tuple(DECODER_ONLY)}.")


def build_classifier(
    kind: str, folder: str, tokenizer: PreTrainedTokenizerBase, layers: int = 2, hidden: int = 32, num_labels: int = 2
) -> str:
    """A randomly initialised sequence classifier of `kind`, saved with `tokenizer` in `folder`."""
    config = tiny_config(kind, len(tokenizer), layers, hidden, tokenizer, num_labels)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_family(
    kind: str,
    folder: str,
    texts: list[str],
    student_kind: str | None = None,
    num_labels: int = 2,
    teacher_layers: int = 4,
    teacher_hidden: int = 48,
    student_layers: int = 2,
    student_hidden: int = 32,
) -> TinyFamily:
    """Save a tokenizer, teacher, student and generator of one family under `folder`; return their paths."""
    student_kind = student_kind or kind
    paths = TinyFamily(*(os.path.join(folder, name) for name in ("tokenizer", "teacher", "student", "generator")))
    tokenizer = train_tokenizer(kind, texts, paths.tokenizer)
    vocab = len(tokenizer)
    specs = [
        (paths.teacher, kind, teacher_layers, teacher_hidden, AutoModelForSequenceClassification),
        (paths.student, student_kind, student_layers, student_hidden, AutoModelForSequenceClassification),
        (paths.generator, student_kind, 1, student_hidden, AutoModelForMaskedLM),
    ]
    for path, family, layers, hidden, auto in specs:
        model = auto.from_config(tiny_config(family, vocab, layers, hidden, tokenizer, num_labels))
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return paths


def without_dropout(family: TinyFamily, folder: str) -> TinyFamily:
    """A copy of `family` whose models have every dropout probability at 0, so that forwards are deterministic."""
    copy = TinyFamily(family.tokenizer, *(os.path.join(folder, role) for role in ("teacher", "student", "generator")))
    for source, target in (
        (family.teacher, copy.teacher),
        (family.student, copy.student),
        (family.generator, copy.generator),
    ):
        shutil.copytree(source, target)
        config = AutoConfig.from_pretrained(target)
        for key, value in config.to_dict().items():
            if "dropout" in key and isinstance(value, float):
                setattr(config, key, 0.0)
        config.save_pretrained(target)
    return copy


class HostSyncRecorder(TorchDispatchMode):
    """Records the operators that make the host wait for a CUDA device, also when run on CPU.

    A scalar read (`.item()`, `bool(tensor)`, `if tensor:`), and operators whose output size depends on
    the data (`nonzero`, `masked_select`, indexing with a boolean mask) synchronise on CUDA; on CPU they
    run without one, so this mode lets a CPU test assert that a training step has none. Each call is
    recorded as (operator, where): the innermost caller outside torch, as `module.py:function`.
    Optimizer steps passed to `ignore_optimizer` are left out: their step counters live on the host.
    """

    SYNCING = {"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.is_nonzero", "aten.equal"}

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self._paused = 0

    def ignore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        def pause(*args) -> None:
            self._paused += 1

        def resume(*args) -> None:
            self._paused -= 1

        optimizer.register_step_pre_hook(pause)
        optimizer.register_step_post_hook(resume)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        boolean_index = name in ("aten.index", "aten.index_put", "aten.index_put_") and any(
            isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in (args[1] or [])
        )
        if not self._paused and (name in self.SYNCING or boolean_index):
            self.calls.append((f"{name} (boolean mask)" if boolean_index else name, _caller()))
        return func(*args, **(kwargs or {}))


def _caller() -> str:
    """`module.py:function` of the innermost frame outside torch and this file."""
    torch_folder = os.path.dirname(torch.__file__)
    for frame in reversed(traceback.extract_stack()):
        if not frame.filename.startswith(torch_folder) and frame.filename != __file__:
            return f"{os.path.basename(frame.filename)}:{frame.name}"
    return "?"
