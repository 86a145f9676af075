"""Masking and the generator's Gumbel perturbation for MATE-KD, CILDA and CILDA+minILD.

The perturbed input of model M is `e_M = m * (P @ E_M) + (1 - m) * E_M[x]` (METHODS.md). `P` is a
straight-through one-hot: its value is a token, so the forward value equals an embedding lookup of
the sampled token. We use that twice: the max step multiplies `P` with `E_M` only at the masked
positions (where the generator needs a gradient), and the min step, where nothing flows back to the
generator, feeds the sampled token ids directly.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from hf_kd.losses import at_least_float32


def maskable_positions(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, special_token_ids: torch.Tensor
) -> torch.Tensor:
    """Positions that may be masked: real tokens that are not special tokens (bool, B x L)."""
    maskable = ~torch.isin(input_ids, special_token_ids.to(input_ids.device))
    if attention_mask is not None:
        maskable &= attention_mask.bool()
    return maskable


def draw_mask(
    maskable: torch.Tensor,
    probability: float,
    fixed_count: bool = False,
    generator: torch.Generator | None = None,
    scores: torch.Tensor | None = None,
) -> torch.Tensor:
    """Choose masked positions among `maskable` (bool, B x L).

    Bernoulli form: every maskable position independently with `probability`.
    `fixed_count` (the original's `mask_fix`): exactly floor(probability * n_maskable) per example,
    drawn uniformly without replacement. `scores` (uniform, B x L) replaces the random draw.
    """
    if scores is None:
        scores = torch.rand(maskable.shape, device=maskable.device, generator=generator)
    if not fixed_count:
        return (scores < probability) & maskable
    counts = torch.floor(maskable.sum(dim=1) * probability).long()
    scores = scores.masked_fill(~maskable, 2.0)  # never chosen before a maskable position
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < counts.unsqueeze(1)


def keyed_uniform(keys: list[int], counts: list[int], width: int, device: torch.device) -> torch.Tensor:
    """`counts[i]` rows of `width` uniform numbers for each key, from a generator seeded by that key alone.

    Keyed by example and step, a draw does not depend on which other rows share the batch, the process
    or the micro-batch: the same run gives the same numbers under any batch layout (`--keyed_sampling`).
    """
    parts = [
        torch.rand(count, width, device=device, generator=torch.Generator(device=device).manual_seed(key))
        for key, count in zip(keys, counts, strict=True)
    ]
    return torch.cat(parts) if parts else torch.empty(0, width, device=device)


def row_key(*parts: int) -> int:
    """A 63-bit seed from integers (seed, example, step, purpose); stable across processes and runs."""
    digest = hashlib.blake2b(",".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def gumbel_noise(like: torch.Tensor, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """Standard Gumbel noise `-log(-log(U))`: on CPU 4x faster than `exponential_` (which F.gumbel_softmax uses)."""
    if uniform is None:
        uniform = torch.rand_like(like, dtype=torch.float)
    uniform = uniform.float().clamp(min=torch.finfo(torch.float).tiny)
    return uniform.log_().neg_().log_().neg_()


def gumbel_one_hot(logits: torch.Tensor, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """Straight-through Gumbel-softmax sample (hard one-hot, temperature 1) that keeps gradients.

    The same estimator as `F.gumbel_softmax(logits, tau=1, hard=True)`: the value is the one-hot of
    `argmax(logits + g)`, the gradient that of `softmax(logits + g)`. `uniform` (like `logits`) replaces
    the random draw.
    """
    soft = torch.softmax(at_least_float32(logits) + gumbel_noise(logits, uniform), dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft


@torch.no_grad()
def sample_tokens(logits: torch.Tensor, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """Token ids drawn from `softmax(logits)`, the distribution of `gumbel_one_hot(logits).argmax(-1)`.

    Inverse-CDF sampling needs one uniform number per row (`uniform`, N x 1, or a random draw) instead
    of one per vocabulary entry.
    """
    cdf = torch.softmax(logits.float(), dim=-1).cumsum_(dim=-1)
    if uniform is None:
        uniform = torch.rand(cdf.size(0), 1, device=cdf.device)
    uniform = uniform.float() * cdf[:, -1:]
    return torch.searchsorted(cdf, uniform).squeeze(-1).clamp_(max=cdf.size(-1) - 1)


class _OneHotRows(torch.autograd.Function):
    """`one_hot @ weight` for an exactly one-hot `one_hot`: a row lookup forward, the full product only backward.

    The straight-through sample's value is a one-hot row, so the forward product equals a gather; the
    gradient with respect to `one_hot` is `grad @ weight.T`, as for the product. This halves the cost
    of the perturbation at a 50k vocabulary.
    """

    @staticmethod
    def forward(ctx, one_hot: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        ctx.one_hot_dtype = one_hot.dtype
        return weight[one_hot.argmax(dim=-1)]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        return (grad.to(weight.dtype) @ weight.T).to(ctx.one_hot_dtype), None


def one_hot_rows(one_hot: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Rows of `weight` picked by a straight-through one-hot, with the gradient of `one_hot @ weight`."""
    return _OneHotRows.apply(one_hot, weight)


def embedding_scale(embedding: nn.Module) -> float:
    """Scale that the embedding module applies to its rows (BART's `embed_scale`, 1 elsewhere)."""
    scale = getattr(embedding, "embed_scale", None)
    return 1.0 if scale is None else float(scale)


def perturbed_embeddings(
    embedding: nn.Embedding, input_ids: torch.Tensor, mask: torch.Tensor, one_hot: torch.Tensor
) -> torch.Tensor:
    """`m * (P @ E) + (1 - m) * E[x]`, with `P` given only at the masked positions (N x V).

    The clean rows carry no gradient (models are not trained in the max step); the masked rows carry
    the generator's gradient through `one_hot`.
    """
    with torch.no_grad():
        clean = embedding(input_ids)
    weight = embedding.weight.detach()
    replaced = one_hot_rows(one_hot, weight) * embedding_scale(embedding)
    return clean.masked_scatter(mask.unsqueeze(-1), replaced.to(clean.dtype))
