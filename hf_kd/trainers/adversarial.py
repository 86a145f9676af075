"""Adversarial distillation (MATE-KD, CILDA, CILDA+minILD): alternating generator and student steps.

Effective batches (one optimizer step's micro-batches on every process) are counted across epochs; in
every cycle of `n_generator_iter + n_student_iter` of them the first `n_generator_iter` are max steps and
the rest min steps, each effective batch feeding exactly one step. Under gradient accumulation the
generator's gradient is accumulated over the micro-batches, each divided by the effective batch's rows
(the original's accelerate loop divided by the accumulation steps: the same for equal micro-batches),
and the generator takes one optimizer step per effective batch.

- Max step: the generator (and, for CILDA / CILDA+minILD, the projections) *maximise* the generator
  terms with their own AdamW (`maximize=True`) and scheduler. Teacher and student run with frozen
  weights: gradients reach the generator through their inputs only, and only the masked positions
  carry the straight-through product.
- Min step: the Trainer's ordinary step on the student terms; the generator (eval mode, no graph)
  supplies sampled tokens that enter by embedding lookup. The student's scheduler only advances
  after optimizer steps that contained a min step.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedModel, get_scheduler

from hf_kd.data import INDEX_COLUMN
from hf_kd.errors import ArgumentError
from hf_kd.generator import (
    draw_mask,
    gumbel_one_hot,
    keyed_uniform,
    maskable_positions,
    perturbed_embeddings,
    row_key,
    sample_tokens,
)
from hf_kd.roles import GeneratorRole
from hf_kd.trainers.base import DistillationTrainer
from hf_kd.trainers.effective import StepFeatures, average_gradients, replay_rng, rng_state
from hf_kd.trainers.steps import GeneratorStep, decay_groups

GENERATOR_DIR = "hf_kd_generator"
GENERATOR_OPTIMIZER_FILE = "hf_kd_generator_optimizer.pt"
GENERATOR_SCHEDULER_FILE = "hf_kd_generator_scheduler.pt"
STATE_FILE = "hf_kd_state.json"


class AlternationSchedule:
    """Which batches are generator (max) steps: the first `n_generator` of every `n_generator + n_student`."""

    def __init__(self, n_generator: int, n_student: int) -> None:
        self.n_generator, self.n_student = n_generator, n_student

    def is_generator_step(self, batch_index: int) -> bool:
        return batch_index % (self.n_generator + self.n_student) < self.n_generator

    def student_updates(self, optimizer_steps: int) -> int:
        """Optimizer steps (effective batches) that are min steps."""
        return sum(not self.is_generator_step(step) for step in range(optimizer_steps))


class _StudentStepScheduler:
    """Wraps the student's scheduler so that it advances only after min steps."""

    def __init__(self, scheduler, trainer: AdversarialTrainer) -> None:
        self.scheduler, self.trainer = scheduler, trainer

    def step(self, *args, **kwargs) -> None:
        if self.trainer._min_steps_since_update:
            self.scheduler.step(*args, **kwargs)
        self.trainer._min_steps_since_update = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scheduler, name)


class AdversarialTrainer(DistillationTrainer):
    adversarial = True

    def __init__(
        self, model: PreTrainedModel, teacher: PreTrainedModel, generator: PreTrainedModel, **kwargs: Any
    ) -> None:
        super().__init__(model=model, teacher=teacher, generator=generator, **kwargs)
        self.generator = GeneratorRole(generator, self.processing_class).to(self.args.device)
        self.generator_weights: dict[str, float] = dict(self.args.generator_loss_weights)
        self.schedule = AlternationSchedule(self.args.n_generator_iter, self.args.n_student_iter)
        self.batches_seen = 0  # effective batches
        self._step_kind: str | None = None  # of the effective batch under way
        self._min_steps_since_update = 0
        trained = [self.generator.model, *([self.projections] if self.projections_in("generator") else [])]
        self.generator_optimizer = torch.optim.AdamW(
            decay_groups(self, trained),
            lr=self.args.generator_learning_rate,
            betas=(self.args.adam_beta1, self.args.adam_beta2),
            eps=self.args.adam_epsilon,
            maximize=True,
            fused=self.args.device.type in ("cpu", "cuda"),  # one kernel per step, as the student's optimizer
        )
        self.generator_scheduler = None  # made once the number of steps is known

    # ------------------------------------------------------------------------------------ schedule
    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            updates = self.schedule.student_updates(num_training_steps)
            super().create_scheduler(max(updates, 1), optimizer)
            self.lr_scheduler = _StudentStepScheduler(self.lr_scheduler, self)
        if self.generator_scheduler is None:
            self.generator_scheduler = get_scheduler(
                self.args.generator_lr_scheduler_type,
                optimizer=self.generator_optimizer,
                num_warmup_steps=0,
                num_training_steps=max(num_training_steps, 1),
            )
        return self.lr_scheduler

    def step_kind(self) -> str:
        """Decided at an effective batch's first micro-batch, kept for the rest of it."""
        if self._step_kind is None:
            self._step_kind = "generator" if self.schedule.is_generator_step(self.batches_seen) else "student"
        return self._step_kind

    def step_weights(self, kind: str) -> dict[str, float]:
        return self.generator_weights if kind == "generator" else self.weights

    def end_step(self, kind: str) -> None:
        if kind == "generator":
            self.update_generator()
        else:
            self._min_steps_since_update += 1
        self.batches_seen += 1
        self._step_kind = None
        super().end_step(kind)

    # ------------------------------------------------------------------------------------- masking
    def draw_mask(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.args.static_mask:
            return inputs["static_mlm_mask"].bool()
        maskable = maskable_positions(inputs["input_ids"], inputs.get("attention_mask"), self.generator.special_ids)
        rows, length = maskable.shape
        scores = self.keyed_uniform(inputs, "mask", [1] * rows, length)
        return draw_mask(
            maskable, self.args.mlm_probability, fixed_count=self.args.mask_mode == "fixed_count", scores=scores
        )

    def keyed_uniform(
        self, inputs: dict[str, torch.Tensor], purpose: str, counts: list[int] | torch.Tensor, width: int
    ) -> torch.Tensor | None:
        """With `--keyed_sampling`, uniform numbers keyed by (seed, example, effective batch, purpose),
        `counts[i]` rows for the batch's i-th example; else None (the global random stream)."""
        if not self.args.keyed_sampling:
            return None
        if INDEX_COLUMN not in inputs:
            raise ArgumentError(
                f"--keyed_sampling keys draws by example, but the batch has no '{INDEX_COLUMN}' column: build the "
                "training set with hf_kd.data.prepare_data, or add the column (each example's row number)."
            )
        counts = counts.tolist() if isinstance(counts, torch.Tensor) else counts
        purposes = ("mask", "noise", "sample")
        keys = [
            row_key(self.args.seed, index, self.batches_seen, purposes.index(purpose))
            for index in inputs[INDEX_COLUMN].tolist()
        ]
        return keyed_uniform(keys, counts, width, self.args.device)

    @torch.no_grad()
    def perturbed_ids(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Min step: the generator's sampled tokens at the masked positions, as ids (no graph)."""
        self.generator.model.eval()
        mask = self.draw_mask(inputs)
        uniform = self.keyed_uniform(inputs, "sample", mask.sum(dim=1), 1)
        logits = self.generator.masked_logits(inputs, mask)
        return inputs["input_ids"].masked_scatter(mask, sample_tokens(logits, uniform))

    # ------------------------------------------------------------------------------------ max step
    def generator_step(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One micro-batch of a max step: its share of the generator terms, backpropagated into the generator
        (and, for CILDA / CILDA+minILD, the projections); the update comes at the effective batch's end."""
        runner = self.runner("generator", model)
        inputs = self._prepare_inputs(inputs)
        with self.accelerator.autocast():
            features = runner.forward(inputs, None, None)
            terms = self.compute_terms(self.generator_weights, inputs, features, runner.normalisers)
            loss = runner.total(terms, len(inputs["input_ids"]), runner.parameters, None)
        loss.backward()
        return torch.zeros((), device=self.args.device)  # the Trainer's `loss` log is replaced by the student's

    def runner(self, kind: str, model: nn.Module, num_items_in_batch=None):
        if kind != "generator":
            return super().runner(kind, model, num_items_in_batch)
        student = self.accelerator.unwrap_model(model)
        self.generator.model.train()
        student.train(self.args.student_dropout_in_generator_step)  # eval mode, as the original's max step
        return GeneratorStep(self, student)

    def update_generator(self) -> None:
        """The generator's optimizer step, once per effective max-step batch."""
        parameters = [p for group in self.generator_optimizer.param_groups for p in group["params"]]
        average_gradients(parameters, self.accelerator)
        if self.args.generator_max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(parameters, self.args.generator_max_grad_norm)
        self.generator_optimizer.step()
        self.generator_scheduler.step()
        self.generator_optimizer.zero_grad(set_to_none=True)
        self.term_log.record(
            "generator_learning_rate", torch.tensor(self.generator_scheduler.get_last_lr()[0]), None, self.step.in_step
        )

    def generator_features(
        self, student: nn.Module, inputs: dict[str, torch.Tensor], rng: tuple | None = None
    ) -> StepFeatures:
        """Teacher and student on the perturbed input, through the straight-through one-hot at masked
        positions; `rng` replays the random state (mask, generator dropout, noise) of an earlier pass."""
        state = rng or rng_state(self.args.device)
        with replay_rng(rng, self.args.device) if rng is not None else contextlib.nullcontext():
            input_ids = inputs["input_ids"]
            mask = self.draw_mask(inputs)
            logits = self.generator.masked_logits(inputs, mask)
            one_hot = gumbel_one_hot(logits, self.keyed_uniform(inputs, "noise", mask.sum(dim=1), logits.size(-1)))
            options = self.layers.options("teacher", self.generator_weights)
            teacher, teacher_view = self.teacher.perturbed_pass(inputs, mask, one_hot, **options)
            student_embeds = perturbed_embeddings(student.get_input_embeddings(), input_ids, mask, one_hot)
            options = self.layers.options("student", self.generator_weights)
            student_out = self.student.forward(student, inputs, inputs_embeds=student_embeds, **options)
        return StepFeatures(
            teacher_perturbed=self.features(teacher, teacher_view, self.teacher.adapter, teacher=True),
            student_perturbed=self.features(student_out, inputs, self.student.adapter),
            rng=state,
        )

    # ---------------------------------------------------------------------------- checkpoint extras
    def extra_state_modules(self) -> dict[str, nn.Module]:
        return {**super().extra_state_modules(), "generator": self.generator.model}

    def save_training_extras(self, output_dir: str) -> None:
        super().save_training_extras(output_dir)
        self.generator.model.save_pretrained(os.path.join(output_dir, GENERATOR_DIR))
        torch.save(self.generator_optimizer.state_dict(), os.path.join(output_dir, GENERATOR_OPTIMIZER_FILE))
        if self.generator_scheduler is not None:
            torch.save(self.generator_scheduler.state_dict(), os.path.join(output_dir, GENERATOR_SCHEDULER_FILE))
        with open(os.path.join(output_dir, STATE_FILE), "w") as f:
            json.dump({"batches_seen": self.batches_seen, "method": self.method}, f)

    def load_training_extras(self, checkpoint: str) -> None:
        super().load_training_extras(checkpoint)
        state_path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.isfile(state_path):
            raise FileNotFoundError(
                f"{checkpoint} has no {STATE_FILE}: it was not written by an adversarial hf_kd run, so the generator "
                "cannot be restored. Resume from a checkpoint of the same method."
            )
        with open(state_path) as f:
            self.batches_seen = json.load(f)["batches_seen"]
        weights = load_file(os.path.join(checkpoint, GENERATOR_DIR, "model.safetensors"), device=str(self.args.device))
        result = self.generator.model.load_state_dict(weights, strict=False)
        if result.unexpected_keys:
            raise ValueError(
                f"Generator checkpoint in {checkpoint} does not match the generator: {result.unexpected_keys[:5]}"
            )
        map_location = self.args.device
        self.generator_optimizer.load_state_dict(
            torch.load(os.path.join(checkpoint, GENERATOR_OPTIMIZER_FILE), map_location=map_location, weights_only=True)
        )
        scheduler_path = os.path.join(checkpoint, GENERATOR_SCHEDULER_FILE)
        if self.generator_scheduler is not None and os.path.isfile(scheduler_path):
            self.generator_scheduler.load_state_dict(torch.load(scheduler_path, weights_only=True))


class MateKDTrainer(AdversarialTrainer):
    """MATE-KD. Max: `l2*KD(T(e_T), S(e_S))`. Min: `l0*CE + l1*KD(T(x),S(x)) + l2*KD(T(e_T),S(e_S))`."""

    method = "mate_kd"
    aliases = ("mate", "matekd")
    default_weights = {"ce": 1 / 3, "kd": 1 / 3, "kd_perturbed": 1 / 3}
    default_generator_weights = {"kd_perturbed": 1 / 3}


class CildaTrainer(AdversarialTrainer):
    """CILDA. Max: `a0*KD(T(e_T),S(e_S)) + a1*CRD(T(e_T),S(e_S))`, the projections maximising too (a max-step
    term reads them).
    Min: `l0*CE(S(x)) + l1*KD(T(x),S(x)) + l2*CE(S(e_S), y) + l3*KD(T(e_T),S(e_S))`."""

    method = "cilda"
    default_weights = {"ce": 0.333, "kd": 0.333, "ce_perturbed": 0.222, "kd_perturbed": 0.111}
    default_generator_weights = {"kd_perturbed": 0.5, "crd_perturbed": 0.5}


class CildaMinILDTrainer(CildaTrainer):
    """CILDA+minILD. Max: as CILDA. Min: `l0*CE + l1*KD + l2*CRD(T(x),S(x)) + l3*CE(S(e_S),y)
    + l4*KD(T(e_T),S(e_S)) + l5*CRD(T(e_T),S(e_S))` = nume/deno `[2,2,2,1,1,1] / [9,9,9,6,12,12]`;
    the projections learn in both steps."""

    method = "cilda_minild"
    aliases = ("cildaminild", "cilda+minild")
    default_weights = {
        "ce": 2 / 9,
        "kd": 2 / 9,
        "crd": 2 / 9,
        "ce_perturbed": 1 / 6,
        "kd_perturbed": 1 / 12,
        "crd_perturbed": 1 / 12,
    }
