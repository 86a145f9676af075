"""The term registry: each term declared once, its flags, ranges, logged names and METHODS.md's table following."""

from __future__ import annotations

import pytest
import torch

from hf_kd.adapters import LayerFeatures
from hf_kd.arguments import VALID_RANGES, DistillationTrainingArguments
from hf_kd.config import option_names
from hf_kd.losses import crd_loss, kd_loss, rail_loss
from hf_kd.terms import MAX_STEP_TERMS, TERMS, layer_kind, uses_teacher, weighted
from hf_kd.trainers import TRAINERS, methods_block
from tests.conftest import ROOT


def test_every_term_has_its_flags_ranges_and_help_from_its_declaration():
    options = option_names()
    for name, term in TERMS.items():
        assert f"weight_{name}" in options and f"weight_{name}" in VALID_RANGES
        help_text = DistillationTrainingArguments.__dataclass_fields__[f"weight_{name}"].metadata["help"]
        assert help_text.startswith(f"Weight of {term.formula}.")
        assert (f"generator_weight_{name}" in options) == term.max_step == (name in MAX_STEP_TERMS)
    assert set(MAX_STEP_TERMS) == {"kd_perturbed", "crd_perturbed"}


def test_methods_md_block_is_the_generated_one():
    text = (ROOT / "docs" / "METHODS.md").read_text()
    block = text.split("<!-- terms -->\n")[1].split("\n<!-- /terms -->")[0]
    assert block == methods_block()


def test_every_method_weighs_only_declared_terms():
    for cls in TRAINERS.values():
        assert set(cls.default_weights) <= set(TERMS) and set(cls.default_generator_weights) <= set(MAX_STEP_TERMS)


def test_what_the_weights_read_follows_from_the_declarations():
    assert layer_kind({"ce": 1, "kd": 1}) is None and not uses_teacher({"ce": 1})
    assert layer_kind({"rail": 0.3}) == "pooled" and layer_kind({"crd": 0}, {"crd_perturbed": 0.5}) == "sentence"
    assert uses_teacher({"ce": 1, "kd": 0}, {"kd_perturbed": 0.5})
    with pytest.raises(ValueError, match=r"read layer features of different kinds \(\[.pooled., .sentence.\]\)"):
        layer_kind({"rail": 1, "crd": 1})
    assert [t.name for t in weighted({"crd": 1, "ce": 2, "kd": 0})] == ["ce", "crd"]  # declaration order


class Context:
    """A context with identity projections and no gathering, to check each term's compute by hand."""

    def __init__(self, labels=None, rows=None, labelled=None) -> None:
        self.labels, self.rows, self.labelled = labels, rows, labelled
        self.args = DistillationTrainingArguments(output_dir="unused", report_to="none", kd_temperature=2.0)

    def row_weights(self, logits):
        return None

    def project(self, side, stack, features):
        return features

    def gather(self, rows):
        return rows


def test_each_terms_compute_is_its_loss_function():
    torch.manual_seed(0)
    teacher = LayerFeatures(torch.randn(4, 3), {"encoder": torch.randn(4, 2, 5)}, {"encoder": torch.randn(4, 2, 5)})
    student = LayerFeatures(torch.randn(4, 3), {"encoder": torch.randn(4, 2, 5)}, {"encoder": torch.randn(4, 2, 5)})
    labels = torch.tensor([0, 2, -100, 1])
    context = Context(labels, rows=torch.tensor(4.0), labelled=torch.tensor(3.0))
    ce = torch.nn.functional.cross_entropy(student.logits[[0, 1, 3]], labels[[0, 1, 3]])
    assert TERMS["ce"].compute(context, None, student).item() == pytest.approx(ce.item(), rel=1e-6)
    assert TERMS["kd"].compute(context, teacher, student).item() == pytest.approx(
        kd_loss(teacher.logits, student.logits, 2.0).item(), rel=1e-6
    )
    flat = lambda features, kind: getattr(features, kind)["encoder"].flatten(1)  # noqa: E731
    assert TERMS["rail"].compute(context, teacher, student).item() == pytest.approx(
        rail_loss(flat(teacher, "pooled"), flat(student, "pooled")).item(), rel=1e-6
    )
    assert TERMS["crd_perturbed"].compute(context, teacher, student).item() == pytest.approx(
        crd_loss(flat(teacher, "sentence"), flat(student, "sentence"), 2.0).item(), rel=1e-6
    )
