"""One optimizer step's effective batch, whatever its layout (micro-batches, processes).

Per-row terms (CE, KD, RAIL, ...) split over micro-batches and processes once each part divides its sum
by the whole effective batch's row count (`EffectiveBatch`). The contrastive terms do not split: a row's
negatives are every other row of the effective batch. They are computed on all rows at once, gathered
across processes (`gather_rows`); under gradient accumulation the micro-batches are first run without a
graph, the term's gradient with respect to each row's features is taken on the whole batch
(`contrastive_cotangents`), and each micro-batch is then run again with a graph that carries that
gradient (`surrogate`): the gradient-caching scheme of Gao et al. (2021), with each micro-batch's random
state replayed so that dropout draws the same masks twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.distributed as dist

from hf_kd.adapters import LayerFeatures
from hf_kd.losses import at_least_float32, labelled_rows


@dataclass
class EffectiveBatch:
    """Row counts of one optimizer step, summed over its micro-batches and every process (device tensors)."""

    rows: torch.Tensor
    labelled: torch.Tensor
    processes: int
    micro_batches: int

    def row_normaliser(self) -> torch.Tensor:
        """What a process divides its per-row sums by: DDP averages the processes' gradients, so the
        process's share of the effective mean is multiplied by the number of processes."""
        return self.rows.clamp_min(1) / self.processes


@dataclass
class StepFeatures:
    """What the loss terms of a step read: teacher and student features on the clean and perturbed text."""

    teacher_clean: object = None
    teacher_perturbed: object = None
    student_clean: object = None
    student_perturbed: object = None
    rng: tuple | None = None  # the random state the student's (or generator step's) forward started from

    def pair(self, side: str) -> tuple:
        """(teacher, student) features of the `side` ("clean" or "perturbed") text."""
        if side == "clean":
            return self.teacher_clean, self.student_clean
        return self.teacher_perturbed, self.student_perturbed


class StepRunner(Protocol):
    """One kind of step (the min step, or the adversarial methods' max step) as `EffectiveStep` runs it."""

    weights: dict[str, float]
    prefix: str  # "loss_" or "generator_loss_"
    parameters: list[torch.Tensor]  # what a skipped (non-finite) batch still reaches
    presence: dict[str, torch.Tensor]
    teacher_grad: bool  # whether the teacher's features carry gradient (the max step's, to the generator)

    def forward(self, inputs: dict, rng: tuple | None, earlier: StepFeatures | None) -> StepFeatures:
        """Features of a micro-batch; `rng` replays an earlier pass's random state, `earlier` reuses its teacher."""

    def row_terms(self, inputs: dict, features: StepFeatures) -> dict[str, torch.Tensor]:
        """The step's per-row terms on one micro-batch."""

    def contrastive_pairs(self, features: StepFeatures) -> dict[str, tuple]:
        """(teacher, student) features of each weighted contrastive term."""

    def contrastive(self, name: str, teacher, student) -> torch.Tensor:
        """A contrastive term on features of the whole effective batch."""

    def total(self, terms: dict[str, torch.Tensor], rows: int, parameters: list, presence: dict | None) -> torch.Tensor:
        """The weighted sum of `terms` (recorded for the logs; a non-finite one stops or skips)."""

    def backward(self, loss: torch.Tensor) -> None: ...

    def no_sync(self) -> contextlib.AbstractContextManager: ...


class EffectiveStep:
    """The effective batch of the optimizer step under way: its row counts (`count`, from the Trainer's
    prefetch of the step's micro-batches), what a micro-batch divides its per-row sums by (`normalisers`),
    and, for the contrastive terms, the micro-batches held back and run together at the last one (`hold`,
    `run_held`: gradient caching)."""

    def __init__(self, accelerator, device: torch.device, negatives: str) -> None:
        self.accelerator, self.device, self.negatives = accelerator, device, negatives
        self.batch: EffectiveBatch | None = None
        self.pending: list[dict[str, torch.Tensor]] = []

    def count(self, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Count the rows (teacher terms) and labelled rows (CE) of the step's micro-batches on every process;
        the labelled count is the `num_items_in_batch` the Trainer passes on."""
        rows = float(sum(len(batch["input_ids"]) for batch in batches))
        labelled = sum(labelled_rows(batch["labels"]).sum().to(self.device) for batch in batches if "labels" in batch)
        counts = torch.stack(
            [torch.tensor(rows, device=self.device), torch.as_tensor(labelled, device=self.device).float()]
        )
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self.batch = EffectiveBatch(counts[0], counts[1], self.accelerator.num_processes, len(batches))
        return counts[1]

    @property
    def in_step(self) -> bool:
        return self.batch is not None

    def normalisers(self, num_items_in_batch=None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(all rows, labelled rows) of the effective batch for this process, or None for the micro-batch's own
        mean (a call outside the Trainer's loop)."""
        rows = None if self.batch is None else self.batch.row_normaliser()
        labelled = None
        if num_items_in_batch is not None:
            count = torch.as_tensor(num_items_in_batch, device=self.device, dtype=torch.float32)
            labelled = count.clamp_min(1) / self.accelerator.num_processes
        return rows, labelled

    def rows(self, local_rows: int) -> int:
        """Rows of the whole effective batch (one host read)."""
        return local_rows * self.accelerator.num_processes if self.batch is None else int(self.batch.rows.item())

    def gathers(self) -> bool:
        """Whether a contrastive term compares each row with every process's rows (else with its micro-batch's)."""
        return self.negatives == "effective_batch"

    def micro_batch_share(self, value: torch.Tensor, rows: int) -> torch.Tensor:
        """A contrastive term of one micro-batch (`--contrastive_negatives micro_batch`), weighted by its share
        of the effective batch's rows."""
        return value if self.batch is None else value * (rows / self.batch.row_normaliser())

    def holds_back(self, contrastive: bool) -> bool:
        """Whether this step's micro-batches wait for the last one: a contrastive term over several of them."""
        micro_batches = 1 if self.batch is None else self.batch.micro_batches
        return micro_batches > 1 and contrastive and self.gathers()

    def hold(self, inputs: dict[str, torch.Tensor]) -> None:
        self.pending.append(inputs)

    def end(self) -> None:
        self.batch, self.pending = None, []

    def run_held(self, runner: StepRunner, prepare: Callable) -> torch.Tensor:
        """Run the held-back micro-batches as one effective batch (gradient caching).

        First every micro-batch without a graph, keeping the features the contrastive terms read; then those
        terms on all rows at once, backpropagated into the projections and into the features (leaves); then
        every micro-batch again with a graph, its random state replayed, its per-row terms plus `<features,
        their gradient>` backpropagated. The result is the gradient of the effective batch. Returns the
        contrastive terms' weighted value.
        """
        batches = [prepare(batch) for batch in self.pending]
        with torch.no_grad(), self.accelerator.autocast():
            first = [runner.forward(inputs, None, None) for inputs in batches]
        leaves: dict[str, torch.Tensor] = {}
        terms, sizes = {}, []
        for name in runner.contrastive_pairs(first[0]):
            sides = []
            for role, side in (("teacher", 0), ("student", 1)):
                joined, sizes = split_sentences([runner.contrastive_pairs(f)[name][side].sentence for f in first])
                trained = role == "student" or runner.teacher_grad
                for stack, value in joined.items():
                    leaves[f"{name}/{role}/{stack}"] = at_least_float32(value.detach()).requires_grad_(trained)
                sides.append(LayerFeatures(None, None, {stack: leaves[f"{name}/{role}/{stack}"] for stack in joined}))
            terms[name] = runner.contrastive(name, *sides)
        trained_leaves = {key: leaf for key, leaf in leaves.items() if leaf.requires_grad}
        total = runner.total(terms, sum(sizes), runner.parameters + list(trained_leaves.values()), None)
        runner.backward(total)  # the projections' gradients, scaled as the rest under fp16
        cotangents = contrastive_cotangents(trained_leaves, sizes)
        scaler = getattr(self.accelerator, "scaler", None)
        if runner.prefix == "loss_" and scaler is not None:  # the second backward scales the surrogate again
            scale = scaler.get_scale()
            cotangents = [{k: None if v is None else v / scale for k, v in share.items()} for share in cotangents]
        for index, (inputs, features) in enumerate(zip(batches, first, strict=True)):
            last = index == len(batches) - 1
            with contextlib.nullcontext() if last else runner.no_sync():
                with self.accelerator.autocast():
                    again = runner.forward(inputs, features.rng, features)
                    loss = runner.total(
                        runner.row_terms(inputs, again), len(inputs["input_ids"]), runner.parameters, runner.presence
                    )
                    loss = loss + surrogate(contrastive_features(runner, again), cotangents[index])
                if loss.requires_grad:
                    runner.backward(loss)
        return total.detach()


def contrastive_features(runner: StepRunner, features: StepFeatures) -> dict[str, torch.Tensor]:
    """The sentence features the contrastive terms read, keyed as `run_held`'s leaves."""
    named = {}
    for name, pair in runner.contrastive_pairs(features).items():
        for role, side in (("teacher", pair[0]), ("student", pair[1])):
            for stack, value in side.sentence.items():
                named[f"{name}/{role}/{stack}"] = value
    return named


class _GatherRows(torch.autograd.Function):
    """All processes' rows, in rank order; the backward sums every process's gradient and keeps this one's rows.

    Every process computes the same loss on the gathered rows, so a row's gradient is the sum over
    processes: DDP's averaging of the student's gradients then gives the loss's exact gradient.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        counts = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world)]
        dist.all_gather(counts, torch.tensor([tensor.size(0)], device=tensor.device))
        sizes = [int(count) for count in counts]
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: tensor.size(0)] = tensor
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]]


def gather_rows(tensor: torch.Tensor, processes: int) -> torch.Tensor:
    """The rows of every process (one process: the tensor itself)."""
    return tensor if processes <= 1 else _GatherRows.apply(tensor)


def average_gradients(parameters, accelerator) -> None:
    """All-reduce (mean) gradients of modules that DDP does not wrap (generator, projections)."""
    if accelerator.num_processes <= 1:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad, op=torch.distributed.ReduceOp.AVG)


def rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextlib.contextmanager
def replay_rng(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device):
    """Run a block from a saved random state, then continue the outer stream where it was."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


def split_sentences(sentences: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Concatenate micro-batches' per-stack features along rows; also return each part's row count."""
    stacks = sentences[0].keys()
    return {stack: torch.cat([part[stack] for part in sentences]) for stack in stacks}, [
        next(iter(part.values())).size(0) for part in sentences
    ]


def contrastive_cotangents(leaves: dict[str, torch.Tensor], sizes: list[int]) -> list[dict[str, torch.Tensor | None]]:
    """Each micro-batch's share of the leaves' gradients, after the whole batch's backward."""
    shares: list[dict[str, torch.Tensor | None]] = [{} for _ in sizes]
    for name, leaf in leaves.items():
        parts = [None] * len(sizes) if leaf.grad is None else leaf.grad.split(sizes)
        for share, part in zip(shares, parts, strict=True):
            share[name] = part
    return shares


def surrogate(features: dict[str, torch.Tensor], cotangents: dict[str, torch.Tensor | None]) -> torch.Tensor:
    """`sum <features, cotangent>`: its gradient is the contrastive terms' gradient through these features."""
    total = 0.0
    for name, cotangent in cotangents.items():
        if cotangent is not None:
            total = total + (features[name].to(cotangent.dtype) * cotangent).sum()
    return total
