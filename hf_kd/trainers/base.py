"""`DistillationTrainer`: a `transformers.Trainer` whose model is the student, beside a frozen teacher.

Loss terms are computed by name (`ce`, `kd`, `rail`, `crd`, and `*_perturbed` for the adversarial
methods) and weighted by `args.loss_weights`; a zero weight skips the term and any forward pass that
only it needed. Each term is logged as the mean over the logging window next to the Trainer's `loss`.
A subclass is one row of METHODS.md: its name, aliases and default weights.

The update does not depend on how an effective batch is laid out (one batch, micro-batches under
`--gradient_accumulation_steps`, or several processes): `get_batch_samples` counts the rows and the
labelled rows of each optimizer step's micro-batches on every process, every per-row term is a sum over
its rows divided by that count, and the contrastive terms, whose negatives are the other rows, are
computed once on the whole effective batch (`effective.py`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
from typing import Any, ClassVar

import torch
from huggingface_hub.constants import HF_HOME
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_kd.adapters import EncoderAdapter, ForwardResult, LayerFeatures, adapter_for
from hf_kd.cache import TeacherCache, distinct_rows, teacher_logits
from hf_kd.data import INDEX_COLUMN, STATIC_MASK_COLUMN, TEACHER_COLUMNS, TEACHER_PREFIX
from hf_kd.errors import ArgumentError, NonFiniteLossError
from hf_kd.guards import disk_guard
from hf_kd.losses import (
    at_least_float32,
    crd_loss,
    kd_loss,
    kd_row_weights,
    labelled_rows,
    log_batch_size_scale,
    mean_pool,
    rail_loss,
    task_loss,
)
from hf_kd.trainers.effective import (
    EffectiveBatch,
    StepFeatures,
    StepPlan,
    average_gradients,
    contrastive_cotangents,
    gather_rows,
    replay_rng,
    rng_state,
    split_sentences,
    surrogate,
)

logger = logging.getLogger(__name__)
PROJECTIONS_FILE = "hf_kd_projections.safetensors"
EXTRAS_DIR = "hf_kd_extras"
MODEL_INPUT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
PERTURBED_IDS = "hf_kd_perturbed_ids"  # the min step's sampled text, kept with its micro-batch
TEACHER_TERMS = ("kd", "rail", "crd", "kd_perturbed", "crd_perturbed")
CONTRASTIVE_TERMS = ("crd", "crd_perturbed")  # terms over the whole effective batch (negatives are other rows)


class Projections(nn.Module):
    """`W_t` and `W_s` per stack (encoder, decoder): linear maps of teacher / student features to `d`."""

    def __init__(self, teacher_dims: dict[str, int], student_dims: dict[str, int], dim: int) -> None:
        super().__init__()
        self.teacher = nn.ModuleDict({stack: nn.Linear(size, dim) for stack, size in teacher_dims.items()})
        self.student = nn.ModuleDict({stack: nn.Linear(size, dim) for stack, size in student_dims.items()})


class DistillationTrainer(Trainer):
    # compute_loss divides by the effective batch's row counts: the Trainer must not divide again
    loss_is_scaled_for_ga: ClassVar[bool] = True
    method: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    default_weights: ClassVar[dict[str, float]] = {}
    default_generator_weights: ClassVar[dict[str, float]] = {}
    # "rail" or "crd" when the method trains W_t / W_s
    projection_features: ClassVar[str | None] = None
    # whether the student's optimizer trains the projections (RAIL-KD, CILDA+minILD)
    projections_in_student_step: ClassVar[bool] = False

    def __init__(
        self,
        model: PreTrainedModel,
        teacher: PreTrainedModel | None = None,
        teacher_label_order: list[int] | None = None,
        teacher_tokenizer: PreTrainedTokenizerBase | None = None,
        teacher_max_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        """`teacher_label_order[i]`: the teacher's logit for the student's label i (labels matched by name).
        `teacher_tokenizer`: the teacher's own, when it is not the student's; perturbed text is decoded and
        tokenised with it (at most `teacher_max_length` tokens) for the teacher."""
        # everything that can be refused is checked before the Trainer creates the output directory
        args = kwargs["args"]
        args.apply_method(self.method, self.default_weights, self.default_generator_weights)
        self.weights: dict[str, float] = dict(args.loss_weights)
        if any(self.uses(term) for term in TEACHER_TERMS) and teacher is None:
            raise ArgumentError(f"Method '{self.method}' needs a teacher: pass --teacher_name_or_path.")
        self._check_row_weighting(args, model)
        self.student_adapter = adapter_for(model)
        self.teacher_adapter = None if teacher is None else adapter_for(teacher)
        dims = self._projection_dims(args)
        super().__init__(model=model, **kwargs)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)
            teacher.to(self.args.device)
        self.teacher_tokenizer = teacher_tokenizer
        self.teacher_max_length = teacher_max_length or min(getattr(teacher_tokenizer, "model_max_length", 512), 512)
        self.teacher_label_order = (
            None if teacher_label_order is None else torch.tensor(teacher_label_order, device=self.args.device)
        )
        self.projections = None if dims is None else Projections(*dims, args.projection_dim).to(self.args.device)
        if self.projections is not None and self.projections_in_student_step:
            self.add_callback(_ClearProjectionGradients(self.projections))
        # transformers < 5.2x reads this instead of loss_is_scaled_for_ga (with num_items_in_batch given)
        self.model_accepts_loss_kwargs = True
        self.effective_batch: EffectiveBatch | None = None  # counts of the optimizer step under way
        self._pending_batches: list[dict[str, torch.Tensor]] = []  # micro-batches awaiting a contrastive step
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_counts: dict[str, torch.Tensor | int] = {}
        self._step_presence: dict[str, torch.Tensor | None] = {}  # terms recorded in the step under way
        self._student_loss_total, self._student_loss_steps = 0.0, 0
        self.skipped_batches = 0
        self.teacher_cache = None
        self.teacher_class_shares: torch.Tensor | None = None  # --kd_row_weighting class_balanced
        # on CPU a per-step check is free; on accelerators it would stall the host (see weighted_sum)
        self.check_nonfinite_every_step = args.nonfinite_loss == "skip" or self.args.device.type == "cpu"
        self._first_nonfinite_step: dict[str, torch.Tensor] = {}

    def _check_row_weighting(self, args, model: PreTrainedModel) -> None:
        """--kd_row_weighting / --kd_min_confidence weigh the rows of KD terms by the teacher's class probabilities."""
        flags = [f"--kd_row_weighting {args.kd_row_weighting}"] if args.kd_row_weighting != "none" else []
        flags += [f"--kd_min_confidence {args.kd_min_confidence:g}"] if args.kd_min_confidence > 0 else []
        if not flags:
            return
        if not (self.uses("kd") or self.uses("kd_perturbed")):
            raise ArgumentError(
                f"{' and '.join(flags)} weigh the rows of the KD terms, and method '{self.method}' with these weights "
                "has none: drop them, or pick a method with a KD term (kd, rail_kd, mate_kd, cilda, cilda_minild)."
            )
        if model.config.num_labels == 1:
            raise ArgumentError(
                f"{' and '.join(flags)} read the teacher's class probabilities; a regression task (one output) has "
                "none: drop them."
            )

    def prepare_teacher_cache(self) -> None:
        """Load or build the teacher-output cache (--cache_teacher_outputs) if it is not there yet."""
        wanted = self.args.cache_teacher_outputs and self.teacher is not None and self.train_dataset is not None
        if wanted and self.teacher_cache is None:
            folder = self.args.teacher_cache_dir or os.path.join(HF_HOME, "hf_kd", "teacher_outputs")
            self.teacher_cache = TeacherCache.build_or_load(self, self.train_dataset, folder)

    def train(self, *args: Any, **kwargs: Any):
        self.prepare_teacher_cache()
        self.prepare_class_shares()
        result = super().train(*args, **kwargs)
        self.raise_if_nonfinite()
        return result

    def _set_signature_columns_if_needed(self) -> None:
        """Keep every column some model needs: the student's signature alone would drop the teacher's
        `token_type_ids` under a DistilBERT student, and the static mask."""
        if self._signature_columns is None:
            extra = [STATIC_MASK_COLUMN, INDEX_COLUMN, *TEACHER_COLUMNS]
            self._signature_columns = [*MODEL_INPUT_COLUMNS, "label", "label_ids", "labels", *extra]

    # ----------------------------------------------------------------------------------------- terms
    def uses(self, term: str) -> bool:
        return self.weights.get(term, 0.0) > 0

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The Trainer's prefetch of one optimizer step's micro-batches, counting the rows the loss terms are
        averaged over: all rows (teacher terms) and the labelled rows (CE), summed over the micro-batches and
        every process. The labelled count is the `num_items_in_batch` the Trainer passes on."""
        batches = list(itertools.islice(epoch_iterator, num_batches))
        if not batches:
            return batches, None
        rows = float(sum(len(batch["input_ids"]) for batch in batches))
        labelled = sum(labelled_rows(batch["labels"]).sum().to(device) for batch in batches if "labels" in batch)
        counts = torch.stack([torch.tensor(rows, device=device), torch.as_tensor(labelled, device=device).float()])
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self.effective_batch = EffectiveBatch(counts[0], counts[1], self.accelerator.num_processes, len(batches))
        return batches, counts[1]

    def normalisers(self, num_items_in_batch=None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """What this process divides per-row sums by: (all rows, labelled rows) of the effective batch, or
        None for the micro-batch's own mean (a call outside the Trainer's loop)."""
        batch = self.effective_batch
        rows = None if batch is None else batch.row_normaliser()
        labelled = None
        if num_items_in_batch is not None:
            count = torch.as_tensor(num_items_in_batch, device=self.args.device, dtype=torch.float32)
            labelled = count.clamp_min(1) / self.accelerator.num_processes
        return rows, labelled

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The student's weighted loss. `num_items_in_batch` is the effective batch's labelled rows (all
        micro-batches, all processes): CE divides its sum by it, the teacher terms by the effective batch's
        rows, so the micro-batches' gradients add up to the effective batch's (the Trainer does not divide)."""
        if not model.training:  # evaluation / prediction: the student alone
            student = self.student_adapter.forward(model, inputs)
            loss = task_loss(student.logits, inputs["labels"]) if "labels" in inputs else None
            return (loss, SequenceClassifierOutput(loss=loss, logits=student.logits)) if return_outputs else loss
        normalisers = self.normalisers(num_items_in_batch)
        with self.accelerator.autocast():
            features = self.student_forward(model, inputs)
            terms = self.student_terms(inputs, features, normalisers)
        loss = self.weighted_sum(
            terms,
            self.weights,
            "loss_",
            len(inputs["input_ids"]),
            self.student_parameters(model),
            self.ce_presence(inputs, num_items_in_batch),
        )
        return (loss, terms) if return_outputs else loss

    def student_parameters(self, model: nn.Module) -> list[torch.Tensor]:
        trained = [p for p in model.parameters() if p.requires_grad]
        if self.projections is not None and self.projections_in_student_step:
            trained += list(self.projections.parameters())
        return trained

    @staticmethod
    def ce_presence(inputs: dict[str, torch.Tensor], num_items_in_batch=None) -> dict[str, torch.Tensor]:
        """CE terms are logged as the mean over steps whose effective batch had labelled rows."""
        if num_items_in_batch is None:
            has_labels = labelled_rows(inputs["labels"]).any().float()
        else:
            has_labels = (torch.as_tensor(num_items_in_batch) > 0).float()
        return {name: has_labels for name in ("ce", "ce_perturbed")}

    def student_forward(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        rng: tuple | None = None,
        teacher: tuple[LayerFeatures | None, LayerFeatures | None] | None = None,
    ) -> StepFeatures:
        """Teacher and student features on the clean batch (and on the perturbed ids, where the method has them).

        Clean and perturbed inputs share one forward pass per model. The teacher's no-grad pass runs
        before the student's: its buffers are freed before the student's graph is built, so the
        allocator reuses them instead of giving the heap back to the system and faulting it in again
        every step (~18,000 page faults a step on CPU when the student ran first). `teacher` reuses
        features computed earlier, `rng` replays the student's random state of an earlier pass (dropout).
        """
        size = len(inputs["input_ids"])
        perturbed = any(self.uses(t) for t in ("ce_perturbed", "kd_perturbed", "crd_perturbed"))
        input_ids = inputs["input_ids"]
        if perturbed:
            if PERTURBED_IDS not in inputs:  # kept, so that a second pass over the batch sees the same text
                inputs[PERTURBED_IDS] = self.perturbed_ids(inputs)
            input_ids = torch.cat([input_ids, inputs[PERTURBED_IDS]])
        hidden = any(self.uses(t) for t in ("rail", "crd", "crd_perturbed"))
        teacher_clean, teacher_perturbed = teacher or self.teacher_features(inputs, input_ids, hidden)
        state = rng or rng_state(self.args.device)
        with replay_rng(rng, self.args.device) if rng is not None else contextlib.nullcontext():
            student = self.student_adapter.forward(model, inputs, input_ids=input_ids, output_hidden_states=hidden)
        student_clean, student_perturbed = _split(student, size)
        return StepFeatures(
            teacher_clean,
            teacher_perturbed,
            self.features(student_clean, inputs, self.student_adapter),
            None if student_perturbed is None else self.features(student_perturbed, inputs, self.student_adapter),
            state,
        )

    def student_terms(
        self,
        inputs: dict[str, torch.Tensor],
        features: StepFeatures,
        normalisers: tuple = (None, None),
        contrastive: bool = True,
    ) -> dict[str, torch.Tensor]:
        """The min-step terms; the contrastive ones only with `contrastive` (else the caller computes them
        on the whole effective batch)."""
        rows, labelled = normalisers
        labels = inputs["labels"]
        temperature = self.args.kd_temperature
        terms: dict[str, torch.Tensor] = {}
        if self.uses("ce"):
            terms["ce"] = task_loss(features.student_clean.logits, labels, labelled)
        if self.uses("kd"):
            terms["kd"] = self.kd_term(features.teacher_clean, features.student_clean, temperature, rows)
        if self.uses("rail"):
            terms["rail"] = self.rail(features.teacher_clean, features.student_clean, rows)
        if self.uses("ce_perturbed"):
            terms["ce_perturbed"] = task_loss(features.student_perturbed.logits, labels, labelled)
        if self.uses("kd_perturbed"):
            terms["kd_perturbed"] = self.kd_term(
                features.teacher_perturbed, features.student_perturbed, temperature, rows
            )
        if contrastive:
            for name, (teacher, student) in self.contrastive_pairs(features, self.weights).items():
                terms[name] = self.contrastive_term(teacher, student, len(labels))
        return terms

    def kd_term(self, teacher: LayerFeatures, student: LayerFeatures, temperature: float, rows) -> torch.Tensor:
        """A student KD term, each row weighted by the teacher's prediction (--kd_row_weighting, --kd_min_confidence)."""
        args = self.args
        weights = kd_row_weights(
            teacher.logits, args.kd_row_weighting, args.kd_min_confidence, self.teacher_class_shares
        )
        return kd_loss(teacher.logits, student.logits, temperature, rows, weights)

    def prepare_class_shares(self) -> None:
        """--kd_row_weighting class_balanced: the share of the training rows the teacher predicts each class for,
        from the teacher-output cache or one teacher pass over the training rows (no random number drawn)."""
        if self.args.kd_row_weighting != "class_balanced" or self.teacher_class_shares is not None:
            return
        if self.teacher_cache is not None:
            logits = self.teacher_cache.tensors["logits"]
        else:
            logits = teacher_logits(self, distinct_rows(self.train_dataset))
        logits = logits[torch.as_tensor(self.train_dataset[INDEX_COLUMN])]  # every row, copies included
        counts = torch.bincount(logits.argmax(-1), minlength=logits.size(-1)).double()
        self.teacher_class_shares = (counts / counts.sum()).to(self.args.device)
        shares = ", ".join(f"{share:.3f}" for share in self.teacher_class_shares.tolist()[:10])
        logger.info("Class-balanced KD: the teacher's predicted class shares on the training rows: %s", shares)

    def contrastive_term(self, teacher: LayerFeatures, student: LayerFeatures, rows: int) -> torch.Tensor:
        """CRD in one micro-batch's pass: over every process's rows, or, with `--contrastive_negatives
        micro_batch`, over this micro-batch alone, weighted by its share of the effective batch's rows."""
        if self.args.contrastive_negatives == "effective_batch":
            return self.crd(teacher, student)
        value = self.crd(teacher, student, gather=False)
        return value if self.effective_batch is None else value * (rows / self.effective_batch.row_normaliser())

    @staticmethod
    def contrastive_pairs(
        features: StepFeatures, weights: dict[str, float]
    ) -> dict[str, tuple[LayerFeatures, LayerFeatures]]:
        """(teacher, student) features of each contrastive term that has a weight."""
        pairs = {
            "crd": (features.teacher_clean, features.student_clean),
            "crd_perturbed": (features.teacher_perturbed, features.student_perturbed),
        }
        return {name: pair for name, pair in pairs.items() if weights.get(name, 0) > 0}

    @staticmethod
    def teacher_view(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch as the teacher reads it: its own tokenization where its tokenizer is not the student's."""
        if TEACHER_COLUMNS[0] not in inputs:
            return inputs
        return {name.removeprefix(TEACHER_PREFIX): inputs[name] for name in TEACHER_COLUMNS if name in inputs}

    def teacher_forward(self, view: dict[str, torch.Tensor], **options: Any) -> ForwardResult:
        """The teacher's forward on its view of the batch, its logits in the student's label order."""
        result = self.teacher_adapter.forward(self.teacher, view, **options)
        if self.teacher_label_order is not None:
            result.logits = result.logits.index_select(-1, self.teacher_label_order)
        return result

    def teacher_features(
        self, inputs: dict[str, torch.Tensor], input_ids: torch.Tensor, hidden: bool
    ) -> tuple[LayerFeatures | None, LayerFeatures | None]:
        """The teacher's features on the clean and perturbed parts of `input_ids` (None where no term reads
        them); the clean part comes from the teacher-output cache when there is one. A teacher with another
        tokenizer reads its own tokenization of the clean batch."""
        size = len(inputs["input_ids"])
        view = self.teacher_view(inputs)
        clean_needed = any(self.uses(t) for t in ("kd", "rail", "crd"))
        perturbed_needed = any(self.uses(t) for t in ("kd_perturbed", "crd_perturbed"))
        if view is not inputs:  # another tokenizer: clean and perturbed text are tokenised apart
            return self._teacher_features_apart(inputs, view, input_ids[size:], clean_needed, perturbed_needed, hidden)
        cached = self.teacher_cache is not None and clean_needed
        clean = self.cached_teacher_features(inputs) if cached else None
        if not (perturbed_needed or (clean_needed and not cached)):
            return clean, None
        with torch.no_grad():
            result = self.teacher_forward(
                view, input_ids=input_ids[size:] if cached else input_ids, output_hidden_states=hidden
            )
        if cached:
            return clean, self.features(result, view, self.teacher_adapter)
        clean_result, perturbed_result = _split(result, size)
        clean = self.features(clean_result, view, self.teacher_adapter, rail_layers_only=True)
        perturbed = None if perturbed_result is None else self.features(perturbed_result, view, self.teacher_adapter)
        return clean, perturbed

    def cached_teacher_features(self, inputs: dict[str, torch.Tensor]) -> LayerFeatures:
        """The teacher's clean features from the cache; it pooled every layer: keep this epoch's RAIL-KD layers."""
        clean = self.teacher_cache.lookup(inputs[INDEX_COLUMN], self.args.device)
        if clean.pooled is not None:
            clean.pooled = {stack: value[:, self.rail_layers(stack)] for stack, value in clean.pooled.items()}
        return clean

    @torch.no_grad()
    def _teacher_features_apart(
        self,
        inputs: dict[str, torch.Tensor],
        view: dict[str, torch.Tensor],
        perturbed_ids: torch.Tensor,
        clean_needed: bool,
        perturbed_needed: bool,
        hidden: bool,
    ) -> tuple[LayerFeatures | None, LayerFeatures | None]:
        """A teacher of another tokenizer: its own tokenization of the clean batch (or the cache), and of the
        perturbed text, decoded from the student's ids and tokenised again."""
        clean = perturbed = None
        if clean_needed and self.teacher_cache is not None:
            clean = self.cached_teacher_features(inputs)
        elif clean_needed:
            result = self.teacher_forward(view, output_hidden_states=hidden)
            clean = self.features(result, view, self.teacher_adapter, rail_layers_only=True)
        if perturbed_needed:
            perturbed_view = self.retokenise(perturbed_ids, inputs)
            result = self.teacher_forward(perturbed_view, output_hidden_states=hidden)
            perturbed = self.features(result, perturbed_view, self.teacher_adapter)
        return clean, perturbed

    def retokenise(self, input_ids: torch.Tensor, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The student's ids (perturbed text) as the teacher's tokenizer reads them: decoded, split at the
        student's separators into the example's one or two texts, and tokenised again (a host copy)."""
        student_tokenizer = self.processing_class
        special = set(student_tokenizer.all_special_ids)
        separator = student_tokenizer.sep_token_id if student_tokenizer.sep_token_id is not None else -1
        mask = inputs.get("attention_mask", torch.ones_like(input_ids)).bool()
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
            texts = [student_tokenizer.decode(segment).strip() for segment in segments] or [""]
            firsts.append(texts[0])
            seconds.append(" ".join(texts[1:]))
        pair = (firsts, seconds) if any(seconds) else (firsts,)
        encoded = self.teacher_tokenizer(
            *pair, padding=True, truncation=True, max_length=self.teacher_max_length, return_tensors="pt"
        )
        return {name: value.to(self.args.device) for name, value in encoded.items()}

    def perturbed_ids(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(f"Method '{self.method}' has no perturbed inputs.")

    def weighted_sum(
        self,
        terms: dict[str, torch.Tensor],
        weights: dict[str, float],
        prefix: str,
        batch_size: int,
        parameters: list[torch.Tensor],
        presence: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`sum_i w_i * term_i` (CRD weights divided by ln B with --scale_crd_by_log_batch); records each term.

        A non-finite total stops training naming the term(s) and step, or, with `--nonfinite_loss skip`,
        is replaced by a zero that still reaches every trained parameter (so DDP and the gradient
        all-reduce see the same collective calls on every process) and counted in `skipped_batches`.
        Skipping decides on every step, and so does stopping on CPU, where a check costs nothing. On an
        accelerator a check would stall the host every step, so stopping is decided at the next logging
        step, checkpoint or the end of training, from a device-side record of each term's first
        non-finite step: the message names the same term(s) and step.
        """
        crd_scale = log_batch_size_scale(self.effective_rows(batch_size)) if self.args.scale_crd_by_log_batch else 1.0
        total = torch.zeros((), device=self.args.device)
        for name, value in terms.items():
            total = total + weights[name] / (crd_scale if name.startswith("crd") else 1.0) * value
        if not self.check_nonfinite_every_step:
            self._watch_nonfinite(prefix, terms)
        elif not torch.isfinite(total):
            bad = [prefix + name for name, value in terms.items() if not torch.isfinite(value)]
            if self.args.nonfinite_loss == "raise":
                raise self._nonfinite_error(bad, self.state.global_step)
            self.skipped_batches += 1
            logger.warning(
                "Loss term(s) %s became non-finite at step %d: batch skipped (%d so far).",
                ", ".join(bad),
                self.state.global_step,
                self.skipped_batches,
            )
            return sum(parameter.sum() * 0.0 for parameter in parameters)
        for name, value in terms.items():
            self._record(prefix + name, value, (presence or {}).get(name))
        self._record(prefix.rstrip("_"), total)  # "loss" (student) or "generator_loss"
        return total

    def effective_rows(self, local_rows: int) -> int:
        """Rows of the whole effective batch (one host read; only --scale_crd_by_log_batch asks)."""
        if self.effective_batch is None:
            return local_rows * self.accelerator.num_processes
        return int(self.effective_batch.rows.item())

    # ------------------------------------------------------------------------- intermediate layers
    def _projection_dims(self, args) -> tuple[dict[str, int], dict[str, int]] | None:
        """Input sizes of `W_t` and `W_s` per stack, or None when the method uses no projections."""
        weights = {**args.generator_loss_weights, **self.weights}
        if self.projection_features is None or not any(
            w > 0 for t, w in weights.items() if t in ("rail", "crd", "crd_perturbed")
        ):
            return None
        teacher_layers, student_layers = self.teacher_adapter.num_layers(), self.student_adapter.num_layers()
        teacher_sizes, student_sizes = self.teacher_adapter.hidden_sizes(), self.student_adapter.hidden_sizes()
        if set(teacher_layers) != set(student_layers):
            raise ArgumentError(
                f"RAIL-KD and the contrastive terms pair the teacher's layer stacks {sorted(teacher_layers)} with the "
                f"student's {sorted(student_layers)}: use models with the same stacks (an encoder-decoder with an "
                "encoder-decoder), or KD, which reads only the logits."
            )
        teacher_dims, student_dims = {}, {}
        for stack in student_layers:
            if self.projection_features == "rail":
                if student_layers[stack] > teacher_layers[stack]:
                    raise ArgumentError(
                        f"RAIL-KD pairs each of the student's {student_layers[stack]} {stack} layers with a distinct "
                        f"teacher layer, but the teacher has {teacher_layers[stack]}: use a shallower student."
                    )
                teacher_dims[stack] = student_layers[stack] * teacher_sizes[stack]
            else:
                teacher_dims[stack] = teacher_layers[stack] * teacher_sizes[stack]
            student_dims[stack] = student_layers[stack] * student_sizes[stack]
        return teacher_dims, student_dims

    def rail_layers(self, stack: str) -> list[int]:
        """Teacher layers paired with the student's (RAIL-KD draws new ones every epoch)."""
        raise NotImplementedError

    def features(
        self,
        result: ForwardResult,
        view: dict[str, torch.Tensor],
        adapter: EncoderAdapter,
        rail_layers_only: bool = False,
    ) -> LayerFeatures:
        """What RAIL-KD (pooled layers) and the contrastive loss (sentence position) read of a forward.

        Each model reads its own view of the batch (`view`: its tokenization) through its own `adapter`:
        pooling over its own tokens, its own sentence position. `rail_layers_only` pools just the teacher
        layers RAIL-KD pairs this epoch (e.g. 6 of 24) instead of all of them; the teacher-output cache
        pools all, since the pairing changes.
        """
        pooled = sentence = None
        if result.hidden and self.projection_features == "rail":
            mask = view.get("attention_mask") if self.args.rail_pooling == "masked_mean" else None
            pooled = {}
            for stack, layers in result.hidden.items():
                wanted = self.rail_layers(stack) if rail_layers_only else range(len(layers))
                pooled[stack] = torch.stack([mean_pool(layers[i], mask) for i in wanted], dim=1)
        if result.hidden and self.projection_features == "crd":
            positions = adapter.sentence_positions(view)
            rows = torch.arange(len(positions), device=positions.device)
            sentence = {
                stack: torch.stack([h[rows, positions] for h in layers], dim=1)
                for stack, layers in result.hidden.items()
            }
        return LayerFeatures(result.logits, pooled, sentence)

    def rail(self, teacher: LayerFeatures, student: LayerFeatures, normaliser=None) -> torch.Tensor:
        """RAIL-KD: the epoch's teacher layers (already selected) against all student layers, per stack, summed."""
        total = 0.0
        for stack, student_pooled in student.pooled.items():
            total = total + rail_loss(
                self.projections.teacher[stack](at_least_float32(teacher.pooled[stack].flatten(1))),
                self.projections.student[stack](at_least_float32(student_pooled.flatten(1))),
                normaliser,
            )
        return total

    def crd(self, teacher: LayerFeatures, student: LayerFeatures, gather: bool = True) -> torch.Tensor:
        """Contrastive loss on all layers at the sentence position, per stack, summed, over every process's
        rows (a row's negatives are the whole effective batch) or, without `gather`, over this process's."""
        processes = self.accelerator.num_processes if gather else 1
        total = 0.0
        for stack, student_sentence in student.sentence.items():
            total = total + crd_loss(
                self.projections.teacher[stack](
                    at_least_float32(gather_rows(teacher.sentence[stack], processes).flatten(1))
                ),
                self.projections.student[stack](at_least_float32(gather_rows(student_sentence, processes).flatten(1))),
                self.args.crd_temperature,
            )
        return total

    def _watch_nonfinite(self, prefix: str, terms: dict[str, torch.Tensor]) -> None:
        """Keep, on the device, the first step at which each term was non-finite (-1: never)."""
        step = torch.full((), self.state.global_step, dtype=torch.long, device=self.args.device)
        for name, value in terms.items():
            first = self._first_nonfinite_step.get(prefix + name, step.new_full((), -1))
            bad = ~torch.isfinite(value.detach()).all()
            self._first_nonfinite_step[prefix + name] = torch.where(bad & (first < 0), step, first)

    def raise_if_nonfinite(self) -> None:
        """Read the device-side record (one host sync) and stop if a term went non-finite."""
        if not self._first_nonfinite_step:
            return
        values = torch.stack(list(self._first_nonfinite_step.values())).tolist()
        steps = dict(zip(self._first_nonfinite_step, values, strict=True))
        bad = {name: step for name, step in steps.items() if step >= 0}
        if bad:
            first = min(bad.values())
            raise self._nonfinite_error([name for name, step in bad.items() if step == first], first)

    @staticmethod
    def _nonfinite_error(names: list[str], step: int) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"Loss term(s) {', '.join(names)} became non-finite at step {step}: lower the learning rate, check "
            "the data, train in float32, or pass --nonfinite_loss skip to skip such batches."
        )

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint; a full disk ends the run in one line and removes the partial folder,
        so the previous checkpoint stays the newest complete one."""
        self.raise_if_nonfinite()  # never save a checkpoint with non-finite weights
        folder = os.path.join(self._get_output_dir(trial), f"checkpoint-{self.state.global_step}")
        modules = [self.accelerator.unwrap_model(model), *self.extra_state_modules().values()]
        # weights and two optimizer moments
        needed = 3 * sum(p.numel() * p.element_size() for module in modules for p in module.parameters())
        with disk_guard(folder, needed, "a checkpoint", remove_on_failure=folder):
            return super()._save_checkpoint(model, trial)

    # ----------------------------------------------------------------------------------- optimizer
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.projections is not None and self.projections_in_student_step:
            decay = [p for n, p in self.projections.named_parameters() if not n.endswith("bias")]
            no_decay = [p for n, p in self.projections.named_parameters() if n.endswith("bias")]
            optimizer.add_param_group({"params": decay, "weight_decay": self.args.weight_decay})
            optimizer.add_param_group({"params": no_decay, "weight_decay": 0.0})
        return optimizer

    # ------------------------------------------------------------------------------- training step
    def step_kind(self) -> str:
        """The kind of the step under way: `student` (min step) or, for the adversarial methods, `generator`."""
        return "student"

    def training_step(self, model, inputs, num_items_in_batch=None):
        """One micro-batch of an effective batch (`get_batch_samples` counted its rows).

        Per-row terms are computed and backpropagated micro-batch by micro-batch. When the step has a
        contrastive term and the effective batch several micro-batches, they are held back and run together
        at the last one (`cached_contrastive_step`).
        """
        kind = self.step_kind()
        micro_batches = 1 if self.effective_batch is None else self.effective_batch.micro_batches
        contrastive = any(self.step_weights(kind).get(t, 0) > 0 for t in CONTRASTIVE_TERMS)
        if micro_batches > 1 and contrastive and self.args.contrastive_negatives == "effective_batch":
            self._pending_batches.append(inputs)
            loss = torch.zeros((), device=self.args.device)  # the Trainer's `loss` log is replaced by the student's
            if self.accelerator.sync_gradients:
                self.cached_contrastive_step(self.step_plan(kind, model, num_items_in_batch))
        elif kind == "student":
            loss = super().training_step(model, inputs, num_items_in_batch)
        else:
            loss = self.generator_step(model, inputs)
        if self.accelerator.sync_gradients:
            self.end_step(kind)
        return loss

    def step_weights(self, kind: str) -> dict[str, float]:
        return self.weights

    def end_step(self, kind: str) -> None:
        """After the effective batch's last micro-batch, before the Trainer's optimizer step."""
        if kind == "student" and self.projections is not None and self.projections_in_student_step:
            average_gradients(self.projections.parameters(), self.accelerator)  # DDP syncs only the student
        for name, present in self._step_presence.items():
            self._term_counts[name] = self._term_counts.get(name, 0) + (1 if present is None else present)
        self._step_presence = {}
        self.effective_batch = None
        self._pending_batches = []

    def step_plan(self, kind: str, model: nn.Module, num_items_in_batch=None) -> StepPlan:
        """How a min step runs its micro-batches (the adversarial trainers add the max step)."""
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        labelled = num_items_in_batch if num_items_in_batch is not None else self.effective_batch.labelled
        return StepPlan(
            forward=lambda inputs, rng, earlier: self.student_forward(
                model, inputs, rng, None if earlier is None else (earlier.teacher_clean, earlier.teacher_perturbed)
            ),
            terms=lambda inputs, features, normalisers: self.student_terms(
                inputs, features, normalisers, contrastive=False
            ),
            weights=self.weights,
            prefix="loss_",
            parameters=self.student_parameters(model),
            normalisers=self.normalisers(labelled),
            presence={name: (labelled > 0).float() for name in ("ce", "ce_perturbed")},
            backward=self.accelerator.backward,
            no_sync=lambda: self.accelerator.no_sync(model),
            teacher_grad=False,
        )

    def cached_contrastive_step(self, plan: StepPlan) -> torch.Tensor:
        """Run the held-back micro-batches as one effective batch (gradient caching, effective.py).

        First every micro-batch without a graph, keeping the features the contrastive terms read; then
        those terms on all rows at once, backpropagated into the projections and into the features
        (leaves); then every micro-batch again with a graph, its random state replayed, its per-row terms
        plus `<features, their gradient>` backpropagated. The result is the gradient of the effective batch.
        Returns the contrastive terms' weighted value.
        """
        batches = [self._prepare_inputs(batch) for batch in self._pending_batches]
        with torch.no_grad(), self.accelerator.autocast():
            first = [plan.forward(inputs, None, None) for inputs in batches]
        leaves: dict[str, torch.Tensor] = {}
        terms, sizes = {}, []
        for name in self.contrastive_pairs(first[0], plan.weights):
            sides = []
            for role, side in (("teacher", 0), ("student", 1)):
                joined, sizes = split_sentences(
                    [self.contrastive_pairs(f, plan.weights)[name][side].sentence for f in first]
                )
                trained = role == "student" or plan.teacher_grad
                for stack, value in joined.items():
                    leaves[f"{name}/{role}/{stack}"] = at_least_float32(value.detach()).requires_grad_(trained)
                sides.append(LayerFeatures(None, None, {stack: leaves[f"{name}/{role}/{stack}"] for stack in joined}))
            terms[name] = self.crd(*sides)
        trained_leaves = {key: leaf for key, leaf in leaves.items() if leaf.requires_grad}
        total = self.weighted_sum(
            terms, plan.weights, plan.prefix, sum(sizes), plan.parameters + list(trained_leaves.values())
        )
        plan.backward(total)  # the projections' gradients, scaled as the rest under fp16
        cotangents = contrastive_cotangents(trained_leaves, sizes)
        scaler = getattr(self.accelerator, "scaler", None)
        if plan.prefix == "loss_" and scaler is not None:  # the second backward scales the surrogate again
            scale = scaler.get_scale()
            cotangents = [{k: None if v is None else v / scale for k, v in share.items()} for share in cotangents]
        for index, (inputs, features) in enumerate(zip(batches, first, strict=True)):
            last = index == len(batches) - 1
            with contextlib.nullcontext() if last else plan.no_sync():
                with self.accelerator.autocast():
                    again = plan.forward(inputs, features.rng, features)
                    loss = self.weighted_sum(
                        plan.terms(inputs, again, plan.normalisers),
                        plan.weights,
                        plan.prefix,
                        len(inputs["input_ids"]),
                        plan.parameters,
                        plan.presence,
                    )
                    loss = loss + surrogate(self.contrastive_features(again, plan.weights), cotangents[index])
                if loss.requires_grad:
                    plan.backward(loss)
        return total.detach()

    def contrastive_features(self, features: StepFeatures, weights: dict[str, float]) -> dict[str, torch.Tensor]:
        """The sentence features the contrastive terms read, keyed as `cached_contrastive_step`'s leaves."""
        named = {}
        for name, pair in self.contrastive_pairs(features, weights).items():
            for role, side in (("teacher", pair[0]), ("student", pair[1])):
                for stack, value in side.sentence.items():
                    named[f"{name}/{role}/{stack}"] = value
        return named

    def _clip_grad_norm(self, model):
        if self.projections is not None and self.projections_in_student_step:
            parameters = list(model.parameters()) + list(self.projections.parameters())
            return self.accelerator.clip_grad_norm_(parameters, self.args.max_grad_norm)
        return super()._clip_grad_norm(model)

    # ------------------------------------------------------------------------------------- logging
    def _record(self, name: str, value: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """Add this process's share of a term's value in the effective batch to the logging window.

        Per-row terms are divided by the effective batch's rows, so the shares of the micro-batches and
        processes add up to the effective batch's value; a term computed on all rows (contrastive) is
        recorded once per step. A term counts once per optimizer step (`end_step`); `present` (0 or 1, on
        the device) leaves a step out of the term's mean without a host sync, as the CE terms do for
        effective batches without labelled rows.
        """
        share = value.detach().float() / self.accelerator.num_processes
        self._term_sums[name] = self._term_sums.get(name, 0.0) + share
        if self.effective_batch is None:  # a call outside the Trainer's loop is a step of its own
            self._term_counts[name] = self._term_counts.get(name, 0) + (1 if present is None else present)
        else:
            self._step_presence[name] = present

    def _window_means(self) -> dict[str, tuple[float, float]]:
        """Each recorded term's (mean, count of steps) over the window, all processes' shares summed."""
        names = list(self._term_sums)
        device = self.args.device
        sums = torch.stack([torch.as_tensor(self._term_sums[n], dtype=torch.float32, device=device) for n in names])
        counts = torch.stack(
            [torch.as_tensor(self._term_counts.get(n, 0), dtype=torch.float32, device=device) for n in names]
        )
        sums = self.accelerator.reduce(sums, reduction="sum")
        self._term_sums, self._term_counts = {}, {}
        means = (sums / counts.clamp_min(1)).tolist()
        return {name: (mean, count) for name, mean, count in zip(names, means, counts.tolist(), strict=True)}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add each loss term's mean over the logging window to the Trainer's training logs.

        `loss` becomes the mean weighted student loss of the window's min steps (the Trainer's own
        average would count the adversarial methods' max steps as zeros); `train_loss` likewise. Every
        value is the effective batch's, whatever its layout (micro-batches, processes).
        """
        if "loss" in logs:
            self.raise_if_nonfinite()
        if ("loss" in logs or "train_loss" in logs) and self._term_sums:
            window = self._window_means()
            if "loss" in logs:
                logs.update({name: mean for name, (mean, _) in window.items()})
            mean, count = window.get("loss", (0.0, 0.0))
            self._student_loss_total += mean * count
            self._student_loss_steps += count
        if "train_loss" in logs and self._student_loss_steps:
            logs["train_loss"] = self._student_loss_total / self._student_loss_steps
        if self.skipped_batches and "loss" in logs:
            logs["skipped_batches"] = float(self.skipped_batches)
        super().log(logs, start_time)

    # ---------------------------------------------------------------------------- checkpoint extras
    def extra_state_modules(self) -> dict[str, nn.Module]:
        """Trained modules besides the student, saved in every checkpoint and beside the final student."""
        return {} if self.projections is None else {"projections": self.projections}

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            self.save_training_extras(output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.load_training_extras(checkpoint)

    def save_training_extras(self, output_dir: str) -> None:
        """Projections (and, in subclasses, generator state) of a checkpoint."""
        if self.projections is not None:
            save_file(_contiguous(self.projections.state_dict()), os.path.join(output_dir, PROJECTIONS_FILE))

    def load_training_extras(self, checkpoint: str) -> None:
        path = os.path.join(checkpoint, PROJECTIONS_FILE)
        if self.projections is not None and os.path.isfile(path):
            self.projections.load_state_dict(load_file(path, device=str(self.args.device)))

    def save_extras(self, output_dir: str | None = None) -> str | None:
        """Save the generator and projections beside the final student, in `hf_kd_extras/`."""
        modules = self.extra_state_modules()
        if not modules or not self.args.should_save:
            return None
        folder = os.path.join(output_dir or self.args.output_dir, EXTRAS_DIR)
        os.makedirs(folder, exist_ok=True)
        for name, module in modules.items():
            if isinstance(module, PreTrainedModel):
                module.save_pretrained(os.path.join(folder, name))
            else:
                save_file(_contiguous(module.state_dict()), os.path.join(folder, f"{name}.safetensors"))
        with open(os.path.join(folder, "README.json"), "w") as f:
            json.dump({"method": self.method, "saved": sorted(modules)}, f, indent=2)
        return folder


class _ClearProjectionGradients(TrainerCallback):
    """The Trainer zeroes only the student's gradients after an optimizer step; the projections' too."""

    def __init__(self, projections: nn.Module) -> None:
        self.projections = projections

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.projections.zero_grad(set_to_none=True)


def _split(result: ForwardResult | None, size: int) -> tuple[ForwardResult | None, ForwardResult | None]:
    """Split a clean+perturbed forward into its two halves (the second is None for a clean-only pass)."""
    if result is None or result.logits.size(0) == size:
        return result, None

    def part(start: int) -> ForwardResult:
        hidden = {stack: tuple(h[start : start + size] for h in layers) for stack, layers in result.hidden.items()}
        return ForwardResult(result.logits[start : start + size], hidden)

    return part(0), part(size)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().contiguous().cpu() for key, value in state.items()}
