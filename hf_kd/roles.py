"""The models of a run as roles: the student, the teacher and the generator.

Each role owns its model, tokenizer and family adapter, and reads a batch through its own view. A
teacher comes in two kinds: one that shares the student's tokenizer (it reads the student's columns,
clean and perturbed text in one pass, and the generator's straight-through embeddings) and one with a
tokenizer of its own (it reads its own columns, and perturbed text decoded from the student's ids and
tokenised again). The trainers call the same methods on either and never ask which one they hold. The
teacher role also owns what is computed from the teacher before training: its label order, the
teacher-output cache and its class shares (`prepare`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from huggingface_hub.constants import HF_HOME
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from hf_kd.adapters import ForwardResult, MaskedLMAdapter, adapter_for
from hf_kd.cache import TeacherCache, distinct_rows, teacher_logits
from hf_kd.data import INDEX_COLUMN, TEACHER_COLUMNS, TEACHER_PREFIX, arrow_column
from hf_kd.generator import perturbed_embeddings

View = dict[str, torch.Tensor]
Pass = tuple[ForwardResult, View]  # a forward's result and the view of the batch it read


class StudentRole:
    """The student: the Trainer's model (called through its DDP / accelerate wrapper), read on the batch itself."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None) -> None:
        self.model, self.tokenizer, self.adapter = model, tokenizer, adapter_for(model)

    def view(self, batch: View) -> View:
        return batch

    def forward(self, model: nn.Module, batch: View, **options: Any) -> ForwardResult:
        return self.adapter.forward(model, batch, **options)


class TeacherRole:
    """The frozen teacher (eval mode, no gradient to its weights), its logits in the student's label order."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | None,
        label_order: list[int] | None = None,
    ) -> None:
        self.model, self.tokenizer, self.adapter = model, tokenizer, adapter_for(model)
        self.label_order = None if label_order is None else torch.tensor(label_order)
        self.cache: TeacherCache | None = None
        self.class_shares: torch.Tensor | None = None  # --kd_row_weighting class_balanced

    def to(self, device: torch.device) -> TeacherRole:
        self.model.eval().requires_grad_(False)
        if not getattr(self.model, "hf_device_map", None):  # placed by --teacher_device_map: accelerate's hooks move
            self.model.to(device)
        if self.label_order is not None:
            self.label_order = self.label_order.to(device)
        return self

    def view(self, batch: View) -> View:
        """The batch as the teacher reads it."""
        raise NotImplementedError

    def forward(self, view: View, **options: Any) -> ForwardResult:
        """The teacher's forward on its view of a batch, its logits in the student's label order."""
        result = self.adapter.forward(self.model, view, **options)
        if self.label_order is not None:
            result.logits = result.logits.index_select(-1, self.label_order)
        return result

    reads_student_tokens: bool = True  # token-level terms compare it with the student position by position

    def passes(
        self, batch: View, perturbed_ids: torch.Tensor | None, clean: bool, **options: Any
    ) -> tuple[Pass | None, Pass | None]:
        """No-grad passes over the clean text (with `clean`) and the perturbed ids (when given); `options` go to
        the forward (`output_hidden_states`, `output_attentions`, `relation_layer`)."""
        raise NotImplementedError

    def perturbed_pass(self, batch: View, mask: torch.Tensor, one_hot: torch.Tensor, **options: Any) -> Pass:
        """The generator step's pass on the text the generator writes at `mask` (`one_hot`: its straight-through
        choice of tokens)."""
        raise NotImplementedError

    def prepare(self, trainer) -> None:
        """Before training: the teacher-output cache (--cache_teacher_outputs) and the class shares of
        --kd_row_weighting class_balanced, each made once."""
        args, dataset = trainer.args, trainer.train_dataset
        if args.cache_teacher_outputs and dataset is not None and self.cache is None:
            folder = args.teacher_cache_dir or os.path.join(HF_HOME, "hf_kd", "teacher_outputs")
            self.cache = TeacherCache.build_or_load(trainer, dataset, folder)
        if args.kd_row_weighting == "class_balanced" and self.class_shares is None:
            self.class_shares = class_shares(trainer, self.cache, dataset)


def class_shares(trainer, cache: TeacherCache | None, dataset) -> torch.Tensor:
    """The share of the training rows the teacher predicts each class for (copies of labelled rows included),
    from the cache or one teacher pass over the distinct rows (no random number drawn)."""
    if cache is not None:
        predicted = cache.predicted_classes()
    else:
        predicted = teacher_logits(trainer, distinct_rows(dataset)).argmax(-1)
    predicted = predicted[torch.tensor(arrow_column(dataset, INDEX_COLUMN).to_numpy())]
    counts = torch.bincount(predicted, minlength=trainer.model.config.num_labels).double()
    return (counts / counts.sum()).to(trainer.args.device)


class SharedTokenizerTeacher(TeacherRole):
    """A teacher that reads the student's tokenization: clean and perturbed ids in one forward, and in the
    generator step the generator's straight-through embeddings, so that its gradient reaches the generator."""

    def view(self, batch: View) -> View:
        return batch

    @torch.no_grad()
    def passes(
        self, batch: View, perturbed_ids: torch.Tensor | None, clean: bool, **options: Any
    ) -> tuple[Pass | None, Pass | None]:
        parts = ([batch["input_ids"]] if clean else []) + ([perturbed_ids] if perturbed_ids is not None else [])
        if not parts:
            return None, None
        result = self.forward(batch, input_ids=torch.cat(parts), **options)
        if not clean:
            return None, (result, batch)
        first, second = split_result(result, len(batch["input_ids"]))
        return (first, batch), None if second is None else (second, batch)

    def perturbed_pass(self, batch: View, mask: torch.Tensor, one_hot: torch.Tensor, **options: Any) -> Pass:
        embeds = perturbed_embeddings(self.model.get_input_embeddings(), batch["input_ids"], mask, one_hot)
        return self.forward(batch, inputs_embeds=embeds, **options), batch


class OwnTokenizerTeacher(TeacherRole):
    """A teacher with a tokenizer of its own: it reads its own tokenization of the clean text (the `teacher_`
    columns) and of the perturbed text (decoded from the student's ids and tokenised again, at most
    `max_length` tokens), a constant in the generator step (no gradient through the text)."""

    def __init__(self, *args: Any, student_tokenizer: PreTrainedTokenizerBase, max_length: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.student_tokenizer, self.max_length = student_tokenizer, max_length

    def view(self, batch: View) -> View:
        return {name.removeprefix(TEACHER_PREFIX): batch[name] for name in TEACHER_COLUMNS if name in batch}

    reads_student_tokens = False

    @torch.no_grad()
    def passes(
        self, batch: View, perturbed_ids: torch.Tensor | None, clean: bool, **options: Any
    ) -> tuple[Pass | None, Pass | None]:
        clean_pass = perturbed_pass = None
        if clean:
            view = self.view(batch)
            clean_pass = self.forward(view, **options), view
        if perturbed_ids is not None:
            view = self.retokenise(perturbed_ids, batch)
            perturbed_pass = self.forward(view, **options), view
        return clean_pass, perturbed_pass

    def perturbed_pass(self, batch: View, mask: torch.Tensor, one_hot: torch.Tensor, **options: Any) -> Pass:
        sampled = batch["input_ids"].masked_scatter(mask, one_hot.argmax(dim=-1))
        view = self.retokenise(sampled, batch)
        with torch.no_grad():
            return self.forward(view, **options), view

    def retokenise(self, input_ids: torch.Tensor, batch: View) -> View:
        """The student's ids (perturbed text) as the teacher's tokenizer reads them: decoded, split at the
        student's separators into the example's one or two texts, and tokenised again (a host copy)."""
        student = self.student_tokenizer
        special = set(student.all_special_ids)
        separator = student.sep_token_id if student.sep_token_id is not None else -1
        mask = batch.get("attention_mask", torch.ones_like(input_ids)).bool()
        firsts, seconds = [], []
        for ids, keep in zip(input_ids.tolist(), mask.tolist(), strict=True):
            segments, current = [], []
            for token, real in zip(ids, keep, strict=True):
                if not real:
                    continue
                if token == separator:
                    if current:
                        segments.append(current)
                    current = []
                elif token not in special:
                    current.append(token)
            if current:
                segments.append(current)
            texts = [student.decode(segment).strip() for segment in segments] or [""]
            firsts.append(texts[0])
            seconds.append(" ".join(texts[1:]))
        pair = (firsts, seconds) if any(seconds) else (firsts,)
        encoded = self.tokenizer(*pair, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {name: value.to(input_ids.device) for name, value in encoded.items()}


def teacher_role(
    model: PreTrainedModel,
    student_tokenizer: PreTrainedTokenizerBase | None,
    own_tokenizer: PreTrainedTokenizerBase | None = None,
    label_order: list[int] | None = None,
    max_length: int | None = None,
) -> TeacherRole:
    """The teacher's role: with `own_tokenizer` (its vocabulary is not the student's) it reads its own columns."""
    if own_tokenizer is None:
        return SharedTokenizerTeacher(model, student_tokenizer, label_order)
    length = max_length or min(getattr(own_tokenizer, "model_max_length", 512), 512)
    return OwnTokenizerTeacher(
        model, own_tokenizer, label_order, student_tokenizer=student_tokenizer, max_length=length
    )


class GeneratorRole:
    """The masked-LM generator: it reads the student's tokenization with the tokens at a mask replaced by the
    mask token (the tokenizer has one: `DistillationTrainer.check_inputs`), and gives the vocabulary logits at
    the masked positions."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model, self.tokenizer, self.adapter = model, tokenizer, MaskedLMAdapter(model)
        self.mask_token_id = tokenizer.mask_token_id
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def to(self, device: torch.device) -> GeneratorRole:
        self.model.to(device)
        self.special_ids = self.special_ids.to(device)
        return self

    def masked_logits(self, batch: View, mask: torch.Tensor) -> torch.Tensor:
        """The vocabulary logits at the masked positions (N x V). The vocabulary projection (the LM head's
        largest product) is fed only the masked positions' hidden states, about 30% of them."""
        masked_ids = batch["input_ids"].masked_fill(mask, self.mask_token_id)
        projection = self.model.get_output_embeddings()

        def select_masked(module: nn.Module, args: tuple) -> tuple:
            # a boolean selection: its size depends on the mask, so it is the step's one host sync on GPUs
            return (args[0][mask], *args[1:])

        hook = None if projection is None else projection.register_forward_pre_hook(select_masked)
        try:
            logits = self.adapter.logits(self.model, masked_ids, batch)
        finally:
            if hook is not None:
                hook.remove()
        return logits if logits.dim() == 2 else logits[mask]


def split_result(result: ForwardResult | None, size: int) -> tuple[ForwardResult | None, ForwardResult | None]:
    """Split a clean+perturbed forward into its two halves (the second is None for a clean-only pass)."""
    if result is None or result.logits.size(0) == size:
        return result, None

    def part(start: int) -> ForwardResult:
        rows = slice(start, start + size)
        return ForwardResult(
            result.logits[rows],
            {stack: tuple(h[rows] for h in layers) for stack, layers in result.hidden.items()},
            {stack: value[rows] for stack, value in result.embeddings.items()},
            {stack: tuple(a[rows] for a in layers) for stack, layers in result.attentions.items()},
            None if result.relations is None else [value[rows] for value in result.relations],
        )

    return part(0), part(size)
