"""The loss terms, each declared once: what it is called, what it reads, how it is computed.

A term's name gives its flags (`--weight_<name>`, and `--generator_weight_<name>` for the terms a max step
can maximise) and its logged value (`loss_<name>`, `generator_loss_<name>`). What it reads (logits, pooled
layers or sentence features; of the clean or the perturbed text; the teacher's or not) decides which
forward passes and features a step computes, what the teacher-output cache stores and which projections
exist. Its kind says how it is averaged: per row (a sum over rows divided by the effective batch's rows,
or its labelled rows) or contrastive (over every row of the effective batch at once). Its `compute`
applies a pure function of `hf_kd.losses` to the features.

Adding a term is a declaration here and a function in `losses.py`; a method is a trainer subclass naming
its terms' default weights. `docs/METHODS.md`'s table of terms is generated from `TERMS` (`terms_table`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from hf_kd.losses import (
    at_least_float32,
    attention_mse,
    crd_loss,
    hidden_mse,
    kd_loss,
    rail_loss,
    relation_kl,
    task_loss,
)


class TermContext(Protocol):
    """What a term's `compute` may use besides the features: the step's labels and row counts, the options,
    the projections and the gathering of rows across processes (the trainer provides it)."""

    labels: torch.Tensor
    rows: torch.Tensor | float | None  # what per-row sums are divided by
    labelled: torch.Tensor | float | None  # what per-labelled-row sums are divided by
    args: object  # DistillationTrainingArguments

    def row_weights(self, teacher_logits: torch.Tensor) -> torch.Tensor | None: ...

    def project(self, side: str, stack: str, features: torch.Tensor) -> torch.Tensor: ...

    def gather(self, rows: torch.Tensor) -> torch.Tensor: ...

    @property
    def relation_heads(self) -> int: ...


@dataclass(frozen=True)
class Term:
    name: str
    formula: str  # as METHODS.md writes it
    # "logits", "pooled" (RAIL-KD's mean-pooled layers), "sentence" (every layer at the sentence position), "tokens"
    # (mapped layers, every token), "attention" (mapped layers' attention) or "relations" (one layer's q, k, v)
    reads: str
    side: str  # "clean" or "perturbed" (the generator's text)
    teacher: bool  # whether it reads the teacher
    kind: str  # "row" (per-row mean over the effective batch) or "contrastive" (over all its rows at once)
    compute: Callable  # (context, teacher features or None, student features) -> a scalar tensor
    max_step: bool = False  # whether a generator (max) step can maximise it: --generator_weight_<name>

    @property
    def projected(self) -> bool:
        """Layer features go through the `W_t` / `W_s` projections."""
        return self.reads in PROJECTED

    @property
    def token_level(self) -> bool:
        """It compares teacher and student position by position: both must read one tokenization."""
        return self.reads in TOKEN_LEVEL


PROJECTED = ("pooled", "sentence", "tokens")
TOKEN_LEVEL = ("tokens", "attention", "relations")


def _ce(context: TermContext, teacher, student) -> torch.Tensor:
    return task_loss(student.logits, context.labels, context.labelled)


def _kd(context: TermContext, teacher, student) -> torch.Tensor:
    weights = context.row_weights(teacher.logits)
    return kd_loss(teacher.logits, student.logits, context.args.kd_temperature, context.rows, weights)


def _rail(context: TermContext, teacher, student) -> torch.Tensor:
    """Per stack, the epoch's teacher layers (already selected) against all student layers; summed."""
    total = 0.0
    for stack, pooled in student.pooled.items():
        total = total + rail_loss(
            context.project("teacher", stack, at_least_float32(teacher.pooled[stack].flatten(1))),
            context.project("student", stack, at_least_float32(pooled.flatten(1))),
            context.rows,
        )
    return total


def _crd(context: TermContext, teacher, student) -> torch.Tensor:
    """Per stack, every layer at the sentence position, over the rows `gather` gives (the effective batch's)."""
    total = 0.0
    for stack, sentence in student.sentence.items():
        total = total + crd_loss(
            context.project("teacher", stack, at_least_float32(context.gather(teacher.sentence[stack]).flatten(1))),
            context.project("student", stack, at_least_float32(context.gather(sentence).flatten(1))),
            context.args.crd_temperature,
        )
    return total


def _hidden(context: TermContext, teacher, student) -> torch.Tensor:
    """Per stack, the student's states (embeddings and every layer) projected to the teacher's size against the
    teacher's mapped layers."""
    total = 0.0
    for stack, states in student.tokens.items():
        projected = context.project("student", stack, at_least_float32(states))
        total = total + hidden_mse(teacher.tokens[stack], projected, student.mask, context.rows)
    return total


def _attention(context: TermContext, teacher, student) -> torch.Tensor:
    total = 0.0
    for stack, attention in student.attention.items():
        total = total + attention_mse(teacher.attention[stack], attention, student.mask, context.rows)
    return total


def _relation(context: TermContext, teacher, student) -> torch.Tensor:
    return relation_kl(teacher.relations, student.relations, context.relation_heads, student.mask, context.rows)


TERMS: dict[str, Term] = {
    term.name: term
    for term in (
        Term("ce", "CE(S(x), y)", "logits", "clean", False, "row", _ce),
        Term("kd", "KD(T(x), S(x))", "logits", "clean", True, "row", _kd),
        Term("rail", "RAIL(T(x), S(x))", "pooled", "clean", True, "row", _rail),
        Term("crd", "CRD(T(x), S(x))", "sentence", "clean", True, "contrastive", _crd),
        Term("ce_perturbed", "CE(S(e_S), y)", "logits", "perturbed", False, "row", _ce),
        Term("kd_perturbed", "KD(T(e_T), S(e_S))", "logits", "perturbed", True, "row", _kd, max_step=True),
        Term("crd_perturbed", "CRD(T(e_T), S(e_S))", "sentence", "perturbed", True, "contrastive", _crd, True),
        Term("hidden", "MSE(H_T(x), H_S(x) W_h)", "tokens", "clean", True, "row", _hidden),
        Term("attention", "MSE(A_T(x), A_S(x))", "attention", "clean", True, "row", _attention),
        Term("relation", "KL(R_T(x) ‖ R_S(x))", "relations", "clean", True, "row", _relation),
    )
}
MAX_STEP_TERMS = tuple(name for name, term in TERMS.items() if term.max_step)


def weighted(weights: dict[str, float]) -> list[Term]:
    """The terms with a positive weight, in declaration order."""
    return [term for name, term in TERMS.items() if weights.get(name, 0) > 0]


def uses_teacher(*weight_sets: dict[str, float]) -> bool:
    return any(term.teacher for weights in weight_sets for term in weighted(weights))


def feature_kinds(*weight_sets: dict[str, float]) -> set[str]:
    """Every kind of feature besides the logits that the weighted terms read."""
    return {term.reads for weights in weight_sets for term in weighted(weights) if term.reads != "logits"}


def token_level_kinds(*weight_sets: dict[str, float]) -> list[str]:
    """The token-level features the weighted terms read: neither another tokenization nor the teacher-output
    cache (logits and pooled features) has them."""
    return sorted(feature_kinds(*weight_sets) & set(TOKEN_LEVEL))


def layer_kind(*weight_sets: dict[str, float]) -> str | None:
    """The layer features the weighted terms read ("pooled" or "sentence"), or None for logits alone. Terms of
    both kinds in one run are refused: they would share one pair of projections."""
    kinds = {term.reads for weights in weight_sets for term in weighted(weights) if term.projected}
    if len(kinds) > 1:
        names = sorted({t.name for w in weight_sets for t in weighted(w) if t.projected})
        raise ValueError(
            f"terms {names} read layer features of different kinds ({sorted(kinds)}); weight only one kind"
        )
    return kinds.pop() if kinds else None


def terms_table() -> str:
    """METHODS.md's table of terms, from the declarations."""
    lines = [
        "| term | formula | flag(s) | logged as | reads | text | kind |",
        "|---|---|---|---|---|---|---|",
    ]
    for term in TERMS.values():
        flags = f"`--weight_{term.name}`" + (f", `--generator_weight_{term.name}`" if term.max_step else "")
        logged = f"`loss_{term.name}`" + (f", `generator_loss_{term.name}`" if term.max_step else "")
        reads = ("teacher and student " if term.teacher else "student ") + term.reads
        kind = "per row" if term.kind == "row" else "contrastive (effective batch)"
        lines.append(f"| {term.name} | `{term.formula}` | {flags} | {logged} | {reads} | {term.side} | {kind} |")
    return "\n".join(lines)
