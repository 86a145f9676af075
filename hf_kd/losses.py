"""Loss terms of every method, as pure functions on tensors (see docs/METHODS.md).

All terms are computed in float32, whatever precision the models ran in, so that bf16/fp16 training
does not lose the small differences that distillation signals are made of.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_LABEL = -100  # an unlabelled example's class label (the Trainer's convention); NaN for regression


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """float32 for half precisions; float64 stays (the layout tests run in float64 to see past rounding)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def labelled_rows(labels: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the rows that carry a gold label: not `IGNORE_LABEL` (classification), not NaN (regression)."""
    return ~torch.isnan(labels) if labels.is_floating_point() else labels != IGNORE_LABEL


Normaliser = torch.Tensor | float | None


def task_loss(logits: torch.Tensor, labels: torch.Tensor, normaliser: Normaliser = None) -> torch.Tensor:
    """The model's own loss over the labelled rows: cross-entropy, or MSE for one-output regression (STS-B).

    The sum over labelled rows is divided by `normaliser`, by default their count here. Under gradient
    accumulation or several processes the trainer passes the labelled rows of the whole effective batch
    (per process), so that the micro-batches' losses add up to the effective batch's mean. Unlabelled rows
    (see `labelled_rows`) are left out of the sum and the count; a batch without any labelled row gives 0
    (with a graph), never NaN, and no host synchronisation is needed.
    """
    logits = at_least_float32(logits)
    keep = labelled_rows(labels)
    count = keep.sum().clamp_min(1) if normaliser is None else normaliser
    if logits.size(-1) == 1:
        errors = (logits.squeeze(-1) - torch.where(keep, labels.float(), 0.0)) ** 2
        return (errors * keep).sum() / count
    return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_LABEL, reduction="sum") / count


def kd_loss(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    temperature: float = 1.0,
    normaliser: Normaliser = None,
    row_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(softmax(z_t / tau) || softmax(z_s / tau)) * tau^2, summed over classes and rows (each row times
    its `row_weights`, when given), divided by `normaliser` (by default the number of rows: the batch mean).

    With one output (regression) it is the squared error between the two predictions; the temperature
    is unused.
    """
    teacher_logits, student_logits = at_least_float32(teacher_logits), at_least_float32(student_logits)
    rows = student_logits.size(0) if normaliser is None else normaliser
    if student_logits.size(-1) == 1:
        errors = F.mse_loss(student_logits, teacher_logits, reduction="none").sum(-1)
    else:
        log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
        log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
        kl = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(-1)
        errors = kl * temperature**2
    if row_weights is not None:
        errors = errors * row_weights.to(errors.dtype)
    return errors.sum() / rows


def kd_row_weights(
    teacher_logits: torch.Tensor,
    weighting: str = "none",
    min_confidence: float = 0.0,
    class_shares: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Each row's weight in the KD terms, from the teacher's own prediction (softmax at temperature 1):
    - `confidence`: its top probability, so that rows the teacher is unsure of teach less;
    - `class_balanced`: 1 / (K * share of the training rows the teacher predicts that class for), so that a
      teacher leaning to one class does not pull the student there (weights average 1 over the training rows);
    rows whose top probability is below `min_confidence` weigh 0. None when every row weighs 1."""
    if weighting == "none" and min_confidence <= 0:
        return None
    probabilities = at_least_float32(teacher_logits).detach().softmax(-1)
    top, predicted = probabilities.max(-1)
    weights = torch.ones_like(top)
    if weighting == "confidence":
        weights = top
    elif weighting == "class_balanced":
        if class_shares is None:
            raise ValueError("class_balanced row weights need the teacher's class shares on the training rows")
        shares = class_shares.to(top.device, top.dtype)
        weights = 1.0 / (len(shares) * shares[predicted].clamp_min(1e-12))
    elif weighting != "none":
        raise ValueError(f"unknown KD row weighting {weighting!r}")
    if min_confidence > 0:
        weights = weights * (top >= min_confidence).to(weights.dtype)
    return weights


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Average a (B, L, H) hidden state over the sequence; over real tokens only when a mask is given.

    Passing `attention_mask=None` reproduces the original code's plain mean, padding included.
    The sums accumulate in float32 without a float32 copy of the (B, L, H) input: under bf16 that copy
    (one per teacher layer) cost as much as the KD step itself.
    """
    dtype = at_least_float32(hidden[:0]).dtype
    if attention_mask is None:
        return hidden.sum(dim=1, dtype=dtype) / hidden.size(1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # 0/1: the product is exact in any precision
    return (hidden * weights).sum(dim=1, dtype=dtype) / weights.sum(dim=1, dtype=dtype).clamp_min(1.0)


def rail_loss(
    teacher_projected: torch.Tensor, student_projected: torch.Tensor, normaliser: Normaliser = None
) -> torch.Tensor:
    """RAIL-KD: the Euclidean distance between the L2-normalised projections, summed over rows and divided
    by `normaliser` (by default the number of rows: the batch mean)."""
    teacher_unit = F.normalize(at_least_float32(teacher_projected), dim=-1)
    student_unit = F.normalize(at_least_float32(student_projected), dim=-1)
    rows = student_unit.size(0) if normaliser is None else normaliser
    return (teacher_unit - student_unit).norm(dim=-1).sum() / rows


def crd_loss(
    teacher_projected: torch.Tensor, student_projected: torch.Tensor, temperature: float = 2.0
) -> torch.Tensor:
    """Contrastive (InfoNCE) loss: teacher rows are anchors, the student batch the candidates.

    `mean_i -log(exp(cos(u_i, v_i)/tau) / sum_j exp(cos(u_i, v_j)/tau))`, computed on the B x B cosine
    similarity matrix at once instead of the original's Python loop over the batch. Every row's negatives
    are the other rows, so the term does not split over micro-batches: the trainer evaluates it on the
    whole effective batch (all micro-batches of an accumulated step, all processes).
    """
    teacher_unit = F.normalize(at_least_float32(teacher_projected), dim=-1)
    student_unit = F.normalize(at_least_float32(student_projected), dim=-1)
    similarities = teacher_unit @ student_unit.T / temperature
    targets = torch.arange(similarities.size(0), device=similarities.device)
    return F.cross_entropy(similarities, targets)


def log_batch_size_scale(batch_size: int) -> float:
    """The `alpha2` normalisation: CRD weights are divided by ln(B) (1 for a batch of one)."""
    return math.log(batch_size) if batch_size > 1 else 1.0


def _real(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The (B, T) mask of real tokens as floats (all ones without a mask)."""
    if mask is None:
        return torch.ones(like.shape[0], like.shape[-2], dtype=torch.float32, device=like.device)
    return mask.to(torch.float32)


def hidden_mse(
    teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor | None = None, normaliser: Normaliser = None
) -> torch.Tensor:
    """TinyBERT's hidden-state (and embedding) loss: teacher states (B, K, T, H) against the student's, projected
    to H, layer by mapped layer; each row's mean squared error over its real tokens, its K layers and the H
    units, summed over rows and divided by `normaliser` (by default the rows: the batch mean)."""
    errors = (at_least_float32(student) - at_least_float32(teacher)) ** 2  # B, K, T, H
    real = _real(mask, errors[:, 0])  # B, T
    per_row = (errors.sum(-1) * real[:, None, :]).sum((1, 2)) / (real.sum(-1) * errors.size(1) * errors.size(-1))
    return per_row.sum() / (per_row.size(0) if normaliser is None else normaliser)


def attention_mse(
    teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor | None = None, normaliser: Normaliser = None
) -> torch.Tensor:
    """TinyBERT's attention loss: attention distributions (B, K, T, T), heads averaged, layer by mapped layer;
    each row's mean squared error over its real query and key positions and its K layers, summed over rows and
    divided by `normaliser` (by default the rows)."""
    errors = (at_least_float32(student) - at_least_float32(teacher)) ** 2  # B, K, T, T
    real = _real(mask, errors[:, 0])  # B, T
    pairs = real[:, :, None] * real[:, None, :]  # B, T, T: real queries x real keys
    per_row = (errors * pairs[:, None]).sum((1, 2, 3)) / (pairs.sum((1, 2)) * errors.size(1))
    return per_row.sum() / (per_row.size(0) if normaliser is None else normaliser)


def self_relations(states: torch.Tensor, heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MiniLMv2's self-attention relation of one of queries, keys or values (B, T, H): split into `heads`
    relation heads of H / heads units, log softmax(X X^T / sqrt(H / heads)) over the real keys (B, heads, T, T)."""
    rows, length, size = states.shape
    split = at_least_float32(states).reshape(rows, length, heads, size // heads).transpose(1, 2)
    scores = split @ split.transpose(-1, -2) / math.sqrt(size // heads)
    if mask is not None:  # a finite floor: the padding keys' probability is 0 exactly, and no NaN reaches a gradient
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], -1e9)
    return scores.log_softmax(-1)


def relation_kl(
    teacher: list[torch.Tensor],
    student: list[torch.Tensor],
    heads: int,
    mask: torch.Tensor | None = None,
    normaliser: Normaliser = None,
) -> torch.Tensor:
    """MiniLMv2's loss: for queries, keys and values (teacher's (B, T, H_t), student's (B, T, H_s): any hidden
    sizes, `heads` dividing both), KL(teacher relation || student relation) summed over keys; each row's mean over
    the three, the relation heads and its real queries, summed over rows and divided by `normaliser`."""
    real = _real(mask, teacher[0])  # B, T
    total = 0.0
    for teacher_states, student_states in zip(teacher, student, strict=True):
        log_t, log_s = self_relations(teacher_states, heads, mask), self_relations(student_states, heads, mask)
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # B, heads, T
        total = total + (kl * real[:, None, :]).sum((1, 2)) / (real.sum(-1) * heads)
    per_row = total / len(teacher)
    return per_row.sum() / (per_row.size(0) if normaliser is None else normaliser)
