"""Data loading in every GLUE layout, labels, subsampling, static masks; the offline GLUE metrics."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from hf_kd.arguments import DataTrainingArguments
from hf_kd.data import STATIC_MASK_COLUMN, DistillationCollator, prepare_data
from hf_kd.errors import ArgumentError
from hf_kd.metrics import glue_metrics


@pytest.fixture(scope="module")
def tokenizer(bert):
    return AutoTokenizer.from_pretrained(bert.tokenizer)


def data_args(train, validation, task=None, **extra):
    return DataTrainingArguments(
        task_name=task, train_file=str(train), validation_file=str(validation), max_seq_length=32, **extra
    )


def test_official_sst2_tsv(tokenizer, sst2_files):
    data = prepare_data(data_args(sst2_files["train"], sst2_files["dev"], "sst2"), tokenizer)
    assert (len(data.train), len(data.validation), data.label_list) == (96, 48, ["negative", "positive"])
    assert set(data.train.column_names) == {"label", "input_ids", "token_type_ids", "attention_mask", "hf_kd_index"}
    assert data.train["hf_kd_index"] == list(range(96))
    first = Path(sst2_files["train"]).read_text().splitlines()[1].split("\t")
    assert data.train[0]["label"] == int(first[1])
    assert tokenizer.decode(data.train[0]["input_ids"], skip_special_tokens=True).split()[:2] == first[0].split()[:2]


def test_official_mrpc_tsv_columns(tokenizer, tmp_path):
    rows = 'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said "yes" .\tHe agreed .\n0\t3\t4\tit rains\tstocks fell\n'
    (tmp_path / "train.tsv").write_text(rows)
    data = prepare_data(data_args(tmp_path / "train.tsv", tmp_path / "train.tsv", "MRPC"), tokenizer)
    assert data.train["label"] == [1, 0] and data.task_name == "mrpc"
    assert data.train[0]["token_type_ids"].count(1) > 0  # a real sentence pair


def test_headerless_cola_tsv(tokenizer, tmp_path):
    (tmp_path / "train.tsv").write_text("gj04\t1\t\tThe book was read .\ngj04\t0\t*\tBook the read was .\n")
    data = prepare_data(data_args(tmp_path / "train.tsv", tmp_path / "train.tsv", "cola"), tokenizer)
    assert data.train["label"] == [1, 0] and data.label_list == ["unacceptable", "acceptable"]


def test_mnli_jsonl_with_label_names(tokenizer, tmp_path):
    rows = [
        {"premise": "a dog runs", "hypothesis": "an animal moves", "label": "entailment"},
        {"premise": "a dog runs", "hypothesis": "a cat sleeps", "label": "contradiction"},
        {"premise": "a dog runs", "hypothesis": "it is noon", "label": "neutral"},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = prepare_data(data_args(tmp_path / "train.jsonl", tmp_path / "train.jsonl", "mnli"), tokenizer)
    assert data.train["label"] == [0, 2, 1]  # GLUE's order: entailment, neutral, contradiction


def test_qnli_csv_and_stsb_regression(tokenizer, tmp_path):
    (tmp_path / "q.csv").write_text("question,sentence,label\nwho ?,him .,entailment\nwhen ?,red .,not_entailment\n")
    data = prepare_data(data_args(tmp_path / "q.csv", tmp_path / "q.csv", "qnli"), tokenizer)
    assert data.train["label"] == [0, 1]
    (tmp_path / "s.tsv").write_text(
        "index\tgenre\tsentence1\tsentence2\tscore\n0\tx\ta man\ta man\t5.000\n1\tx\ta cat\ta car\t0.4\n"
    )
    data = prepare_data(data_args(tmp_path / "s.tsv", tmp_path / "s.tsv", "sts-b"), tokenizer)
    assert data.is_regression and data.num_labels == 1 and data.train["label"] == pytest.approx([5.0, 0.4])


def test_custom_task_labels_are_sorted_strings(tokenizer, tmp_path):
    (tmp_path / "t.csv").write_text("sentence,label\nfine,pos\nbad,neg\nok,neutral\n")
    data = prepare_data(data_args(tmp_path / "t.csv", tmp_path / "t.csv"), tokenizer)
    assert data.label_list == ["neg", "neutral", "pos"] and data.train["label"] == [2, 0, 1]


BANKING77 = Path(__file__).resolve().parents[1] / "data" / "banking77"


def test_columns_picked_by_name_banking77_as_it_ships(tokenizer):
    """BANKING77's `text,category` files: string intents become ids in sorted order, the text is tokenised."""
    args = data_args(BANKING77 / "train.csv", BANKING77 / "test.csv", label_column_name="category")
    data = prepare_data(args, tokenizer)
    categories = sorted({line.rsplit(",", 1)[1] for line in (BANKING77 / "train.csv").read_text().splitlines()[1:]})
    assert data.label_list == categories and len(categories) == 77
    assert (len(data.train), len(data.validation)) == (616, 308)
    with open(BANKING77 / "train.csv", encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    assert data.train[0]["label"] == categories.index(first["category"])
    assert data.train[0]["input_ids"] == tokenizer(first["text"], truncation=True, max_length=32)["input_ids"]


def test_text_and_label_columns_by_name_for_pairs(tokenizer, tmp_path):
    """--text_column_names picks a pair in order; a column already named 'label' gives way to the chosen one."""
    rows = "passage,question,label,answer\nthe sky is blue,what colour,x,yes\ncats purr,do dogs bark,x,no\n"
    (tmp_path / "t.csv").write_text(rows)
    args = data_args(tmp_path / "t.csv", tmp_path / "t.csv", text_column_names="question, passage")
    args.label_column_name = "answer"
    data = prepare_data(args, tokenizer)
    assert data.label_list == ["no", "yes"] and data.train["label"] == [1, 0]
    expected = tokenizer("what colour", "the sky is blue")["input_ids"]
    assert data.train[0]["input_ids"] == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, r"no 'label' column \(its columns: \['text', 'category'\]\).*--label_column_name"),
        ({"label_column_name": "intent"}, r"no column 'intent' \(--label_column_name\); its columns: \['text'"),
        ({"label_column_name": "category", "text_column_names": "query"}, r"no column\(s\) \['query'\]"),
    ],
)
def test_column_refusals_name_the_flag_and_the_columns(tokenizer, extra, message):
    with pytest.raises(ArgumentError, match=message):
        prepare_data(data_args(BANKING77 / "train.csv", BANKING77 / "test.csv", **extra), tokenizer)


@pytest.mark.parametrize("value", ["a,b,c", " , "])
def test_text_column_names_takes_one_or_two(value):
    with pytest.raises(ArgumentError, match="--text_column_names takes one column name, or two"):
        DataTrainingArguments(text_column_names=value)


def test_custom_text_column_is_refused_with_the_flag_to_pick_it(tokenizer, tmp_path):
    (tmp_path / "t.csv").write_text("utterance,label\nhello,a\nbye,b\n")
    with pytest.raises(ArgumentError, match=r"has \['utterance', 'label'\]\. Pick them with --text_column_names"):
        prepare_data(data_args(tmp_path / "t.csv", tmp_path / "t.csv"), tokenizer)
    data = prepare_data(data_args(tmp_path / "t.csv", tmp_path / "t.csv", text_column_names="utterance"), tokenizer)
    assert data.label_list == ["a", "b"]


def test_data_ratio_and_max_samples_keep_the_first_rows(tokenizer, sst2_files):
    data = prepare_data(
        data_args(sst2_files["train"], sst2_files["dev"], "sst2", data_ratio=0.5, max_eval_samples=10), tokenizer
    )
    assert (len(data.train), len(data.validation)) == (48, 10)
    full = prepare_data(data_args(sst2_files["train"], sst2_files["dev"], "sst2"), tokenizer)
    assert data.train["input_ids"] == full.train["input_ids"][:48]


def test_pad_to_max_length(tokenizer, sst2_files):
    data = prepare_data(data_args(sst2_files["train"], sst2_files["dev"], "sst2", pad_to_max_length=True), tokenizer)
    assert {len(ids) for ids in data.train["input_ids"]} == {32}


def test_static_mask_is_drawn_once_and_padded_by_the_collator(tokenizer, sst2_files):
    args = data_args(sst2_files["train"], sst2_files["dev"], "sst2")
    first = prepare_data(args, tokenizer, seed=3, static_mask_probability=0.5)
    again = prepare_data(args, tokenizer, seed=3, static_mask_probability=0.5)
    assert first.train[STATIC_MASK_COLUMN] == again.train[STATIC_MASK_COLUMN]  # reproducible from the seed
    batch = DistillationCollator(tokenizer)([first.train[i] for i in range(8)])
    mask = batch[STATIC_MASK_COLUMN]
    assert mask.shape == batch["input_ids"].shape and mask.dtype.is_floating_point is False
    special = set(tokenizer.all_special_ids)
    assert all(int(token) not in special for token in batch["input_ids"][mask])  # never a special or pad token
    assert 0.3 < mask.sum().item() / (batch["attention_mask"].sum().item() - 16) < 0.7


def test_glue_metrics_against_hand_computations():
    predictions, references = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    tp, tn, fp, fn = 2, 1, 1, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert glue_metrics("cola", predictions, references) == pytest.approx({"matthews_correlation": mcc})
    assert glue_metrics("mrpc", predictions, references) == pytest.approx(
        {"accuracy": 0.6, "f1": 2 * tp / (2 * tp + fp + fn)}
    )
    assert glue_metrics("sst2", predictions, references) == {"accuracy": 0.6}
    scores = glue_metrics("stsb", np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.5, 2.0, 5.0]))
    assert scores["spearmanr"] == pytest.approx(0.8) and scores["pearson"] == pytest.approx(
        np.corrcoef([1, 2, 3, 4], [1.5, 2.5, 2, 5])[0, 1]
    )


def test_data_hygiene_is_reported(tokenizer, tmp_path, caplog):
    long = " ".join(["wonderful"] * 60)
    (tmp_path / "t.csv").write_text(f"idx,sentence,label\n1,{long},1\n1,,0\n2,fine,1\n")
    with caplog.at_level("WARNING", logger="hf_kd.data"):
        data = prepare_data(data_args(tmp_path / "t.csv", tmp_path / "t.csv"), tokenizer)
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "1 of 3 examples are longer than --max_seq_length 32 and were truncated" in messages
    assert "1 of 3 rows have an empty 'sentence'" in messages
    assert "1 rows repeat an id of column 'idx'" in messages
    assert max(len(ids) for ids in data.train["input_ids"]) == 32


def test_labelled_rows_of_a_file_backed_dataset_raise_no_warning(tmp_path):
    """An Arrow file's one-chunk column comes back read-only: torch warned on it in every run's log."""
    import warnings

    from datasets import Dataset, load_from_disk

    from hf_kd.data import labelled_row_indices

    Dataset.from_dict({"label": [0, -100, 1, 1]}).save_to_disk(tmp_path / "d")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert labelled_row_indices(load_from_disk(tmp_path / "d")).tolist() == [0, 2, 3]
