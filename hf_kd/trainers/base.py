"""`DistillationTrainer`: a `transformers.Trainer` whose model is the student, beside a frozen teacher.

The loss is a weighted sum of the terms of `hf_kd.terms` (`args.loss_weights`); a zero weight skips the
term and any forward pass or feature only it needed. Each model is a role (`hf_kd.roles`) that reads the
batch through its own view. Each term is logged as the mean over the logging window next to the Trainer's
`loss` (`term_log.py`). A subclass is one row of METHODS.md: its name, aliases and default weights.

The update does not depend on how an effective batch is laid out (one batch, micro-batches under
`--gradient_accumulation_steps`, or several processes): `effective.py` counts each optimizer step's rows
on every process, every per-row term divides its sum by that count, and the contrastive terms, whose
negatives are the other rows, are computed once on the whole effective batch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_kd.adapters import EncoderAdapter, ForwardResult, LayerFeatures
from hf_kd.data import INDEX_COLUMN, STATIC_MASK_COLUMN, TEACHER_COLUMNS
from hf_kd.errors import ArgumentError
from hf_kd.losses import log_batch_size_scale, task_loss
from hf_kd.memory import MappedPages, ReleaseMappedPages
from hf_kd.roles import StudentRole, TeacherRole, split_result, teacher_role
from hf_kd.terms import uses_teacher, weighted
from hf_kd.trainers.effective import EffectiveStep, StepFeatures, average_gradients, replay_rng, rng_state
from hf_kd.trainers.extras import CheckpointExtras
from hf_kd.trainers.features import Projections, layer_features
from hf_kd.trainers.layerwise import LayerPlan
from hf_kd.trainers.steps import StudentStep, TermContext, decay_groups
from hf_kd.trainers.term_log import TermLog, nonfinite_error

logger = logging.getLogger(__name__)
MODEL_INPUT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
PERTURBED_IDS = "hf_kd_perturbed_ids"  # the min step's sampled text, kept with its micro-batch


class DistillationTrainer(CheckpointExtras, Trainer):
    # compute_loss divides by the effective batch's row counts: the Trainer must not divide again
    loss_is_scaled_for_ga: ClassVar[bool] = True
    method: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    default_weights: ClassVar[dict[str, float]] = {}
    default_generator_weights: ClassVar[dict[str, float]] = {}
    adversarial: ClassVar[bool] = False  # whether the method has a generator (max) step

    def __init__(
        self,
        model: PreTrainedModel,
        teacher: TeacherRole | PreTrainedModel | None = None,
        teacher_label_order: list[int] | None = None,
        teacher_tokenizer: PreTrainedTokenizerBase | None = None,
        teacher_max_length: int | None = None,
        generator: PreTrainedModel | None = None,
        **kwargs: Any,
    ) -> None:
        """`teacher_label_order[i]`: the teacher's logit for the student's label i (labels matched by name).
        `teacher_tokenizer`: the teacher's own, when it is not the student's (`hf_kd.roles`); perturbed text is
        tokenised with it (at most `teacher_max_length` tokens) for the teacher. `generator`: the adversarial
        methods' masked LM (their subclass makes its role)."""
        # everything that can be refused is checked before the Trainer creates the output directory
        args = kwargs["args"]
        if args.method != self.method or args.loss_weights is None:  # a trainer made directly, not by parse_args
            args.apply_method(self.method, self.default_weights, self.default_generator_weights)
        self.weights: dict[str, float] = dict(args.loss_weights)
        tokenizer = kwargs.get("processing_class")
        self.check_inputs(args, teacher is not None, generator is not None, tokenizer, model)
        self.student = StudentRole(model, tokenizer)
        self.teacher: TeacherRole | None = teacher  # a role (hf_kd.build), or a model to read as one
        if teacher is not None and not isinstance(teacher, TeacherRole):
            self.teacher = teacher_role(teacher, tokenizer, teacher_tokenizer, teacher_label_order, teacher_max_length)
        self.layers = LayerPlan(
            self.method, args, self.weights, args.generator_loss_weights, self.teacher, self.student
        )
        super().__init__(model=model, **kwargs)
        if self.teacher is not None:
            self.teacher.to(self.args.device)
        sizes = self.layers.sizes
        self.projections = None if sizes is None else Projections(*sizes, self.layers.dim).to(self.args.device)
        self.add_callback(ReleaseMappedPages(MappedPages.of(self.train_dataset, self.eval_dataset)))
        if self.projections_in("student"):
            self.add_callback(_ClearProjectionGradients(self.projections))
        # transformers < 5.2x reads this instead of loss_is_scaled_for_ga (with num_items_in_batch given)
        self.model_accepts_loss_kwargs = True
        self.step = EffectiveStep(self.accelerator, self.args.device, args.contrastive_negatives)
        self.term_log = TermLog(self.accelerator, self.args.device)
        self.skipped_batches = 0
        # on CPU a per-step check is free; on accelerators it would stall the host (see weighted_sum)
        self.check_nonfinite_every_step = args.nonfinite_loss == "skip" or self.args.device.type == "cpu"

    @classmethod
    def check_inputs(cls, args, teacher: bool, generator: bool, tokenizer=None, model=None) -> None:
        """The one check of what the method needs, made from the flags (`hf_kd.run`) and again from the models
        (a trainer made directly): a teacher for its teacher terms, a generator with a mask token for the
        adversarial methods, a KD term and classes for the KD row weighting."""
        if (cls.adversarial or uses_teacher(args.loss_weights, args.generator_loss_weights)) and not teacher:
            raise ArgumentError(f"Method '{cls.method}' needs a teacher: pass --teacher_name_or_path.")
        if cls.adversarial and not generator:
            raise ArgumentError(f"Method '{cls.method}' needs a masked-LM generator: pass --generator_name_or_path.")
        if cls.adversarial and (tokenizer is None or tokenizer.mask_token_id is None):
            raise ArgumentError(
                f"Method '{cls.method}' masks tokens but the tokenizer has no mask token: use --tokenizer_name with one."
            )
        flags = [f"--kd_row_weighting {args.kd_row_weighting}"] if args.kd_row_weighting != "none" else []
        flags += [f"--kd_min_confidence {args.kd_min_confidence:g}"] if args.kd_min_confidence > 0 else []
        weights = {**args.generator_loss_weights, **args.loss_weights}
        if flags and not any(weights.get(name, 0) > 0 for name in ("kd", "kd_perturbed")):
            raise ArgumentError(
                f"{' and '.join(flags)} weigh the rows of the KD terms, and method '{cls.method}' with these weights "
                "has none: drop them, or pick a method with a KD term (kd, rail_kd, mate_kd, cilda, cilda_minild)."
            )
        if flags and model is not None and model.config.num_labels == 1:
            raise ArgumentError(
                f"{' and '.join(flags)} read the teacher's class probabilities; a regression task (one output) has "
                "none: drop them."
            )

    def projections_in(self, kind: str) -> bool:
        """Whether the `kind` step ("student" or "generator") trains the projections: its weighted terms read them."""
        weights = self.weights if kind == "student" else self.args.generator_loss_weights
        return self.projections is not None and any(term.projected for term in weighted(weights))

    def train(self, *args: Any, **kwargs: Any):
        if self.teacher is not None:
            self.teacher.prepare(self)
        result = super().train(*args, **kwargs)
        self.term_log.raise_if_nonfinite()
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

    def reads(self, side: str, weights: dict[str, float] | None = None, teacher: bool = False) -> bool:
        """Whether a weighted term reads the `side` ("clean" or "perturbed") text (the teacher's, with `teacher`)."""
        return any(t.side == side and (t.teacher or not teacher) for t in weighted(weights or self.weights))

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The Trainer's prefetch of one optimizer step's micro-batches, counted (`EffectiveStep.count`)."""
        batches = list(itertools.islice(epoch_iterator, num_batches))
        return (batches, None) if not batches else (batches, self.step.count(batches))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The student's weighted loss. `num_items_in_batch` is the effective batch's labelled rows (all
        micro-batches, all processes): CE divides its sum by it, the teacher terms by the effective batch's
        rows, so the micro-batches' gradients add up to the effective batch's (the Trainer does not divide)."""
        if not model.training:  # evaluation / prediction: the student alone
            student = self.student.forward(model, inputs)
            loss = task_loss(student.logits, inputs["labels"]) if "labels" in inputs else None
            return (loss, SequenceClassifierOutput(loss=loss, logits=student.logits)) if return_outputs else loss
        runner = StudentStep(self, model, num_items_in_batch)
        with self.accelerator.autocast():
            features = runner.forward(inputs, None, None)
            terms = self.compute_terms(self.weights, inputs, features, runner.normalisers)
        rows = len(inputs["input_ids"])
        loss = self.weighted_sum(terms, self.weights, "loss_", rows, runner.parameters, runner.presence_in(inputs))
        return (loss, terms) if return_outputs else loss

    def compute_terms(
        self, weights: dict[str, float], inputs: dict, features: StepFeatures, normalisers: tuple, contrastive=True
    ) -> dict[str, torch.Tensor]:
        """Every weighted term on one micro-batch: the per-row ones, then (with `contrastive`; else the caller
        computes them on the whole effective batch) the contrastive ones, over every process's rows or, with
        `--contrastive_negatives micro_batch`, this micro-batch's, weighted by its share of the rows."""
        context = TermContext(self, inputs.get("labels"), normalisers, gather=self.step.gathers())
        rows = len(inputs["input_ids"])
        terms = {}
        for kind in ("row", "contrastive") if contrastive else ("row",):
            for term in weighted(weights):
                if term.kind != kind:
                    continue
                teacher, student = features.pair(term.side)
                value = term.compute(context, teacher, student)
                terms[term.name] = (
                    self.step.micro_batch_share(value, rows)
                    if not self.step.gathers() and kind == "contrastive"
                    else value
                )
        return terms

    def contrastive_pairs(self, features: StepFeatures, weights: dict[str, float]) -> dict[str, tuple]:
        return {t.name: features.pair(t.side) for t in weighted(weights) if t.kind == "contrastive"}

    def student_features(
        self, model: nn.Module, inputs: dict, rng: tuple | None = None, teacher: tuple | None = None
    ) -> StepFeatures:
        """Teacher and student features on the clean batch (and on the perturbed ids, where the method has them).

        Clean and perturbed inputs share one forward pass per model. The teacher's no-grad pass runs
        before the student's: its buffers are freed before the student's graph is built, so the
        allocator reuses them instead of giving the heap back to the system and faulting it in again
        every step (~18,000 page faults a step on CPU when the student ran first). `teacher` reuses
        features computed earlier, `rng` replays the student's random state of an earlier pass (dropout).
        """
        size = len(inputs["input_ids"])
        input_ids = inputs["input_ids"]
        if self.reads("perturbed"):
            if PERTURBED_IDS not in inputs:  # kept, so that a second pass over the batch sees the same text
                inputs[PERTURBED_IDS] = self.perturbed_ids(inputs)
            input_ids = torch.cat([input_ids, inputs[PERTURBED_IDS]])
        teacher_clean, teacher_perturbed = teacher or self.teacher_features(inputs)
        state = rng or rng_state(self.args.device)
        options = self.layers.options("student", self.weights)
        with replay_rng(rng, self.args.device) if rng is not None else contextlib.nullcontext():
            student = self.student.forward(model, inputs, input_ids=input_ids, **options)
        clean, perturbed = split_result(student, size)
        read = self.features
        adapter = self.student.adapter
        return StepFeatures(
            teacher_clean,
            teacher_perturbed,
            read(clean, inputs, adapter),
            None if perturbed is None else read(perturbed, inputs, adapter),
            state,
        )

    def teacher_features(self, inputs: dict) -> tuple[LayerFeatures | None, LayerFeatures | None]:
        """The teacher's features on the clean and perturbed text (None where no term reads them), each on its
        own view of the batch; the clean ones come from the teacher-output cache when there is one."""
        if self.teacher is None:
            return None, None
        clean_needed = self.reads("clean", teacher=True)
        cached = clean_needed and self.teacher.cache is not None
        perturbed_ids = inputs.get(PERTURBED_IDS) if self.reads("perturbed", teacher=True) else None
        options = self.layers.options("teacher", self.weights)
        clean_pass, perturbed_pass = self.teacher.passes(inputs, perturbed_ids, clean_needed and not cached, **options)
        clean = self.cached_teacher_features(inputs) if cached else None
        if clean_pass is not None:
            clean = self.features(*clean_pass, self.teacher.adapter, rail_layers_only=True, teacher=True)
        perturbed = None
        if perturbed_pass is not None:
            perturbed = self.features(*perturbed_pass, self.teacher.adapter, teacher=True)
        return clean, perturbed

    def cached_teacher_features(self, inputs: dict) -> LayerFeatures:
        """The teacher's clean features from the cache; it pooled every layer: keep this epoch's RAIL-KD layers."""
        clean = self.teacher.cache.lookup(inputs[INDEX_COLUMN], self.args.device)
        if clean.pooled is not None:
            clean.pooled = {stack: value[:, self.rail_layers(stack)] for stack, value in clean.pooled.items()}
        return clean

    def features(
        self,
        result: ForwardResult,
        view: dict,
        adapter: EncoderAdapter,
        rail_layers_only: bool = False,
        teacher: bool = False,
    ) -> LayerFeatures:
        """What the terms read of a forward (`features.layer_features`); `rail_layers_only` pools just the teacher
        layers RAIL-KD pairs this epoch (e.g. 6 of 24) instead of all (the cache pools all: the pairing changes);
        the `teacher`'s token-level layers are those the layer map pairs with the student's."""
        layers = self.rail_layers if rail_layers_only else None
        mapped = self.layers.mapped if teacher and self.layers.map else None
        pooling = self.args.rail_pooling == "masked_mean"
        return layer_features(result, view, adapter, self.layers.kinds, pooling, layers, mapped)

    def rail_layers(self, stack: str) -> list[int]:
        """Teacher layers paired with the student's (RAIL-KD draws new ones every epoch)."""
        raise NotImplementedError

    def perturbed_ids(self, inputs: dict) -> torch.Tensor:
        raise NotImplementedError(f"Method '{self.method}' has no perturbed inputs.")

    def weighted_sum(self, terms: dict, weights: dict, prefix: str, batch_size: int, parameters: list, presence=None):
        """`sum_i w_i * term_i` (CRD weights divided by ln B with --scale_crd_by_log_batch); records each term.

        A non-finite total stops training naming the term(s) and step, or, with `--nonfinite_loss skip`,
        is replaced by a zero that still reaches every trained parameter (so DDP and the gradient
        all-reduce see the same collective calls on every process) and counted in `skipped_batches`.
        Skipping decides on every step, and so does stopping on CPU, where a check costs nothing. On an
        accelerator a check would stall the host every step, so stopping is decided at the next logging
        step, checkpoint or the end of training, from a device-side record of each term's first
        non-finite step (`TermLog.watch`): the message names the same term(s) and step.
        """
        crd_scale = log_batch_size_scale(self.step.rows(batch_size)) if self.args.scale_crd_by_log_batch else 1.0
        total = torch.zeros((), device=self.args.device)
        for name, value in terms.items():
            total = total + weights[name] / (crd_scale if name.startswith("crd") else 1.0) * value
        if not self.check_nonfinite_every_step:
            self.term_log.watch(prefix, terms, self.state.global_step)
        elif not torch.isfinite(total):
            bad = [prefix + name for name, value in terms.items() if not torch.isfinite(value)]
            if self.args.nonfinite_loss == "raise":
                raise nonfinite_error(bad, self.state.global_step)
            self.skipped_batches += 1
            logger.warning(
                "Loss term(s) %s became non-finite at step %d: batch skipped (%d so far).",
                ", ".join(bad),
                self.state.global_step,
                self.skipped_batches,
            )
            return sum(parameter.sum() * 0.0 for parameter in parameters)
        for name, value in terms.items():
            self.term_log.record(prefix + name, value, (presence or {}).get(name), self.step.in_step)
        self.term_log.record(prefix.rstrip("_"), total, None, self.step.in_step)  # "loss" or "generator_loss"
        return total

    # ------------------------------------------------------------------------------- training step
    def step_kind(self) -> str:
        """The kind of the step under way: `student` (min step) or, for the adversarial methods, `generator`."""
        return "student"

    def step_weights(self, kind: str) -> dict[str, float]:
        return self.weights

    def training_step(self, model, inputs, num_items_in_batch=None):
        """One micro-batch of an effective batch (`get_batch_samples` counted its rows).

        Per-row terms are computed and backpropagated micro-batch by micro-batch. When the step has a
        contrastive term and the effective batch several micro-batches, they are held back and run together
        at the last one (`EffectiveStep.run_held`).
        """
        kind = self.step_kind()
        contrastive = any(t.kind == "contrastive" for t in weighted(self.step_weights(kind)))
        if self.step.holds_back(contrastive):
            self.step.hold(inputs)
            loss = torch.zeros((), device=self.args.device)  # the Trainer's `loss` log is replaced by the student's
            if self.accelerator.sync_gradients:
                self.step.run_held(self.runner(kind, model, num_items_in_batch), self._prepare_inputs)
        elif kind == "student":
            loss = super().training_step(model, inputs, num_items_in_batch)
        else:
            loss = self.generator_step(model, inputs)
        if self.accelerator.sync_gradients:
            self.end_step(kind)
        return loss

    def runner(self, kind: str, model: nn.Module, num_items_in_batch=None):
        """How a `kind` step runs its micro-batches (the adversarial trainers add the max step)."""
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        return StudentStep(self, model, num_items_in_batch)

    def end_step(self, kind: str) -> None:
        """After the effective batch's last micro-batch, before the Trainer's optimizer step."""
        if kind == "student" and self.projections_in("student"):
            average_gradients(self.projections.parameters(), self.accelerator)  # DDP syncs only the student
        self.term_log.end_step()
        self.step.end()

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.projections_in("student"):
            for group in decay_groups(self, [self.projections]):
                optimizer.add_param_group(group)
        return optimizer

    def _clip_grad_norm(self, model):
        if self.projections_in("student"):
            parameters = list(model.parameters()) + list(self.projections.parameters())
            return self.accelerator.clip_grad_norm_(parameters, self.args.max_grad_norm)
        return super()._clip_grad_norm(model)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Each loss term's mean over the logging window beside the Trainer's `loss` (`TermLog.add_to`); every
        value is the effective batch's, whatever its layout (micro-batches, processes)."""
        if "loss" in logs:
            self.term_log.raise_if_nonfinite()
        self.term_log.add_to(logs)
        if self.skipped_batches and "loss" in logs:
            logs["skipped_batches"] = float(self.skipped_batches)
        super().log(logs, start_time)


class _ClearProjectionGradients(TrainerCallback):
    """The Trainer zeroes only the student's gradients after an optimizer step; the projections' too."""

    def __init__(self, projections: nn.Module) -> None:
        self.projections = projections

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.projections.zero_grad(set_to_none=True)
