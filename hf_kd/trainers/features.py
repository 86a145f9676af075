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
    """`W_t` and `W_s` per stack (encoder, decoder): linear maps of teacher / student features to `d` (a side
    without a map for a stack reads its features as they are)."""

    def __init__(self, teacher_dims: dict[str, int], student_dims: dict[str, int], dim: int) -> None:
        super().__init__()
        self.teacher = nn.ModuleDict({stack: nn.Linear(size, dim) for stack, size in teacher_dims.items()})
        self.student = nn.ModuleDict({stack: nn.Linear(size, dim) for stack, size in student_dims.items()})


def projection_sizes(
    kind: str, teacher: EncoderAdapter, student: EncoderAdapter
) -> tuple[dict[str, int], dict[str, int]]:
    """Input sizes of `W_t` and `W_s` per stack: pooled layers pair the student's L_s layers with L_s teacher
    layers (RAIL-KD); sentence features concatenate every layer of each model; token states (TinyBERT) map the
    student's hidden size to the teacher's (`W_h`), the teacher's read as they are."""
    teacher_layers, student_layers = teacher.num_layers(), student.num_layers()
    teacher_sizes, student_sizes = teacher.hidden_sizes(), student.hidden_sizes()
    if set(teacher_layers) != set(student_layers):
        raise ArgumentError(
            f"RAIL-KD and the contrastive terms pair the teacher's layer stacks {sorted(teacher_layers)} with the "
            f"student's {sorted(student_layers)}: use models with the same stacks (an encoder-decoder with an "
            "encoder-decoder), or KD, which reads only the logits."
        )
    if kind == "tokens":  # the student's states mapped to the teacher's size; the teacher's read as they are
        return {}, {stack: student_sizes[stack] for stack in student_layers}
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
    kinds: set[str],
    masked_pooling: bool = True,
    layers: Callable[[str], Sequence[int]] | None = None,
    mapped: Callable[[str], Sequence[int]] | None = None,
) -> LayerFeatures:
    """What the terms read of a forward: its logits and, by `kinds`, "pooled" layers (mean over the view's real
    tokens with `masked_pooling`, else over every position; only `layers(stack)` of them when given: RAIL-KD's
    pairing of the epoch), "sentence" features (every layer at the adapter's sentence position), "tokens" (the
    embeddings and the layers `mapped(stack)` gives (1-based; all without it), every token), "attention" (those
    layers' attention, heads averaged) and "relations" (one layer's queries, keys and values)."""
    features = LayerFeatures(result.logits, mask=view.get("attention_mask"))
    if result.hidden and "pooled" in kinds:
        mask = view.get("attention_mask") if masked_pooling else None
        features.pooled = {
            stack: torch.stack(
                [mean_pool(hidden[i], mask) for i in (layers(stack) if layers else range(len(hidden)))], dim=1
            )
            for stack, hidden in result.hidden.items()
        }
    if result.hidden and "sentence" in kinds:
        positions = adapter.sentence_positions(view)
        rows = torch.arange(len(positions), device=positions.device)
        features.sentence = {
            stack: torch.stack([h[rows, positions] for h in hidden], dim=1) for stack, hidden in result.hidden.items()
        }

    def chosen(stack: str, count: int) -> Sequence[int]:
        return mapped(stack) if mapped else range(1, count + 1)

    if result.hidden and "tokens" in kinds:
        features.tokens = {
            stack: torch.stack([result.embeddings[stack], *(hidden[i - 1] for i in chosen(stack, len(hidden)))], dim=1)
            for stack, hidden in result.hidden.items()
        }
    if result.attentions and "attention" in kinds:
        features.attention = {
            stack: torch.stack([maps[i - 1].mean(1) for i in chosen(stack, len(maps))], dim=1)
            for stack, maps in result.attentions.items()
        }
    if "relations" in kinds:
        features.relations = result.relations
    return features
