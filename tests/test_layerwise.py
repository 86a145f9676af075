"""TinyBERT's and MiniLM's layer-wise terms: pure losses against hand computations, the layer map, and the
refusals of what they cannot read."""

from __future__ import annotations

import math

import pytest
import torch

from hf_kd.config import parse_args
from hf_kd.errors import ArgumentError
from hf_kd.losses import attention_mse, hidden_mse, relation_kl
from hf_kd.trainers.layerwise import uniform_map
from tests.conftest import cli_args
from tests.test_bad_input import replace
from tests.test_trainers import first_batch, make_trainer

MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])


def test_hidden_and_attention_losses_are_means_over_real_tokens_per_row():
    torch.manual_seed(0)
    teacher, student = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    rows = [((student[b, :, :n] - teacher[b, :, :n]) ** 2).mean() for b, n in enumerate((3, 2))]
    assert hidden_mse(teacher, student, MASK).item() == pytest.approx(sum(rows).item() / 2, rel=1e-6)
    assert hidden_mse(teacher, student, MASK, normaliser=4.0).item() == pytest.approx(sum(rows).item() / 4, rel=1e-6)
    a, b = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    rows = [((b[i, :, :n, :n] - a[i, :, :n, :n]) ** 2).mean() for i, n in enumerate((3, 2))]
    assert attention_mse(a, b, MASK).item() == pytest.approx(sum(rows).item() / 2, rel=1e-6)


def test_relation_kl_against_a_loop_over_heads_queries_and_keys():
    torch.manual_seed(1)
    teacher = [torch.randn(2, 4, 6) for _ in range(3)]
    student = [torch.randn(2, 4, 4) for _ in range(3)]
    heads = 2
    total = 0.0
    for b, n in enumerate((3, 2)):
        row = 0.0
        for t, s in zip(teacher, student, strict=True):
            for h in range(heads):
                tt = t[b, :n, h * 3 : (h + 1) * 3]
                ss = s[b, :n, h * 2 : (h + 1) * 2]
                rt = torch.softmax(tt @ tt.T / math.sqrt(3), -1)
                rs = torch.softmax(ss @ ss.T / math.sqrt(2), -1)
                row += (rt * (rt.log() - rs.log())).sum(-1).mean()  # KL over keys, mean over real queries
        total += row / (3 * heads)
    assert relation_kl(teacher, student, heads, MASK).item() == pytest.approx(total.item() / 2, rel=1e-5)


def test_the_uniform_layer_map():
    assert uniform_map(2, 6) == [3, 6] and uniform_map(2, 4) == [2, 4] and uniform_map(3, 12) == [4, 8, 12]


@pytest.mark.parametrize(("method", "terms"), [("tinybert", {"hidden", "attention"}), ("minilm", {"relation"})])
def test_a_step_trains_the_student_and_logs_the_layer_terms(bert, sst2_files, tmp_path, method, terms):
    trainer = make_trainer(bert, sst2_files, tmp_path, method)
    batch = trainer._prepare_inputs(first_batch(trainer))
    loss, logged = trainer.compute_loss(trainer.model.train(), batch, return_outputs=True)
    assert terms <= set(logged) and all(torch.isfinite(logged[name]) and logged[name] > 0 for name in terms)
    loss.backward()
    if method == "tinybert":  # W_h learns with the student
        assert trainer.projections.student["encoder"].weight.grad.abs().sum() > 0
        assert trainer.layers.mapped("encoder") == [2, 4]  # the 2-layer student of the 4-layer teacher
    embeddings = trainer.model.get_input_embeddings().weight.grad
    assert embeddings is not None and embeddings.abs().sum() > 0


@pytest.mark.parametrize(
    ("method", "extra", "message"),
    [
        (
            "tinybert",
            ["--layer_map", "1,5"],
            r"--layer_map 1,5: give one teacher layer \(1 to 4\) for each of the student's 2",
        ),
        ("minilm", ["--relation_heads", "5"], r"--relation_heads 5 must divide both hidden sizes"),
        ("minilm", ["--relation_layer", "9"], r"--relation_layer 9: the teacher has layers 1 to 4"),
        ("tinybert", ["--cache_teacher_outputs", "true"], r"--cache_teacher_outputs stores .* drop it"),
    ],
)
def test_what_the_layer_terms_cannot_read_is_refused_in_one_line(bert, sst2_files, tmp_path, method, extra, message):
    from hf_kd.build import build_trainer

    with pytest.raises(ArgumentError, match=message):
        build_trainer(*parse_args(cli_args(bert, sst2_files, tmp_path / "run", method, *extra)))


def test_token_level_terms_are_refused_across_tokenizers(bert, roberta, sst2_files, tmp_path):
    from hf_kd.build import build_trainer

    args = replace(cli_args(bert, sst2_files, tmp_path / "run", "tinybert"), "--teacher_name_or_path", roberta.teacher)
    with pytest.raises(ArgumentError, match=r"compares teacher and student token by token .* another tokenization"):
        build_trainer(*parse_args(args))
