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

import torch
import torch.distributed as dist


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

    def labelled_normaliser(self) -> torch.Tensor:
        return self.labelled.clamp_min(1) / self.processes


@dataclass
class StepFeatures:
    """What the loss terms of a step read: teacher and student features on the clean and perturbed text."""

    teacher_clean: object = None
    teacher_perturbed: object = None
    student_clean: object = None
    student_perturbed: object = None
    rng: tuple | None = None  # the random state the student's (or generator step's) forward started from


@dataclass
class StepPlan:
    """How one kind of step (min or max) runs a micro-batch, for `cached_contrastive_step`."""

    forward: Callable  # (inputs, rng to replay or None, earlier StepFeatures or None) -> StepFeatures
    terms: Callable  # (inputs, features, normalisers) -> the per-row terms
    weights: dict[str, float]
    prefix: str  # "loss_" or "generator_loss_"
    parameters: list[torch.Tensor]  # what a skipped (non-finite) batch still reaches
    normalisers: tuple
    presence: dict[str, torch.Tensor]
    backward: Callable
    no_sync: Callable  # the context of a micro-batch's backward that is not the last
    teacher_grad: bool  # whether the teacher's features carry gradient (the max step's, to the generator)


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
