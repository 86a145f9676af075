"""The non-adversarial methods: no-KD fine-tuning, vanilla KD, RAIL-KD, and the layer-wise TinyBERT and MiniLM
(METHODS.md, "The methods" and "Layer-wise methods")."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from hf_kd.trainers.base import DistillationTrainer


class NormalTrainer(DistillationTrainer):
    """No KD: `CE(S(x), y)`. Also how a teacher is fine-tuned."""

    method = "normal"
    default_weights = {"ce": 1.0}


class KDTrainer(DistillationTrainer):
    """Vanilla KD: `l0*CE + l1*KD(T(x), S(x))`."""

    method = "kd"
    default_weights = {"ce": 0.5, "kd": 0.5}


class RailKDTrainer(DistillationTrainer):
    """RAIL-KD (concatenated): `l0*CE + l1*KD + l2*RAIL(T(x), S(x))`; `W_t`, `W_s` learn with the student.

    At every epoch start `L_s` distinct teacher layers are drawn, sorted, and paired in order with the
    student's layers. The draw depends only on the seed and the epoch, so every process (and a resumed
    run) draws the same layers.
    """

    method = "rail_kd"
    aliases = ("rail_c", "railkd")
    default_weights = {"ce": 1 / 3, "kd": 1 / 3, "rail": 1 / 3}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.selected_layers: dict[str, list[int]] = {}
        self.draw_layers(epoch=0)
        self.add_callback(_DrawLayersEachEpoch(self))

    def draw_layers(self, epoch: int) -> None:
        generator = torch.Generator().manual_seed(self.args.seed * 1000 + epoch)
        teacher_layers, student_layers = self.teacher.adapter.num_layers(), self.student.adapter.num_layers()
        self.selected_layers = {
            stack: sorted(torch.randperm(teacher_layers[stack], generator=generator)[: student_layers[stack]].tolist())
            for stack in student_layers
        }

    def rail_layers(self, stack: str) -> list[int]:
        return self.selected_layers[stack]


class _DrawLayersEachEpoch(TrainerCallback):
    def __init__(self, trainer: RailKDTrainer) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer.draw_layers(epoch=int(state.epoch or 0))


class TinyBertTrainer(DistillationTrainer):
    """TinyBERT in one stage: `l0*CE + l1*KD + l2*HIDDEN + l3*ATTENTION`. HIDDEN: the student's embeddings and
    layers, mapped by `W_h` to the teacher's size, against the teacher's embeddings and the layers the layer map
    pairs with them (uniform by default, `--layer_map`); ATTENTION: their attention maps, heads averaged."""

    method = "tinybert"
    default_weights = {"ce": 1 / 4, "kd": 1 / 4, "hidden": 1 / 4, "attention": 1 / 4}


class MiniLMTrainer(DistillationTrainer):
    """MiniLM(v2): `l0*CE + l1*KD + l2*RELATION`: the self-attention relations (query-query, key-key, value-value,
    in `--relation_heads` heads) of the student's last layer learn the teacher's at `--relation_layer`; any
    hidden sizes."""

    method = "minilm"
    aliases = ("minilmv2",)
    default_weights = {"ce": 1 / 3, "kd": 1 / 3, "relation": 1 / 3}
