"""Every loss against a hand computation on small tensors (METHODS.md, "Building blocks")."""

import math

import pytest
import torch

from hf_kd.losses import crd_loss, kd_loss, log_batch_size_scale, mean_pool, rail_loss, task_loss


def softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def hand_kl(teacher_rows, student_rows, temperature=1.0):
    total = 0.0
    for t_row, s_row in zip(teacher_rows, student_rows, strict=True):
        p = softmax([v / temperature for v in t_row])
        q = softmax([v / temperature for v in s_row])
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    return total / len(teacher_rows) * temperature**2


TEACHER = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]]
STUDENT = [[1.0, 0.0, -0.5], [0.3, -0.2, 0.9]]


def test_kd_matches_hand_computed_kl():
    value = kd_loss(torch.tensor(TEACHER), torch.tensor(STUDENT))
    assert value.item() == pytest.approx(hand_kl(TEACHER, STUDENT), rel=1e-6)


def test_kd_temperature_scales_by_tau_squared():
    value = kd_loss(torch.tensor(TEACHER), torch.tensor(STUDENT), temperature=4.0)
    assert value.item() == pytest.approx(hand_kl(TEACHER, STUDENT, 4.0), rel=1e-5)
    assert value.item() != pytest.approx(kd_loss(torch.tensor(TEACHER), torch.tensor(STUDENT)).item())


def test_kd_is_zero_for_identical_logits_and_float32_under_bf16():
    logits = torch.tensor(TEACHER, dtype=torch.bfloat16)
    value = kd_loss(logits, logits)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(0.0, abs=1e-7)


def test_regression_kd_is_mse():
    teacher, student = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [1.0]])
    assert kd_loss(teacher, student).item() == pytest.approx((1 + 4) / 2)


def test_task_loss_classification_and_regression():
    logits = torch.tensor(STUDENT)
    labels = torch.tensor([0, 2])
    expected = -(math.log(softmax(STUDENT[0])[0]) + math.log(softmax(STUDENT[1])[2])) / 2
    assert task_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert task_loss(torch.tensor([[0.5], [2.0]]), torch.tensor([1.0, 1.0])).item() == pytest.approx((0.25 + 1) / 2)


def test_mean_pool_masked_and_plain():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]  # real tokens only
    assert mean_pool(hidden, None)[0].tolist() == pytest.approx([104 / 3, 106 / 3], rel=1e-6)  # padding too (original)


def test_mean_pool_of_bf16_states_accumulates_in_float32():
    torch.manual_seed(0)
    hidden = torch.randn(4, 64, 32).bfloat16()
    mask = (torch.arange(64) < torch.tensor([[64], [40], [10], [1]])).long()
    pooled = mean_pool(hidden, mask)
    reference = (hidden.double() * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    assert pooled.dtype == torch.float32
    assert torch.allclose(pooled.double(), reference, atol=1e-6)  # no bf16 rounding of the sums


def test_rail_loss_is_mean_distance_of_unit_vectors():
    u = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    v = torch.tensor([[4.0, 3.0], [0.0, 2.0]])
    first = math.dist([0.6, 0.8], [0.8, 0.6])
    second = math.dist([1.0, 0.0], [0.0, 1.0])
    assert rail_loss(u, v).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_crd_loss_equals_per_example_infonce_loop():
    torch.manual_seed(0)
    u, v = torch.randn(5, 7), torch.randn(5, 7)
    tau = 2.0
    expected = 0.0
    for i in range(5):  # the original's loop over the batch
        sims = [torch.nn.functional.cosine_similarity(u[i], v[j], dim=0).item() / tau for j in range(5)]
        expected += -math.log(math.exp(sims[i]) / sum(math.exp(s) for s in sims))
    assert crd_loss(u, v, tau).item() == pytest.approx(expected / 5, rel=1e-5)


def test_log_batch_scale():
    assert log_batch_size_scale(32) == pytest.approx(math.log(32))
    assert log_batch_size_scale(1) == 1.0
