"""The student as ONNX and int8: every family of the README's matrix exports and answers as PyTorch does; a run
with --export_onnx and `python -m hf_kd.export` write the files, record and card section they promise."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from hf_kd.errors import ArgumentError
from hf_kd.export import (
    FP32_FILE,
    INT8_FILE,
    INT8_WARNING_POINTS,
    agreement,
    export_onnx,
    export_student,
    int8_warning,
    quantize,
)
from hf_kd.run import main
from hf_kd.testing import WORDPIECE, build_classifier
from tests.conftest import ROOT, cli_args

# the model types behind the README's family matrix (decoder-only ones are classifiers there too)
MATRIX_TYPES = (
    "bert",
    "roberta",
    "distilbert",
    "bart",
    "electra",
    "deberta-v2",
    "albert",
    "mpnet",
    "xlm-roberta",
    "modernbert",
    "qwen2",
    "llama",
)


def classifier(kind: str, families, folder) -> str:
    """A tiny random classifier of `kind` with named labels (transformers 5 drops unnamed maps from configs)."""
    tokenizer = AutoTokenizer.from_pretrained(families["bert" if kind in WORDPIECE else "roberta"].tokenizer)
    path = build_classifier(kind, str(folder), tokenizer)
    config = AutoConfig.from_pretrained(path, num_labels=2)
    config.id2label, config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    config.save_pretrained(path)
    return path


def sst2_rows(model_dir: str, sst2_texts: list[str], rows: int = 40) -> Dataset:
    """`rows` SST-2 sentences of many lengths, tokenised by the model's tokenizer, with alternating labels."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(sst2_texts[:rows], truncation=True, max_length=64)
    return Dataset.from_dict({**encoded, "label": [i % 2 for i in range(rows)]})


@pytest.mark.parametrize("kind", MATRIX_TYPES)
def test_every_matrix_family_exports_and_answers_as_pytorch(kind, families, sst2_texts, tmp_path):
    model_dir = classifier(kind, families, tmp_path / "model")
    fp32, names = export_onnx(model_dir, str(tmp_path / "onnx"))
    quantize(fp32, str(tmp_path / "onnx" / INT8_FILE))
    # batches of 32 and 8 rows at lengths other than the 2-row sample traced: the axes are dynamic
    checks = agreement(
        model_dir,
        {"fp32": fp32, "int8": str(tmp_path / "onnx" / INT8_FILE)},
        sst2_rows(model_dir, sst2_texts),
        None,
        False,
    )
    assert checks["rows"] == 40 and "input_ids" in names
    assert checks["fp32"]["agreement"] == 1.0 and checks["fp32"]["max_logit_difference"] < 1e-4
    assert checks["fp32"]["accuracy"] == checks["pytorch"]["accuracy"]
    assert 0 < checks["int8"]["max_logit_difference"] < 0.1  # quantised: close, not equal


def test_a_wrong_export_is_caught_by_the_agreement_check(families, sst2_texts, tmp_path):
    """The check compares with the PyTorch student, so another model's export shows as disagreement."""
    student = classifier("bert", families, tmp_path / "student")
    other = classifier("bert", families, tmp_path / "other")
    for path, bias in ((student, [5.0, -5.0]), (other, [-5.0, 5.0])):  # always "negative", always "positive"
        model = AutoModelForSequenceClassification.from_pretrained(path)
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor(bias))
        model.save_pretrained(path)
    wrong, _ = export_onnx(other, str(tmp_path / "onnx"))
    checks = agreement(student, {"wrong": wrong}, sst2_rows(student, sst2_texts), None, False)
    assert checks["wrong"]["agreement"] == 0.0 and checks["wrong"]["max_logit_difference"] > 9
    assert checks["wrong"]["accuracy"] == checks["pytorch"]["accuracy"] == 0.5  # the metric alone would not see it


def test_int8_warning_fires_past_the_threshold_only():
    def checks(pytorch: float, int8: float) -> dict:
        return {"metric": "accuracy", "rows": 872, "pytorch": {"accuracy": pytorch}, "onnx int8": {"accuracy": int8}}

    assert INT8_WARNING_POINTS == 1.0
    assert int8_warning(checks(0.8200, 0.8120)) is None  # -0.80 points
    line = int8_warning(checks(0.8200, 0.8050))  # -1.50 points
    assert line is not None and "-1.50 points" in line and "872 validation rows" in line and "\n" not in line
    assert int8_warning(checks(0.80, 0.8150)) is not None  # a rise that large is as suspect


def test_a_family_the_exporter_cannot_trace_is_refused_in_one_line(families, tmp_path, monkeypatch):
    model_dir = classifier("bert", families, tmp_path / "model")

    def cannot_trace(*args, **kwargs):
        raise torch.onnx.errors.UnsupportedOperatorError("aten::fancy_op", 17, 18)

    monkeypatch.setattr(torch.onnx, "export", cannot_trace)
    with pytest.raises(ArgumentError) as error:
        export_onnx(model_dir, str(tmp_path / "onnx"))
    message = str(error.value)
    assert message.startswith("bert does not export to ONNX here (") and "\n" not in message
    assert "fancy_op" in message and "ship the PyTorch student" in message


@pytest.fixture(scope="module")
def exported_run(families, sst2_files, tmp_path_factory):
    """A short KD run with --export_onnx: the student, its ONNX files, record and card."""
    out = tmp_path_factory.mktemp("export") / "run"
    args = cli_args(families["bert"], sst2_files, out, "kd", "--max_steps", "4", "--export_onnx", "true")
    main(args)
    return out


def test_export_onnx_writes_the_files_record_and_card(exported_run, sst2_files):
    folder = exported_run / "onnx"
    for name in (FP32_FILE, INT8_FILE, "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    record = json.loads((exported_run / "hf_kd_run.json").read_text())["export"]
    checks = record["agreement"]
    assert checks["rows"] == 48 and checks["metric"] == "accuracy"  # every validation row of the run
    assert checks["onnx fp32"]["agreement"] == 1.0 and checks["onnx fp32"]["max_logit_difference"] < 1e-4
    assert record["int8_metric_change_points"] == pytest.approx(
        100 * (checks["onnx int8"]["accuracy"] - checks["pytorch"]["accuracy"])
    )
    table = record["latency_ms_per_sentence"]
    assert set(table) == {"pytorch teacher", "pytorch student", "onnx fp32", "onnx int8"}
    threads = torch.get_num_threads()
    columns = {f"{t} thread{'s' if t > 1 else ''}, batch {b}" for t in {1, threads} for b in (1, 32)}
    assert all(set(row) == columns and min(row.values()) > 0 for row in table.values())
    assert set(record["size_on_disk_mb"]) == set(table)
    card = (exported_run / "README.md").read_text()
    assert card.count("## Deployment (ONNX)") == 1
    assert f"| onnx fp32 | {checks['onnx fp32']['accuracy']:.4f} | 100.00% |" in card
    assert "| pytorch teacher |" in card and "| onnx int8 |" in card


def test_the_shipped_folder_runs_in_onnxruntime_with_its_own_tokenizer_and_labels(exported_run, sst2_texts):
    """What a user does with OUTPUT_DIR/onnx: a tokenizer, a session, label names; PyTorch's answers."""
    folder = exported_run / "onnx"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    runner = onnxruntime.InferenceSession(str(folder / FP32_FILE), providers=["CPUExecutionProvider"])
    texts = sst2_texts[100:107]  # a batch of 7: a size the export never saw
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="np")
    wanted = {node.name for node in runner.get_inputs()}
    logits = runner.run(None, {k: v for k, v in encoded.items() if k in wanted})[0]
    student = AutoModelForSequenceClassification.from_pretrained(exported_run).eval()
    with torch.no_grad():
        expected = student(**tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")).logits
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4)
    assert set(config.id2label.values()) == set(student.config.id2label.values()) and len(config.id2label) == 2


@pytest.mark.slow
def test_export_command_on_a_finished_run_rewrites_one_section(exported_run):
    result = subprocess.run(
        [sys.executable, "-m", "hf_kd.export", str(exported_run)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "## Deployment (ONNX)" in result.stdout and "| onnx int8 |" in result.stdout
    assert (exported_run / "README.md").read_text().count("## Deployment (ONNX)") == 1
    assert "Traceback" not in result.stderr


def test_export_command_refuses_a_folder_without_a_student_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hf_kd.export", str(tmp_path)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == f"hf_kd.export: error: {tmp_path} holds no student (config.json): give a finished run's folder."
    )


def test_export_student_without_validation_data_still_exports_and_times(families, tmp_path, caplog):
    model_dir = classifier("roberta", families, tmp_path / "model")
    with caplog.at_level("WARNING", logger="hf_kd"):
        findings = export_student(model_dir)
    assert "agreement" not in findings and set(findings["latency_ms_per_sentence"]) == {
        "pytorch student",
        "onnx fp32",
        "onnx int8",
    }
    assert "records no validation data" in caplog.text
