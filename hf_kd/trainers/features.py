"""What the intermediate-layer terms read of a forward, and the projections that compare teacher and student.

`layer_features` turns a model's forward into `LayerFeatures`: its logits, and the layer features its
weighted terms read (RAIL-KD's mean-pooled layers, or every layer at the sentence position for the
contrastive terms), each model on its own view of the batch through its own adapter. `Projections` are
`W_t` / `W_s` per stack; `projection_sizes` works out their input sizes from the two models' layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from hf_kd.adapters import EncoderAdapter, ForwardResult, LayerFeatures
from hf_kd.errors import ArgumentError
from hf_kd.losses import mean_pool


class Projections(nn.Module):
    """`W_t` and `W_s` per stack (encoder, decoder): linear maps of teacher / student features to `d`."""

    def __init__(self, teacher_dims: dict[str, int], student_dims: dict[str, int], dim: int) -> None:
        super().__init__()
        self.teacher = nn.ModuleDict({stack: nn.Linear(size, dim) for stack, size in teacher_dims.items()})
        self.student = nn.ModuleDict({stack: nn.Linear(size, dim) for stack, size in student_dims.items()})


def projection_sizes(
    kind: str, teacher: EncoderAdapter, student: EncoderAdapter
) -> tuple[dict[str, int], dict[str, int]]:
    """Input sizes of `W_t` and `W_s` per stack: pooled layers pair the student's L_s layers with L_s teacher
    layers (RAIL-KD); sentence features concatenate every layer of each model."""
    teacher_layers, student_layers = teacher.num_layers(), student.num_layers()
    teacher_sizes, student_sizes = teacher.hidden_sizes(), student.hidden_sizes()
    if set(teacher_layers) != set(student_layers):
        raise ArgumentError(
            f"RAIL-KD and the contrastive terms pair the teacher's layer stacks {sorted(teacher_layers)} with the "
            f"student's {sorted(student_layers)}: use models with the same stacks (an encoder-decoder with an "
            "encoder-decoder), or KD, which reads only the logits."
        )
    teacher_dims, student_dims = {}, {}
    for stack in student_layers:
        if kind == "pooled":
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


def layer_features(
    result: ForwardResult,
    view: dict[str, torch.Tensor],
    adapter: EncoderAdapter,
    kind: str | None,
    masked_pooling: bool = True,
    layers: Callable[[str], Sequence[int]] | None = None,
) -> LayerFeatures:
    """What the terms read of a forward: its logits and, by `kind`, "pooled" layers (mean over the view's real
    tokens with `masked_pooling`, else over every position; only `layers(stack)` of them when given: RAIL-KD's
    pairing of the epoch) or "sentence" features (every layer at the adapter's sentence position)."""
    pooled = sentence = None
    if result.hidden and kind == "pooled":
        mask = view.get("attention_mask") if masked_pooling else None
        pooled = {
            stack: torch.stack(
                [mean_pool(hidden[i], mask) for i in (layers(stack) if layers else range(len(hidden)))], dim=1
            )
            for stack, hidden in result.hidden.items()
        }
    if result.hidden and kind == "sentence":
        positions = adapter.sentence_positions(view)
        rows = torch.arange(len(positions), device=positions.device)
        sentence = {
            stack: torch.stack([h[rows, positions] for h in hidden], dim=1) for stack, hidden in result.hidden.items()
        }
    return LayerFeatures(result.logits, pooled, sentence)
