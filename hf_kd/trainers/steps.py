"""How a step computes its terms, and the two kinds of step as the effective-batch engine runs them.

`TermContext` is what a term of `hf_kd.terms` computes with besides the features. `StudentStep` (the min
step) and `GeneratorStep` (the adversarial methods' max step) implement `effective.StepRunner`: the
engine calls them to run, weigh and backpropagate a micro-batch, and to hold micro-batches back for the
contrastive terms. `decay_groups` is the one weight-decay rule for every trained module.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers import Trainer

from hf_kd.adapters import LayerFeatures
from hf_kd.losses import kd_row_weights, labelled_rows
from hf_kd.terms import TERMS
from hf_kd.trainers.effective import StepFeatures, gather_rows

LABEL_TERMS = tuple(name for name, term in TERMS.items() if not term.teacher)  # the terms that read labels


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Temporarily stop autograd from computing weight gradients of `module` (inputs still get them)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


class TermContext:
    """What the terms of a step compute with (`hf_kd.terms.TermContext`): its labels and row counts, the
    options, the projections and the gathering of rows across processes."""

    def __init__(self, trainer, labels, normalisers: tuple, gather: bool = True) -> None:
        self.trainer, self.args, self.labels = trainer, trainer.args, labels
        self.rows, self.labelled = normalisers
        self.processes = trainer.accelerator.num_processes if gather else 1

    def row_weights(self, teacher_logits: torch.Tensor) -> torch.Tensor | None:
        shares = self.trainer.teacher.class_shares
        return kd_row_weights(teacher_logits, self.args.kd_row_weighting, self.args.kd_min_confidence, shares)

    def project(self, side: str, stack: str, features: torch.Tensor) -> torch.Tensor:
        """The side's projection of a stack's features; a side without one (TinyBERT's teacher) reads them as
        they are."""
        maps = getattr(self.trainer.projections, side)
        return maps[stack](features) if stack in maps else features

    @property
    def relation_heads(self) -> int:
        return self.trainer.layers.relation_heads

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        return gather_rows(rows, self.processes)


class StudentStep:
    """The min step as the effective-batch engine runs it (`effective.StepRunner`)."""

    prefix = "loss_"
    teacher_grad = False

    def __init__(self, trainer, model: nn.Module, num_items_in_batch=None) -> None:
        self.trainer, self.model, self.weights = trainer, model, trainer.weights
        step = trainer.step
        labelled = num_items_in_batch if num_items_in_batch is not None or step.batch is None else step.batch.labelled
        self.normalisers = step.normalisers(labelled)
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        if trainer.projections_in("student"):
            self.parameters += list(trainer.projections.parameters())
        # CE terms are logged as the mean over steps whose effective batch had labelled rows
        self.presence = {} if labelled is None else dict.fromkeys(LABEL_TERMS, (torch.as_tensor(labelled) > 0).float())

    def presence_in(self, inputs: dict) -> dict[str, torch.Tensor]:
        """`presence`, or outside the Trainer's loop whether this micro-batch has labelled rows."""
        return self.presence or dict.fromkeys(LABEL_TERMS, labelled_rows(inputs["labels"]).any().float())

    def forward(self, inputs: dict, rng: tuple | None, earlier: StepFeatures | None) -> StepFeatures:
        teacher = None if earlier is None else (earlier.teacher_clean, earlier.teacher_perturbed)
        return self.trainer.student_features(self.model, inputs, rng, teacher)

    def row_terms(self, inputs: dict, features: StepFeatures) -> dict[str, torch.Tensor]:
        return self.trainer.compute_terms(self.weights, inputs, features, self.normalisers, contrastive=False)

    def contrastive_pairs(self, features: StepFeatures) -> dict[str, tuple]:
        return self.trainer.contrastive_pairs(features, self.weights)

    def contrastive(self, name: str, teacher: LayerFeatures, student: LayerFeatures) -> torch.Tensor:
        return TERMS[name].compute(TermContext(self.trainer, None, self.normalisers), teacher, student)

    def total(self, terms: dict, rows: int, parameters: list, presence: dict | None) -> torch.Tensor:
        return self.trainer.weighted_sum(terms, self.weights, self.prefix, rows, parameters, presence)

    def backward(self, loss: torch.Tensor) -> None:
        self.trainer.accelerator.backward(loss)

    def no_sync(self):
        return self.trainer.accelerator.no_sync(self.model)


class GeneratorStep:
    """The max step as the effective-batch engine runs it (`effective.StepRunner`): the generator and, where a
    max-step term reads them, the projections maximise; teacher and student weights stay frozen."""

    prefix = "generator_loss_"
    teacher_grad = True
    presence: dict = {}

    def __init__(self, trainer, student: nn.Module) -> None:
        self.trainer, self.student, self.weights = trainer, student, trainer.generator_weights
        self.parameters = [p for group in trainer.generator_optimizer.param_groups for p in group["params"]]
        self.normalisers = trainer.step.normalisers()

    def forward(self, inputs: dict, rng: tuple | None, earlier: StepFeatures | None) -> StepFeatures:
        with frozen(self.student):
            return self.trainer.generator_features(self.student, inputs, rng)

    def row_terms(self, inputs: dict, features: StepFeatures) -> dict[str, torch.Tensor]:
        return self.trainer.compute_terms(self.weights, inputs, features, self.normalisers, contrastive=False)

    def contrastive_pairs(self, features: StepFeatures) -> dict[str, tuple]:
        return self.trainer.contrastive_pairs(features, self.weights)

    def contrastive(self, name: str, teacher, student) -> torch.Tensor:
        return TERMS[name].compute(TermContext(self.trainer, None, self.normalisers), teacher, student)

    def total(self, terms: dict, rows: int, parameters: list, presence: dict | None) -> torch.Tensor:
        return self.trainer.weighted_sum(terms, self.weights, self.prefix, rows, parameters, presence)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def no_sync(self):
        return contextlib.nullcontext()


def decay_groups(trainer: Trainer, modules: list[nn.Module]) -> list[dict]:
    """The Trainer's weight-decay rule (no decay for biases and normalisation weights) for trained modules
    besides the student: the projections, the generator."""
    decay, no_decay = [], []
    for module in modules:
        names = set(trainer.get_decay_parameter_names(module))
        for name, parameter in module.named_parameters():
            (decay if name in names else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": trainer.args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
