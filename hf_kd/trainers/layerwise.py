"""Which layer features a run reads, and how the teacher's layers are paired with the student's.

Made once from the weighted terms (`hf_kd.terms`): the kinds of features, the projections' sizes, TinyBERT's
layer map (student layer i reads teacher layer `map[i]`, uniform by default: `round(i * L_t / L_s)`) and
MiniLM's relation layers and heads, and the forward options each model's pass needs. Token-level terms
compare teacher and student position by position, so they are refused, in one line, where the teacher reads
another tokenization or its outputs come from the cache.
"""

from __future__ import annotations

from hf_kd.errors import ArgumentError
from hf_kd.roles import StudentRole, TeacherRole
from hf_kd.terms import feature_kinds, layer_kind, token_level_kinds, weighted
from hf_kd.trainers.features import projection_sizes

HIDDEN_KINDS = ("pooled", "sentence", "tokens")  # the kinds that read the layers' outputs


def attention_heads(config) -> int:
    return (
        getattr(config, "num_attention_heads", None)
        or getattr(config, "n_heads", None)
        or config.encoder_attention_heads
    )


def uniform_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Student layer i (1-based) reads teacher layer round(i * L_t / L_s): 2 of 6 -> [3, 6]."""
    return [round(i * teacher_layers / student_layers) for i in range(1, student_layers + 1)]


class LayerPlan:
    def __init__(
        self, method: str, args, weights: dict, generator_weights: dict, teacher, student: StudentRole
    ) -> None:
        self.kinds = feature_kinds(weights, generator_weights)
        try:
            self.kind = layer_kind(weights, generator_weights)
        except ValueError as error:
            raise ArgumentError(f"Method '{method}' with these weights: {error}.") from None
        token_level = token_level_kinds(weights, generator_weights)
        if token_level and isinstance(teacher, TeacherRole) and not teacher.reads_student_tokens:
            raise ArgumentError(
                f"Method '{method}' compares teacher and student token by token ({', '.join(token_level)}), and the "
                "teacher reads another tokenization: use a teacher with the student's tokenizer, or KD / RAIL-KD / "
                "the adversarial methods, which work across tokenizers."
            )
        if token_level and args.cache_teacher_outputs:
            raise ArgumentError(
                f"--cache_teacher_outputs stores the teacher's logits and pooled features, not the token-level ones "
                f"method '{method}' reads ({', '.join(token_level)}): drop it."
            )
        self.sizes = self.dim = None
        if self.kind is not None:
            self.sizes = projection_sizes(self.kind, teacher.adapter, student.adapter)
            self.dim = args.projection_dim
            if self.kind == "tokens":  # W_h maps the student's states to the teacher's size
                sizes = set(teacher.adapter.hidden_sizes().values())
                self.dim = sizes.pop()
        self.map: dict[str, list[int]] = {}
        if self.kinds & {"tokens", "attention"}:
            self.map = self._layer_map(args, teacher, student)
        self.relation_layers = self.relation_heads = None
        if "relations" in self.kinds:
            self.relation_layers, self.relation_heads = self._relations(args, teacher, student)
        if "attention" in self.kinds:  # PyTorch's fused attention does not return the attention maps
            for model in (teacher.model, student.model):
                model.set_attn_implementation("eager")

    @staticmethod
    def _layer_map(args, teacher, student) -> dict[str, list[int]]:
        teacher_layers, student_layers = teacher.adapter.num_layers(), student.adapter.num_layers()
        chosen = {}
        for stack, count in student_layers.items():
            layers = (
                [int(x) for x in args.layer_map.split(",")]
                if args.layer_map
                else uniform_map(count, teacher_layers[stack])
            )
            if len(layers) != count or not all(1 <= layer <= teacher_layers[stack] for layer in layers):
                raise ArgumentError(
                    f"--layer_map {args.layer_map}: give one teacher layer (1 to {teacher_layers[stack]}) for each of the "
                    f"student's {count} {stack} layers, comma-separated (default {','.join(map(str, uniform_map(count, teacher_layers[stack])))})."
                )
            chosen[stack] = layers
        return chosen

    @staticmethod
    def _relations(args, teacher, student) -> tuple[tuple[int, int], int]:
        teacher_count, student_count = teacher.adapter.num_layers()["encoder"], student.adapter.num_layers()["encoder"]
        layer = args.relation_layer or teacher_count
        if not 1 <= layer <= teacher_count:
            raise ArgumentError(f"--relation_layer {layer}: the teacher has layers 1 to {teacher_count}.")
        heads = args.relation_heads or attention_heads(student.model.config)
        sizes = {
            "teacher": teacher.adapter.hidden_sizes()["encoder"],
            "student": student.adapter.hidden_sizes()["encoder"],
        }
        if any(size % heads for size in sizes.values()):
            raise ArgumentError(
                f"--relation_heads {heads} must divide both hidden sizes {sizes}: pick a common divisor (e.g. "
                f"{_gcd(*sizes.values())} or one of its divisors)."
            )
        return (layer - 1, student_count - 1), heads

    def options(self, role: str, weights: dict) -> dict:
        """The forward options of `role`'s pass ("teacher" or "student") for the terms of `weights`."""
        kinds = {term.reads for term in weighted(weights)}
        options = {"output_hidden_states": bool(kinds & set(HIDDEN_KINDS))}
        if "attention" in kinds:
            options["output_attentions"] = True
        if "relations" in kinds:
            options["relation_layer"] = self.relation_layers[0 if role == "teacher" else 1]
        return options

    def mapped(self, stack: str) -> list[int]:
        """The teacher's layers (1-based) the student's layers read, in order."""
        return self.map[stack]


def _gcd(*values: int) -> int:
    from math import gcd

    result = 0
    for value in values:
        result = gcd(result, value)
    return result
