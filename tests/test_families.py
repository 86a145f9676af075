"""The family x method matrix, run end to end on tiny models built from configs; the README's table is this one.

Same-family rows use one family for teacher, student and generator; decoder-only families have no masked
LM, so they are students of KD, RAIL-KD and the layer-wise methods, and teachers of every method across
tokenizers; the cross rows pair models of different tokenizers (the generator shares the student's), where
the token-level methods (TinyBERT, MiniLM) are refused.
"""

from __future__ import annotations

import re

import pytest
from transformers import AutoTokenizer

from hf_kd.run import main
from hf_kd.testing import TinyFamily, build_classifier, build_family
from tests.conftest import ROOT, cli_args

ALL = ("kd", "rail_kd", "mate_kd", "cilda", "cilda_minild", "tinybert", "minilm")
ACROSS = ("kd", "rail_kd", "mate_kd", "cilda", "cilda_minild")  # across tokenizers: no token-level method
CLASSIFIERS_ONLY = ("kd", "rail_kd", "tinybert", "minilm")  # no masked LM: no adversarial method
NO_RELATIONS = tuple(m for m in ALL if m != "minilm")  # shared (ALBERT) or fused (ModernBERT) q/k/v: refused
# README row -> (how the models are built, the methods that run)
FAMILY_MATRIX: dict[str, tuple[str, tuple[str, ...]]] = {
    "BERT": ("bert", ALL),
    "RoBERTa": ("roberta", ALL),
    "DistilBERT (student of a BERT teacher)": ("distilbert", ALL),
    "BART": ("bart", ALL),
    "ELECTRA": ("electra", ALL),
    "DeBERTa-v2 / v3": ("deberta-v2", ALL),
    "ALBERT": ("albert", NO_RELATIONS),
    "MPNet": ("mpnet", ALL),
    "XLM-RoBERTa": ("xlm-roberta", ALL),
    "ModernBERT": ("modernbert", NO_RELATIONS),
    "Qwen2 (decoder-only)": ("qwen2", CLASSIFIERS_ONLY),
    "Llama (decoder-only)": ("llama", CLASSIFIERS_ONLY),
    "Qwen2 teacher -> BERT student": ("qwen2 -> bert", ACROSS),
    "Llama teacher -> RoBERTa student": ("llama -> roberta", ACROSS),
    "WordPiece (BERT) teacher -> byte-BPE (RoBERTa) student": ("bert -> roberta", ACROSS),
    "byte-BPE (RoBERTa) teacher -> WordPiece (BERT) student": ("roberta -> bert", ACROSS),
}
CASES = [(row, method) for row, (_, methods) in FAMILY_MATRIX.items() for method in methods]


@pytest.fixture(scope="module")
def built(families, sst2_texts, tmp_path_factory):
    """Each row's models, built on first use."""
    cache: dict[str, TinyFamily] = {}

    def build(spec: str) -> TinyFamily:
        if spec in cache:
            return cache[spec]
        if spec in families:
            family = families[spec]
        elif " -> " in spec:  # the teacher of one row, the student and generator of another
            teacher_spec, student_spec = spec.split(" -> ")
            student = build(student_spec)
            teacher = build(teacher_spec)
            family = TinyFamily(student.tokenizer, teacher.teacher, student.student, student.generator)
        elif spec in ("qwen2", "llama"):
            folder = tmp_path_factory.mktemp(spec)
            tokenizer = AutoTokenizer.from_pretrained(families["roberta"].tokenizer)
            teacher = build_classifier(spec, str(folder / "teacher"), tokenizer, layers=3, hidden=48)
            student = build_classifier(spec, str(folder / "student"), tokenizer, layers=2, hidden=32)
            family = TinyFamily(families["roberta"].tokenizer, teacher, student, "")
        else:
            family = build_family(spec, str(tmp_path_factory.mktemp(spec)), sst2_texts)
        cache[spec] = family
        return family

    return build


@pytest.mark.parametrize(("row", "method"), CASES, ids=[f"{row}: {method}" for row, method in CASES])
def test_family_matrix(built, sst2_files, tmp_path, row, method):
    family = built(FAMILY_MATRIX[row][0])
    args = cli_args(family, sst2_files, tmp_path / "run", method, "--max_steps", "3", "--max_eval_samples", "16")
    results = main([*args, "--n_generator_iter", "1", "--n_student_iter", "1"])
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and results["train_loss"] > 0


def test_readme_table_is_the_tested_matrix():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- families -->")[1].split("<!-- /families -->")[0]
    rows = [line for line in table.strip().splitlines() if line.startswith("|")][2:]
    parsed = {}
    for line in rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        parsed[cells[0]] = tuple(method for method, cell in zip(ALL, cells[1:], strict=True) if cell == "✓")
    assert parsed == {row: methods for row, (_, methods) in FAMILY_MATRIX.items()}
    assert all(re.fullmatch(r"✓|—", cell.strip()) for line in rows for cell in line.strip("|").split("|")[1:])
