"""Masking and the Gumbel perturbation (METHODS.md, "Masking and the generator")."""

import torch
from torch import nn

from hf_kd.generator import (
    draw_mask,
    gumbel_noise,
    gumbel_one_hot,
    maskable_positions,
    one_hot_rows,
    perturbed_embeddings,
    sample_tokens,
)

SPECIAL = torch.tensor([0, 1, 2])  # e.g. <s>, <pad>, </s>


def batch():
    ids = torch.tensor([[0, 5, 6, 7, 8, 9, 10, 11, 12, 2], [0, 5, 6, 7, 2, 1, 1, 1, 1, 1]])
    attention = (ids != 1).long()
    return ids, attention


def test_special_and_padding_tokens_are_never_masked():
    ids, attention = batch()
    maskable = maskable_positions(ids, attention, SPECIAL)
    assert maskable.sum(dim=1).tolist() == [8, 3]
    mask = draw_mask(maskable, probability=1.0)
    assert torch.equal(mask, maskable)
    assert not mask[~maskable].any()


def test_bernoulli_mask_rate_is_close_to_probability():
    maskable = torch.ones(200, 50, dtype=torch.bool)
    torch.manual_seed(0)
    rate = draw_mask(maskable, 0.3).float().mean().item()
    assert abs(rate - 0.3) < 0.01


def test_fixed_count_masks_exactly_floor_p_n_positions():
    ids, attention = batch()
    maskable = maskable_positions(ids, attention, SPECIAL)
    for seed in range(5):
        mask = draw_mask(maskable, 0.3, fixed_count=True, generator=torch.Generator().manual_seed(seed))
        assert mask.sum(dim=1).tolist() == [2, 0]  # floor(0.3 * 8), floor(0.3 * 3)
        assert not mask[~maskable].any()


def test_gumbel_one_hot_is_one_hot_with_gradient():
    logits = torch.randn(4, 11, requires_grad=True)
    one_hot = gumbel_one_hot(logits)
    assert torch.equal(one_hot.sum(dim=-1), torch.ones(4))
    assert set(one_hot.unique().tolist()) <= {0.0, 1.0}
    (one_hot * torch.arange(11.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_sample_tokens_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(20000, 3)
    torch.manual_seed(0)
    counts = torch.bincount(sample_tokens(logits), minlength=3).float() / 20000
    assert torch.allclose(counts, torch.tensor([0.7, 0.2, 0.1]), atol=0.015)


def test_perturbation_keeps_unmasked_tokens_and_puts_embedding_rows_at_masked_ones():
    torch.manual_seed(0)
    embedding = nn.Embedding(13, 6)
    ids, attention = batch()
    mask = draw_mask(maskable_positions(ids, attention, SPECIAL), 0.5, generator=torch.Generator().manual_seed(1))
    logits = torch.randn(int(mask.sum()), 13, requires_grad=True)
    one_hot = gumbel_one_hot(logits)
    embeds = perturbed_embeddings(embedding, ids, mask, one_hot)
    assert torch.equal(embeds[~mask], embedding.weight[ids[~mask]])
    assert torch.equal(embeds[mask], embedding.weight[one_hot.argmax(-1)])
    embeds.sum().backward()
    assert logits.grad.abs().sum() > 0  # the generator gets a gradient through the masked rows
    assert embedding.weight.grad is None  # the model's embeddings do not


def test_perturbation_applies_the_embedding_scale():
    class Scaled(nn.Embedding):
        embed_scale = 3.0

        def forward(self, ids):
            return super().forward(ids) * self.embed_scale

    embedding = Scaled(13, 4)
    ids, _ = batch()
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[0, 3] = True
    one_hot = torch.nn.functional.one_hot(torch.tensor([7]), 13).float()
    embeds = perturbed_embeddings(embedding, ids, mask, one_hot)
    assert torch.allclose(embeds[0, 3], embedding.weight[7] * 3.0)
    assert torch.allclose(embeds[1], embedding(ids[1]))


def test_one_hot_rows_matches_the_explicit_product_and_its_gradient():
    torch.manual_seed(0)
    weight = torch.randn(13, 5)
    logits_a = torch.randn(6, 13, requires_grad=True)
    logits_b = logits_a.detach().clone().requires_grad_(True)
    torch.manual_seed(1)
    one_hot_a = gumbel_one_hot(logits_a)
    torch.manual_seed(1)
    one_hot_b = gumbel_one_hot(logits_b)
    upstream = torch.randn(6, 5)
    fast, explicit = one_hot_rows(one_hot_a, weight), one_hot_b @ weight
    assert torch.equal(fast, weight[one_hot_a.argmax(-1)]) and torch.allclose(fast, explicit)
    (fast * upstream).sum().backward()
    (explicit * upstream).sum().backward()
    assert torch.allclose(logits_a.grad, logits_b.grad, atol=1e-6)


def test_gumbel_one_hot_samples_the_softmax_distribution():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).expand(20000, 3).contiguous()
    torch.manual_seed(0)
    frequencies = gumbel_one_hot(logits).sum(dim=0) / 20000
    assert torch.allclose(frequencies, torch.tensor([0.6, 0.3, 0.1]), atol=0.015)


def test_gumbel_gradient_is_the_soft_sample_gradient():
    logits = torch.randn(3, 7, requires_grad=True)
    torch.manual_seed(5)
    one_hot = gumbel_one_hot(logits)
    torch.manual_seed(5)
    soft = torch.softmax(logits + gumbel_noise(logits), dim=-1)
    weights = torch.randn(3, 7)
    (one_hot * weights).sum().backward()
    expected = torch.autograd.grad((soft * weights).sum(), logits)[0]
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    assert torch.equal(one_hot.argmax(-1), soft.argmax(-1))
